//! The atomics of the acceptance protocols, swappable for `loom`'s in model checks.
//!
//! The bitmap claim protocol ([`super::lazy`]) and the job cursor ([`super::job`]) use these
//! names only, so `RUSTFLAGS="--cfg loom" cargo test --lib loom_` checks the very code that runs
//! in a kernel. Outside loom test builds they are `core`'s types.

#[cfg(all(test, loom))]
pub use loom::sync::atomic::AtomicU64;
#[cfg(all(test, loom))]
pub(crate) use loom::sync::atomic::Ordering;

#[cfg(not(all(test, loom)))]
pub use core::sync::atomic::AtomicU64;
#[cfg(not(all(test, loom)))]
pub(crate) use core::sync::atomic::Ordering;

/// Waits politely for another CPU: a `PAUSE` on hardware, a yield to loom's scheduler under loom
/// (loom explores only a bounded number of steps, so a bare spin would never end).
#[inline]
pub(crate) fn spin_wait() {
    #[cfg(all(test, loom))]
    loom::thread::yield_now();
    #[cfg(not(all(test, loom)))]
    core::hint::spin_loop();
}
