//! What each VM exit means for a TD, following the TDX module's rules: TDCALL (a #UD here) is
//! served by the module; CPUID, HLT, IN/OUT, MSRs, WBINVD and MONITOR/MWAIT become the #VE a
//! TD gets; a nested page fault on a shared GPA is an EPT-violation #VE, one on a private page
//! the TD has not accepted ends the TD (SEPT_VE_DISABLE); the reset vector's CR writes are
//! played as paging-off (see [`crate::boot_paging`]).

use crate::boot_paging::{self, CrWrite};
use crate::guest_walk::{self, Paging};
use crate::layout::SHARED_BIT;
use crate::module_cpuid::{VcpuMode, module_cpuid};
use crate::td::Td;
use crate::tdcall_service;
use crate::vcpu::CR_WRITE_INTERCEPTS;
use crate::vmcb::{control, exit, save};
use tdx_boot::tdcall::VeInfo;
use tdx_sim::cpuid_rules::CpuidDecision;
use tdx_sim::fault_address::{AddressRegisters, Unresolved, memory_access};

/// VMX exit reasons the #VE information carries for WBINVD and INVD.
const EXIT_REASON_WBINVD: u32 = 54;
const EXIT_REASON_INVD: u32 = 13;

/// EFER.LMA, and CS.L in the VMCB's packed segment attributes: together, 64-bit mode.
const EFER_LMA: u64 = 1 << 10;
const CS_ATTRIBUTE_L: u32 = 1 << 9;
/// The longest x86 instruction.
const MAX_INSTRUCTION_LENGTH: usize = 15;

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
    let mode = VcpuMode::of(&td.vcpus[vcpu].vmcb);
    let vcpus = td.vcpus.len() as u32;
    match module_cpuid(vcpu as u32, vcpus, mode, leaf, subleaf) {
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

/// SVM's nested-page-fault EXITINFO1 (AMD APM vol. 2, "Nested Page Faults"): bit 1 a write,
/// bit 4 an instruction fetch; bit 32 the fault was on the guest's final physical address, bit
/// 33 on a guest page-table entry during the walk. QEMU's TCG sets both kinds.
const NPF_WRITE: u64 = 1 << 1;
const NPF_FETCH: u64 = 1 << 4;
const NPF_FINAL_TRANSLATION: u64 = 1 << 32;

/// EPT-violation exit qualification (Intel SDM vol. 3C, "Exit Qualification for EPT
/// Violations"): bits 2:0 the access (read, write, fetch); bits 5:3 what the EPT entry allowed,
/// 0 here as the entry is not present; bit 7 the guest-linear-address field is valid; bit 8,
/// when bit 7 is set, the access was to the translation of that linear address, not to a
/// paging-structure entry during the walk.
const EPT_READ: u64 = 1 << 0;
const EPT_WRITE: u64 = 1 << 1;
const EPT_FETCH: u64 = 1 << 2;
const EPT_GLA_VALID: u64 = 1 << 7;
const EPT_GLA_TRANSLATED: u64 = 1 << 8;

/// The VMX qualification and guest linear address of the EPT violation behind a nested page
/// fault with EXITINFO1 `npf_error`; `linear` is the linear address whose final translation
/// faulted, when known.
pub fn ept_violation_qualification(npf_error: u64, linear: Option<u64>) -> (u64, u64) {
    let access = if npf_error & NPF_FETCH != 0 {
        EPT_FETCH
    } else if npf_error & NPF_WRITE != 0 {
        EPT_WRITE
    } else {
        EPT_READ
    };
    match linear {
        Some(gla) => (access | EPT_GLA_VALID | EPT_GLA_TRANSLATED, gla),
        None => (access, 0),
    }
}

/// Why a nested page fault's guest linear address is not reported.
enum LinearAddressUnknown {
    /// The fault was on a guest page-table entry, not the access's own translation.
    PageWalk,
    /// The vCPU is not in 64-bit mode.
    NotLongMode,
    /// The instruction bytes at RIP are not readable.
    UnreadableInstruction,
    /// The instruction gives no one address.
    Unresolved(Unresolved),
    /// The guest's tables do not take the computed address to the faulting GPA.
    Mismatch {
        linear: u64,
        translated: Option<u64>,
    },
}

impl core::fmt::Display for LinearAddressUnknown {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::PageWalk => f.write_str("the fault was in the guest's page walk"),
            Self::NotLongMode => f.write_str("the vCPU is not in 64-bit mode"),
            Self::UnreadableInstruction => f.write_str("the instruction bytes are not mapped"),
            Self::Unresolved(why) => write!(f, "the instruction gives no one address: {why:?}"),
            Self::Mismatch { linear, translated } => write!(
                f,
                "the guest's tables take {linear:#x} to {translated:x?}, not the faulting GPA"
            ),
        }
    }
}

