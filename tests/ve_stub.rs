//! The entry stubs run for real on the host: a user-mode `iretq` returns to the same privilege
//! level, so a test can build the CPU's exception frame by hand, jump into a stub and check what
//! the handler saw and what the interrupted code gets back: every general-purpose register both
//! ways, RIP, the SSE state, DF and the stack alignment of the call.

#![cfg(target_arch = "x86_64")]

use core::arch::asm;
use std::cell::Cell;
use tdx_boot::ve::{Frame, install_handler, ve_entry};

/// What a handler saw: the frame, the address of a 16-aligned local, RFLAGS inside the handler.
#[derive(Clone, Copy, Debug)]
struct Seen {
    frame: Frame,
    aligned_local: usize,
    handler_rflags: u64,
}

thread_local! {
    // Per thread: the stub calls the handler on the thread that jumped into it, and the tests run
    // in parallel threads.
    static SEEN: Cell<Option<Seen>> = const { Cell::new(None) };
}

const RFLAGS_DF: u64 = 1 << 10;

/// Records the frame, then changes every register (but RSP) and skips the `ud2` at RIP.
fn record_and_change(frame: &mut Frame) {
    #[repr(align(16))]
    struct Aligned(#[allow(dead_code)] u128);
    let probe = Aligned(0);
    let handler_rflags: u64;
    // SAFETY: reads RFLAGS; sets XMM0 to all ones, which the stub must undo for the interrupted
    // code (XMM0 is caller-saved in this function's ABI, so clobbering it here is allowed).
    unsafe {
        asm!("pushfq", "pop {}", out(reg) handler_rflags);
        asm!("pcmpeqd xmm0, xmm0", out("xmm0") _, options(nomem, nostack));
    }
    SEEN.set(Some(Seen {
        frame: *frame,
        aligned_local: core::ptr::addr_of!(probe) as usize,
        handler_rflags,
    }));
    for n in (0..16).filter(|&n| n != 4) {
        *frame.gpr_mut(n) = !frame.gpr(n);
    }
    frame.rip += 2;
}

extern "C" fn test_handler(frame: &mut Frame) {
    record_and_change(frame);
}

tdx_boot::entry_stub!(
    /// A stub built by the public macro, as a kernel builds its #UD stub.
    fn test_entry => test_handler
);

/// The registers after the return (Frame order, RSP/segments/RIP unused) and XMM0.
struct After {
    regs: [u64; 15],
    xmm0: u128,
}

/// Enters `entry` as the CPU would deliver an exception (pushing `error_code` after RIP when
/// there is one), with `input` in the registers (Frame order) and DF set, the stack misaligned
/// by `shift` bytes.
fn run_through(
    entry: unsafe extern "C" fn(),
    input: &[u64; 15],
    shift: u64,
    error_code: Option<u64>,
) -> After {
    // 0..15 the registers after, 15..17 XMM0; 17 and 18 say whether and what error code to push.
    let mut out = [0u64; 19];
    out[17] = u64::from(error_code.is_some());
    out[18] = error_code.unwrap_or(0);
    let xmm_in: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
    // SAFETY: the asm saves what it must (RBX, RBP on the stack; everything else is declared
    // clobbered), builds a valid same-privilege IRET frame (with the error code below it when
    // asked, which an error-code stub consumes) whose RIP is the local label `2`,
    // whose RSP is the stack pointer after the saves and whose CS/SS are the current ones, and
    // enters the stub through `ret`. The stub returns there with `iretq`; the handler skips the
    // `ud2` by advancing RIP by 2. DF is cleared again before the asm ends.
    unsafe {
        asm!(
            "push rbx",
            "push rbp",
            "push {out}",
            "movdqu xmm0, [{xmm}]",
            "mov rax, rsp",
            "sub rsp, {shift}",
            "xor ecx, ecx",
            "mov cx, ss",
            "push rcx",
            "push rax",
            "std",
            "pushfq",
            "xor ecx, ecx",
            "mov cx, cs",
            "push rcx",
            "lea rcx, [rip + 2f]",
            "push rcx",
            "cmp qword ptr [{out} + 136], 0",
            "je 4f",
            "push qword ptr [{out} + 144]",
            "4:",
            "push {entry}",
            "mov rax, [rdi]",
            "mov rbx, [rdi + 8]",
            "mov rcx, [rdi + 16]",
            "mov rdx, [rdi + 24]",
            "mov rsi, [rdi + 32]",
            "mov rbp, [rdi + 48]",
            "mov r8, [rdi + 56]",
            "mov r9, [rdi + 64]",
            "mov r10, [rdi + 72]",
            "mov r11, [rdi + 80]",
            "mov r12, [rdi + 88]",
            "mov r13, [rdi + 96]",
            "mov r14, [rdi + 104]",
            "mov r15, [rdi + 112]",
            "mov rdi, [rdi + 40]",
            "ret",
            "2:",
            "ud2",
            "cld",
            "xchg rdi, [rsp]",
            "mov [rdi], rax",
            "mov [rdi + 8], rbx",
            "mov [rdi + 16], rcx",
            "mov [rdi + 24], rdx",
            "mov [rdi + 32], rsi",
            "mov [rdi + 48], rbp",
            "mov [rdi + 56], r8",
            "mov [rdi + 64], r9",
            "mov [rdi + 72], r10",
            "mov [rdi + 80], r11",
            "mov [rdi + 88], r12",
            "mov [rdi + 96], r13",
            "mov [rdi + 104], r14",
            "mov [rdi + 112], r15",
            "pop rax",
            "mov [rdi + 40], rax",
            "movdqu [rdi + 120], xmm0",
            "pop rbp",
            "pop rbx",
            out = in(reg) out.as_mut_ptr(),
            xmm = in(reg) &xmm_in,
            shift = in(reg) shift,
            entry = in(reg) entry as usize,
            inout("rdi") input.as_ptr() => _,
            out("rax") _, out("rcx") _, out("rdx") _, out("rsi") _,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
            out("xmm0") _,
        );
    }
    let mut regs = [0; 15];
    regs.copy_from_slice(&out[..15]);
    After {
        regs,
        xmm0: u128::from(out[15]) | (u128::from(out[16]) << 64),
    }
}

fn frame_gprs(frame: &Frame) -> [u64; 15] {
    [
        frame.rax, frame.rbx, frame.rcx, frame.rdx, frame.rsi, frame.rdi, frame.rbp, frame.r8,
        frame.r9, frame.r10, frame.r11, frame.r12, frame.r13, frame.r14, frame.r15,
    ]
}

/// What the handler of a stub with a vector (and an error code) was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Arguments {
    vector: u64,
    error_code: Option<u64>,
}

