//! The boot's checks: each step records pass or fail, and the final line reports them all.

use core::sync::atomic::{AtomicU32, Ordering};

static PASSED: AtomicU32 = AtomicU32::new(0);
static FAILED: AtomicU32 = AtomicU32::new(0);

/// Records one check and prints it.
pub fn record(name: &str, passed: bool, detail: core::fmt::Arguments<'_>) {
    let counter = if passed { &PASSED } else { &FAILED };
    counter.fetch_add(1, Ordering::Relaxed);
    crate::kprintln!(
        "[{}] {name}: {detail}",
        if passed { "PASS" } else { "FAIL" }
    );
}

/// (passed, failed) so far.
pub fn totals() -> (u32, u32) {
    (
        PASSED.load(Ordering::Relaxed),
        FAILED.load(Ordering::Relaxed),
    )
}

/// Records a check: `check!("name", condition, "detail {}", x)`.
#[macro_export]
macro_rules! check {
    ($name:expr, $passed:expr, $($detail:tt)*) => {
        $crate::checks::record($name, $passed, format_args!($($detail)*))
    };
}