/// The guest linear address of the access that made `vcpu`'s nested page fault on `gpa`:
/// computed from the instruction at RIP (a fetch: RIP itself), and confirmed by walking the
/// guest's page tables to `gpa`, page offset included.
fn faulting_linear_address(
    td: &mut Td,
    vcpu: usize,
    npf_error: u64,
    gpa: u64,
) -> Result<u64, LinearAddressUnknown> {
    if npf_error & NPF_FINAL_TRANSLATION == 0 {
        return Err(LinearAddressUnknown::PageWalk);
    }
    let v = &td.vcpus[vcpu];
    let cs_long = v.vmcb.read32(save::CS) >> 16 & CS_ATTRIBUTE_L != 0;
    if v.vmcb.read64(save::EFER) & EFER_LMA == 0 || !cs_long {
        return Err(LinearAddressUnknown::NotLongMode);
    }
    let registers = AddressRegisters {
        gprs: core::array::from_fn(|n| v.gpr(n as u8)),
        rip: v.rip(),
        fs_base: v.vmcb.segment_base(save::FS),
        gs_base: v.vmcb.segment_base(save::GS),
    };
    let linear = if npf_error & NPF_FETCH != 0 {
        registers.rip
    } else {
        // The longest instruction, or, where the next page is not mapped, what RIP's page
        // holds: the instruction may end before that page does.
        let mut whole = [0u8; MAX_INSTRUCTION_LENGTH];
        let to_page_end = 4096 - (registers.rip % 4096) as usize;
        let bytes = if instruction_bytes(td, vcpu, &mut whole) {
            &whole[..]
        } else {
            let in_page = &mut whole[..to_page_end.min(MAX_INSTRUCTION_LENGTH)];
            if !instruction_bytes(td, vcpu, in_page) {
                return Err(LinearAddressUnknown::UnreadableInstruction);
            }
            &in_page[..]
        };
        memory_access(bytes, &registers)
            .map_err(LinearAddressUnknown::Unresolved)?
            .linear_address
    };
    let paging = paging(td, vcpu);
    let translated = guest_walk::translate(&mut td.npt, paging, linear);
    if translated != Some(gpa) {
        return Err(LinearAddressUnknown::Mismatch { linear, translated });
    }
    Ok(linear)
}

fn nested_page_fault(td: &mut Td, vcpu: usize, error: u64, gpa: u64) -> Outcome {
    if gpa & SHARED_BIT != 0 {
        let found = faulting_linear_address(td, vcpu, error, gpa);
        let counters = &mut td.counters;
        counters.ept_ve += 1;
        counters.ept_ve_with_linear_address += u64::from(found.is_ok());
        if let Err(why) = &found
            && counters.ept_ve - counters.ept_ve_with_linear_address == 1
        {
            // The first only: a TD could make many.
            crate::println!(
                "tdx-sim: EPT-violation #VE for GPA {gpa:#x} at RIP {:#x} without its guest linear address: {why}",
                td.vcpus[vcpu].rip()
            );
        }
        let (qualification, gla) = ept_violation_qualification(error, found.ok());
        let info = VeInfo {
            exit_reason: VeInfo::EXIT_REASON_EPT_VIOLATION,
            exit_qualification: qualification,
            guest_linear_address: gla,
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
    use super::{ept_violation_qualification, io_qualification};

    #[test]
    fn ept_violations_carry_the_access_and_a_linear_address_only_when_known() {
        // SVM error codes as QEMU's TCG makes them for a not-present nested entry: US always,
        // bit 32 for the final translation.
        let read = 1 << 2 | 1 << 32;
        let write = read | 1 << 1;
        let fetch = read | 1 << 4;
        // Known: bit 7 (GLA valid) and bit 8 (the final translation), the address as given.
        assert_eq!(
            ept_violation_qualification(read, Some(0xffff_8000_fec0_0000)),
            (1 | 1 << 7 | 1 << 8, 0xffff_8000_fec0_0000)
        );
        assert_eq!(
            ept_violation_qualification(write, Some(0x10)),
            (2 | 1 << 7 | 1 << 8, 0x10)
        );
        assert_eq!(
            ept_violation_qualification(fetch, Some(0x20)),
            (4 | 1 << 7 | 1 << 8, 0x20)
        );
        // Unknown: neither bit, and no address; a fetch that also writes is a fetch.
        assert_eq!(ept_violation_qualification(write, None), (2, 0));
        assert_eq!(ept_violation_qualification(fetch | 1 << 1, None), (4, 0));
        // A linear address of 0 is still a valid one.
        assert_eq!(
            ept_violation_qualification(read, Some(0)).0,
            1 | 1 << 7 | 1 << 8
        );
    }

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