thread_local! {
    static ARGUMENTS: Cell<Option<Arguments>> = const { Cell::new(None) };
}

extern "C" fn vector_handler(frame: &mut Frame, vector: u64) {
    ARGUMENTS.set(Some(Arguments {
        vector,
        error_code: None,
    }));
    record_and_change(frame);
}

extern "C" fn error_code_handler(frame: &mut Frame, vector: u64, error_code: u64) {
    ARGUMENTS.set(Some(Arguments {
        vector,
        error_code: Some(error_code),
    }));
    record_and_change(frame);
}

tdx_boot::entry_stub!(
    /// A stub that tells its handler the vector, as external interrupts sharing one handler use.
    fn vector_0x41_entry => vector_handler, vector = 0x41
);

tdx_boot::entry_stub!(
    /// A stub for an exception with an error code, as a #PF stub.
    fn page_fault_entry => error_code_handler, vector = 14, error_code
);

fn check(entry: unsafe extern "C" fn()) {
    check_with(entry, None);
}

/// [`check`] for a stub entered with `error_code` pushed by the "CPU".
fn check_with(entry: unsafe extern "C" fn(), error_code: Option<u64>) {
    let (cs, ss): (u64, u64);
    // SAFETY: reads the current segment selectors.
    unsafe { asm!("mov {0:x}, cs", "mov {1:x}, ss", out(reg) cs, out(reg) ss) };
    for shift in [0, 8] {
        let input: [u64; 15] =
            core::array::from_fn(|i| 0x5a00_0000_0000_0000 | ((i as u64 + 1) * 0x0101_0101));
        SEEN.set(None);
        let after = run_through(entry, &input, shift, error_code);
        let seen = SEEN.take().expect("the handler ran");

        assert_eq!(
            frame_gprs(&seen.frame),
            input,
            "the Frame holds the interrupted registers"
        );
        assert_eq!(seen.frame.cs & 0xffff, cs & 0xffff);
        assert_eq!(seen.frame.ss & 0xffff, ss & 0xffff);
        assert_ne!(
            seen.frame.rflags & RFLAGS_DF,
            0,
            "the Frame keeps the interrupted DF"
        );
        assert_eq!(
            seen.handler_rflags & RFLAGS_DF,
            0,
            "the handler runs with DF clear"
        );
        assert_eq!(
            seen.aligned_local % 16,
            0,
            "the call is made with a 16-aligned stack"
        );

        let expected: [u64; 15] = core::array::from_fn(|i| !input[i]);
        assert_eq!(
            after.regs, expected,
            "changed registers reach the interrupted code"
        );
        assert_eq!(
            after.xmm0, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
            "XMM0 is restored"
        );
    }
}

