//! CPUID under #VE: only the hypervisor range is the VMM's to answer.

use super::handler::{advance, instruction_length};
use super::{Frame, VeError};
use crate::tdcall::vmcall::{self, CpuidResult};
use crate::tdcall::{TdCall, VeInfo};

/// The leaves a VMM may define (hypervisor identification and features).
const HYPERVISOR_LEAVES: core::ops::RangeInclusive<u32> = 0x4000_0000..=0x4fff_ffff;

/// CPUID leaf EAX, sub-leaf ECX: asks the VMM for hypervisor leaves; any other leaf that faults
/// reads as zeros, so a VMM cannot make up CPU features the TDX module did not vouch for.
pub(super) fn emulate(tdx: &impl TdCall, info: &VeInfo, frame: &mut Frame) -> Result<(), VeError> {
    let len = instruction_length(info)?;
    let leaf = frame.rax as u32;
    let subleaf = frame.rcx as u32;
    let result = if HYPERVISOR_LEAVES.contains(&leaf) {
        vmcall::cpuid(tdx, leaf, subleaf).map_err(|error| VeError::Vmcall {
            exit_reason: info.exit_reason,
            error,
        })?
    } else {
        CpuidResult::default()
    };
    // CPUID writes the 32-bit registers, which zero-extends them.
    frame.rax = result.eax.into();
    frame.rbx = result.ebx.into();
    frame.rcx = result.ecx.into();
    frame.rdx = result.edx.into();
    advance(frame, len);
    Ok(())
}
