//! GetQuote: ask the host's quoting service to turn a TDREPORT into a quote.

use super::{Regs, TdCall, VmcallError, VmcallStatus, expose, function, vmcall_raw, vmcall_regs};

/// Submits the GetQuote request in the shared buffer at `shared_gpa` (`len` bytes).
///
/// The request completes asynchronously: the VMM writes the quote into the buffer and changes
/// its status field from 0xFFFF_FFFF_FFFF_FFFF ("in flight"); the caller polls it or waits for
/// the event-notify interrupt. `shared_gpa` includes the shared bit; both are 4 KiB aligned.
///
/// # Safety
///
/// `[shared_gpa, shared_gpa + len)` must be shared memory that the caller owns for the whole
/// request: the VMM writes it at any time until the status changes.
pub unsafe fn get_quote(tdx: &impl TdCall, shared_gpa: u64, len: u64) -> Result<(), VmcallError> {
    if !shared_gpa.is_multiple_of(0x1000) || !len.is_multiple_of(0x1000) || len == 0 {
        return Err(VmcallError::InvalidArgument(
            "GetQuote buffer not 4 KiB aligned",
        ));
    }
    let args = Regs {
        r12: shared_gpa,
        r13: len,
        ..Regs::default()
    };
    let regs = vmcall_regs(function::GET_QUOTE, expose::R12_R13, args);
    // SAFETY: the caller hands the shared buffer to the VMM for the request.
    match unsafe { vmcall_raw(tdx, regs, false) }? {
        (VmcallStatus::Success, _) => Ok(()),
        (status, _) => Err(VmcallError::Vmm(status)),
    }
}
