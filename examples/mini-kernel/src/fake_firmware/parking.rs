//! The firmware side of the ACPI multiprocessor wakeup mailbox: where parked APs wait.
//!
//! This is what TDVF runs on every AP after it hands over: watch the mailbox for a WAKEUP
//! command addressed to this CPU's APIC ID, take the wakeup vector and acknowledge (command =
//! NOOP, done by `firmware_poll`), then jump to the vector in 64-bit mode with interrupts off,
//! on the page tables it already runs on (the BSP's identity map).

use core::sync::atomic::{AtomicU32, Ordering};
use tdx_boot::mpwk::Mailbox;

/// APs that reached the parking loop.
pub static PARKED: AtomicU32 = AtomicU32::new(0);
/// APs that left it (woken through the mailbox).
pub static WOKEN: AtomicU32 = AtomicU32::new(0);

/// The parking loop; `mailbox` is the mailbox page's address. Entered from the start-up
/// trampoline on the AP's own small stack.
pub extern "sysv64" fn park(mailbox: u64) -> ! {
    // SAFETY: the BSP passes the address of the mailbox page it reserved (ACPI NVS memory,
    // identity-mapped, never freed).
    let mailbox = unsafe { Mailbox::from_address(mailbox) };
    let apic_id = crate::percpu::apic_id_from_cpuid();
    PARKED.fetch_add(1, Ordering::Release);
    loop {
        if let Some(vector) = mailbox.firmware_poll(apic_id) {
            WOKEN.fetch_add(1, Ordering::Relaxed);
            // SAFETY: the OS asked for this CPU to run at `vector`, in 64-bit mode with
            // interrupts off on an identity map, which is this CPU's state.
            unsafe { core::arch::asm!("cli", "jmp {}", in(reg) vector, options(noreturn)) };
        }
        core::hint::spin_loop();
    }
}
