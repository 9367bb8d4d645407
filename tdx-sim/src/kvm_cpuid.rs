//! CPUID as the VMM answers it (TDG.VP.VMCALL<Instruction.CPUID>, after a #VE), as KVM answers
//! a TD: its signature in the hypervisor range, and otherwise the TD's configured CPUID, with
//! each vCPU's own x2APIC ID in the topology leaves. TDVF's AP loop depends on the last: it asks
//! leaf 0xB once and waits on the mailbox for the APIC ID it got.

use crate::module_cpuid::{VcpuMode, module_cpuid};
use tdx_boot::model::CpuidSource;
use tdx_boot::tdcall::vmcall::CpuidResult;
use tdx_sim::cpuid_rules::{CpuidDecision, CpuidValues};

/// "KVMKVMKVM\0\0\0" in EBX, ECX, EDX.
const KVM_SIGNATURE: [u32; 3] = [0x4b4d_564b, 0x564b_4d56, 0x0000_004d];

/// KVM's CPUID for a TD of `vcpus` vCPUs.
pub struct KvmCpuid {
    /// The TD's vCPU count (CPUID.1:EBX[23:16]).
    pub vcpus: u32,
}

impl CpuidSource for KvmCpuid {
    fn cpuid(&mut self, vcpu: u32, leaf: u32, subleaf: u32) -> Option<CpuidResult> {
        let values = match leaf {
            0x4000_0000 => CpuidValues::new(
                0x4000_0001,
                KVM_SIGNATURE[0],
                KVM_SIGNATURE[1],
                KVM_SIGNATURE[2],
            ),
            // No paravirtual features.
            0x4000_0001..=0x4fff_ffff => CpuidValues::default(),
            _ => {
                let mode = VcpuMode::LONG_MODE_KERNEL;
                let mut values = match module_cpuid(vcpu, self.vcpus, mode, leaf, subleaf) {
                    CpuidDecision::Module { values, .. } => values,
                    CpuidDecision::VirtualizationException(_) => CpuidValues::default(),
                };
                if matches!(leaf, 0xb | 0x1f) {
                    values.edx = vcpu;
                }
                values
            }
        };
        Some(CpuidResult {
            eax: values.eax,
            ebx: values.ebx,
            ecx: values.ecx,
            edx: values.edx,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_vcpu_reads_its_own_x2apic_id_and_kvm_signs_the_hypervisor_range() {
        let mut kvm = KvmCpuid { vcpus: 4 };
        for vcpu in 0..4 {
            assert_eq!(kvm.cpuid(vcpu, 0xb, 0).unwrap().edx, vcpu);
        }
        let signature = kvm.cpuid(2, 0x4000_0000, 0).unwrap();
        assert_eq!(signature.eax, 0x4000_0001);
        let mut vendor = [0u8; 12];
        for (i, r) in [signature.ebx, signature.ecx, signature.edx]
            .iter()
            .enumerate()
        {
            vendor[4 * i..4 * i + 4].copy_from_slice(&r.to_le_bytes());
        }
        assert_eq!(&vendor, b"KVMKVMKVM\0\0\0");
        assert_eq!(kvm.cpuid(0, 0x4000_0001, 0).unwrap().eax, 0);
    }
}
