//! The kernel state an AP's boot block carries, for tests that play the AP on a host thread.

use tdx_boot::mpwk::{ApState, DescriptorTablePointer};
use x86_64::VirtAddr;

/// The CR3 every block carries.
pub const KERNEL_CR3: u64 = 0x1234_5000;

/// A plausible kernel state with its stack at `stack_top` (never loaded by a host thread).
pub fn state(stack_top: u64) -> ApState {
    ApState {
        cr3: KERNEL_CR3,
        gdtr: DescriptorTablePointer {
            limit: 23,
            base: VirtAddr::new(0xFFFF_8000_0000_1000),
        },
        idtr: DescriptorTablePointer {
            limit: 4095,
            base: VirtAddr::new(0xFFFF_8000_0000_2000),
        },
        code_selector: 8,
        data_selector: 16,
        stack_top,
    }
}
