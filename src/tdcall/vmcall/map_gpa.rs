//! MapGPA: one request to convert a GPA range between private and shared.

use super::{Regs, TdCall, VmcallError, VmcallStatus, expose, function, vmcall_raw, vmcall_regs};

/// What one MapGPA call achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapGpaOutcome {
    /// The whole range is converted.
    Done,
    /// The VMM converted part of the range and asks to be called again from `resume_gpa`
    /// (R11, shared bit included). The value is the VMM's: check it lies inside the range and
    /// moves forward before using it (the `convert` module does).
    Retry {
        /// The GPA to resume from, as the VMM reported it.
        resume_gpa: u64,
    },
}

/// Executes one MapGPA of `[gpa, gpa + len)`: with the shared bit set in `gpa` the range becomes
/// shared, without it private. Both must be 4 KiB aligned and `len` non-zero.
///
/// # Errors
///
/// [`VmcallError::InvalidArgument`] without a call for a misaligned, empty or wrapping range;
/// [`VmcallError::Vmm`] when the VMM refuses the conversion (`InvalidOperand` for a range it
/// does not know or beyond the GPA width, `AlignError`); [`VmcallError::Tdcall`] if the module
/// refuses the call. A partial conversion is not an error but [`MapGpaOutcome::Retry`].
///
/// # Safety
///
/// Converting changes what memory at the range holds: a page made shared is readable by the
/// VMM and its private contents are gone; a page made private is pending until accepted. The
/// caller guarantees nothing relies on the contents or accessibility of the range, and that
/// the page tables match the new state before the memory is used again.
pub unsafe fn map_gpa(tdx: &impl TdCall, gpa: u64, len: u64) -> Result<MapGpaOutcome, VmcallError> {
    if !gpa.is_multiple_of(0x1000) || !len.is_multiple_of(0x1000) {
        return Err(VmcallError::InvalidArgument(
            "MapGPA range not 4 KiB aligned",
        ));
    }
    if len == 0 || gpa.checked_add(len).is_none() {
        return Err(VmcallError::InvalidArgument(
            "MapGPA range empty or overflowing",
        ));
    }
    let args = Regs {
        r12: gpa,
        r13: len,
        ..Regs::default()
    };
    let regs = vmcall_regs(function::MAP_GPA, expose::R12_R13, args);
    // SAFETY: the caller guarantees the range may change state.
    match unsafe { vmcall_raw(tdx, regs, false) }? {
        (VmcallStatus::Success, _) => Ok(MapGpaOutcome::Done),
        (VmcallStatus::Retry, out) => Ok(MapGpaOutcome::Retry {
            resume_gpa: out.r11,
        }),
        (status, _) => Err(VmcallError::Vmm(status)),
    }
}
