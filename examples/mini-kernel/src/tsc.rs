//! Time from the TSC, calibrated against the firmware's Stall before ExitBootServices.

use core::sync::atomic::{AtomicU64, Ordering};

static TICKS_PER_MS: AtomicU64 = AtomicU64::new(0);

/// Reads the time-stamp counter.
pub fn now() -> u64 {
    // SAFETY: RDTSC has no side effects and is allowed at CPL0 (also in a TD).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Measures TSC ticks per millisecond with `stall_10ms`, which must wait 10 ms.
pub fn calibrate(stall_10ms: impl FnOnce()) -> u64 {
    let start = now();
    stall_10ms();
    let per_ms = (now().wrapping_sub(start) / 10).max(1);
    TICKS_PER_MS.store(per_ms, Ordering::Relaxed);
    per_ms
}

/// TSC ticks to milliseconds (0 before calibration).
pub fn ms(ticks: u64) -> u64 {
    match TICKS_PER_MS.load(Ordering::Relaxed) {
        0 => 0,
        per_ms => ticks / per_ms,
    }
}

/// Busy-waits at least `microseconds` (after calibration).
pub fn delay_us(microseconds: u64) {
    let per_ms = TICKS_PER_MS.load(Ordering::Relaxed).max(1);
    let ticks = microseconds.saturating_mul(per_ms) / 1000;
    let start = now();
    while now().wrapping_sub(start) < ticks {
        core::hint::spin_loop();
    }
}
