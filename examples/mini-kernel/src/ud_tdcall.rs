//! TDCALL without TDX: the #UD handler that answers the instruction from a TDX module model.
//!
//! Outside a TD the TDCALL instruction (`66 0F 01 CC`) raises #UD. This handler checks that the
//! faulting instruction is TDCALL, hands the saved registers to the installed module (leaf in
//! RAX, inputs in the other registers, as the instruction takes them), writes the results back
//! into the frame and resumes after the instruction. The crate's real asm wrapper
//! (`tdx_boot::tdcall::Hardware`) thus runs unchanged and sees the model's answers.

use core::sync::atomic::{AtomicU64, Ordering};
use tdx_boot::tdcall::Regs;
use tdx_boot::ve::Frame;

/// The TDCALL instruction's bytes.
const TDCALL: [u8; 4] = [0x66, 0x0f, 0x01, 0xcc];

/// Executes one TDCALL for the vCPU with the given index.
pub type Module = &'static (dyn Fn(u32, &mut Regs) + Sync);

static MODULE: spin::Once<Module> = spin::Once::new();
static EMULATED: AtomicU64 = AtomicU64::new(0);

/// Installs the module that answers TDCALLs from now on.
pub fn install(module: Module) {
    MODULE.call_once(|| module);
}

/// How many TDCALLs the handler answered.
pub fn emulated_count() -> u64 {
    EMULATED.load(Ordering::Relaxed)
}

/// Handles a #UD; false if it was not a TDCALL (or no module is installed).
pub fn handle(frame: &mut Frame) -> bool {
    let Some(module) = MODULE.get() else {
        return false;
    };
    // SAFETY: RIP is the address of the instruction that raised #UD, which was just fetched, so
    // its bytes are mapped and readable (a TDCALL is 4 bytes; a shorter instruction at the end of
    // the mapping cannot have been fetched as TDCALL, and its neighbours are kernel text).
    let bytes = unsafe { core::ptr::read_unaligned(frame.rip as *const [u8; 4]) };
    if bytes != TDCALL {
        return false;
    }
    let mut regs = Regs {
        rax: frame.rax,
        rcx: frame.rcx,
        rdx: frame.rdx,
        rbx: frame.rbx,
        rsi: frame.rsi,
        rdi: frame.rdi,
        r8: frame.r8,
        r9: frame.r9,
        r10: frame.r10,
        r11: frame.r11,
        r12: frame.r12,
        r13: frame.r13,
        r14: frame.r14,
        r15: frame.r15,
    };
    let cpu = crate::percpu::current().map_or(0, |c| c.index);
    module(cpu, &mut regs);
    frame.rax = regs.rax;
    frame.rcx = regs.rcx;
    frame.rdx = regs.rdx;
    frame.rbx = regs.rbx;
    frame.rsi = regs.rsi;
    frame.rdi = regs.rdi;
    frame.r8 = regs.r8;
    frame.r9 = regs.r9;
    frame.r10 = regs.r10;
    frame.r11 = regs.r11;
    frame.r12 = regs.r12;
    frame.r13 = regs.r13;
    frame.r14 = regs.r14;
    frame.r15 = regs.r15;
    frame.rip += TDCALL.len() as u64;
    EMULATED.fetch_add(1, Ordering::Relaxed);
    true
}
