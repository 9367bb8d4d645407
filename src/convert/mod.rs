//! Private <-> shared conversion of guest memory.
//!
//! Private memory is encrypted and integrity-protected with the TD's key; the VMM and devices
//! can only reach shared memory. DMA buffers, virtio rings and the buffers of TDVMCALLs such as
//! GetQuote must be shared; page tables and code must never be. A conversion has three parts:
//! the kernel's mappings ([`SharedBitMapper`]; [`PageTableMapper`] implements it over x86-64
//! page tables), the TLB, and the VMM's view (MapGPA,
//! [`map_gpa_range`]), plus an ACCEPT when a page comes back to private: the module zeroes it,
//! so whatever the VMM wrote while it was shared cannot come back as private data.
//!
//! - Private -> shared ([`make_shared`]): set the shared bit in the mappings, flush the TLB,
//!   MapGPA(GPA | shared bit). The contents are lost.
//! - Shared -> private ([`make_private`]): MapGPA(GPA), ACCEPT, and only then clear the shared
//!   bit in the mappings and flush. The pages come back zeroed.
//!
//! The order is Linux's (`tdx_enc_status_change_prepare`/`_finish`): in both directions the
//! window in between has a *shared* mapping of a *private* page, which at worst raises a #VE,
//! and never a *private* mapping of a *shared* page: an access through that (a speculative one,
//! or `load_unaligned_zeropad()` running over the end of a neighbouring buffer) is not a #VE but
//! the end of the TD.
//!
//! On failure [`ConvertError::state`] says exactly what state the range was left in.
//! [`SharedPool`] keeps a region shared once and hands out pages of it to drivers.

mod map_gpa_loop;
mod mapper;
mod page_table;
mod pool;

pub use map_gpa_loop::{
    MAX_RETRIES_WITHOUT_PROGRESS, MapGpaError, MapGpaFailure, MapGpaStats, map_gpa_range,
};
pub use mapper::{MapperError, SharedBitMapper};
pub use page_table::PageTableMapper;
pub use pool::{SharedBuffer, SharedPool};

use crate::accept::{AcceptError, HostMappingGuess, accept_range_with};
use crate::tdcall::TdCall;
use core::fmt;

const PAGE: u64 = 0x1000;

/// The state a failed conversion left its range in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeState {
    /// As before the call: mappings, VMM view and contents untouched.
    Unchanged,
    /// The VMM confirmed the conversion of `[gpa, converted_upto)` only and the rest may be on
    /// either side. The mappings show shared: `make_shared` changed them first, `make_private`
    /// has not changed them yet (a shared mapping of a private page only raises a #VE). Do not
    /// touch the range; repeating the same conversion (MapGPA of converted pages is harmless) is
    /// the way out.
    Converting {
        /// The GPA (no shared bit) up to which the VMM confirmed the conversion.
        converted_upto: u64,
    },
    /// `make_private` only: the whole range is private for the VMM, but only `[gpa,
    /// accepted_upto)` is accepted; the rest is pending, and the mappings still show the whole
    /// range shared (they turn private only once every page is). [`crate::accept::accept_range`]
    /// on the rest, then clearing the shared bit in the mappings (and a flush), finishes it.
    PrivatePendingAccept {
        /// The GPA up to which pages are accepted.
        accepted_upto: u64,
    },
    /// `make_private` only: the whole range is private, accepted and mapped private, but the
    /// module found
    /// some of its pages already accepted and left them as they were, not zeroed: the VMM had
    /// never taken them away (the earlier conversion to shared was not real, or they were
    /// never shared). They hold the TD's own earlier private contents, never anything the VMM
    /// wrote; clear the range before it reaches anyone who must not see those.
    PrivateNotZeroed,
    /// `make_private` only: the range is private and accepted (zeroed) for the module and the
    /// VMM, but the mapper failed after switching `[va, mapped_private_upto)` to private; the
    /// rest of the range is still mapped shared (an access there raises a #VE). Clearing the
    /// shared bit of the rest (and a flush) finishes the conversion.
    PrivateMappedPartly {
        /// The end of the virtual range whose mappings show private.
        mapped_private_upto: u64,
    },
    /// `make_shared` only: the mapper failed and could not undo its partial change: the mappings
    /// of `[changed_from, changed_upto)` show shared, the rest of the range private; the VMM's
    /// view is unchanged.
    MappingsPartial {
        /// The first virtual address whose entry still shows the new side.
        changed_from: u64,
        /// The end of the entries that still show the new side.
        changed_upto: u64,
    },
}

