//! The firmware side of the ACPI multiprocessor wakeup mailbox: where parked APs wait.
//!
//! This is what TDVF (edk2 2025.08, version-1 wakeup entry) runs on every AP after it hands
//! over: watch the mailbox for a command addressed to this CPU's APIC ID; WAKEUP: take the wakeup
//! vector and acknowledge (command = NOOP), then jump to the vector in 64-bit mode with
//! interrupts off, on the page tables it already runs on (the BSP's identity map); TEST:
//! acknowledge and keep looping. The reset vector ([`reset_vector`]) brings an AP the OS hands
//! back into this loop again, on a stack of the firmware's, as edk2's
//! `AsmRelocateApResetVector` does.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use tdx_boot::mpwk::{FirmwareRequest, Mailbox};

/// APs that reached the parking loop.
pub static PARKED: AtomicU32 = AtomicU32::new(0);
/// APs that left it (woken through the mailbox).
pub static WOKEN: AtomicU32 = AtomicU32::new(0);
/// TEST commands answered.
pub static TESTED: AtomicU32 = AtomicU32::new(0);
/// APs that came back through the reset vector.
pub static RETURNED: AtomicU32 = AtomicU32::new(0);

/// The most APIC IDs the reset vector has stacks for.
pub const MAX_APIC_IDS: usize = 64;
/// The firmware stack (top) the reset vector gives each APIC ID, set when the AP is parked.
pub static RESET_STACKS: [AtomicU64; MAX_APIC_IDS] = [const { AtomicU64::new(0) }; MAX_APIC_IDS];
/// The mailbox page the reset vector parks APs on again.
pub static MAILBOX: AtomicU64 = AtomicU64::new(0);

/// The reset vector published in the MADT: entered from the OS in 64-bit mode, interrupts off,
/// on identity-mapped page tables, with no stack. Takes this APIC ID's firmware stack and
/// re-enters the parking loop. An APIC ID without a stack halts here for good.
#[unsafe(naked)]
pub extern "sysv64" fn reset_vector() -> ! {
    core::arch::naked_asm!(
        "cli",
        "mov eax, 1",
        "cpuid",
        "shr ebx, 24",
        "cmp ebx, {max}",
        "jae 3f",
        "lea rax, [rip + {stacks}]",
        "mov rsp, [rax + rbx * 8]",
        "test rsp, rsp",
        "jz 3f",
        "lea rax, [rip + {mailbox}]",
        "mov rdi, [rax]",
        // As after a call: RSP = 8 (mod 16) at the entry of a System V function.
        "sub rsp, 8",
        "jmp {returned}",
        "3:",
        "hlt",
        "jmp 3b",
        max = const MAX_APIC_IDS,
        stacks = sym RESET_STACKS,
        mailbox = sym MAILBOX,
        returned = sym park_again,
    )
}

/// The parking loop entered from the reset vector.
extern "sysv64" fn park_again(mailbox: u64) -> ! {
    RETURNED.fetch_add(1, Ordering::Relaxed);
    park(mailbox)
}

/// The parking loop; `mailbox` is the mailbox page's address. Entered from the start-up
/// trampoline on the AP's own small stack.
pub extern "sysv64" fn park(mailbox: u64) -> ! {
    // SAFETY: the BSP passes the address of the mailbox page it reserved (ACPI NVS memory,
    // identity-mapped, never freed).
    let mailbox = unsafe { Mailbox::from_address(mailbox) };
    let apic_id = crate::percpu::apic_id_from_cpuid();
    PARKED.fetch_add(1, Ordering::Release);
    loop {
        match mailbox.firmware_serve(apic_id) {
            FirmwareRequest::Wakeup(vector) => {
                WOKEN.fetch_add(1, Ordering::Relaxed);
                // SAFETY: the OS asked for this CPU to run at `vector`, in 64-bit mode with
                // interrupts off on an identity map, which is this CPU's state.
                unsafe { core::arch::asm!("cli", "jmp {}", in(reg) vector, options(noreturn)) };
            }
            FirmwareRequest::Tested => {
                TESTED.fetch_add(1, Ordering::Relaxed);
            }
            FirmwareRequest::None => {}
        }
        core::hint::spin_loop();
    }
}
