//! `accept_range`: accept `[start, end)` with the fewest TDG.MEM.PAGE.ACCEPT calls.
//!
//! The module accepts 4 KiB and 2 MiB pages only (a 1 GiB request is refused with
//! `TDX_OPERAND_INVALID`), so the optimum is one 2 MiB call per 2 MiB-aligned block inside the
//! range and one 4 KiB call per page of the unaligned head and tail. That optimum holds only when
//! the host maps the block at 2 MiB; otherwise the 2 MiB call fails with `TDX_PAGE_SIZE_MISMATCH`
//! and the block is accepted as 512 4 KiB pages. Hosts that map private memory at 4 KiB only
//! would make every block pay that failed call, so [`HostMappingGuess`] learns from a streak of
//! mismatches to go straight to 4 KiB, probing 2 MiB again now and then in case the host's
//! mapping differs further on.

use crate::tdcall::{AcceptOutcome, PageLevel, TdCall, TdxStatus, accept_page};
use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

const SIZE_4K: u64 = PageLevel::Size4K.bytes();
const SIZE_2M: u64 = PageLevel::Size2M.bytes();

/// How many times one page is retried while the module answers `TDX_OPERAND_BUSY` before the
/// range fails with [`AcceptError::Busy`]. Busy means another vCPU or the host holds the page's
/// Secure-EPT entry for a moment; a page still busy after this many tries is being fought over.
pub const MAX_BUSY_RETRIES: u32 = 64;

/// Why accepting a range failed. Every variant that comes from the module names the GPA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptError {
    /// `start` or `end` is not 4 KiB aligned (ACCEPT works on whole pages only).
    Unaligned {
        /// The requested start.
        start: u64,
        /// The requested end (exclusive).
        end: u64,
    },
    /// `start` lies above `end`.
    Reversed {
        /// The requested start.
        start: u64,
        /// The requested end (exclusive).
        end: u64,
    },
    /// The ranges of a job add up to more than the 64-bit address space.
    Overflow,
    /// The page at `gpa` stayed `TDX_OPERAND_BUSY` for [`MAX_BUSY_RETRIES`] retries.
    Busy {
        /// The page that stayed busy.
        gpa: u64,
        /// The level that was being accepted.
        level: PageLevel,
    },
    /// The module refused the page at `gpa` with `status` (e.g. a GPA the host never added,
    /// or `TDX_PAGE_SIZE_MISMATCH` at 4 KiB).
    Refused {
        /// The page the module refused.
        gpa: u64,
        /// The level that was being accepted.
        level: PageLevel,
        /// The module's status, operand id included.
        status: TdxStatus,
    },
}

impl fmt::Display for AcceptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unaligned { start, end } => {
                write!(f, "accept range {start:#x}..{end:#x} is not 4 KiB aligned")
            }
            Self::Reversed { start, end } => {
                write!(f, "accept range {start:#x}..{end:#x} ends before it starts")
            }
            Self::Overflow => f.write_str("accept ranges add up to more than 2^64 bytes"),
            Self::Busy { gpa, level } => write!(
                f,
                "ACCEPT of {gpa:#x} ({level:?}) stayed busy after {MAX_BUSY_RETRIES} retries"
            ),
            Self::Refused { gpa, level, status } => {
                write!(f, "ACCEPT of {gpa:#x} ({level:?}) failed with {status}")
            }
        }
    }
}

impl core::error::Error for AcceptError {}

/// What one [`accept_range_with`] call cost, for logs and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcceptStats {
    /// 2 MiB ACCEPT calls that accepted (or found accepted) a block.
    pub accepted_2m: u64,
    /// 4 KiB ACCEPT calls that accepted (or found accepted) a page.
    pub accepted_4k: u64,
    /// 2 MiB calls refused with `TDX_PAGE_SIZE_MISMATCH` (each followed by 512 4 KiB calls).
    pub size_mismatches: u64,
    /// Pages or blocks the module reported as already accepted (left intact, not zeroed).
    pub already_accepted: u64,
    /// Calls repeated because the module answered `TDX_OPERAND_BUSY`.
    pub busy_retries: u64,
}

impl AcceptStats {
    /// Every ACCEPT call made, failed 2 MiB attempts and busy retries included.
    pub const fn calls(&self) -> u64 {
        self.accepted_2m + self.accepted_4k + self.size_mismatches + self.busy_retries
    }

    /// Adds `other`'s counts to `self`.
    pub fn add(&mut self, other: &Self) {
        self.accepted_2m += other.accepted_2m;
        self.accepted_4k += other.accepted_4k;
        self.size_mismatches += other.size_mismatches;
        self.already_accepted += other.already_accepted;
        self.busy_retries += other.busy_retries;
    }
}