#[test]
fn entry_stub_macro_saves_calls_and_restores() {
    check(test_entry);
}

#[test]
fn the_vector_form_tells_the_handler_its_vector() {
    ARGUMENTS.set(None);
    check(vector_0x41_entry);
    assert_eq!(
        ARGUMENTS.take(),
        Some(Arguments {
            vector: 0x41,
            error_code: None
        })
    );
}

/// The error code sits where the Frame's R15 belongs: the stub must hand it over, save R15 in
/// its place, and return past it (`check_with` fails on any register, or `iretq` takes the
/// error code as RIP and the test crashes).
#[test]
fn the_error_code_form_hands_over_the_code_and_returns_past_it() {
    for code in [0x2, 0xffff_ffff_ffff_fff5] {
        ARGUMENTS.set(None);
        check_with(page_fault_entry, Some(code));
        assert_eq!(
            ARGUMENTS.take(),
            Some(Arguments {
                vector: 14,
                error_code: Some(code)
            })
        );
    }
}

/// `install_handler` sets one handler for the whole process; the tests that install one take
/// turns.
static HANDLER_SLOT: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn ve_entry_calls_the_installed_handler() {
    fn installed(frame: &mut Frame) {
        record_and_change(frame);
    }
    let _slot = HANDLER_SLOT.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: `record_and_change` only skips the `ud2` that `run_through` places at RIP and
    // changes general-purpose registers, which `run_through` expects.
    unsafe { install_handler(installed) };
    check(ve_entry);
}

/// Enters `ve_entry` with RIP at a `ud2` (the instruction that "raised" the #VE) that is
/// followed by `mov {ran}, 1`, and RBX holding the address after that `mov`. Returns whether
/// the `mov` ran.
fn ran_the_instruction_after_the_ve() -> bool {
    let ran: u64;
    // SAFETY: the asm saves RBX and RBP, builds a same-privilege IRET frame on a 16-aligned
    // stack whose RIP is label `2` and whose RSP is the stack pointer before the frame, and
    // enters `ve_entry` through `ret`; the handlers below resume at label `2` + 2 or at label
    // `3` (RBX), and both paths restore RSP from RBP and pop what was saved.
    unsafe {
        asm!(
            "push rbx",
            "push rbp",
            "mov rbp, rsp",
            "and rsp, -16",
            "mov rax, rsp",
            "xor ecx, ecx",
            "mov cx, ss",
            "push rcx",
            "push rax",
            "pushfq",
            "mov cx, cs",
            "push rcx",
            "lea rcx, [rip + 2f]",
            "push rcx",
            "lea rbx, [rip + 3f]",
            "push {entry}",
            "ret",
            "2:",
            "ud2",
            "mov {ran}, 1",
            "3:",
            "mov rsp, rbp",
            "pop rbp",
            "pop rbx",
            entry = in(reg) ve_entry as *const () as usize,
            ran = inout(reg) 0u64 => ran,
            out("rax") _, out("rcx") _,
        );
    }
    ran == 1
}

/// What `install_handler`'s `unsafe` guards against: the CPU resumes wherever the handler
/// leaves the frame. A handler that writes RIP from a register (as one trusting a value the
/// VMM returned might) silently skips the interrupted code's next instruction; with another
/// value it would run any code at all.
#[test]
fn the_installed_handler_decides_where_the_interrupted_code_resumes() {
    fn skips_the_faulting_instruction(frame: &mut Frame) {
        frame.rip += 2;
    }
    fn resumes_where_rbx_points(frame: &mut Frame) {
        frame.rip = frame.rbx;
    }
    let _slot = HANDLER_SLOT.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: resumes right after the `ud2` that `ran_the_instruction_after_the_ve` places at
    // RIP, as a #VE handler emulating it would.
    unsafe { install_handler(skips_the_faulting_instruction) };
    assert!(ran_the_instruction_after_the_ve());
    // SAFETY: deliberately breaks the contract for the demonstration; the asm's label `3` is
    // still a sound place to resume (it restores the stack itself), so nothing is UB here.
    unsafe { install_handler(resumes_where_rbx_points) };
    assert!(
        !ran_the_instruction_after_the_ve(),
        "the handler's RIP decided what the interrupted code executes"
    );
}
