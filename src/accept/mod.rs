//! Acceptance of unaccepted memory: as few ACCEPT calls as the host allows, lazily, and in
//! parallel.
//!
//! A TD starts with most of its memory pending: the host has added it, but the guest must
//! TDG.MEM.PAGE.ACCEPT each page before touching it, and the module zeroes each page it accepts.
//! Done eagerly on one vCPU this dominates boot (minutes for 64 GiB). The pieces:
//!
//! - [`accept_range`]: one range, fewest calls (2 MiB blocks, 4 KiB edges, learns 4K-only hosts).
//! - [`UnacceptedBitmap`]: lazy acceptance; [`UnacceptedBitmap::ensure_accepted`] before use,
//!   from any CPU, each unit accepted exactly once.
//! - [`AcceptJob`]: split ranges (or a bitmap) into work items every CPU takes from one atomic
//!   cursor; [`BackgroundAcceptor`] runs the same job in bounded slices from an idle loop.

mod background;
mod job;
mod lazy;
mod range;
mod sync;

pub use background::BackgroundAcceptor;
pub use job::{AcceptJob, CpuShare, ItemSizing, Progress};
pub use lazy::{BitmapError, DEFAULT_UNIT_SIZE, UNITS_PER_WORD, UnacceptedBitmap};
pub use range::{
    AcceptError, AcceptStats, HostMappingGuess, MAX_BUSY_RETRIES, accept_range, accept_range_with,
};

/// The atomic word type of [`UnacceptedBitmap`]'s storage (`core::sync::atomic::AtomicU64`;
/// loom's under `cfg(loom)` model checks).
pub use sync::AtomicU64 as BitmapWord;

#[cfg(all(test, loom))]
mod loom_tests;
