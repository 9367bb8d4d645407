//! Without TDX: the EPT-violation #VE a TD takes on shared MMIO, made from the #PF QEMU raises.
//!
//! In a TD, a load or store through a page whose entry has the shared bit reaches a shared GPA
//! the VMM left unmapped; the TDX module reports it as an EPT violation and the CPU delivers a
//! #VE. Without TDX the shared bit (GPAW - 1, bit 47 for the model's GPAW 48) lies above QEMU's
//! physical address width (40 bits under TCG), so the same access faults earlier, with a
//! reserved-bit #PF. The #PF handler hands such a fault here: the fault is turned into the #VE
//! the TDX module would have raised (exit reason, read or write, linear and guest-physical
//! address, given to the model with `inject_ve`) and the kernel's #VE handler runs on the
//! fault's frame. From the faulting instruction's point of view nothing differs from a TD: it
//! is decoded at RIP, emulated with #VE.RequestMMIO and skipped.
//!
//! This relies on TCG's fixed 40-bit physical address width (`cargo xtask run` uses TCG). Under
//! KVM without TDX on a host whose width exceeds the shared bit, the access would instead reach
//! an empty GPA, read all ones, and the MMIO check would fail.

use crate::interrupts::on_virtualization_exception;
use tdx_boot::model::TdxModule;
use tdx_boot::tdcall::VeInfo;
use tdx_boot::ve::Frame;

/// #PF error code: the access was a write.
const PF_WRITE: u64 = 1 << 1;
/// #PF error code: an entry had a reserved bit set.
const PF_RESERVED: u64 = 1 << 3;
/// #PF error code: an instruction fetch (never MMIO).
const PF_FETCH: u64 = 1 << 4;

/// EPT-violation exit qualification: the access was a read / a write.
const EPT_READ: u64 = 1 << 0;
const EPT_WRITE: u64 = 1 << 1;
/// Qualification bits 7 and 8: the linear address is valid (CR2, the faulting access's own),
/// and the fault was on its final translation (a reserved-bit #PF on the leaf entry), as VMX
/// reports a TD's data access to a shared GPA.
const EPT_GLA_VALID_TRANSLATED: u64 = 1 << 7 | 1 << 8;

static MODEL: spin::Once<&'static TdxModule> = spin::Once::new();

/// Turns reserved-bit faults on shared mappings into #VEs from `module` from now on.
pub fn install(module: &'static TdxModule) {
    MODEL.call_once(|| module);
}

/// Delivers the #PF of `frame` as the #VE a TD would take, if it is a data access through a
/// shared mapping and the model is installed; false (nothing done) otherwise.
pub fn deliver_as_ve(frame: &mut Frame, error_code: u64) -> bool {
    let Some(module) = MODEL.get() else {
        return false;
    };
    // Hardware also sets the present bit (0) with the reserved bit; QEMU's TCG does not, so
    // only the reserved bit and the kind of access are looked at.
    if error_code & (PF_RESERVED | PF_FETCH) != PF_RESERVED {
        return false;
    }
    let linear = x86_64::registers::control::Cr2::read_raw();
    let Some(gpa) = crate::paging::physical_address(linear) else {
        return false;
    };
    if gpa & module.shared_bit() == 0 {
        return false;
    }
    let vcpu = crate::percpu::current().map_or(0, |c| c.index);
    let info = VeInfo {
        exit_reason: VeInfo::EXIT_REASON_EPT_VIOLATION,
        exit_qualification: EPT_GLA_VALID_TRANSLATED
            | if error_code & PF_WRITE != 0 {
                EPT_WRITE
            } else {
                EPT_READ
            },
        guest_linear_address: linear,
        guest_physical_address: gpa,
        ..VeInfo::default()
    };
    if !module.inject_ve(vcpu, info) {
        // A #VE whose information is still unread: on hardware a double fault.
        return false;
    }
    on_virtualization_exception(frame);
    true
}
