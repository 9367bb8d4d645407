//! Background acceptance: accept what is still unaccepted from an idle loop, in bounded slices,
//! alongside lazy acceptance.
//!
//! Built from the same pieces as the rest: an [`AcceptJob`] over the [`UnacceptedBitmap`], with
//! fixed items of one unit (at least 2 MiB), so a slice of `n` items accepts at most `n` units
//! (about `n` milliseconds of work at 2 MiB) before returning to the scheduler. Units a CPU is
//! accepting through `ensure_accepted` are skipped, not waited for, so the idle loop never
//! blocks on a busy CPU; a unit that failed returns to unaccepted and stays lazy.

use super::job::{AcceptJob, CpuShare, ItemSizing, Progress};
use super::lazy::UnacceptedBitmap;
use super::range::AcceptError;
use crate::tdcall::TdCall;

/// Accepts a bitmap's remaining units a few at a time; share one between all idle CPUs.
#[derive(Debug)]
pub struct BackgroundAcceptor<'a> {
    job: AcceptJob<'a>,
}

impl<'a> BackgroundAcceptor<'a> {
    /// The smallest background item: one 2 MiB block, so background work keeps 2 MiB ACCEPTs.
    pub const MIN_ITEM: u64 = 0x20_0000;

    /// A background acceptor for `bitmap`. Safe: it accepts through the bitmap's claim
    /// protocol only, i.e. units the bitmap's unsafe constructors were promised are unused,
    /// each once, and never a unit the bitmap has handed out.
    pub fn new(bitmap: &'a UnacceptedBitmap<'a>) -> Result<Self, AcceptError> {
        let item = bitmap.unit_size().max(Self::MIN_ITEM);
        Ok(Self {
            job: AcceptJob::over_bitmap(bitmap, ItemSizing::Fixed(item))?,
        })
    }

    /// Accepts at most `max_items` items (units of at least 2 MiB) and says whether work is
    /// left. Call from the idle loop with interrupts enabled; each item is a few milliseconds
    /// at most. `share` accumulates what this CPU accepted.
    ///
    /// An interrupt may arrive while this CPU holds a unit; its handler must not then call
    /// [`UnacceptedBitmap::ensure_accepted`] (the rule of the bitmap's module documentation),
    /// or it could wait for the unit its own CPU holds.
    pub fn run_for(
        &self,
        tdx: &impl TdCall,
        max_items: u32,
        share: &mut CpuShare,
    ) -> Result<Progress, AcceptError> {
        self.job.run_for(tdx, max_items, share)
    }

    /// The underlying job (for its totals).
    pub const fn job(&self) -> &AcceptJob<'a> {
        &self.job
    }
}
