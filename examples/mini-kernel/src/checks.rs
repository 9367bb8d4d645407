//! The boot's checks: each step records pass or fail, and the final line reports them all.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use spin::Mutex;

/// Every check so far: (name, passed).
static RESULTS: Mutex<Vec<(&'static str, bool)>> = Mutex::new(Vec::new());

/// Records one check and prints it.
pub fn record(name: &'static str, passed: bool, detail: core::fmt::Arguments<'_>) {
    RESULTS.lock().push((name, passed));
    crate::kprintln!(
        "[{}] {name}: {detail}",
        if passed { "PASS" } else { "FAIL" }
    );
}

/// (passed, failed) so far.
pub fn totals() -> (usize, usize) {
    let results = RESULTS.lock();
    let passed = results.iter().filter(|(_, ok)| *ok).count();
    (passed, results.len() - passed)
}

/// The final line: the totals, then every check with its verdict.
pub fn final_line() -> String {
    let (passed, failed) = totals();
    let mut line = String::new();
    let _ = write!(
        line,
        "mini-kernel: checks: {passed} passed, {failed} failed ("
    );
    for (i, (name, ok)) in RESULTS.lock().iter().enumerate() {
        let separator = if i == 0 { "" } else { ", " };
        let _ = write!(
            line,
            "{separator}{name}: {}",
            if *ok { "pass" } else { "FAIL" }
        );
    }
    line.push(')');
    if failed == 0 {
        line.push_str(" - all checks passed");
    }
    line
}

/// Records a check: `check!("name", condition, "detail {}", x)`.
#[macro_export]
macro_rules! check {
    ($name:expr, $passed:expr, $($detail:tt)*) => {
        $crate::checks::record($name, $passed, format_args!($($detail)*))
    };
}
