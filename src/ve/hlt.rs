//! HLT under #VE, and [`safe_halt`] for idle loops.

use super::handler::{advance, instruction_length};
use super::{Frame, VeError};
use crate::tdcall::vmcall::{self, VmcallError};
use crate::tdcall::{TdCall, VeInfo};

/// HLT: halts through the VMM, telling it whether the interrupted code had interrupts enabled
/// (RFLAGS.IF of the frame), so a halt with interrupts off is not woken by a maskable interrupt.
///
/// A `sti; hlt` idle loop does not work through #VE: the #VE delivery ends the STI shadow, so an
/// interrupt arriving before the TDVMCALL is taken first and the halt then sleeps past it. Idle
/// loops use [`safe_halt`].
pub(super) fn emulate(tdx: &impl TdCall, info: &VeInfo, frame: &mut Frame) -> Result<(), VeError> {
    let len = instruction_length(info)?;
    vmcall::hlt(tdx, !frame.interrupts_enabled()).map_err(|error| VeError::Vmcall {
        exit_reason: info.exit_reason,
        error,
    })?;
    advance(frame, len);
    Ok(())
}

/// Enables interrupts and halts with STI immediately before the TDVMCALL (the idle loop's
/// `sti; hlt`): an interrupt that becomes pending after the caller last checked for work wakes
/// the vCPU instead of being lost. Returns with interrupts enabled.
///
/// # Safety
///
/// An IDT is loaded and the caller may be interrupted (interrupts are enabled on return).
pub unsafe fn safe_halt(tdx: &impl TdCall) -> Result<(), VmcallError> {
    // SAFETY: the caller upholds `vmcall::safe_halt`'s contract, which is this one.
    unsafe { vmcall::safe_halt(tdx) }
}
