//! RDMSR and WRMSR under #VE.

use super::handler::{advance, instruction_length};
use super::{Frame, VeError};
use crate::tdcall::vmcall;
use crate::tdcall::{TdCall, VeInfo};

/// RDMSR: ECX names the MSR; the value lands in EDX:EAX (both zero-extended). A VMM refusal is
/// [`VeError::Msr`], for which the kernel injects #GP.
pub(super) fn emulate_rdmsr(
    tdx: &impl TdCall,
    info: &VeInfo,
    frame: &mut Frame,
) -> Result<(), VeError> {
    let len = instruction_length(info)?;
    let index = frame.rcx as u32;
    let value = vmcall::rdmsr(tdx, index).map_err(|error| VeError::Msr {
        index,
        write: false,
        error,
    })?;
    frame.rax = value & 0xffff_ffff;
    frame.rdx = value >> 32;
    advance(frame, len);
    Ok(())
}

/// WRMSR: writes EDX:EAX to the MSR ECX names.
pub(super) fn emulate_wrmsr(
    tdx: &impl TdCall,
    info: &VeInfo,
    frame: &mut Frame,
) -> Result<(), VeError> {
    let len = instruction_length(info)?;
    let index = frame.rcx as u32;
    let value = (frame.rdx << 32) | (frame.rax & 0xffff_ffff);
    vmcall::wrmsr(tdx, index, value).map_err(|error| VeError::Msr {
        index,
        write: true,
        error,
    })?;
    advance(frame, len);
    Ok(())
}