/// Why a conversion failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvertCause {
    /// An address or the length is not 4 KiB aligned, or the shared mask is not one bit.
    Unaligned,
    /// The GPA range wraps or reaches the shared bit.
    OutOfRange,
    /// The page tables could not be changed.
    Mapper(MapperError),
    /// The VMM did not convert the whole range.
    MapGpa(MapGpaError),
    /// Accepting the pages made private failed.
    Accept(AcceptError),
    /// The module reported pages of a range being made private as already accepted, so it did
    /// not zero them.
    AlreadyAccepted,
    /// The bookkeeping storage given to a [`SharedPool`] is too small for its pages.
    PoolStorageTooSmall,
}

/// A failed conversion: what went wrong and the state it left the range in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvertError {
    /// Where the range stands now.
    pub state: RangeState,
    /// What went wrong.
    pub cause: ConvertCause,
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "conversion failed ({:?}), range left {:?}",
            self.cause, self.state
        )
    }
}

impl core::error::Error for ConvertError {}

/// One page-aligned range to convert: its mapping in the kernel and its GPA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvertRange {
    /// Virtual address of the first byte (4 KiB aligned).
    pub va: u64,
    /// Guest physical address of the first byte, without the shared bit (4 KiB aligned); the
    /// range must be physically contiguous.
    pub gpa: u64,
    /// Length in bytes (a 4 KiB multiple).
    pub len: u64,
}

impl ConvertRange {
    fn validate(&self, shared_mask: u64) -> Result<(), ConvertError> {
        let unchanged = |cause| ConvertError {
            state: RangeState::Unchanged,
            cause,
        };
        if !(self.va | self.gpa | self.len).is_multiple_of(PAGE) || !shared_mask.is_power_of_two() {
            return Err(unchanged(ConvertCause::Unaligned));
        }
        match self.gpa.checked_add(self.len) {
            Some(end) if end <= shared_mask && self.va.checked_add(self.len).is_some() => Ok(()),
            _ => Err(unchanged(ConvertCause::OutOfRange)),
        }
    }
}

/// Makes `range` shared: mappings, TLB, then MapGPA with the shared bit.
///
/// `shared_mask` is the shared bit from TDG.VP.INFO ([`crate::tdcall::TdInfo::shared_mask`]).
/// On success the range reads as whatever the VMM put there (zeroes on a fresh conversion);
/// its private contents are gone.
///
/// # Safety
///
/// Converting memory in use destroys it: nothing may access the range during the call, no live
/// Rust reference may point into it, and its private contents must be expendable. It must not
/// hold page tables, code, or anything whose integrity matters, now or while it stays shared.
pub unsafe fn make_shared(
    tdx: &impl TdCall,
    mapper: &mut impl SharedBitMapper,
    shared_mask: u64,
    range: ConvertRange,
) -> Result<MapGpaStats, ConvertError> {
    // SAFETY: forwarded; the caller upholds the contract.
    unsafe { convert_to_shared(tdx, mapper, shared_mask, range) }
}

/// Makes `range` private: MapGPA without the shared bit, then ACCEPT, which zeroes every page,
/// then the mappings (shared bit cleared) and the TLB. The mappings turn private only once every
/// page is private and accepted, so no private mapping of a shared page ever exists.
///
/// `Ok` means every page was zeroed by the module. A page the module finds already accepted
/// (the VMM never took it away) keeps its old private contents; the call then fails with
/// [`RangeState::PrivateNotZeroed`], as Linux fails any ACCEPT that does not return success.
///
/// # Safety
///
/// As for [`make_shared`]: nothing may access the range during the call and its shared
/// contents must be expendable (they are replaced by zeroes). Devices must be done with it.
pub unsafe fn make_private(
    tdx: &impl TdCall,
    mapper: &mut impl SharedBitMapper,
    shared_mask: u64,
    range: ConvertRange,
) -> Result<MapGpaStats, ConvertError> {
    range.validate(shared_mask)?;
    if range.len == 0 {
        return Ok(MapGpaStats::default());
    }
    // SAFETY: the caller guarantees nothing uses the range; the mappings still show it shared,
    // and a shared mapping of a page turning private only ever raises a #VE.
    let stats =
        unsafe { map_gpa_range(tdx, range.gpa, range.len, false, shared_mask) }.map_err(|e| {
            // A clean refusal of the first call changed nothing; anything else leaves the VMM's
            // view unknown beyond `converted_upto`.
            let refused_at_once =
                e.converted_upto == range.gpa && matches!(e.cause, MapGpaFailure::Vmcall(_));
            ConvertError {
                state: if refused_at_once {
                    RangeState::Unchanged
                } else {
                    RangeState::Converting {
                        converted_upto: e.converted_upto,
                    }
                },
                cause: ConvertCause::MapGpa(e),
            }
        })?;
    let end = range.gpa + range.len;
    // SAFETY: the caller promises the range is unused and its contents expendable (this
    // function's contract): `accept_range`'s contract for memory the kernel has given up.
    let accept = unsafe { accept_range_with(tdx, range.gpa, end, &HostMappingGuess::new()) };
    let accepted = accept.map_err(|e| ConvertError {
        state: RangeState::PrivatePendingAccept {
            accepted_upto: match e {
                AcceptError::Busy { gpa, .. } | AcceptError::Refused { gpa, .. } => gpa,
                _ => range.gpa,
            },
        },
        cause: ConvertCause::Accept(e),
    })?;
    // Every page is private and accepted: now the mappings may say so.
    // SAFETY: nothing uses the range (the caller's guarantee), and the pages behind these
    // entries are the TD's private, accepted memory.
    if let Err(e) = unsafe { mapper.set_shared(range.va, range.len, false) } {
        // A mapper claiming more than it was asked for is not believed beyond the range.
        let done = e.done.min(range.len);
        mapper.flush(range.va, done);
        return Err(ConvertError {
            state: RangeState::PrivateMappedPartly {
                mapped_private_upto: range.va + done,
            },
            cause: ConvertCause::Mapper(e),
        });
    }
    mapper.flush(range.va, range.len);
    // `accept_range` takes "already accepted" as success, which is right for memory that was
    // never shared; here it means the page was not zeroed, breaking this function's promise.
    if accepted.already_accepted != 0 {
        return Err(ConvertError {
            state: RangeState::PrivateNotZeroed,
            cause: ConvertCause::AlreadyAccepted,
        });
    }
    Ok(stats)
}

