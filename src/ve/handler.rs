//! The #VE dispatcher: VEINFO.GET, then one emulation per exit reason.

use super::{Frame, VeContext, VeError, cpuid, ept, hlt, io_port, msr};
use crate::tdcall::{TdCall, VeInfo, ve_info_get};

/// Where the EPT-violation path gets the instruction bytes from.
#[derive(Clone, Copy)]
pub(super) enum Code<'a> {
    /// The caller supplied them.
    Given(&'a [u8]),
    /// Read them at the frame's RIP (only through [`handle`], whose contract allows it).
    AtRip,
}

/// Handles the pending #VE of the interrupted kernel context `frame`: fetches its information,
/// emulates the instruction through the VMM, updates the registers and advances RIP.
///
/// A #VE from user mode (CS.RPL 3) is emulated only for CPUID; every other exit reason is
/// refused with [`VeError::UserMode`] before the VMM sees it (Linux's `virt_exception_user`).
///
/// For MMIO the instruction is decoded from memory at `frame.rip`: at most up to the end of
/// RIP's page, and into the next page only if the instruction continues there.
///
/// # Safety
///
/// `frame` is the real interrupted context of this #VE (as the entry stub builds it) and its RIP
/// points at readable code in the current address space, in the page and, if the instruction
/// crosses it, the following page.
pub unsafe fn handle(tdx: &impl TdCall, frame: &mut Frame) -> Result<(), VeError> {
    dispatch(tdx, frame, Code::AtRip, None)
}

/// Like [`handle`], but takes the bytes at RIP from `code` instead of reading memory: safe, and
/// what a kernel that fetched the instruction itself (or a test) uses. `code` needs to hold only
/// the faulting instruction; it is used only for EPT violations.
///
/// EPT violations query TDG.VP.INFO for the shared bit; [`VeContext`] avoids that.
pub fn handle_with_code(tdx: &impl TdCall, frame: &mut Frame, code: &[u8]) -> Result<(), VeError> {
    dispatch(tdx, frame, Code::Given(code), None)
}

/// Handles one #VE; `context` is queried with TDG.VP.INFO when an EPT violation needs it and
/// none is given.
pub(super) fn dispatch(
    tdx: &impl TdCall,
    frame: &mut Frame,
    code: Code<'_>,
    context: Option<&VeContext>,
) -> Result<(), VeError> {
    // First, before anything that could raise another #VE: a #VE while this one's information
    // is still unread escalates to a double fault.
    let info = ve_info_get(tdx).map_err(VeError::VeInfo)?;
    // From user mode only CPUID is emulated, as Linux's `virt_exception_user` does: HLT, port
    // IO, MSRs and MMIO are the kernel's business, and forwarding them would let any process
    // talk to the VMM (or halt the vCPU) behind the kernel's back.
    if frame.is_user_mode() && info.exit_reason != VeInfo::EXIT_REASON_CPUID {
        return Err(VeError::UserMode);
    }
    match info.exit_reason {
        VeInfo::EXIT_REASON_CPUID => cpuid::emulate(tdx, &info, frame),
        VeInfo::EXIT_REASON_HLT => hlt::emulate(tdx, &info, frame),
        VeInfo::EXIT_REASON_IO => io_port::emulate(tdx, &info, frame),
        VeInfo::EXIT_REASON_RDMSR => msr::emulate_rdmsr(tdx, &info, frame),
        VeInfo::EXIT_REASON_WRMSR => msr::emulate_wrmsr(tdx, &info, frame),
        VeInfo::EXIT_REASON_EPT_VIOLATION => ept::emulate(tdx, &info, frame, code, context),
        other => Err(VeError::UnsupportedExitReason(other)),
    }
}

/// The instruction length VEINFO reports for an instruction exit, checked to be a possible one.
pub(super) fn instruction_length(info: &VeInfo) -> Result<u64, VeError> {
    match info.instruction_length {
        len @ 1..=15 => Ok(len.into()),
        other => Err(VeError::BadInstructionLength(other)),
    }
}

/// Moves RIP past an emulated instruction.
pub(super) fn advance(frame: &mut Frame, len: u64) {
    frame.rip = frame.rip.wrapping_add(len);
}
