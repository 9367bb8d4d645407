//! TDG.VP.INFO: the TD's execution environment, per vCPU.

use super::TdxModule;
use crate::tdcall::{Regs, TdxStatus};

impl TdxModule {
    /// RCX = GPAW, RDX = attributes, R8 = NUM_VCPUS | MAX_VCPUS << 32, R9 = VCPU_INDEX,
    /// R10 = R11 = 0. A TDX 1.5 module sets R10 bit 0 (TDG.SYS.RD available); the model does
    /// not implement TDG.SYS.RD, so it reports what a 1.0 module does.
    pub(super) fn vp_info(&self, vcpu: u32, regs: &mut Regs) -> u64 {
        regs.rcx = u64::from(self.config.gpaw & 0x3f);
        regs.rdx = self.config.attributes;
        regs.r8 =
            u64::from(self.config.num_vcpus) | u64::from(self.config.effective_max_vcpus()) << 32;
        regs.r9 = u64::from(vcpu);
        regs.r10 = 0;
        regs.r11 = 0;
        TdxStatus::SUCCESS.raw()
    }
}
