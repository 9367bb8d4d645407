//! RDMSR/WRMSR in the TD, decided by the TDX module's MSR rules ([`tdx_sim::msr_rules`]):
//! x2APIC registers the CPU virtualizes go to the vCPU's APIC, MSRs the TD owns keep a per-vCPU
//! value, the module's emulated ones (EFER and a few capability reads) are emulated, the rest
//! raise #VE or #GP as the module raises them.

use crate::exits::{Outcome, instruction_ve};
use crate::td::Td;
use crate::vcpu::EFER_SVME;
use crate::vmcb::save;
use tdx_boot::tdcall::VeInfo;
use tdx_sim::msr_rules::{self, EmulatedMsr, MsrAccess, MsrConfig, MsrDecision};

const IA32_EFER: u32 = 0xc000_0080;
const IA32_PAT: u32 = 0x277;
const IA32_TSC: u32 = 0x10;
const FS_BASE: u32 = 0xc000_0100;
const GS_BASE: u32 = 0xc000_0101;
/// The #GP vector.
const GP: u8 = 13;

/// Handles `vcpu`'s RDMSR (`write` false) or WRMSR.
pub fn handle(td: &mut Td, vcpu: usize, write: bool) -> Outcome {
    let index = td.vcpus[vcpu].gpr(1) as u32;
    let value = (td.vcpus[vcpu].gpr(2) << 32) | (td.vcpus[vcpu].gpr(0) & 0xffff_ffff);
    let access = if write {
        MsrAccess::Write
    } else {
        MsrAccess::Read
    };
    let decision = if index == IA32_EFER {
        // The module emulates EFER both ways (reads show the TD's own value).
        MsrDecision::Emulated(EmulatedMsr::Efer)
    } else {
        msr_rules::td_msr(index, access, &MsrConfig::default())
    };
    let result = match decision {
        MsrDecision::VirtualizationException => {
            let reason = if write {
                VeInfo::EXIT_REASON_WRMSR
            } else {
                VeInfo::EXIT_REASON_RDMSR
            };
            return instruction_ve(td, vcpu, reason, 2, 0);
        }
        MsrDecision::GeneralProtection => None,
        MsrDecision::VirtualApic if write => td.apics.write(vcpu as u32, index, value).then_some(0),
        MsrDecision::VirtualApic => td.apics.read(vcpu as u32, index),
        MsrDecision::Emulated(EmulatedMsr::Efer) => match efer(td, vcpu, write, value) {
            Ok(read) => Some(read),
            Err(MsrDecision::VirtualizationException) => {
                return instruction_ve(td, vcpu, VeInfo::EXIT_REASON_WRMSR, 2, 0);
            }
            Err(_) => None,
        },
        MsrDecision::Emulated(EmulatedMsr::XapicDisableStatus) if !write => Some(1),
        MsrDecision::Emulated(_) if !write => Some(0),
        MsrDecision::Emulated(_) => Some(0),
        MsrDecision::Native => native(td, vcpu, index, write, value),
    };
    let v = &mut td.vcpus[vcpu];
    match result {
        Some(read) => {
            if !write {
                v.set_gpr(0, read & 0xffff_ffff);
                v.set_gpr(2, read >> 32);
            }
            v.skip(2);
        }
        None => v.inject_exception_with_code(GP, 0),
    }
    Outcome::Continue
}

/// EFER as the module emulates it; `Err` is the module's decision for a refused write.
fn efer(td: &mut Td, vcpu: usize, write: bool, value: u64) -> Result<u64, MsrDecision> {
    let v = &mut td.vcpus[vcpu];
    let current = v.vmcb.read64(save::EFER) & !EFER_SVME;
    if !write {
        return Ok(current);
    }
    let new = msr_rules::efer_write(current, value)?;
    v.vmcb.write64(save::EFER, new | EFER_SVME);
    Ok(0)
}

/// An MSR the TD owns: the few the VMCB holds, the rest kept per vCPU.
fn native(td: &mut Td, vcpu: usize, index: u32, write: bool, value: u64) -> Option<u64> {
    let v = &mut td.vcpus[vcpu];
    let field = match index {
        IA32_PAT => Some(save::G_PAT),
        FS_BASE => Some(save::FS + 8),
        GS_BASE => Some(save::GS + 8),
        _ => None,
    };
    if let Some(at) = field {
        if write {
            v.vmcb.write64(at, value);
        }
        return Some(v.vmcb.read64(at));
    }
    if index == IA32_TSC && !write {
        // SAFETY: RDTSC has no side effects.
        return Some(unsafe { core::arch::x86_64::_rdtsc() });
    }
    if write {
        v.native_msrs.insert(index, value);
        Some(0)
    } else {
        Some(v.native_msrs.get(&index).copied().unwrap_or(0))
    }
}
