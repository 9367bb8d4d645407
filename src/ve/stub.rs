//! The interrupt entry stub: from the CPU's exception frame (with or without an error code) to a
//! Rust `extern "C"` handler of the interrupted [`Frame`](crate::ve::Frame) and back with `iretq`.

/// Defines an IDT entry stub `name` that calls a Rust handler with the interrupted context as
/// a [`Frame`](crate::ve::Frame) and returns to it (with every change the handler made) through
/// `iretq`.
///
/// Three forms, by what the handler is told:
///
/// | form | vectors | handler |
/// |------|---------|---------|
/// | `fn name => handler` | without an error code (#VE 20, #UD 6, #BP 3, ...) | `extern "C" fn(&mut Frame)` |
/// | `fn name => handler, vector = V` | without an error code, several sharing one handler (external interrupts) | `extern "C" fn(&mut Frame, u64)`, given `V` |
/// | `fn name => handler, vector = V, error_code` | that push an error code (#DF 8, #TS..#PF 10..14, #AC 17, #CP 21, #VC 29, #SX 30) | `extern "C" fn(&mut Frame, u64, u64)`, given `V` and the error code |
///
/// The stub
///
/// 1. pushes R15 down to RAX right below the five words the CPU pushed (SS, RSP, RFLAGS, CS,
///    RIP), which makes that stack area a [`Frame`](crate::ve::Frame). With an error code, which
///    the CPU pushed where the Frame's R15 belongs, it first exchanges R15 with that word: R15
///    is saved in its slot, the error code is kept for the handler, and the Frame has the same
///    layout as without one (so `iretq` finds RIP right above it);
/// 2. clears the direction flag (the ABI requires DF = 0), saves the x87/SSE state with
///    `fxsave64` into a 512-byte area aligned to 16 bytes below it (Rust handlers use SSE), and
///    calls `handler` with the stack aligned to 16 bytes;
/// 3. restores the x87/SSE state and every general-purpose register from the (possibly changed)
///    Frame and returns with `iretq`, which also takes RIP, CS, RFLAGS, RSP and SS from it.
///
/// `fxsave64` covers x87, MMX and XMM0..15 only: a kernel whose handlers may use AVX or AVX-512
/// registers (built with those target features) must save the extended state itself (XSAVE)
/// around its handler, or the interrupted code's upper YMM/ZMM halves are lost.
///
/// It needs about 700 bytes of stack above what the handler uses. Give the vector an IST stack:
/// a kernel built without `-C no-redzone` (or linking a precompiled `core` that uses the red zone)
/// would otherwise have 128 bytes below its RSP overwritten. The handler itself must not raise the
/// same exception again while it runs on that IST stack.
///
/// The stub is an `unsafe extern "C" fn()` that must never be called, only installed, e.g. with
/// the `x86_64` crate: `idt[6].set_handler_addr(VirtAddr::new(my_ud_stub as usize as u64))`.
/// The handler's type is checked; a stub of the error-code form installed for a vector without
/// one (or the reverse) corrupts the frame, which no type can catch.
///
/// ```
/// use tdx_boot::ve::Frame;
///
/// extern "C" fn on_breakpoint(frame: &mut Frame) {
///     let _ = frame.rip; // `int3` already left RIP after itself
/// }
///
/// extern "C" fn on_device(_frame: &mut Frame, vector: u64) {
///     let _ = vector; // 0x40 or 0x41
/// }
///
/// extern "C" fn on_page_fault(frame: &mut Frame, _vector: u64, error_code: u64) {
///     let _ = (frame.rip, error_code & 2 != 0); // a write
/// }
///
/// tdx_boot::entry_stub!(
///     /// The #BP entry point.
///     pub fn breakpoint_entry => on_breakpoint
/// );
/// tdx_boot::entry_stub!(
///     /// Vector 0x40's entry point.
///     pub fn device_0x40 => on_device, vector = 0x40
/// );
/// tdx_boot::entry_stub!(
///     /// Vector 0x41's entry point.
///     pub fn device_0x41 => on_device, vector = 0x41
/// );
/// tdx_boot::entry_stub!(
///     /// The #PF entry point.
///     pub fn page_fault_entry => on_page_fault, vector = 14, error_code
/// );
/// ```
#[macro_export]
macro_rules! entry_stub {
    ($(#[$attr:meta])* $vis:vis fn $name:ident => $handler:path) => {
        $crate::entry_stub!(@stub $(#[$attr])* $vis fn $name => $handler,
            check: extern "C" fn(&mut $crate::ve::Frame),
            vector: 0, first: "push r15", error_code: "");
    };
    ($(#[$attr:meta])* $vis:vis fn $name:ident => $handler:path, vector = $vector:expr) => {
        $crate::entry_stub!(@stub $(#[$attr])* $vis fn $name => $handler,
            check: extern "C" fn(&mut $crate::ve::Frame, u64),
            vector: $vector, first: "push r15", error_code: "");
    };
    (
        $(#[$attr:meta])* $vis:vis fn $name:ident => $handler:path,
        vector = $vector:expr, error_code
    ) => {
        $crate::entry_stub!(@stub $(#[$attr])* $vis fn $name => $handler,
            check: extern "C" fn(&mut $crate::ve::Frame, u64, u64),
            vector: $vector, first: "xchg r15, [rsp]", error_code: "mov rdx, r15");
    };
    (
        @stub $(#[$attr:meta])* $vis:vis fn $name:ident => $handler:path,
        check: $check:ty, vector: $vector:expr, first: $first:literal, error_code: $error:literal
    ) => {
        $(#[$attr])*
        ///
        /// # Safety
        ///
        /// An interrupt entry point: install its address in an IDT gate; never call it.
        #[unsafe(naked)]
        $vis unsafe extern "C" fn $name() {
            // Checks the handler's type; `sym` alone would take any symbol.
            const _: $check = $handler;
            ::core::arch::naked_asm!(
                $first,
                "push r14",
                "push r13",
                "push r12",
                "push r11",
                "push r10",
                "push r9",
                "push r8",
                "push rbp",
                "push rdi",
                "push rsi",
                "push rdx",
                "push rcx",
                "push rbx",
                "push rax",
                "cld",
                // RBX is callee-saved: it keeps the Frame's address across the call.
                "mov rbx, rsp",
                "sub rsp, 512",
                "and rsp, -16",
                "fxsave64 [rsp]",
                "mov rdi, rbx",
                // The vector (ignored by a handler of the first form), then the error code,
                // which the exchange above left in R15.
                "mov esi, {vector}",
                $error,
                "call {handler}",
                "fxrstor64 [rsp]",
                "mov rsp, rbx",
                "pop rax",
                "pop rbx",
                "pop rcx",
                "pop rdx",
                "pop rsi",
                "pop rdi",
                "pop rbp",
                "pop r8",
                "pop r9",
                "pop r10",
                "pop r11",
                "pop r12",
                "pop r13",
                "pop r14",
                "pop r15",
                "iretq",
                vector = const $vector,
                handler = sym $handler,
            )
        }
    };
}

// The push order above must produce `Frame`'s layout; frame.rs asserts the offsets, this checks
// the stub's side of it: fifteen pushes, RAX last, directly below the hardware frame.
const _: () = {
    use super::Frame;
    use core::mem::offset_of;
    assert!(offset_of!(Frame, rax) == 0);
    assert!(offset_of!(Frame, r15) + 8 == Frame::HARDWARE_OFFSET);
};
