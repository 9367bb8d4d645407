//! Parallel acceptance: one job, split into work items that any number of CPUs take from an
//! atomic cursor.
//!
//! The BSP builds an [`AcceptJob`], wakes the APs, and every CPU (BSP included) calls
//! [`AcceptJob::run`]. A CPU takes the next item with one compare-and-swap on the cursor (no
//! lock, nothing shared is written except the cursor and two counters per item) and accepts it.
//! The ranges are laid end to end in a "job space" where each range is padded out to the
//! granule (2 MiB), so item boundaries fall on 2 MiB GPAs and no item splits a block that could
//! have been accepted with one 2 MiB call.
//!
//! # Item sizes
//!
//! With [`ItemSizing::Guided`], an item is `remaining / (2 * cpus)` rounded up to the granule and
//! clamped to 2 MiB..=64 MiB (guided self-scheduling): early items are large, so the cursor is
//! touched rarely, and items shrink as the job drains, so when the cursor runs out every CPU is
//! at most one small item from done. Memory acceptance costs the same per byte everywhere (the
//! module zeroes every page), so that bounds the tail at about one 2 MiB item (~1 ms).

use super::lazy::UnacceptedBitmap;
use super::range::{AcceptError, AcceptStats, HostMappingGuess, accept_range_with};
use super::sync::{AtomicU64, Ordering, spin_wait};
use crate::tdcall::TdCall;
use core::ops::Range;

const SIZE_4K: u64 = 0x1000;
const SIZE_2M: u64 = 0x20_0000;
const NO_ERROR: u64 = u64::MAX;

/// How an [`AcceptJob`] sizes its work items.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemSizing {
    /// Shrinking items for `cpus` CPUs: `remaining / (2 * cpus)`, 2 MiB..=64 MiB.
    Guided {
        /// How many CPUs will run the job (the BSP plus the woken APs); 0 is taken as 1.
        cpus: u32,
    },
    /// Every item this many bytes (a 4 KiB multiple); for background acceptance in bounded
    /// slices. Items below 2 MiB give up 2 MiB ACCEPTs.
    Fixed(u64),
}

impl ItemSizing {
    /// The smallest guided item.
    pub const MIN_GUIDED: u64 = SIZE_2M;
    /// The largest guided item.
    pub const MAX_GUIDED: u64 = 32 * SIZE_2M;

    /// The alignment of item boundaries in job space (a power of two).
    fn granule(self) -> u64 {
        match self {
            Self::Guided { .. } => SIZE_2M,
            Self::Fixed(size) => (1u64 << size.trailing_zeros().min(63)).min(SIZE_2M),
        }
    }

    /// The size of the item starting at job offset `cursor` with `remaining` bytes left.
    fn item_size(self, remaining: u64, granule: u64) -> u64 {
        let size = match self {
            Self::Guided { cpus } => {
                let share = remaining / (2 * u64::from(cpus.max(1)));
                share.clamp(Self::MIN_GUIDED, Self::MAX_GUIDED)
            }
            Self::Fixed(size) => size,
        };
        // `remaining` is a multiple of the granule (job space is padded to it and every item
        // is one), so rounding a size at most `remaining` up cannot overflow or overshoot.
        size.min(remaining).next_multiple_of(granule).min(remaining)
    }
}

/// What one CPU did for a job: the per-CPU share a kernel logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuShare {
    /// Bytes this CPU accepted (for a bitmap job: only units it claimed itself).
    pub bytes: u64,
    /// Work items this CPU completed.
    pub items: u64,
    /// ACCEPT calls by level and outcome (zero for bitmap jobs, which count bytes only).
    pub stats: AcceptStats,
}

/// Whether a slice of a job left work for later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Items remain to be taken.
    More,
    /// The cursor reached the end: every item is taken (perhaps still being accepted by
    /// another CPU; see [`AcceptJob::wait`]).
    Exhausted,
}

enum Target<'a> {
    Ranges(&'a [Range<u64>]),
    Bitmap(&'a UnacceptedBitmap<'a>),
}

/// A set of ranges to accept, shared by every CPU that works on it.
pub struct AcceptJob<'a> {
    target: Target<'a>,
    sizing: ItemSizing,
    granule: u64,
    /// Total bytes of job space (the ranges padded to the granule).
    total: u64,
    /// Job-space offset of the next item to hand out.
    cursor: AtomicU64,
    /// Job-space bytes whose item has finished, successfully or not.
    settled: AtomicU64,
    /// The GPA of the first failure, or `NO_ERROR`.
    first_error_gpa: AtomicU64,
    guess: HostMappingGuess,
}

