//! The firmware side of the ACPI multiprocessor wakeup mailbox: where parked APs wait.
//!
//! This is what TDVF runs on every AP after it hands over: watch the mailbox for a WAKEUP
//! command addressed to this CPU's APIC ID, read the wakeup vector, acknowledge by writing
//! NOOP back to the command, and jump to the vector in 64-bit mode with interrupts off.

use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};

/// The mailbox page (ACPI 6.4, 5.2.12.19): command, APIC ID, wakeup vector, then the OS's and
/// the firmware's areas.
#[repr(C, align(4096))]
pub struct Mailbox {
    pub command: AtomicU16,
    reserved: u16,
    pub apic_id: AtomicU32,
    pub wakeup_vector: AtomicU64,
    os_area: [u8; 2032],
    firmware_area: [u8; 2048],
}

const _: () = assert!(core::mem::size_of::<Mailbox>() == 4096);

/// No command / the AP took the last one.
pub const COMMAND_NOOP: u16 = 0;
/// Wake the AP named by `apic_id` at `wakeup_vector`.
pub const COMMAND_WAKEUP: u16 = 1;

impl Mailbox {
    /// An idle mailbox.
    pub const fn new() -> Self {
        Self {
            command: AtomicU16::new(COMMAND_NOOP),
            reserved: 0,
            apic_id: AtomicU32::new(0),
            wakeup_vector: AtomicU64::new(0),
            os_area: [0; 2032],
            firmware_area: [0; 2048],
        }
    }
}

/// APs that reached the parking loop.
pub static PARKED: AtomicU32 = AtomicU32::new(0);
/// APs that left it (woken through the mailbox).
pub static WOKEN: AtomicU32 = AtomicU32::new(0);

/// The parking loop; `mailbox` is the mailbox's address. Entered from the start-up trampoline.
pub extern "sysv64" fn park(mailbox: u64) -> ! {
    // SAFETY: the BSP passes the address of the leaked, page-aligned mailbox.
    let mailbox = unsafe { &*(mailbox as *const Mailbox) };
    let apic_id = super::local_apic::current_apic_id();
    PARKED.fetch_add(1, Ordering::Release);
    loop {
        if mailbox.command.load(Ordering::Acquire) == COMMAND_WAKEUP
            && mailbox.apic_id.load(Ordering::Relaxed) == apic_id
        {
            let vector = mailbox.wakeup_vector.load(Ordering::Relaxed);
            mailbox.command.store(COMMAND_NOOP, Ordering::Release);
            WOKEN.fetch_add(1, Ordering::Relaxed);
            // SAFETY: the OS asked for this CPU to run at `vector`, in 64-bit mode with
            // interrupts off on the identity map, which is this CPU's state.
            unsafe { core::arch::asm!("cli", "jmp {}", in(reg) vector, options(noreturn)) };
        }
        core::hint::spin_loop();
    }
}
