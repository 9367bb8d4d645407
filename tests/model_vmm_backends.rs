//! The model's VMM back ends for hosts that emulate behaviour (tdx-sim): MSR devices and a CPUID
//! source answer before the model's tables, per vCPU, through the crate's own TDVMCALL wrappers.

use std::sync::{Arc, Mutex};
use tdx_boot::model::{CpuidSource, ModelConfig, MsrDevice, TdxModule};
use tdx_boot::tdcall::vmcall::{self, CpuidResult};

/// An MSR device that answers MSR 0x800 + n with the vCPU index times 0x10 + n, remembers
/// writes, and refuses writes of odd values (a #GP).
struct Apics(Arc<Mutex<Vec<(u32, u32, u64)>>>);

impl MsrDevice for Apics {
    fn claims(&self, index: u32) -> bool {
        (0x800..0x900).contains(&index)
    }
    fn read(&mut self, vcpu: u32, index: u32) -> Option<u64> {
        Some(u64::from(vcpu) * 0x10 + u64::from(index - 0x800))
    }
    fn write(&mut self, vcpu: u32, index: u32, value: u64) -> bool {
        self.0.lock().unwrap().push((vcpu, index, value));
        value & 1 == 0
    }
}

struct PerVcpuTopology;

impl CpuidSource for PerVcpuTopology {
    fn cpuid(&mut self, vcpu: u32, leaf: u32, _subleaf: u32) -> Option<CpuidResult> {
        (leaf == 0xb).then_some(CpuidResult {
            eax: 1,
            ebx: 1,
            ecx: 0x100,
            edx: vcpu,
        })
    }
}

#[test]
fn an_msr_device_answers_per_vcpu_before_the_table_and_can_refuse() {
    let module = TdxModule::new(ModelConfig::default());
    module.set_msr(0x80b, 0x1234); // shadowed by the device
    module.set_msr(0x1b, 0xfee0_0d00); // outside the device: the table answers
    let writes = Arc::new(Mutex::new(Vec::new()));
    module.add_msr_device(Box::new(Apics(writes.clone())));
    assert_eq!(vmcall::rdmsr(&module.vcpu(2), 0x80b), Ok(0x2b));
    assert_eq!(vmcall::rdmsr(&module.vcpu(0), 0x80b), Ok(0x0b));
    assert_eq!(vmcall::rdmsr(&module.vcpu(1), 0x1b), Ok(0xfee0_0d00));
    assert!(vmcall::wrmsr(&module.vcpu(3), 0x830, 4).is_ok());
    assert!(vmcall::wrmsr(&module.vcpu(3), 0x830, 5).is_err(), "a #GP");
    assert_eq!(*writes.lock().unwrap(), vec![(3, 0x830, 4), (3, 0x830, 5)]);
    assert!(
        vmcall::rdmsr(&module.vcpu(0), 0x10).is_err(),
        "unknown MSRs stay unknown"
    );
}

#[test]
fn a_cpuid_source_answers_per_vcpu_and_leaves_other_leaves_to_the_table() {
    let module = TdxModule::new(ModelConfig::default());
    let table = CpuidResult {
        eax: 7,
        ebx: 8,
        ecx: 9,
        edx: 10,
    };
    module.set_cpuid(0x4000_0000, 0, table);
    module.set_cpuid(0xb, 0, table);
    module.set_cpuid_source(Box::new(PerVcpuTopology));
    for vcpu in 0..4 {
        assert_eq!(vmcall::cpuid(&module.vcpu(vcpu), 0xb, 0).unwrap().edx, vcpu);
    }
    assert_eq!(vmcall::cpuid(&module.vcpu(1), 0x4000_0000, 0), Ok(table));
}