/// Mappings, flush and MapGPA to shared; on failure undoes what can be undone.
///
/// # Safety
///
/// As for [`make_shared`].
unsafe fn convert_to_shared(
    tdx: &impl TdCall,
    mapper: &mut impl SharedBitMapper,
    shared_mask: u64,
    range: ConvertRange,
) -> Result<MapGpaStats, ConvertError> {
    range.validate(shared_mask)?;
    if range.len == 0 {
        return Ok(MapGpaStats::default());
    }
    // SAFETY: the caller guarantees nothing uses the range while it changes sides.
    if let Err(e) = unsafe { mapper.set_shared(range.va, range.len, true) } {
        // A mapper claiming more than it was asked for is not believed beyond the range.
        // SAFETY: these entries were changed by this call, under the caller's contract.
        let state = unsafe { undo_mappings(mapper, range.va, e.done.min(range.len)) };
        return Err(ConvertError {
            state,
            cause: ConvertCause::Mapper(e),
        });
    }
    mapper.flush(range.va, range.len);
    // SAFETY: as above; the mappings already show the new side.
    match unsafe { map_gpa_range(tdx, range.gpa, range.len, true, shared_mask) } {
        Ok(stats) => Ok(stats),
        Err(e) => {
            // A clean refusal of the first call changed nothing on the VMM's side: put the
            // mappings back. Anything else (a partial conversion, a lying R11) leaves the VMM's
            // view unknown beyond `converted_upto`, so the mappings stay shared.
            let refused_at_once =
                e.converted_upto == range.gpa && matches!(e.cause, MapGpaFailure::Vmcall(_));
            let state = if refused_at_once {
                // SAFETY: as above.
                unsafe { undo_mappings(mapper, range.va, range.len) }
            } else {
                RangeState::Converting {
                    converted_upto: e.converted_upto,
                }
            };
            Err(ConvertError {
                state,
                cause: ConvertCause::MapGpa(e),
            })
        }
    }
}

/// Puts the first `done` bytes of mappings back to private, then flushes them.
///
/// The flush is needed even when the change is undone before any flush: the processor may
/// cache a translation of any present entry at any time (page walks are speculative), so the
/// TLB may hold the new side of an entry that is now back on the old one. Without the flush a
/// range reported `Unchanged` could still be reached through its other alias.
///
/// # Safety
///
/// The entries of `[va, va + done)` were made shared by the conversion in progress, and its
/// caller's guarantee (nothing uses the range) still holds.
unsafe fn undo_mappings(mapper: &mut impl SharedBitMapper, va: u64, done: u64) -> RangeState {
    if done == 0 {
        return RangeState::Unchanged;
    }
    // SAFETY: this function's contract: nothing uses the range, the entries are ours to flip.
    let undone = unsafe { mapper.set_shared(va, done, false) };
    mapper.flush(va, done);
    match undone {
        Ok(()) => RangeState::Unchanged,
        Err(undo) => RangeState::MappingsPartial {
            changed_from: va + undo.done.min(done),
            changed_upto: va + done,
        },
    }
}
