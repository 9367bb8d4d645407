//! The machine's device interrupts, from the host's IDT to the TD: the host vector of each
//! IOAPIC pin only notes the pin (an interrupt handler may arrive while the TD's devices are
//! locked), and the scheduler, between VM exits, hands the noted pins to the TD's IOAPIC
//! ([`tdx_sim::td_ioapic`]) and then acknowledges them at the host APIC.
//!
//! The host EOI waits until then on purpose: for a level-triggered pin the TD's IOAPIC masks
//! the pin first, so the line, still asserted until the TD's driver serves the device, is not
//! delivered again and again. Device vectors sit below the host timer's (0xF0), so a device
//! interrupt in service never holds the timer back.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The host vector of pin 0; pin `n` uses `FIRST_VECTOR + n`.
pub const FIRST_VECTOR: u8 = 0x30;
/// Pins with a host vector (QEMU's IOAPIC has 24).
pub const PINS: usize = 24;

/// Pins taken since the last [`take`], one bit each.
static PENDING: AtomicU64 = AtomicU64::new(0);
/// Device interrupts taken but not yet acknowledged at the host APIC.
static UNACKNOWLEDGED: AtomicU32 = AtomicU32::new(0);

/// Called by the host IDT's stub of `pin`.
pub fn record(pin: u64) {
    if pin < PINS as u64 {
        PENDING.fetch_or(1 << pin, Ordering::Relaxed);
    }
    UNACKNOWLEDGED.fetch_add(1, Ordering::Relaxed);
}

/// Whether a device interrupt was taken since the last [`take`]: one load, for the scheduler's
/// every VM entry (most see none).
pub fn any() -> bool {
    UNACKNOWLEDGED.load(Ordering::Relaxed) != 0
}

/// The pins taken since the last call, and the number of interrupts to acknowledge with
/// [`acknowledge`] once the TD's IOAPIC has seen them.
pub fn take() -> (u64, u32) {
    (
        PENDING.swap(0, Ordering::Relaxed),
        UNACKNOWLEDGED.swap(0, Ordering::Relaxed),
    )
}

/// Sends `count` EOIs to the host APIC: each retires the highest vector in service, and with
/// interrupts disabled since [`take`] exactly the `count` device vectors are.
pub fn acknowledge(count: u32) {
    for _ in 0..count {
        crate::host_timer::end_of_interrupt();
    }
}
