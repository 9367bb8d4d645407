//! TDG.VP.VMCALL: what the module checks, what the VMM sees, and what comes back.
//!
//! The module checks RCX (the GPR_SELECT mask in bits 15:0, XMM_SELECT in 31:16): RAX, RCX and
//! RSP (bits 0, 1, 4) may not be exposed, nor RBP (bit 5) when CONFIG_FLAGS.NO_RBP_MOD is set,
//! and bits 63:32 are reserved; any of them set means `TDX_OPERAND_INVALID` (operand RCX)
//! [tdx-module `tdg_vp_vmcall.c`]. The module does not require R10/R11 to be exposed; but
//! the VMM reads an unexposed register as 0 (sub-function 0 is unknown), and its status never
//! reaches an unexposed R10.
//!
//! The VMM sees only exposed registers; unexposed ones read as 0 there and are preserved for
//! the guest. After the call every exposed register holds what the VMM left in it: the
//! sub-function's outputs and R10 = status, and [`VMM_GARBAGE`] (plus the register number)
//! in every other exposed register, so a wrapper that trusts an undefined output fails.

use super::{OPERAND_RCX, TD_KILLED_STATUS, TdxModule, status_with_operand};
use crate::tdcall::{Regs, TdxStatus, VmcallStatus};

/// What an exposed register that is not an output of the sub-function holds after the call:
/// this value with the register number (2 = RDX ... 15 = R15) in the low byte.
pub const VMM_GARBAGE: u64 = 0xDEAD_BEEF_0000_0000;

/// Register numbers as in RCX's mask and the module's operand ids.
pub(crate) const RDX: usize = 2;
pub(crate) const RBX: usize = 3;
pub(crate) const RSI: usize = 6;
pub(crate) const RDI: usize = 7;
pub(crate) const R8: usize = 8;
pub(crate) const R9: usize = 9;
pub(crate) const R10: usize = 10;
pub(crate) const R11: usize = 11;
pub(crate) const R12: usize = 12;
pub(crate) const R13: usize = 13;
pub(crate) const R14: usize = 14;
pub(crate) const R15: usize = 15;

/// The general-purpose registers as the VMM sees them, indexed by register number.
pub(crate) type VmmRegs = [u64; 16];

/// The VMM's answer: the status for R10 and the output registers it defines.
#[derive(Clone, Copy, Debug)]
pub(crate) struct VmmReply {
    pub(crate) status: u64,
    pub(crate) outputs: [Option<u64>; 16],
}

impl VmmReply {
    /// Success with no outputs.
    pub(crate) fn success() -> Self {
        Self::status(VmcallStatus::SUCCESS_RAW)
    }

    /// `status` with no outputs.
    pub(crate) fn status(status: u64) -> Self {
        Self {
            status,
            outputs: [None; 16],
        }
    }

    /// INVALID_OPERAND.
    pub(crate) fn invalid() -> Self {
        Self::status(VmcallStatus::INVALID_OPERAND_RAW)
    }

    /// Adds output register `reg` = `value`.
    pub(crate) fn with(mut self, reg: usize, value: u64) -> Self {
        if let Some(slot) = self.outputs.get_mut(reg) {
            *slot = Some(value);
        }
        self
    }
}

fn reg_mut(regs: &mut Regs, number: usize) -> Option<&mut u64> {
    Some(match number {
        RDX => &mut regs.rdx,
        RBX => &mut regs.rbx,
        RSI => &mut regs.rsi,
        RDI => &mut regs.rdi,
        R8 => &mut regs.r8,
        R9 => &mut regs.r9,
        R10 => &mut regs.r10,
        R11 => &mut regs.r11,
        R12 => &mut regs.r12,
        R13 => &mut regs.r13,
        R14 => &mut regs.r14,
        R15 => &mut regs.r15,
        // RAX/RCX/RSP cannot be exposed; RBP is not in `Regs` (it never carries arguments).
        _ => return None,
    })
}

impl TdxModule {
    /// TDG.VP.VMCALL from `vcpu`: returns the TDCALL status (RAX).
    pub(super) fn vp_vmcall(&self, vcpu: u32, regs: &mut Regs, sti: bool) -> u64 {
        let gpr_select = regs.rcx & 0xffff;
        let mut forbidden = (1 << 0) | (1 << 1) | (1 << 4);
        if self.config.no_rbp_mod {
            forbidden |= 1 << 5;
        }
        if gpr_select & forbidden != 0 || regs.rcx >> 32 != 0 {
            return status_with_operand(TdxStatus::OPERAND_INVALID, OPERAND_RCX);
        }
        let exposed = |n: usize| gpr_select & (1 << n) != 0;
        let mut seen: VmmRegs = [0; 16];
        for (n, slot) in seen.iter_mut().enumerate() {
            if exposed(n)
                && let Some(value) = reg_mut(regs, n)
            {
                *slot = *value;
            }
        }
        let reply = self.vmm_handle(vcpu, &seen, sti);
        if self.is_dead() {
            // The VMM stopped the TD (a MapGPA QEMU cannot carry out): the TDCALL never returns.
            return TD_KILLED_STATUS;
        }
        for n in 2..16 {
            if !exposed(n) {
                continue;
            }
            let value = if n == R10 {
                reply.status
            } else if let Some(value) = reply.outputs.get(n).copied().flatten() {
                value
            } else if self.config.vmm_clobbers_exposed {
                VMM_GARBAGE | n as u64
            } else {
                seen.get(n).copied().unwrap_or(0)
            };
            if let Some(slot) = reg_mut(regs, n) {
                *slot = value;
            }
        }
        TdxStatus::SUCCESS.raw()
    }
}