/// What acceptance has learnt about how the host maps private memory; shared by every CPU that
/// accepts (all fields are relaxed atomics: a stale view costs at most a few extra calls).
///
/// The costs are lopsided: a failed 2 MiB attempt costs one call, while skipping the attempt on
/// a block the host does map at 2 MiB costs 511. So 2 MiB is tried on every block until
/// [`Self::MISMATCH_STREAK`] attempts in a row have failed (a host mapping at 4 KiB only, not a
/// patch of split blocks), and even then probed again after skipping 1, 2, 4, ... up to
/// [`Self::MAX_PROBE_INTERVAL`] blocks; one success ends the streak. On a 4K-only host the waste
/// is the streak plus one call per `MAX_PROBE_INTERVAL * 512` pages (0.006 %); where the host
/// switches back to 2 MiB at most `MAX_PROBE_INTERVAL` blocks go at 4 KiB.
#[derive(Debug, Default)]
pub struct HostMappingGuess {
    mismatch_streak: AtomicU32,
    probe_interval: AtomicU32,
    blocks_until_probe: AtomicU32,
}

impl HostMappingGuess {
    /// Consecutive 2 MiB size mismatches after which 2 MiB is only probed.
    pub const MISMATCH_STREAK: u32 = 32;
    /// The longest run of blocks accepted at 4 KiB without a 2 MiB probe.
    pub const MAX_PROBE_INTERVAL: u32 = 32;

    /// A guess that starts by trying 2 MiB.
    pub const fn new() -> Self {
        Self {
            mismatch_streak: AtomicU32::new(0),
            probe_interval: AtomicU32::new(0),
            blocks_until_probe: AtomicU32::new(0),
        }
    }

    /// Whether the host currently looks like it maps at 4 KiB only.
    pub fn assumes_4k_only(&self) -> bool {
        self.mismatch_streak.load(Ordering::Relaxed) >= Self::MISMATCH_STREAK
    }

    fn should_try_2m(&self) -> bool {
        if !self.assumes_4k_only() {
            return true;
        }
        // Skip while the budget lasts; the block that finds it empty is the probe.
        self.blocks_until_probe
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_err()
    }

    fn record_2m(&self, mismatched: bool) {
        if !mismatched {
            self.mismatch_streak.store(0, Ordering::Relaxed);
            self.probe_interval.store(0, Ordering::Relaxed);
            return;
        }
        let streak = self
            .mismatch_streak
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1))
            .map_or(u32::MAX, |n| n.saturating_add(1));
        if streak >= Self::MISMATCH_STREAK {
            let interval = self
                .probe_interval
                .load(Ordering::Relaxed)
                .saturating_mul(2)
                .clamp(1, Self::MAX_PROBE_INTERVAL);
            self.probe_interval.store(interval, Ordering::Relaxed);
            self.blocks_until_probe.store(interval, Ordering::Relaxed);
        }
    }
}

/// Accepts the 4 KiB-aligned range `[start, end)`: 2 MiB calls for the 2 MiB blocks inside it,
/// 4 KiB calls elsewhere and wherever the host maps at 4 KiB.
///
/// Pages that are already accepted are left as they are (`TDX_PAGE_ALREADY_ACCEPTED` counts as
/// success); busy pages are retried [`MAX_BUSY_RETRIES`] times; any other refusal stops at the
/// refused GPA with [`AcceptError::Refused`]. Pages below it are accepted, pages above it are
/// untouched. An empty range is accepted trivially.
///
/// Two CPUs should not accept overlapping ranges at the same time: they would contend for the
/// same Secure-EPT entries (`TDX_OPERAND_BUSY`) and do the work twice. [`super::UnacceptedBitmap`]
/// and [`super::AcceptJob`] hand out disjoint ranges.
///
/// # Safety
///
/// ACCEPT zeroes a page when it moves from pending to accepted. A page that is already
/// accepted is answered with `TDX_PAGE_ALREADY_ACCEPTED` and left intact (the TDX module's
/// rule, in its `tdg_mem_page_accept.c`), but a hostile host can remove an accepted page
/// (TDH.MEM.PAGE.REMOVE) and add a pending one at the same GPA (TDH.MEM.PAGE.AUG): touching it
/// then merely faults, whereas ACCEPTing it succeeds and replaces live data with zeroes. The
/// caller therefore promises that `[start, end)`:
///
/// - was reported unaccepted by the firmware (UEFI type 15, a TD HOB's unaccepted resource,
///   Linux's EFI table) and has not been accepted since, or is memory the kernel has given up
///   (made private again, or freed and never to be read);
/// - holds nothing anyone will read: no Rust reference, page table, code, stack or DMA buffer
///   points into it, and nothing reads or writes it until this call has returned;
/// - is not being accepted by another path at the same time that could hand it out first
///   (an [`super::UnacceptedBitmap`] or [`super::AcceptJob`] given the same memory).
///
/// This is why Linux never accepts memory twice and requires `SEPT_VE_DISABLE` (no accepting
/// from the #VE handler). The safe ways to accept are [`super::UnacceptedBitmap`]'s methods
/// and jobs over it, whose unsafe constructors take this promise once.
pub unsafe fn accept_range(tdx: &impl TdCall, start: u64, end: u64) -> Result<(), AcceptError> {
    // SAFETY: forwarded; the caller upholds the contract.
    unsafe { accept_range_with(tdx, start, end, &HostMappingGuess::new()) }.map(|_| ())
}

