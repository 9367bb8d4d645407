//! MapGPA until the whole range is converted: the RETRY loop, with the VMM's R11 checked.
//!
//! A VMM converts as much as it likes per call (KVM: 2 MiB, then RETRY if an event is pending;
//! older QEMU: 64 MiB) and answers RETRY with R11 = the GPA to resume from. R11 is the VMM's
//! word: it must carry the shared bit of the request, be page aligned, lie inside what is left
//! of the range and not move backwards. A resume at the very GPA of the call is a retry without
//! progress (an event was pending); [`MAX_RETRIES_WITHOUT_PROGRESS`] of those in a row end the
//! loop, as in Linux's `tdx_map_gpa`.

use crate::tdcall::TdCall;
use crate::tdcall::vmcall::{MapGpaOutcome, VmcallError, map_gpa};
use core::fmt;

/// RETRY answers in a row that did not move the resume GPA before the conversion gives up.
pub const MAX_RETRIES_WITHOUT_PROGRESS: u32 = 3;

/// What a successful conversion cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapGpaStats {
    /// MapGPA calls made.
    pub calls: u64,
    /// RETRY answers among them.
    pub retries: u64,
}

/// Why the VMM did not convert a whole range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapGpaFailure {
    /// The TDVMCALL failed or the VMM answered an error status.
    Vmcall(VmcallError),
    /// The VMM's R11 was outside the rest of the range, unaligned, moved backwards or had the
    /// wrong shared bit.
    HostileResume {
        /// R11 as the VMM reported it.
        resume: u64,
    },
    /// The VMM answered RETRY without progress [`MAX_RETRIES_WITHOUT_PROGRESS`] times in a row.
    NoProgress,
}

/// A conversion that stopped part-way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapGpaError {
    /// `[start, converted_upto)` (no shared bit) is converted as far as the VMM confirmed; the
    /// rest may be on either side.
    pub converted_upto: u64,
    /// What went wrong.
    pub cause: MapGpaFailure,
    /// Calls made before giving up.
    pub stats: MapGpaStats,
}

impl fmt::Display for MapGpaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.cause {
            MapGpaFailure::Vmcall(e) => write!(f, "MapGPA at {:#x}: {e}", self.converted_upto),
            MapGpaFailure::HostileResume { resume } => write!(
                f,
                "MapGPA at {:#x}: the VMM asked to resume at {resume:#x}, outside the range",
                self.converted_upto
            ),
            MapGpaFailure::NoProgress => write!(
                f,
                "MapGPA at {:#x}: {MAX_RETRIES_WITHOUT_PROGRESS} retries without progress",
                self.converted_upto
            ),
        }
    }
}

impl core::error::Error for MapGpaError {}

/// Converts `[start, start + len)` (GPAs without the shared bit, 4 KiB aligned, below
/// `shared_mask`) to shared (`to_shared`) or to private, calling MapGPA again on every RETRY.
///
/// # Safety
///
/// As for [`map_gpa`]: nothing may rely on the contents or accessibility of the range while and
/// after it changes sides, and the page tables must match the new state before the memory is
/// used again.
pub unsafe fn map_gpa_range(
    tdx: &impl TdCall,
    start: u64,
    len: u64,
    to_shared: bool,
    shared_mask: u64,
) -> Result<MapGpaStats, MapGpaError> {
    let mut stats = MapGpaStats::default();
    let fail = |cause, upto, stats| MapGpaError {
        converted_upto: upto,
        cause,
        stats,
    };
    let Some(end) = start.checked_add(len) else {
        return Err(fail(
            MapGpaFailure::Vmcall(VmcallError::InvalidArgument("MapGPA range overflows")),
            start,
            stats,
        ));
    };
    let side = if to_shared { shared_mask } else { 0 };
    let mut cursor = start;
    let mut stuck = 0;
    while cursor < end {
        stats.calls += 1;
        // SAFETY: the caller's contract covers the whole range, of which this is the rest.
        match unsafe { map_gpa(tdx, cursor | side, end - cursor) } {
            Ok(MapGpaOutcome::Done) => return Ok(stats),
            Ok(MapGpaOutcome::Retry { resume_gpa }) => {
                stats.retries += 1;
                let resume = resume_gpa & !shared_mask;
                let valid = resume_gpa & shared_mask == side
                    && resume.is_multiple_of(0x1000)
                    && (cursor..end).contains(&resume);
                if !valid {
                    let cause = MapGpaFailure::HostileResume { resume: resume_gpa };
                    return Err(fail(cause, cursor, stats));
                }
                if resume == cursor {
                    stuck += 1;
                    if stuck >= MAX_RETRIES_WITHOUT_PROGRESS {
                        return Err(fail(MapGpaFailure::NoProgress, cursor, stats));
                    }
                } else {
                    stuck = 0;
                    cursor = resume;
                }
            }
            Err(e) => return Err(fail(MapGpaFailure::Vmcall(e), cursor, stats)),
        }
    }
    Ok(stats)
}
