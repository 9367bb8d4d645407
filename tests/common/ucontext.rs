//! The general registers of the `ucontext_t` a SIGSEGV/SIGILL handler receives, as the crate's
//! register types: for tests that let a host fault stand for a trap into the TDX module (TDCALL)
//! or a #VE, and answer it by editing the interrupted thread's registers.
#![allow(dead_code)]

use tdx_boot::tdcall::Regs;
use tdx_boot::ve::Frame;

/// `uc_mcontext.gregs` on x86-64 Linux.
pub type Gregs = [libc::greg_t; 23];

/// The `gregs` index of each general register, in x86 register-number order (the numbering of
/// `Frame::gpr`: RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8..R15).
const BY_NUMBER: [libc::c_int; 16] = [
    libc::REG_RAX,
    libc::REG_RCX,
    libc::REG_RDX,
    libc::REG_RBX,
    libc::REG_RSP,
    libc::REG_RBP,
    libc::REG_RSI,
    libc::REG_RDI,
    libc::REG_R8,
    libc::REG_R9,
    libc::REG_R10,
    libc::REG_R11,
    libc::REG_R12,
    libc::REG_R13,
    libc::REG_R14,
    libc::REG_R15,
];

/// Where one register lives in [`Regs`].
type RegsField = fn(&mut Regs) -> &mut u64;

/// The `gregs` index of each register TDCALL passes (all but RSP and RBP), with its field in
/// [`Regs`].
const TDCALL_REGS: [(libc::c_int, RegsField); 14] = [
    (libc::REG_RAX, |r| &mut r.rax),
    (libc::REG_RCX, |r| &mut r.rcx),
    (libc::REG_RDX, |r| &mut r.rdx),
    (libc::REG_RBX, |r| &mut r.rbx),
    (libc::REG_RSI, |r| &mut r.rsi),
    (libc::REG_RDI, |r| &mut r.rdi),
    (libc::REG_R8, |r| &mut r.r8),
    (libc::REG_R9, |r| &mut r.r9),
    (libc::REG_R10, |r| &mut r.r10),
    (libc::REG_R11, |r| &mut r.r11),
    (libc::REG_R12, |r| &mut r.r12),
    (libc::REG_R13, |r| &mut r.r13),
    (libc::REG_R14, |r| &mut r.r14),
    (libc::REG_R15, |r| &mut r.r15),
];

fn get(gregs: &Gregs, reg: libc::c_int) -> u64 {
    gregs[reg as usize] as u64
}

fn set(gregs: &mut Gregs, reg: libc::c_int, value: u64) {
    gregs[reg as usize] = value as libc::greg_t;
}

/// The interrupted thread's RIP.
pub fn rip(gregs: &Gregs) -> u64 {
    get(gregs, libc::REG_RIP)
}

/// Moves the interrupted thread's RIP `len` bytes on, past the instruction that trapped.
pub fn skip(gregs: &mut Gregs, len: u64) {
    set(gregs, libc::REG_RIP, rip(gregs).wrapping_add(len));
}

/// The 16 general registers, RIP and RSP as a #VE handler's [`Frame`] holds them (the segment
/// and flag fields stay zero).
pub fn frame_from(gregs: &Gregs) -> Frame {
    let mut frame = Frame {
        rip: rip(gregs),
        ..Frame::default()
    };
    for (number, &reg) in (0u8..).zip(&BY_NUMBER) {
        *frame.gpr_mut(number) = get(gregs, reg);
    }
    frame
}

/// Writes `frame`'s general registers and RIP back to the interrupted thread.
pub fn store_frame(gregs: &mut Gregs, frame: &Frame) {
    for (number, &reg) in (0u8..).zip(&BY_NUMBER) {
        set(gregs, reg, frame.gpr(number));
    }
    set(gregs, libc::REG_RIP, frame.rip);
}

/// The registers a TDCALL passes, as the interrupted thread holds them.
pub fn regs_from(gregs: &Gregs) -> Regs {
    let mut regs = Regs::default();
    for (reg, field) in TDCALL_REGS {
        *field(&mut regs) = get(gregs, reg);
    }
    regs
}

/// Writes the TDCALL registers `regs` back to the interrupted thread (RSP, RBP and RIP stay).
pub fn store_regs(gregs: &mut Gregs, regs: &Regs) {
    let mut regs = *regs;
    for (reg, field) in TDCALL_REGS {
        set(gregs, reg, *field(&mut regs));
    }
}

/// A signal handler that receives the interrupted thread's context.
pub type Handler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// Makes `handler` the SA_SIGINFO handler of every signal in `signals`, for the whole process.
pub fn install(signals: &[libc::c_int], handler: Handler) {
    // SAFETY: a zeroed sigaction is a valid starting point; `handler` has the SA_SIGINFO
    // signature the flag announces, and sigaction only reads the struct.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        for &signal in signals {
            assert_eq!(libc::sigaction(signal, &action, std::ptr::null_mut()), 0);
        }
    }
}
