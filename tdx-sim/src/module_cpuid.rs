//! The TDX module's CPUID for a vCPU of this TD: [`td_cpuid`]'s rules over the emulated CPU's
//! own CPUID. The native CPUID exit (`exits`) and the VMM's TDVMCALL<CPUID> (`kvm_cpuid`) both
//! answer from it, so the TD sees one configuration whichever way it asks.

use crate::vmcb::{Vmcb, save};
use tdx_sim::cpuid_rules::{CpuidConfig, CpuidDecision, CpuidValues, VcpuCpuidState, td_cpuid};

const CR4_OSXSAVE: u64 = 1 << 18;
const CR4_PKE: u64 = 1 << 22;
const EFER_LMA: u64 = 1 << 10;

/// The vCPU state CPUID's dynamic fields depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuMode {
    /// The current privilege level.
    pub cpl: u8,
    /// CR4 (OSXSAVE and PKE show in leaves 1 and 7).
    pub cr4: u64,
    /// EFER (LMA: 64-bit mode).
    pub efer: u64,
}

impl VcpuMode {
    /// A 64-bit kernel with CR4.OSXSAVE and CR4.PKE clear: what the VMM answers for, as KVM
    /// answers TDVMCALL<CPUID> from the TD's configured CPUID without reading its state.
    pub const LONG_MODE_KERNEL: Self = Self {
        cpl: 0,
        cr4: 0,
        efer: EFER_LMA,
    };

    /// The mode a vCPU's VMCB holds.
    pub fn of(vmcb: &Vmcb) -> Self {
        Self {
            cpl: vmcb.read8(save::CPL),
            cr4: vmcb.read64(save::CR4),
            efer: vmcb.read64(save::EFER),
        }
    }
}

/// The module's decision for CPUID `leaf`.`subleaf` on vCPU `vcpu` (also its x2APIC ID) of a
/// TD of `vcpus` vCPUs, in `mode`.
pub fn module_cpuid(
    vcpu: u32,
    vcpus: u32,
    mode: VcpuMode,
    leaf: u32,
    subleaf: u32,
) -> CpuidDecision {
    let state = VcpuCpuidState {
        vcpu_index: vcpu,
        x2apic_id: vcpu,
        cpl: mode.cpl,
        cr4_osxsave: mode.cr4 & CR4_OSXSAVE != 0,
        cr4_pke: mode.cr4 & CR4_PKE != 0,
        long_mode: mode.efer & EFER_LMA != 0,
        ..VcpuCpuidState::default()
    };
    let config = CpuidConfig {
        logical_processors: u8::try_from(vcpus).unwrap_or(u8::MAX),
        ..CpuidConfig::default()
    };
    let host = |leaf, subleaf| {
        let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
        CpuidValues::new(r.eax, r.ebx, r.ecx, r.edx)
    };
    td_cpuid(leaf, subleaf, &config, &state, host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(decision: CpuidDecision) -> Option<CpuidValues> {
        match decision {
            CpuidDecision::Module { values, .. } => Some(values),
            CpuidDecision::VirtualizationException(_) => None,
        }
    }

    #[test]
    fn the_mode_comes_from_the_vmcb_and_reaches_the_dynamic_fields() {
        let mut vmcb = Vmcb::zeroed();
        vmcb.write8(save::CPL, 3);
        vmcb.write64(save::CR4, CR4_OSXSAVE | CR4_PKE | 1 << 5);
        vmcb.write64(save::EFER, EFER_LMA | 1 << 12);
        let mode = VcpuMode::of(&vmcb);
        assert_eq!(
            mode,
            VcpuMode {
                cpl: 3,
                cr4: CR4_OSXSAVE | CR4_PKE | 1 << 5,
                efer: EFER_LMA | 1 << 12,
            }
        );
        // Leaf 1 ECX[27] is CR4.OSXSAVE, leaf 7 ECX[4] CR4.PKE, 0x80000001 EDX[11] 64-bit mode
        // (asked at CPL 0: the module's rules differ for user mode).
        let mode = VcpuMode { cpl: 0, ..mode };
        let leaf = |mode, leaf| values(module_cpuid(1, 4, mode, leaf, 0)).unwrap();
        let off = VcpuMode {
            cpl: 0,
            cr4: 0,
            efer: 0,
        };
        assert_eq!(leaf(mode, 1).ecx >> 27 & 1, 1);
        assert_eq!(leaf(off, 1).ecx >> 27 & 1, 0);
        assert_eq!(leaf(mode, 7).ecx >> 4 & 1, 1);
        assert_eq!(leaf(off, 7).ecx >> 4 & 1, 0);
        assert_eq!(leaf(mode, 0x8000_0001).edx >> 11 & 1, 1);
        assert_eq!(leaf(off, 0x8000_0001).edx >> 11 & 1, 0);
        // Leaf 1's EBX: the vCPU's APIC ID in [31:24], the vCPU count in [23:16].
        let ebx = values(module_cpuid(3, 4, mode, 1, 0)).unwrap().ebx;
        assert_eq!((ebx >> 24, ebx >> 16 & 0xff), (3, 4));
    }

    #[test]
    fn the_vmms_mode_is_the_long_mode_state_kvm_answered_from_before() {
        // The state kvm_cpuid built by hand before this helper existed.
        let state = VcpuCpuidState {
            vcpu_index: 2,
            x2apic_id: 2,
            long_mode: true,
            ..VcpuCpuidState::default()
        };
        let config = CpuidConfig {
            logical_processors: 4,
            ..CpuidConfig::default()
        };
        let host = |leaf, subleaf| {
            let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
            CpuidValues::new(r.eax, r.ebx, r.ecx, r.edx)
        };
        for leaf in (0..0x22).chain(0x8000_0000..0x8000_0009) {
            for subleaf in 0..3 {
                assert_eq!(
                    module_cpuid(2, 4, VcpuMode::LONG_MODE_KERNEL, leaf, subleaf),
                    td_cpuid(leaf, subleaf, &config, &state, host),
                    "leaf {leaf:#x}.{subleaf}"
                );
            }
        }
    }
}
