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
//!
//! # What is `unsafe`, and why
//!
//! ACCEPT zeroes a page that the host has made pending, and a hostile host can make pending a
//! page the kernel is using (it removes the accepted page and adds a fresh one at the GPA).
//! So whatever hands a GPA to ACCEPT must know the memory is not in use: [`accept_range`],
//! [`accept_range_with`] and [`AcceptJob::new`] take the caller's word for it per call, the
//! bitmap's constructors and [`UnacceptedBitmap::mark_unaccepted`] once per range. The rest is
//! safe because it accepts only what those promises cover, each GPA once, and never after
//! handing it out: [`UnacceptedBitmap::ensure_accepted`],
//! [`UnacceptedBitmap::accept_unclaimed`], [`AcceptJob::over_bitmap`] and its runs,
//! [`BackgroundAcceptor`].
//!
//! ```
//! # #[cfg(feature = "model")] {
//! use core::sync::atomic::AtomicU64;
//! use tdx_boot::accept::{AcceptJob, ItemSizing, UnacceptedBitmap, accept_range};
//! use tdx_boot::model::{ModelConfig, PageState, TdxModule};
//!
//! let tdx = TdxModule::new(ModelConfig::default()); // `tdcall::Hardware` in a TD
//! tdx.add_memory(0, 1 << 30, PageState::Unaccepted);
//! let bsp = tdx.vcpu(0);
//!
//! // Eager: one range, 2 MiB calls where possible.
//! // SAFETY: the firmware left this range unaccepted and nothing uses it yet.
//! unsafe { accept_range(&bsp, 0, 64 << 20) }.unwrap();
//!
//! // Lazy: a bitmap in caller storage; accept on first use, from any CPU.
//! let mut words: Vec<AtomicU64> = (0..UnacceptedBitmap::words_needed(0, 1 << 30, 2 << 20))
//!     .map(|_| AtomicU64::new(0))
//!     .collect();
//! // SAFETY: the firmware's unaccepted range, not accepted or used since.
//! let bitmap = unsafe {
//!     UnacceptedBitmap::from_ranges(&bsp, &mut words, 0, 2 << 20, [(64 << 20, 1 << 30)])
//! }
//! .unwrap();
//! bitmap.ensure_accepted(&bsp, 100 << 20, (100 << 20) + 4096).unwrap();
//!
//! // Parallel: every CPU runs the same job over what is left.
//! let job = AcceptJob::over_bitmap(&bitmap, ItemSizing::Guided { cpus: 1 }).unwrap();
//! let share = job.run(&bsp).unwrap();
//! assert_eq!(job.wait(), Ok(()));
//! assert_eq!(bitmap.unaccepted_bytes(), 0);
//! assert_eq!(share.bytes, (1 << 30) - (64 << 20) - (2 << 20));
//! # }
//! ```

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
