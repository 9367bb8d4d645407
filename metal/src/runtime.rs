//! What a freestanding image must provide itself: the memory intrinsics the compiler calls and
//! the unwinding symbols the precompiled `core` refers to. (The panic handler is each image's
//! own: it reports on that image's console.)
//!
//! The intrinsics are written in `rep movsb`/`rep stosb` assembly so the compiler cannot turn
//! their bodies back into calls to themselves.

use core::arch::asm;

/// Copies forward in 32-byte blocks (each block loaded before it is stored, so a destination
/// below an overlapping source is fine), then the tail with `rep movsb`.
///
/// # Safety
///
/// `dest` and `src` are valid for `n` bytes; `dest` does not start inside `src`'s range.
unsafe fn copy_forward(dest: *mut u8, src: *const u8, n: usize) {
    // SAFETY: the caller guarantees both ranges; DF is clear per the ABI.
    unsafe {
        asm!(
            "2:",
            "cmp rcx, 32",
            "jb 3f",
            "mov rax, [rsi]",
            "mov rdx, [rsi + 8]",
            "mov r8, [rsi + 16]",
            "mov r9, [rsi + 24]",
            "mov [rdi], rax",
            "mov [rdi + 8], rdx",
            "mov [rdi + 16], r8",
            "mov [rdi + 24], r9",
            "add rsi, 32",
            "add rdi, 32",
            "sub rcx, 32",
            "jmp 2b",
            "3:",
            "rep movsb",
            inout("rcx") n => _, inout("rdi") dest => _, inout("rsi") src => _,
            out("rax") _, out("rdx") _, out("r8") _, out("r9") _,
            options(nostack),
        );
    }
}

// Block loops rather than `rep movsb`/`rep stosb` alone: under QEMU's TCG every iteration of a
// string instruction is emulated separately, which made zeroing accepted memory crawl.

/// # Safety
///
/// `dest` and `src` are valid for `n` bytes and do not overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: forwarded; non-overlapping ranges satisfy `copy_forward`.
    unsafe { copy_forward(dest, src, n) };
    dest
}

/// # Safety
///
/// `dest` and `src` are valid for `n` bytes; they may overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize).wrapping_sub(src as usize) >= n {
        // SAFETY: `dest` does not start inside `src`'s range, so a forward copy is correct.
        unsafe { copy_forward(dest, src, n) };
    } else {
        // `dest` overlaps the tail of `src`: copy backwards with the direction flag set.
        // SAFETY: the pointers address the last byte of each valid range; DF is restored.
        unsafe {
            asm!("std", "rep movsb", "cld",
                 inout("rcx") n => _,
                 inout("rdi") dest.add(n).wrapping_sub(1) => _,
                 inout("rsi") src.add(n).wrapping_sub(1) => _,
                 options(nostack));
        }
    }
    dest
}

/// # Safety
///
/// `dest` is valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dest: *mut u8, value: i32, n: usize) -> *mut u8 {
    let pattern = u64::from(value as u8) * 0x0101_0101_0101_0101;
    // SAFETY: the caller guarantees the range is valid; DF is clear per the ABI.
    unsafe {
        asm!(
            "movq xmm0, rax",
            "punpcklqdq xmm0, xmm0",
            "2:",
            "cmp rcx, 64",
            "jb 3f",
            "movups [rdi], xmm0",
            "movups [rdi + 16], xmm0",
            "movups [rdi + 32], xmm0",
            "movups [rdi + 48], xmm0",
            "add rdi, 64",
            "sub rcx, 64",
            "jmp 2b",
            "3:",
            "rep stosb",
            inout("rcx") n => _, inout("rdi") dest => _, in("rax") pattern, out("xmm0") _,
            options(nostack),
        );
    }
    dest
}

/// # Safety
///
/// `a` and `b` are valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: `i < n` and both ranges are valid for `n` bytes.
        let (x, y) = unsafe { (a.add(i).read(), b.add(i).read()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// # Safety
///
/// `a` and `b` are valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: forwarded with the caller's guarantee.
    unsafe { memcmp(a, b, n) }
}

/// Referenced by the precompiled `core` (built with unwinding); never called with panic=abort.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}

/// Referenced by landing pads in the precompiled `alloc`/`core` (built with unwinding). With
/// panic=abort nothing unwinds, so this is never reached; if it were, stop loudly with an invalid
/// opcode, which every image's IDT reports.
#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_Resume() -> ! {
    loop {
        // SAFETY: `ud2` only raises #UD; nothing is changed.
        unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
    }
}
