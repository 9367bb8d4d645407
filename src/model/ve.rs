//! TDG.VP.VEINFO.GET: hands out, and consumes, the #VE information a test injected.

use super::TdxModule;
use crate::tdcall::{Regs, TdxStatus};

impl TdxModule {
    /// RCX = exit reason, RDX = exit qualification, R8 = GLA, R9 = GPA,
    /// R10 = instruction length | instruction info << 32; `TDX_NO_VALID_VE_INFO` when no #VE
    /// is pending. As in the module, the outputs are zeroed first, so they are 0 on failure;
    /// version 1 adds the #VE category in RCX\[63:32\] (always 0 here).
    pub(super) fn veinfo_get(&self, vcpu: u32, regs: &mut Regs) -> u64 {
        regs.rcx = 0;
        regs.rdx = 0;
        regs.r8 = 0;
        regs.r9 = 0;
        regs.r10 = 0;
        let Some(info) = self
            .vcpus
            .lock()
            .get_mut(&vcpu)
            .and_then(|v| v.pending_ve.take())
        else {
            return TdxStatus::NO_VALID_VE_INFO.raw();
        };
        regs.rcx = u64::from(info.exit_reason);
        regs.rdx = info.exit_qualification;
        regs.r8 = info.guest_linear_address;
        regs.r9 = info.guest_physical_address;
        regs.r10 = u64::from(info.instruction_length) | u64::from(info.instruction_info) << 32;
        TdxStatus::SUCCESS.raw()
    }
}
