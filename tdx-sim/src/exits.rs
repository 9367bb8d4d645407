//! What each VM exit means for a TD, following the TDX module's rules: TDCALL (a #UD here) is
//! served by the module; CPUID, HLT, IN/OUT, MSRs, WBINVD and MONITOR/MWAIT become the #VE a
//! TD gets; a nested page fault on a shared GPA is an EPT-violation #VE, one on a private page
//! the TD has not accepted ends the TD (SEPT_VE_DISABLE); the reset vector's CR writes are
//! played as paging-off (see [`crate::boot_paging`]).

use crate::boot_paging::{self, CrWrite};
use crate::guest_walk::{self, Paging};
use crate::layout::SHARED_BIT;
use crate::td::Td;
use crate::tdcall_service;
use crate::vcpu::CR_WRITE_INTERCEPTS;
use crate::vmcb::{control, exit, save};
use tdx_boot::tdcall::VeInfo;
use tdx_sim::cpuid_rules::{CpuidConfig, CpuidDecision, CpuidValues, VcpuCpuidState, td_cpuid};

/// VMX exit reasons the #VE information carries for WBINVD and INVD.
const EXIT_REASON_WBINVD: u32 = 54;
const EXIT_REASON_INVD: u32 = 13;

/// How the TD ended.
#[derive(Clone, Debug)]
pub enum Stop {
    /// The TD wrote the debug-exit port with this value.
    DebugExit(u32),
    /// TDG.VP.VMCALL<ReportFatalError>: the error code and the message.
    FatalError(u32, alloc::vec::Vec<u8>),
    /// A vCPU shut down (a triple fault).
    Shutdown {
        /// The vCPU.
        vcpu: u32,
        /// Its RIP.
        rip: u64,
    },
    /// Something a TD cannot survive, or that tdx-sim does not implement.
    Died {
        /// The vCPU.
        vcpu: u32,
        /// Its RIP.
        rip: u64,
        /// What happened.
        why: alloc::string::String,
    },
    /// Every vCPU halted with nothing to wake it.
    AllHalted,
}

/// What the scheduler does after an exit.
pub enum Outcome {
    /// Resume the same vCPU.
    Continue,
    /// Move to the next vCPU.
    Yield,
    /// The TD is over.
    Stop(Stop),
}

fn died(td: &Td, vcpu: usize, why: alloc::string::String) -> Outcome {
    Outcome::Stop(Stop::Died {
        vcpu: vcpu as u32,
        rip: td.vcpus[vcpu].rip(),
        why,
    })
}

/// The paging registers of `vcpu`.
pub fn paging(td: &Td, vcpu: usize) -> Paging {
    let vmcb = &td.vcpus[vcpu].vmcb;
    Paging {
        cr0: vmcb.read64(save::CR0),
        cr3: vmcb.read64(save::CR3),
        cr4: vmcb.read64(save::CR4),
        efer: vmcb.read64(save::EFER),
    }
}

/// The instruction bytes at `vcpu`'s RIP (CS base included).
pub fn instruction_bytes(td: &mut Td, vcpu: usize, out: &mut [u8]) -> bool {
    let paging = paging(td, vcpu);
    let v = &td.vcpus[vcpu];
    let rip = v.vmcb.segment_base(save::CS).wrapping_add(v.rip());
    guest_walk::read(&mut td.npt, paging, rip, out)
}

/// Makes a #VE with `info` pending on `vcpu` and delivers vector 20.
pub fn inject_ve(td: &mut Td, vcpu: usize, info: VeInfo) -> Outcome {
    if !td.module.inject_ve(vcpu as u32, info) {
        // The previous #VE's information was never read: a TD takes a double fault there.
        return died(
            td,
            vcpu,
            alloc::format!(
                "#VE (exit reason {}) while the previous #VE was unread: a double fault in a TD",
                info.exit_reason
            ),
        );
    }
    td.counters.ve_injected += 1;
    let rip = td.vcpus[vcpu].rip();
    if td.ve_storm.observe(rip) {
        return died(
            td,
            vcpu,
            alloc::format!(
                "a #VE storm: {} #VEs in a row at RIP {rip:#x} (exit reason {})",
                td.ve_storm.current().1,
                info.exit_reason
            ),
        );
    }
    td.vcpus[vcpu].inject_exception(20);
    Outcome::Continue
}

