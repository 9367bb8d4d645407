//! Interrupt entry stubs: naked functions that build a [`Frame`] and call the dispatcher.
//!
//! Vectors without an error code save all general-purpose registers as a `Frame` (RAX lowest,
//! directly below the CPU's RIP/CS/RFLAGS/RSP/SS), save the SSE state with `fxsave64` (the
//! handlers are Rust code that may use SSE), call [`super::dispatch`] and return with `iretq`,
//! so a handler can change what the interrupted code sees. #PF, which pushes an error code, has
//! a stub that builds the same `Frame` and passes the error code along (without TDX it may be an
//! MMIO access to emulate). The other vectors that push an error code are fatal in this kernel;
//! their stubs report and never return.

use core::arch::naked_asm;
use tdx_boot::ve::Frame;

/// The entry stub of a vector without an error code.
macro_rules! frame_stub {
    ($name:ident, $vector:expr) => {
        /// An interrupt entry point.
        ///
        /// # Safety
        ///
        /// Install its address in an IDT gate; never call it.
        #[unsafe(naked)]
        pub unsafe extern "C" fn $name() {
            naked_asm!(
                "push r15", "push r14", "push r13", "push r12",
                "push r11", "push r10", "push r9", "push r8",
                "push rbp", "push rdi", "push rsi", "push rdx",
                "push rcx", "push rbx", "push rax",
                "mov rdi, rsp",
                "mov esi, {vector}",
                "mov rbp, rsp",
                "sub rsp, 512",
                "and rsp, -16",
                "fxsave64 [rsp]",
                "cld",
                "call {dispatch}",
                "fxrstor64 [rsp]",
                "mov rsp, rbp",
                "pop rax", "pop rbx", "pop rcx", "pop rdx",
                "pop rsi", "pop rdi", "pop rbp", "pop r8",
                "pop r9", "pop r10", "pop r11", "pop r12",
                "pop r13", "pop r14", "pop r15",
                "iretq",
                vector = const $vector,
                dispatch = sym super::dispatch,
            )
        }
    };
}

/// The entry stub of an exception that pushes an error code: report, never return.
macro_rules! error_stub {
    ($name:ident, $vector:expr) => {
        /// An interrupt entry point.
        ///
        /// # Safety
        ///
        /// Install its address in an IDT gate; never call it.
        #[unsafe(naked)]
        pub unsafe extern "C" fn $name() {
            naked_asm!(
                "mov rsi, [rsp]",
                "lea rdi, [rsp + 8]",
                "mov edx, {vector}",
                "and rsp, -16",
                "cld",
                "call {fatal}",
                "ud2",
                vector = const $vector,
                fatal = sym super::fatal_with_error_code,
            )
        }
    };
}

/// The #PF entry point: a [`Frame`] and the error code for [`super::on_page_fault`], which may
/// resume the interrupted code.
///
/// The CPU pushed the error code directly below RIP, where the `Frame`'s last register (R15)
/// belongs: exchanging R15 with it saves R15 in its slot and takes the error code into R15,
/// so the other fourteen pushes complete the frame and `iretq` finds RIP right above it.
///
/// # Safety
///
/// Install its address in the IDT gate of vector 14; never call it.
#[unsafe(naked)]
pub unsafe extern "C" fn page_fault() {
    naked_asm!(
        "xchg r15, [rsp]",
        "push r14", "push r13", "push r12",
        "push r11", "push r10", "push r9", "push r8",
        "push rbp", "push rdi", "push rsi", "push rdx",
        "push rcx", "push rbx", "push rax",
        "mov rdi, rsp",
        "mov rsi, r15",
        "mov rbp, rsp",
        "sub rsp, 512",
        "and rsp, -16",
        "fxsave64 [rsp]",
        "cld",
        "call {handler}",
        "fxrstor64 [rsp]",
        "mov rsp, rbp",
        "pop rax", "pop rbx", "pop rcx", "pop rdx",
        "pop rsi", "pop rdi", "pop rbp", "pop r8",
        "pop r9", "pop r10", "pop r11", "pop r12",
        "pop r13", "pop r14", "pop r15",
        "iretq",
        handler = sym super::on_page_fault,
    )
}

frame_stub!(v0, 0);
frame_stub!(v1, 1);
frame_stub!(v2, 2);
frame_stub!(v3, 3);
frame_stub!(v4, 4);
frame_stub!(v5, 5);
frame_stub!(v7, 7);
error_stub!(v8, 8);
frame_stub!(v9, 9);
error_stub!(v10, 10);
error_stub!(v11, 11);
error_stub!(v12, 12);
error_stub!(v13, 13);
frame_stub!(v15, 15);
frame_stub!(v16, 16);
error_stub!(v17, 17);
frame_stub!(v18, 18);
frame_stub!(v19, 19);
error_stub!(v21, 21);
frame_stub!(v22, 22);
frame_stub!(v23, 23);
frame_stub!(v24, 24);
frame_stub!(v25, 25);
frame_stub!(v26, 26);
frame_stub!(v27, 27);
frame_stub!(v28, 28);
error_stub!(v29, 29);
error_stub!(v30, 30);
frame_stub!(v31, 31);
// Vectors 32..=255 share one stub; the dispatcher sees `EXTERNAL`.
frame_stub!(external, super::EXTERNAL);

// #UD: a stub made with tdx-boot's `entry_stub!`, calling the TDCALL emulation.
tdx_boot::entry_stub!(
    /// The #UD entry point.
    pub fn invalid_opcode => super::on_invalid_opcode
);

/// The entry stub of `vector`: tdx-boot's `ve_entry` for #VE, the `entry_stub!` one for #UD,
/// [`page_fault`] for #PF, the kernel's own for every other vector.
pub fn entry_for(vector: usize) -> usize {
    let own: [unsafe extern "C" fn(); 30] = [
        v0, v1, v2, v3, v4, v5, v7, v8, v9, v10, v11, v12, v13, page_fault, v15, v16, v17, v18,
        v19, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31,
    ];
    match vector {
        6 => invalid_opcode as *const () as usize,
        20 => tdx_boot::ve::ve_entry as *const () as usize,
        0..6 => own[vector] as *const () as usize,
        7..20 => own[vector - 1] as *const () as usize,
        21..32 => own[vector - 2] as *const () as usize,
        _ => external as *const () as usize,
    }
}

const _: () = assert!(core::mem::size_of::<Frame>() == 160);
