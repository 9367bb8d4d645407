//! Wall-clock time for tdx-sim's watchdog and progress lines: the machine's ACPI PM timer
//! (3.579545 MHz, 24 bits, at port 0x608 on QEMU's q35 after the firmware set up the PM base),
//! extended to 64 bits by reading it at least every few seconds (every time slice does).

use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::instructions::port::Port;

const PM_TIMER_PORT: u16 = 0x608;
const PM_TIMER_HZ: u64 = 3_579_545;
const MASK: u64 = 0xff_ffff;

/// The last raw reading, and the 64-bit count it extends to.
static LAST_RAW: AtomicU64 = AtomicU64::new(0);
static TICKS: AtomicU64 = AtomicU64::new(0);

fn raw() -> u64 {
    // SAFETY: reading the PM timer has no side effects.
    u64::from(unsafe { Port::<u32>::new(PM_TIMER_PORT).read() }) & MASK
}

/// Starts the clock at zero.
pub fn init() {
    LAST_RAW.store(raw(), Ordering::Relaxed);
    TICKS.store(0, Ordering::Relaxed);
}

/// PM-timer ticks since [`init`]. Only tdx-sim's one CPU calls this.
fn ticks() -> u64 {
    let now = raw();
    let last = LAST_RAW.swap(now, Ordering::Relaxed);
    let ticks = TICKS.load(Ordering::Relaxed) + (now.wrapping_sub(last) & MASK);
    TICKS.store(ticks, Ordering::Relaxed);
    ticks
}

/// Milliseconds since [`init`].
pub fn now_ms() -> u64 {
    ticks() * 1000 / PM_TIMER_HZ
}

/// Nanoseconds since [`init`] (the TD's APIC timers count in them).
pub fn now_ns() -> u64 {
    (u128::from(ticks()) * 1_000_000_000 / u128::from(PM_TIMER_HZ)) as u64
}