impl core::fmt::Debug for AcceptJob<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AcceptJob")
            .field("sizing", &self.sizing)
            .field("total", &self.total)
            .field("cursor", &self.cursor.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<'a> AcceptJob<'a> {
    /// A job accepting the disjoint, 4 KiB-aligned `ranges` directly (eager acceptance at
    /// boot).
    ///
    /// # Safety
    ///
    /// Every range meets [`super::accept_range`]'s contract, and goes on meeting it until
    /// [`Self::wait`] has returned: the job's CPUs accept it item by item, in any order, at
    /// any time until then, so nothing may read or write any of it, or hand it out, before the
    /// whole job is done; no other acceptance path (a bitmap, another job) is given it. The
    /// runs ([`Self::run`], [`Self::run_for`]) are safe because this promise covers them.
    pub unsafe fn new(ranges: &'a [Range<u64>], sizing: ItemSizing) -> Result<Self, AcceptError> {
        let granule = Self::checked_granule(sizing)?;
        let mut total: u64 = 0;
        for r in ranges {
            if r.start % SIZE_4K != 0 || r.end % SIZE_4K != 0 {
                return Err(AcceptError::Unaligned {
                    start: r.start,
                    end: r.end,
                });
            }
            if r.start > r.end {
                return Err(AcceptError::Reversed {
                    start: r.start,
                    end: r.end,
                });
            }
            total = total
                .checked_add(padded_len(r, granule).ok_or(AcceptError::Overflow)?)
                .ok_or(AcceptError::Overflow)?;
        }
        Ok(Self::with_target(
            Target::Ranges(ranges),
            sizing,
            granule,
            total,
        ))
    }

    /// A job accepting every unit still unaccepted in `bitmap`, through its claim protocol
    /// (safe: the bitmap accepts only what its unsafe constructors were promised is unused,
    /// each unit once):
    /// safe to run while other CPUs call [`UnacceptedBitmap::ensure_accepted`], and a unit
    /// another CPU holds is skipped, not waited for. So when [`Self::wait`] returns, every unit
    /// was either accepted by the job or held by another CPU at the time; a unit that CPU then
    /// failed stays pending: [`UnacceptedBitmap::unaccepted_bytes`] tells.
    pub fn over_bitmap(
        bitmap: &'a UnacceptedBitmap<'a>,
        sizing: ItemSizing,
    ) -> Result<Self, AcceptError> {
        let granule = Self::checked_granule(sizing)?.max(bitmap.unit_size());
        // The bitmap's base is unit aligned; round the span out to the granule.
        let start = bitmap.base() - bitmap.base() % granule;
        let end = bitmap
            .coverage_end()
            .checked_next_multiple_of(granule)
            .ok_or(AcceptError::Overflow)?;
        Ok(Self::with_target(
            Target::Bitmap(bitmap),
            sizing,
            granule,
            end - start,
        ))
    }

    fn checked_granule(sizing: ItemSizing) -> Result<u64, AcceptError> {
        match sizing {
            ItemSizing::Fixed(size) if size == 0 || size % SIZE_4K != 0 => {
                Err(AcceptError::Unaligned {
                    start: 0,
                    end: size,
                })
            }
            _ => Ok(sizing.granule()),
        }
    }

    fn with_target(target: Target<'a>, sizing: ItemSizing, granule: u64, total: u64) -> Self {
        Self {
            target,
            sizing,
            granule,
            total,
            cursor: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            first_error_gpa: AtomicU64::new(NO_ERROR),
            guess: HostMappingGuess::new(),
        }
    }

    /// Bytes of job space (the ranges padded to 2 MiB): what [`Self::settled_bytes`] reaches.
    pub const fn total_bytes(&self) -> u64 {
        self.total
    }

    /// Job-space bytes whose items have finished.
    pub fn settled_bytes(&self) -> u64 {
        self.settled.load(Ordering::Acquire)
    }

    /// Takes and accepts items until none is left; returns this CPU's share, or the first
    /// error this CPU met. A failed item does not stop the CPU: it goes on with the next items,
    /// so the job always drains and [`Self::wait`] returns (with the first failure's GPA).
    pub fn run(&self, tdx: &impl TdCall) -> Result<CpuShare, AcceptError> {
        let mut share = CpuShare::default();
        let mut first_error = None;
        loop {
            match self.run_one(tdx, &mut share) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            None => Ok(share),
            Some(e) => Err(e),
        }
    }

    /// Takes and accepts at most `max_items` items (background acceptance from an idle loop
    /// in bounded slices), adding to `share`. An error ends the slice and only the failed item
    /// (it counts as settled): call again to go on with the rest.
    pub fn run_for(
        &self,
        tdx: &impl TdCall,
        max_items: u32,
        share: &mut CpuShare,
    ) -> Result<Progress, AcceptError> {
        for _ in 0..max_items {
            if !self.run_one(tdx, share)? {
                return Ok(Progress::Exhausted);
            }
        }
        Ok(if self.cursor.load(Ordering::Relaxed) >= self.total {
            Progress::Exhausted
        } else {
            Progress::More
        })
    }

    /// Waits until every item has finished on whichever CPU took it. `Err(gpa)` names the GPA
    /// of the first failure any CPU hit.
    ///
    /// Takes no item itself: call it after [`Self::run`], which returns only once the cursor is
    /// exhausted, so the wait is for items already being accepted elsewhere. It is unbounded
    /// for the reasons [`UnacceptedBitmap`]'s waits are (a CPU that took an item always settles
    /// it, failed or not; only a vCPU that stops running can hold it up, and the host can
    /// stall the TD anyway). With [`Self::run_for`] slices nothing guarantees that the cursor
    /// is exhausted: use [`Self::settled_bytes`] instead.
    pub fn wait(&self) -> Result<(), u64> {
        while self.settled.load(Ordering::Acquire) < self.total {
            spin_wait();
        }
        // Relaxed: the error is written before its item's release of `settled`, which the
        // acquire load above has synchronized with.
        match self.first_error_gpa.load(Ordering::Relaxed) {
            NO_ERROR => Ok(()),
            gpa => Err(gpa),
        }
    }

    /// Claims the next item: `[offset, offset + size)` of job space.
    ///
    /// Relaxed throughout: that each offset is handed out once needs only the atomicity of the
    /// compare-and-swap, and what an offset stands for (the ranges, the bitmap) is immutable.
    fn claim(&self) -> Option<(u64, u64)> {
        let mut cursor = self.cursor.load(Ordering::Relaxed);
        loop {
            if cursor >= self.total {
                return None;
            }
            let size = self.sizing.item_size(self.total - cursor, self.granule);
            match self.cursor.compare_exchange_weak(
                cursor,
                cursor + size,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some((cursor, size)),
                Err(seen) => cursor = seen,
            }
        }
    }

    /// Runs one item; `Ok(false)` when none was left.
    fn run_one(&self, tdx: &impl TdCall, share: &mut CpuShare) -> Result<bool, AcceptError> {
        let Some((offset, size)) = self.claim() else {
            return Ok(false);
        };
        let result = self.accept_item(tdx, offset, offset + size, share);
        if let Err(err) = result {
            let gpa = match err {
                AcceptError::Busy { gpa, .. } | AcceptError::Refused { gpa, .. } => gpa,
                _ => 0,
            };
            // Relaxed: published by the release of `settled` below.
            let _ = self.first_error_gpa.compare_exchange(
                NO_ERROR,
                gpa,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        // Release: the item's ACCEPTs happen-before whoever sees the job settled.
        self.settled.fetch_add(size, Ordering::Release);
        result?;
        share.items += 1;
        Ok(true)
    }

    /// Accepts the GPAs that job-space `[from, to)` stands for.
    fn accept_item(
        &self,
        tdx: &impl TdCall,
        from: u64,
        to: u64,
        share: &mut CpuShare,
    ) -> Result<(), AcceptError> {
        match self.target {
            Target::Bitmap(bitmap) => {
                let space_start = bitmap.base() - bitmap.base() % self.granule;
                share.bytes +=
                    bitmap.accept_unclaimed(tdx, space_start + from, space_start + to)?;
                Ok(())
            }
            Target::Ranges(ranges) => {
                let mut space_offset = 0u64;
                for r in ranges {
                    // Every padded length was summed without overflow in `new`.
                    let len = padded_len(r, self.granule).unwrap_or(0);
                    let (lo, hi) = (from.max(space_offset), to.min(space_offset + len));
                    if lo < hi {
                        let padded_start = r.start - r.start % self.granule;
                        let start = (padded_start + (lo - space_offset)).max(r.start);
                        let end = (padded_start + (hi - space_offset)).min(r.end);
                        if start < end {
                            // SAFETY: `[start, end)` is part of one of the job's ranges, which
                            // `new`'s caller promised hold nothing in use until the job is done;
                            // the cursor hands each job offset to one item, so no GPA is
                            // accepted twice by the job.
                            let stats = unsafe { accept_range_with(tdx, start, end, &self.guess) }?;
                            share.stats.add(&stats);
                            share.bytes += end - start;
                        }
                    }
                    space_offset += len;
                    if space_offset >= to {
                        break;
                    }
                }
                Ok(())
            }
        }
    }
}

/// The length of `r` padded out to `granule` on both sides (`None` on overflow).
fn padded_len(r: &Range<u64>, granule: u64) -> Option<u64> {
    if r.start >= r.end {
        return Some(0);
    }
    let start = r.start - r.start % granule;
    let end = r.end.checked_next_multiple_of(granule)?;
    Some(end - start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guided_items_shrink_to_the_minimum_and_stay_granular() {
        let sizing = ItemSizing::Guided { cpus: 4 };
        let total = 10 * 1024 * SIZE_2M;
        let mut cursor = 0;
        let mut sizes = std::vec::Vec::new();
        while cursor < total {
            let size = sizing.item_size(total - cursor, SIZE_2M);
            assert_eq!(size % SIZE_2M, 0);
            sizes.push(size);
            cursor += size;
        }
        assert_eq!(cursor, total);
        assert_eq!(sizes.first().copied(), Some(ItemSizing::MAX_GUIDED));
        assert_eq!(sizes.last().copied(), Some(SIZE_2M));
        assert!(sizes.windows(2).all(|w| w[0] >= w[1]));
    }

    #[test]
    fn fixed_granule_is_the_largest_power_of_two_up_to_2m() {
        assert_eq!(ItemSizing::Fixed(0x3000).granule(), 0x1000);
        assert_eq!(ItemSizing::Fixed(0x8000).granule(), 0x8000);
        assert_eq!(ItemSizing::Fixed(6 * SIZE_2M).granule(), SIZE_2M);
    }
}
