//! TDG.VP.VEINFO.GET: hands out, and consumes, the #VE information a test injected.

use super::TdxModule;
use crate::tdcall::VeInfo;
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

impl TdxModule {
    /// Makes a #VE pending on `vcpu`: the next TDG.VP.VEINFO.GET there returns `info`.
    ///
    /// Returns false, keeping the pending information, if the previous #VE on `vcpu` was not
    /// yet read: on hardware that second #VE escalates to a double fault. Such events are
    /// counted ([`TdxModule::ve_double_faults`]).
    pub fn inject_ve(&self, vcpu: u32, info: VeInfo) -> bool {
        let mut vcpus = self.vcpus.lock();
        let state = vcpus.entry(vcpu).or_default();
        if state.pending_ve.is_some() {
            state.ve_double_faults += 1;
            return false;
        }
        state.pending_ve = Some(info);
        true
    }
    /// How many #VEs were injected on `vcpu` while VE information was still unread (each a
    /// double fault on hardware).
    pub fn ve_double_faults(&self, vcpu: u32) -> u64 {
        self.vcpus
            .lock()
            .get(&vcpu)
            .map_or(0, |v| v.ve_double_faults)
    }
    /// Whether a #VE is pending (not yet read with VEINFO.GET) on `vcpu`.
    pub fn ve_pending(&self, vcpu: u32) -> bool {
        self.vcpus
            .lock()
            .get(&vcpu)
            .is_some_and(|v| v.pending_ve.is_some())
    }
}
