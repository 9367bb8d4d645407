//! TDG.VP.VEINFO.GET: what caused the pending #VE.

use super::{Regs, TdCall, TdxError, TdxStatus, call_registers_only, leaf};

/// The information of one #VE, as TDG.VP.VEINFO.GET returns it.
///
/// Reading it consumes it: the module accepts the next #VE only afterwards (a #VE that arrives
/// while the information is still valid escalates to a double fault).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VeInfo {
    /// The exit reason (see the `EXIT_REASON_*` constants).
    pub exit_reason: u32,
    /// The exit qualification (for IO: size, direction, string, rep, port).
    pub exit_qualification: u64,
    /// The guest linear address (EPT violations).
    pub guest_linear_address: u64,
    /// The guest physical address (EPT violations).
    pub guest_physical_address: u64,
    /// The length of the faulting instruction; not valid for EPT violations.
    pub instruction_length: u32,
    /// Instruction information.
    pub instruction_info: u32,
}

impl VeInfo {
    /// CPUID.
    pub const EXIT_REASON_CPUID: u32 = 10;
    /// HLT.
    pub const EXIT_REASON_HLT: u32 = 12;
    /// IN, OUT, INS, OUTS.
    pub const EXIT_REASON_IO: u32 = 30;
    /// RDMSR.
    pub const EXIT_REASON_RDMSR: u32 = 31;
    /// WRMSR.
    pub const EXIT_REASON_WRMSR: u32 = 32;
    /// EPT violation: an access to a shared GPA the VMM emulates (MMIO), or a removed page.
    pub const EXIT_REASON_EPT_VIOLATION: u32 = 48;
}

/// Executes TDG.VP.VEINFO.GET. Fails with `TDX_NO_VALID_VE_INFO` when no #VE is pending.
pub fn ve_info_get(tdx: &impl TdCall) -> Result<VeInfo, TdxError> {
    let out = call_registers_only(
        tdx,
        Regs {
            rax: leaf::VP_VEINFO_GET,
            ..Regs::default()
        },
    );
    TdxStatus::from_raw(out.rax).into_result()?;
    Ok(VeInfo {
        exit_reason: out.rcx as u32,
        exit_qualification: out.rdx,
        guest_linear_address: out.r8,
        guest_physical_address: out.r9,
        instruction_length: out.r10 as u32,
        instruction_info: (out.r10 >> 32) as u32,
    })
}
