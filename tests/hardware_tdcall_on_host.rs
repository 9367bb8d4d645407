//! The real TDCALL asm (`Hardware`) on a host without TDX.
//!
//! TDCALL outside a TD faults: #UD in a kernel (ring 0), #GP in user mode, which Linux delivers as
//! SIGSEGV (SIGILL where the CPU raises #UD). A handler for both plays the TDX module: it reads the register file the asm loaded, answers it, advances RIP past the 4-byte
//! instruction and returns. So these tests check that `Hardware` binds every register to the right
//! `Regs` field in both directions, preserves RBX, and that the typed wrappers work through it.

#[path = "common/ucontext.rs"]
mod ucontext;

use std::cell::RefCell;
use std::sync::Once;
use tdx_boot::tdcall::{Hardware, Regs, TdCall};

type Emulator = Box<dyn FnMut(&mut Regs)>;

thread_local! {
    static EMULATOR: RefCell<Option<Emulator>> = const { RefCell::new(None) };
}

const TDCALL_BYTES: [u8; 4] = [0x66, 0x0f, 0x01, 0xcc];

extern "C" fn on_tdcall_fault(_: libc::c_int, _: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid ucontext_t to an SA_SIGINFO handler.
    let gregs = unsafe { &mut (*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
    let rip = ucontext::rip(gregs) as *const [u8; 4];
    // SAFETY: RIP points at the instruction that faulted, which is mapped code.
    if unsafe { rip.read_unaligned() } != TDCALL_BYTES {
        // Not ours: restore the default actions so the fault kills the process as it should.
        // SAFETY: resetting a signal disposition is async-signal-safe.
        unsafe {
            libc::signal(libc::SIGILL, libc::SIG_DFL);
            libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        }
        return;
    }
    let mut regs = ucontext::regs_from(gregs);
    // The signal is synchronous and raised by this very thread inside `Hardware::tdcall`, so the
    // thread-local is not borrowed elsewhere at this point.
    EMULATOR.with(|e| {
        if let Some(emulate) = e.borrow_mut().as_mut() {
            emulate(&mut regs);
        }
    });
    ucontext::store_regs(gregs, &regs);
    ucontext::skip(gregs, TDCALL_BYTES.len() as u64);
}

/// Runs `body` with `emulator` answering every TDCALL this thread executes.
fn with_emulator(emulator: impl FnMut(&mut Regs) + 'static, body: impl FnOnce()) {
    static INSTALL: Once = Once::new();
    // The handler touches only the faulting thread's context and thread-locals.
    INSTALL.call_once(|| ucontext::install(&[libc::SIGILL, libc::SIGSEGV], on_tdcall_fault));
    EMULATOR.with(|e| *e.borrow_mut() = Some(Box::new(emulator)));
    body();
    EMULATOR.with(|e| *e.borrow_mut() = None);
}

fn distinct_regs(seed: u64) -> Regs {
    let v = |i: u64| {
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(i as u32 * 5)
            ^ i
    };
    Regs {
        rax: v(1),
        rcx: v(2),
        rdx: v(3),
        rbx: v(4),
        rsi: v(5),
        rdi: v(6),
        r8: v(7),
        r9: v(8),
        r10: v(9),
        r11: v(10),
        r12: v(11),
        r13: v(12),
        r14: v(13),
        r15: v(14),
    }
}

#[test]
fn every_register_reaches_the_module_and_comes_back() {
    for seed in 1..50u64 {
        let input = distinct_regs(seed);
        let answer = distinct_regs(seed + 1000);
        let seen = std::rc::Rc::new(std::cell::Cell::new(None));
        let seen_in_handler = seen.clone();
        with_emulator(
            move |regs| {
                seen_in_handler.set(Some(*regs));
                *regs = answer;
            },
            || {
                let mut regs = input;
                // SAFETY: the emulator touches no memory.
                unsafe { Hardware.tdcall(&mut regs) };
                assert_eq!(regs, answer, "outputs must land in their own fields");
            },
        );
        assert_eq!(
            seen.get(),
            Some(input),
            "inputs must be loaded into their own registers"
        );
    }
}

#[test]
fn rbx_of_the_caller_survives_a_module_that_changes_it() {
    // RBX is callee-saved and reserved by LLVM; if the asm failed to restore it, the values kept
    // live across the calls below (and the test harness itself) would be corrupted.
    let before: Vec<u64> = (0..64).map(|i| i * 7 + 1).collect();
    with_emulator(
        |regs| regs.rbx = 0xDEAD_BEEF_0BAD_F00D,
        || {
            for _ in 0..100 {
                let mut regs = Regs::default();
                // SAFETY: the emulator touches no memory.
                unsafe { Hardware.tdcall(&mut regs) };
                assert_eq!(regs.rbx, 0xDEAD_BEEF_0BAD_F00D);
            }
        },
    );
    let after: Vec<u64> = (0..64).map(|i| i * 7 + 1).collect();
    assert_eq!(before, after);
}

#[test]
fn typed_wrappers_run_through_the_real_instruction() {
    use tdx_boot::tdcall::{TdAttributes, leaf, vmcall, vp_info};
    with_emulator(
        |regs| match (regs.rax, regs.r11) {
            (leaf::VP_INFO, _) => {
                *regs = Regs {
                    rax: 0,
                    rcx: 52,
                    rdx: TdAttributes::SEPT_VE_DISABLE.bits(),
                    r8: 4 | (8 << 32),
                    r9: 2,
                    ..Regs::default()
                }
            }
            (leaf::VP_VMCALL, vmcall::function::RDMSR) => {
                assert_eq!(regs.r12, 0x1b, "MSR index in R12");
                assert_ne!(regs.rcx & vmcall::expose::R12, 0, "R12 must be exposed");
                regs.rax = 0;
                regs.r10 = 0;
                regs.r11 = 0xFEE0_0900;
            }
            other => panic!("unexpected call {other:?}"),
        },
        || {
            let info = vp_info(&Hardware).expect("VP.INFO");
            assert_eq!(info.gpaw, 52);
            assert_eq!(info.shared_mask(), 1 << 51);
            assert_eq!((info.num_vcpus, info.max_vcpus, info.vcpu_index), (4, 8, 2));
            assert!(info.attributes.contains(TdAttributes::SEPT_VE_DISABLE));
            assert_eq!(vmcall::rdmsr(&Hardware, 0x1b), Ok(0xFEE0_0900));
        },
    );
}

#[test]
fn a_vmcall_exposing_rbp_or_xmm_registers_is_refused_before_the_instruction() {
    // The module lets TDG.VP.VMCALL expose RBP (RCX bit 5) and XMM0..15 (bits 31:16), and then
    // loads whatever the VMM put there on return. The asm can neither declare RBP clobbered nor
    // (on kernels built without SSE) the XMM registers, so such a call must never execute.
    use tdx_boot::tdcall::{TdxStatus, leaf};
    let calls = std::rc::Rc::new(std::cell::Cell::new(0u32));
    let counted = calls.clone();
    with_emulator(
        move |regs| {
            counted.set(counted.get() + 1);
            regs.rax = 0;
        },
        || {
            for rcx in [1 << 5, 1 << 16, 1 << 31, 0xffff_fc0c] {
                let input = Regs {
                    rax: leaf::VP_VMCALL,
                    rcx,
                    r11: 0x1f,
                    ..distinct_regs(rcx)
                };
                let mut regs = input;
                // SAFETY: the emulator touches no memory.
                unsafe { Hardware.tdcall(&mut regs) };
                assert_eq!(
                    TdxStatus::from_raw(regs.rax),
                    TdxStatus::OPERAND_INVALID,
                    "RCX {rcx:#x}"
                );
                assert_eq!(regs.rax & 0xffff_ffff, 1, "operand id: RCX");
                assert_eq!(
                    Regs {
                        rax: input.rax,
                        ..regs
                    },
                    input,
                    "nothing else changes"
                );
            }
            // Other leaves pass RCX through untouched, whatever its bits (an address there).
            let mut regs = Regs {
                rax: leaf::VP_INFO,
                rcx: 0xffff_0020,
                ..Regs::default()
            };
            // SAFETY: the emulator touches no memory.
            unsafe { Hardware.tdcall(&mut regs) };
            assert_eq!(regs.rax, 0);
        },
    );
    assert_eq!(calls.get(), 1, "only the VP.INFO call executed TDCALL");
}
