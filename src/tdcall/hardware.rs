//! [`Hardware`]: the TDCALL instruction itself.

use super::{Regs, TdCall, TdxStatus, leaf};
use core::arch::asm;
use core::mem::offset_of;

/// The real TDX module, reached with the TDCALL instruction (`66 0F 01 CC`).
///
/// Executing it outside a TD raises #UD (on QEMU TCG and on non-TDX hardware); a kernel that
/// wants to run its TD paths without TDX can service that #UD from the model.
///
/// A TDG.VP.VMCALL whose RCX would expose RBP or an XMM register to the VMM is refused with
/// `TDX_OPERAND_INVALID` before the instruction (see [`TdCall::tdcall`] for `Hardware`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Hardware;

// One asm body serves both entry points; `$sti` is either empty or "sti". The register file is
// loaded from and stored back to `Regs` through a pointer kept on the stack, because TDCALL may
// use every general-purpose register but RSP and RBP. RBX cannot be an asm operand in Rust, so it
// is saved and restored by hand. After the results are stored, every register the VMM or module
// could have written is zeroed so no later code (or speculation) consumes a VMM-chosen value.
macro_rules! tdcall_asm {
    ($regs:expr, $sti:literal) => {
        asm!(
            "push rbx",
            "push rax",
            "mov rcx, [rax + {rcx}]",
            "mov rdx, [rax + {rdx}]",
            "mov rbx, [rax + {rbx}]",
            "mov rsi, [rax + {rsi}]",
            "mov rdi, [rax + {rdi}]",
            "mov r8, [rax + {r8}]",
            "mov r9, [rax + {r9}]",
            "mov r10, [rax + {r10}]",
            "mov r11, [rax + {r11}]",
            "mov r12, [rax + {r12}]",
            "mov r13, [rax + {r13}]",
            "mov r14, [rax + {r14}]",
            "mov r15, [rax + {r15}]",
            "mov rax, [rax + {rax}]",
            $sti,
            // TDCALL, spelled as bytes so no assembler support is needed.
            ".byte 0x66, 0x0f, 0x01, 0xcc",
            "push rax",
            "mov rax, [rsp + 8]",
            "mov [rax + {rcx}], rcx",
            "mov [rax + {rdx}], rdx",
            "mov [rax + {rbx}], rbx",
            "mov [rax + {rsi}], rsi",
            "mov [rax + {rdi}], rdi",
            "mov [rax + {r8}], r8",
            "mov [rax + {r9}], r9",
            "mov [rax + {r10}], r10",
            "mov [rax + {r11}], r11",
            "mov [rax + {r12}], r12",
            "mov [rax + {r13}], r13",
            "mov [rax + {r14}], r14",
            "mov [rax + {r15}], r15",
            "pop rcx",
            "mov [rax + {rax}], rcx",
            "add rsp, 8",
            "pop rbx",
            "xor eax, eax",
            "xor ecx, ecx",
            "xor edx, edx",
            "xor esi, esi",
            "xor edi, edi",
            "xor r8d, r8d",
            "xor r9d, r9d",
            "xor r10d, r10d",
            "xor r11d, r11d",
            "xor r12d, r12d",
            "xor r13d, r13d",
            "xor r14d, r14d",
            "xor r15d, r15d",
            rax = const offset_of!(Regs, rax),
            rcx = const offset_of!(Regs, rcx),
            rdx = const offset_of!(Regs, rdx),
            rbx = const offset_of!(Regs, rbx),
            rsi = const offset_of!(Regs, rsi),
            rdi = const offset_of!(Regs, rdi),
            r8 = const offset_of!(Regs, r8),
            r9 = const offset_of!(Regs, r9),
            r10 = const offset_of!(Regs, r10),
            r11 = const offset_of!(Regs, r11),
            r12 = const offset_of!(Regs, r12),
            r13 = const offset_of!(Regs, r13),
            r14 = const offset_of!(Regs, r14),
            r15 = const offset_of!(Regs, r15),
            inout("rax") $regs as *mut Regs => _,
            out("rcx") _, out("rdx") _, out("rsi") _, out("rdi") _,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
            // Neither `nomem` nor `readonly`: ACCEPT zeroes memory, REPORT writes a buffer,
            // RTMR.EXTEND reads one. Not `nostack`: the body pushes.
        )
    };
}

/// RCX bits of TDG.VP.VMCALL that would let the VMM write registers the asm does not restore:
/// RBP (bit 5) and XMM0..15 (bits 31:16). The module accepts both and loads the VMM's values into
/// them on return, but Rust asm cannot name RBP as an operand, and a kernel built without SSE
/// cannot declare XMM clobbers. No sub-function passes anything in them.
const UNPRESERVED_VMCALL_EXPOSURE: u64 = (1 << 5) | 0xffff_0000;

/// TDX_OPERAND_INVALID with RCX (operand id 1) as the offending operand, as the module reports a
/// bad TDG.VP.VMCALL control.
const OPERAND_INVALID_RCX: u64 = TdxStatus::OPERAND_INVALID.raw() | 1;

/// Whether `regs` asks for a TDG.VP.VMCALL that would hand the VMM a register the asm cannot
/// protect; such a call is answered with [`OPERAND_INVALID_RCX`] without executing TDCALL.
fn exposes_unpreserved_registers(regs: &Regs) -> bool {
    regs.rax == leaf::VP_VMCALL && regs.rcx & UNPRESERVED_VMCALL_EXPOSURE != 0
}

impl TdCall for Hardware {
    /// Executes TDCALL, except that a TDG.VP.VMCALL whose RCX exposes RBP (bit 5) or any XMM
    /// register (bits 31:16) is refused with `TDX_OPERAND_INVALID` (operand RCX) without
    /// executing it: the VMM could change those registers, which this code cannot restore.
    unsafe fn tdcall(&self, regs: &mut Regs) {
        if exposes_unpreserved_registers(regs) {
            regs.rax = OPERAND_INVALID_RCX;
            return;
        }
        // SAFETY: the asm reads and writes only `*regs` and its own stack slots, restores RBX and
        // RSP, and declares every other general-purpose register it changes; RBP and the XMM
        // registers are never exposed to the VMM (checked above) and no other leaf writes them.
        // What the TDX module does to memory is the caller's responsibility under
        // `TdCall::tdcall`'s contract.
        unsafe { tdcall_asm!(regs, "") }
    }

    unsafe fn tdcall_enabling_interrupts(&self, regs: &mut Regs) {
        if exposes_unpreserved_registers(regs) {
            regs.rax = OPERAND_INVALID_RCX;
            return;
        }
        // SAFETY: as in `tdcall`; enabling interrupts is allowed by this method's contract.
        unsafe { tdcall_asm!(regs, "sti") }
    }
}