pub fn instruction_ve(
    td: &mut Td,
    vcpu: usize,
    exit_reason: u32,
    len: u32,
    qualification: u64,
) -> Outcome {
    let info = VeInfo {
        exit_reason,
        exit_qualification: qualification,
        instruction_length: len,
        ..VeInfo::default()
    };
    inject_ve(td, vcpu, info)
}

/// Handles the exit `td.vcpus[vcpu]` just made.
pub fn handle(td: &mut Td, vcpu: usize) -> Outcome {
    let code = td.vcpus[vcpu].vmcb.read64(control::EXIT_CODE);
    let info1 = td.vcpus[vcpu].vmcb.read64(control::EXIT_INFO_1);
    let info2 = td.vcpus[vcpu].vmcb.read64(control::EXIT_INFO_2);
    match code {
        exit::INTR => Outcome::Continue,
        exit::CR0_WRITE | exit::CR3_WRITE | exit::CR4_WRITE => {
            cr_write(td, vcpu, (code - exit::CR0_WRITE) as u8)
        }
        c if c == exit::EXCEPTION + 6 => tdcall_service::on_invalid_opcode(td, vcpu),
        exit::CPUID => cpuid(td, vcpu),
        exit::MSR => crate::td_msr::handle(td, vcpu, info1 != 0),
        exit::HLT => instruction_ve(td, vcpu, VeInfo::EXIT_REASON_HLT, 1, 0),
        // WBINVD and INVD are #VE in a TD (Linux handles WBINVD's through TDVMCALL 54).
        exit::WBINVD => instruction_ve(td, vcpu, EXIT_REASON_WBINVD, 2, 0),
        exit::INVD => instruction_ve(td, vcpu, EXIT_REASON_INVD, 2, 0),
        // A TD has no MONITOR/MWAIT (not enumerated) and no VMMCALL: they are undefined.
        exit::MONITOR | exit::MWAIT | exit::VMMCALL => {
            td.vcpus[vcpu].inject_exception(6);
            Outcome::Continue
        }
        exit::IOIO => {
            let len = info2.wrapping_sub(td.vcpus[vcpu].rip()) as u32;
            instruction_ve(
                td,
                vcpu,
                VeInfo::EXIT_REASON_IO,
                len,
                io_qualification(info1),
            )
        }
        exit::NPF => nested_page_fault(td, vcpu, info1, info2),
        exit::SHUTDOWN => Outcome::Stop(Stop::Shutdown {
            vcpu: vcpu as u32,
            rip: td.vcpus[vcpu].rip(),
        }),
        exit::INVALID => died(
            td,
            vcpu,
            alloc::format!(
                "VMRUN refused the vCPU state (EFER {:#x}, CR0 {:#x}, CR4 {:#x})",
                td.vcpus[vcpu].vmcb.read64(save::EFER),
                td.vcpus[vcpu].vmcb.read64(save::CR0),
                td.vcpus[vcpu].vmcb.read64(save::CR4)
            ),
        ),
        other => died(
            td,
            vcpu,
            alloc::format!(
                "VM exit {other:#x} (info {info1:#x}, {info2:#x}) that a TD does not make or tdx-sim does not handle"
            ),
        ),
    }
}

/// The VMX exit qualification a TD's #VE carries for an IN/OUT, from SVM's IOIO EXITINFO1.
///
/// SVM: bit 0 IN, bit 2 string, bit 3 REP, bits 6:4 the size one-hot (1, 2, 4 bytes), bits
/// 31:16 the port. VMX: bits 2:0 size - 1, bit 3 IN, bit 4 string, bit 5 REP, bits 31:16 port.
pub fn io_qualification(info1: u64) -> u64 {
    let size = match (info1 >> 4) & 7 {
        1 => 1,
        2 => 2,
        _ => 4,
    };
    (size - 1)
        | (info1 & 1) << 3
        | ((info1 >> 2) & 1) << 4
        | ((info1 >> 3) & 1) << 5
        | ((info1 >> 16) & 0xffff) << 16
}