/// [`accept_range`] with a [`HostMappingGuess`] that outlives the call (share one per TD so
/// later ranges start with what earlier ones learnt), returning what it cost.
///
/// # Safety
///
/// As for [`accept_range`]. The guess only picks page sizes; it cannot make a call unsafe.
pub unsafe fn accept_range_with(
    tdx: &impl TdCall,
    start: u64,
    end: u64,
    guess: &HostMappingGuess,
) -> Result<AcceptStats, AcceptError> {
    if !start.is_multiple_of(SIZE_4K) || !end.is_multiple_of(SIZE_4K) {
        return Err(AcceptError::Unaligned { start, end });
    }
    if start > end {
        return Err(AcceptError::Reversed { start, end });
    }
    let mut stats = AcceptStats::default();
    let mut gpa = start;
    while gpa < end {
        // Both sides are 4 KiB aligned and gpa < end, so `end - gpa >= SIZE_4K`.
        let block_fits = gpa.is_multiple_of(SIZE_2M) && end - gpa >= SIZE_2M;
        if block_fits && guess.should_try_2m() {
            // SAFETY: `[gpa, gpa + 2 MiB)` lies in `[start, end)`, the caller's range.
            match unsafe { accept_one(tdx, gpa, PageLevel::Size2M, &mut stats) }? {
                Step::Done => {
                    guess.record_2m(false);
                    stats.accepted_2m += 1;
                    gpa += SIZE_2M;
                    continue;
                }
                Step::SizeMismatch => {
                    guess.record_2m(true);
                    stats.size_mismatches += 1;
                }
            }
        }
        let chunk_end = if block_fits {
            gpa + SIZE_2M
        } else {
            gpa + SIZE_4K
        };
        while gpa < chunk_end {
            // SAFETY: `[gpa, gpa + 4 KiB)` lies in `[start, end)`, the caller's range.
            match unsafe { accept_one(tdx, gpa, PageLevel::Size4K, &mut stats) }? {
                Step::Done => stats.accepted_4k += 1,
                Step::SizeMismatch => {
                    return Err(AcceptError::Refused {
                        gpa,
                        level: PageLevel::Size4K,
                        status: TdxStatus::PAGE_SIZE_MISMATCH,
                    });
                }
            }
            gpa += SIZE_4K;
        }
    }
    Ok(stats)
}

enum Step {
    Done,
    SizeMismatch,
}

/// One page at one level, busy retries included.
///
/// # Safety
///
/// The page at `gpa` lies in a range that meets [`accept_range`]'s contract.
unsafe fn accept_one(
    tdx: &impl TdCall,
    gpa: u64,
    level: PageLevel,
    stats: &mut AcceptStats,
) -> Result<Step, AcceptError> {
    let mut retries = 0;
    loop {
        // SAFETY: `gpa` lies in a range that holds nothing in use (this function's contract),
        // so zeroing a page the host swapped for a pending one destroys nothing live.
        match unsafe { accept_page(tdx, gpa, level) } {
            AcceptOutcome::Accepted => return Ok(Step::Done),
            AcceptOutcome::AlreadyAccepted => {
                stats.already_accepted += 1;
                return Ok(Step::Done);
            }
            AcceptOutcome::SizeMismatch => return Ok(Step::SizeMismatch),
            AcceptOutcome::Busy if retries < MAX_BUSY_RETRIES => {
                retries += 1;
                stats.busy_retries += 1;
                core::hint::spin_loop();
            }
            AcceptOutcome::Busy => return Err(AcceptError::Busy { gpa, level }),
            AcceptOutcome::Failed(status) => {
                return Err(AcceptError::Refused { gpa, level, status });
            }
        }
    }
}
