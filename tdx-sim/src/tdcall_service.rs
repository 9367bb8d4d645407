//! TDCALL: the instruction does not exist on the emulated CPU, so it raises #UD in the guest,
//! which tdx-sim intercepts. When the bytes at RIP are TDCALL's (`66 0F 01 CC`) the call is
//! served by the TDX module (tdx-boot's model) with the guest's registers, and the guest
//! resumes after it; any other #UD is the guest's own and is delivered to it.
//!
//! After the module has answered, tdx-sim does what the host side of the call needs: pages
//! ACCEPT made private are mapped, MapGPA's conversions reach the nested tables, HLT
//! deschedules the vCPU, ReportFatalError ends the TD.

use crate::exits::{Outcome, Stop, instruction_bytes};
use crate::td::{Milestone, Td};
use crate::vcpu::RunState;
use tdx_boot::tdcall::vmcall::function;
use tdx_boot::tdcall::{Regs, TdCall, leaf};

/// TDCALL's encoding.
pub const TDCALL: [u8; 4] = [0x66, 0x0f, 0x01, 0xcc];
/// The #UD vector.
const UD: u8 = 6;

fn regs_of(td: &Td, vcpu: usize) -> Regs {
    let v = &td.vcpus[vcpu];
    Regs {
        rax: v.gpr(0),
        rcx: v.gpr(1),
        rdx: v.gpr(2),
        rbx: v.gpr(3),
        rsi: v.gpr(6),
        rdi: v.gpr(7),
        r8: v.gpr(8),
        r9: v.gpr(9),
        r10: v.gpr(10),
        r11: v.gpr(11),
        r12: v.gpr(12),
        r13: v.gpr(13),
        r14: v.gpr(14),
        r15: v.gpr(15),
    }
}

fn set_regs(td: &mut Td, vcpu: usize, regs: &Regs) {
    let v = &mut td.vcpus[vcpu];
    for (n, value) in [
        (0, regs.rax),
        (1, regs.rcx),
        (2, regs.rdx),
        (3, regs.rbx),
        (6, regs.rsi),
        (7, regs.rdi),
        (8, regs.r8),
        (9, regs.r9),
        (10, regs.r10),
        (11, regs.r11),
        (12, regs.r12),
        (13, regs.r13),
        (14, regs.r14),
        (15, regs.r15),
    ] {
        v.set_gpr(n, value);
    }
}

/// A #UD in the guest: TDCALL, or the guest's own fault.
pub fn on_invalid_opcode(td: &mut Td, vcpu: usize) -> Outcome {
    let mut bytes = [0u8; 4];
    if !instruction_bytes(td, vcpu, &mut bytes) || bytes != TDCALL {
        td.vcpus[vcpu].inject_exception(UD);
        return Outcome::Continue;
    }
    let before = regs_of(td, vcpu);
    let mut regs = before;

    if td.counters.tdcalls == 0 {
        let rip = td.vcpus[vcpu].rip();
        td.milestone(
            Milestone::FirstTdcall,
            format_args!("leaf {} from vCPU {vcpu} at RIP {rip:#x}", regs.rax),
        );
    }
    // SAFETY: the module writes guest memory only through the backing it was given, which is
    // the host memory of the TD's own RAM and firmware.
    unsafe { td.module.vcpu(vcpu as u32).tdcall(&mut regs) };
    set_regs(td, vcpu, &regs);

    td.vcpus[vcpu].skip(TDCALL.len() as u64);
    td.counters.tdcalls += 1;
    match before.rax {
        leaf::MEM_PAGE_ACCEPT => {
            td.counters.accepts += 1;
            let gpa = before.rcx & 0x000f_ffff_ffff_f000;
            let len = if before.rcx & 7 == 1 { 2 << 20 } else { 4096 };
            td.sync_mappings(gpa, gpa.saturating_add(len));
            Outcome::Continue
        }
        leaf::VP_VMCALL => after_vmcall(td, vcpu, &before),
        _ => Outcome::Continue,
    }
}

fn after_vmcall(td: &mut Td, vcpu: usize, before: &Regs) -> Outcome {
    td.counters.vmcalls += 1;
    td.counters.last_vmcall = [before.r11, before.r12, before.r13, before.r14];
    if let Some(code) = td.debug_exit.take() {
        return Outcome::Stop(Stop::DebugExit(code));
    }
    match before.r11 {
        function::MAP_GPA => {
            let start = before.r12 & !crate::layout::SHARED_BIT;
            td.sync_mappings(start, start.saturating_add(before.r13));
            Outcome::Continue
        }
        // TDVF's relocated AP loop asks for its APIC ID once before it waits on the mailbox.
        function::CPUID if vcpu != 0 && before.r12 == 0xb => {
            td.parked_aps |= 1 << vcpu;
            if td.parked_aps.count_ones() as usize + 1 == td.vcpus.len() {
                td.milestone(
                    Milestone::ApsInMailboxLoop,
                    format_args!("every AP asked for its APIC ID from TDVF's mailbox loop"),
                );
            }
            Outcome::Continue
        }
        function::HLT => {
            td.vcpus[vcpu].state = RunState::Halted;
            Outcome::Yield
        }
        function::REPORT_FATAL_ERROR => match td.module.fatal_error() {
            Some((code, message)) => Outcome::Stop(Stop::FatalError(code, message)),
            None => Outcome::Continue,
        },
        _ => Outcome::Continue,
    }
}