/// `mov crN, reg` in the reset vector: `0F 22 /r`, register operand in ModRM.rm.
fn cr_write(td: &mut Td, vcpu: usize, cr: u8) -> Outcome {
    let mut bytes = [0u8; 3];
    if !instruction_bytes(td, vcpu, &mut bytes) || bytes[0] != 0x0f || bytes[1] != 0x22 {
        return died(
            td,
            vcpu,
            alloc::format!("a CR{cr} write that is not MOV to CR ({bytes:02x?})"),
        );
    }
    let value = td.vcpus[vcpu].gpr(bytes[2] & 7);
    let v = &mut td.vcpus[vcpu];
    match boot_paging::write_cr(&mut v.phase, &mut v.vmcb, cr, value) {
        CrWrite::Done => {
            v.skip(3);
            Outcome::Continue
        }
        CrWrite::EnteredOwnPaging => {
            v.skip(3);
            let intercepts = v.vmcb.read32(control::CR_INTERCEPTS) & !CR_WRITE_INTERCEPTS;
            v.vmcb.write32(control::CR_INTERCEPTS, intercepts);
            v.vmcb.write8(control::TLB_CONTROL, 1);
            Outcome::Continue
        }
        CrWrite::Unsupported => died(
            td,
            vcpu,
            alloc::format!("CR{cr} write of {value:#x} that tdx-sim does not play"),
        ),
    }
}

fn cpuid(td: &mut Td, vcpu: usize) -> Outcome {
    let leaf = td.vcpus[vcpu].gpr(0) as u32;
    let subleaf = td.vcpus[vcpu].gpr(1) as u32;
    let v = &td.vcpus[vcpu];
    let state = VcpuCpuidState {
        vcpu_index: vcpu as u32,
        x2apic_id: vcpu as u32,
        cpl: v.vmcb.read8(save::CPL),
        cr4_osxsave: v.vmcb.read64(save::CR4) & (1 << 18) != 0,
        cr4_pke: v.vmcb.read64(save::CR4) & (1 << 22) != 0,
        long_mode: v.vmcb.read64(save::EFER) & (1 << 10) != 0,
        ..VcpuCpuidState::default()
    };
    let config = CpuidConfig {
        logical_processors: td.vcpus.len() as u8,
        ..CpuidConfig::default()
    };
    let host = |leaf, subleaf| {
        let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
        CpuidValues::new(r.eax, r.ebx, r.ecx, r.edx)
    };
    match td_cpuid(leaf, subleaf, &config, &state, host) {
        CpuidDecision::Module { values, .. } => {
            let v = &mut td.vcpus[vcpu];
            v.set_gpr(0, values.eax.into());
            v.set_gpr(3, values.ebx.into());
            v.set_gpr(1, values.ecx.into());
            v.set_gpr(2, values.edx.into());
            v.skip(2);
            Outcome::Continue
        }
        CpuidDecision::VirtualizationException(_) => {
            instruction_ve(td, vcpu, VeInfo::EXIT_REASON_CPUID, 2, 0)
        }
    }
}

fn nested_page_fault(td: &mut Td, vcpu: usize, error: u64, gpa: u64) -> Outcome {
    if gpa & SHARED_BIT != 0 {
        // EPT violation qualification: bit 0 read, bit 1 write, bit 2 fetch.
        let qualification = if error & 0x10 != 0 {
            4
        } else if error & 2 != 0 {
            2
        } else {
            1
        };
        let info = VeInfo {
            exit_reason: VeInfo::EXIT_REASON_EPT_VIOLATION,
            exit_qualification: qualification,
            guest_physical_address: gpa,
            ..VeInfo::default()
        };
        return inject_ve(td, vcpu, info);
    }
    let state = td.module.page_state(gpa);
    died(
        td,
        vcpu,
        alloc::format!(
            "access to private GPA {gpa:#x} in state {state:?} (error code {error:#x}): with SEPT_VE_DISABLE the TD cannot continue"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::io_qualification;

    #[test]
    fn io_exits_become_the_qualification_a_td_reads() {
        // OUT to COM1 (0x3f8), one byte: SVM size bit 4.
        assert_eq!(io_qualification(0x03f8_0010), 0x03f8_0000);
        // IN of a dword from 0xcfc: IN, size bit 6.
        assert_eq!(io_qualification(0x0cfc_0041), 0x0cfc_0000 | 3 | 1 << 3);
        // REP INSW from 0x1f0: IN, string, REP, size bit 5.
        assert_eq!(
            io_qualification(0x01f0_002d),
            0x01f0_0000 | 1 | 1 << 3 | 1 << 4 | 1 << 5
        );
        // Bits SVM sets elsewhere (segment, address size: 12:7) do not leak into VMX's.
        assert_eq!(io_qualification(0x0080_0f90), 0x0080_0000);
    }
}
