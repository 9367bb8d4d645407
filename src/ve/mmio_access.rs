//! Single-instruction MMIO reads and writes that the #VE decoder always understands.
//!
//! A plain pointer dereference leaves the instruction to the compiler, which may merge, split or
//! vectorize accesses, or use forms ([`mmio::decode`](super::mmio::decode) refuses) such as
//! `movdqu` or read-modify-write ALU instructions. Each function here is exactly one `mov` between
//! a general-purpose register and `[register]`, which is what both the hardware and the #VE path
//! need: one access of the stated width, never elided or combined.
//!
//! # These or `volatile::VolatilePtr`?
//!
//! A driver written the rust-osdev way (`volatile::VolatilePtr` over a register block, as the
//! mini-kernel's IOAPIC driver is) works in a TD as it is: `tests/ve_volatile.rs` runs
//! `VolatilePtr::read`/`write` for `u8`, `u16`, `u32` and `u64`, in debug and release builds,
//! against a page that faults, and checks that [`mmio::decode`](super::mmio::decode) takes and
//! emulates each instruction the compiler emitted. That is a tested property of today's
//! compiler, not a promise: `read_volatile` only guarantees one access of the type's size, not
//! which instruction performs it. Use these functions where the instruction must be guaranteed
//! rather than tested: code that runs inside the #VE path's own assumptions (an early console,
//! a device accessed before a panic handler exists), types other than plain integers (a
//! `VolatilePtr` to a struct or array is copied with as many moves as the compiler likes, in the
//! order it likes: rustc 1.95 at `-O` reads a `[u32; 8]` from its last element down, which a
//! device whose reads have side effects cannot take), or a toolchain or optimization level the
//! test has not seen.
//!
//! The templates are exposed as macros so the crate's tests assemble and decode the very
//! instructions these functions contain.

use core::arch::asm;

#[doc(hidden)]
#[macro_export]
macro_rules! __mmio_read_u8_template {
    () => {
        "mov {value}, byte ptr [{address}]"
    };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __mmio_read_u16_template {
    () => {
        "mov {value:x}, word ptr [{address}]"
    };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __mmio_read_u32_template {
    () => {
        "mov {value:e}, dword ptr [{address}]"
    };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __mmio_read_u64_template {
    () => {
        "mov {value:r}, qword ptr [{address}]"
    };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __mmio_write_u8_template {
    () => {
        "mov byte ptr [{address}], {value}"
    };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __mmio_write_u16_template {
    () => {
        "mov word ptr [{address}], {value:x}"
    };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __mmio_write_u32_template {
    () => {
        "mov dword ptr [{address}], {value:e}"
    };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __mmio_write_u64_template {
    () => {
        "mov qword ptr [{address}], {value:r}"
    };
}

macro_rules! read_fn {
    ($(#[$doc:meta])* $name:ident, $ty:ty, $class:ident, $template:ident) => {
        $(#[$doc])*
        ///
        /// # Safety
        ///
        /// `address` is mapped and valid for a read of this width with the side effects the
        /// device gives it (for TD MMIO: mapped shared, so the access raises a #VE the kernel's
        /// #VE handler emulates).
        #[inline(always)]
        pub unsafe fn $name(address: *const $ty) -> $ty {
            let value: $ty;
            // SAFETY: one load of `size_of::<$ty>()` bytes at `address`, valid by the contract;
            // no stack use, flags untouched. Not `readonly`/`pure`: device reads have effects.
            unsafe {
                asm!(
                    $crate::$template!(),
                    address = in(reg) address,
                    value = lateout($class) value,
                    options(nostack, preserves_flags),
                )
            };
            value
        }
    };
}

macro_rules! write_fn {
    ($(#[$doc:meta])* $name:ident, $ty:ty, $class:ident, $template:ident) => {
        $(#[$doc])*
        ///
        /// # Safety
        ///
        /// `address` is mapped and valid for a write of this width with the side effects the
        /// device gives it (for TD MMIO: mapped shared, so the access raises a #VE the kernel's
        /// #VE handler emulates).
        #[inline(always)]
        pub unsafe fn $name(address: *mut $ty, value: $ty) {
            // SAFETY: one store of `size_of::<$ty>()` bytes at `address`, valid by the contract.
            unsafe {
                asm!(
                    $crate::$template!(),
                    address = in(reg) address,
                    value = in($class) value,
                    options(nostack, preserves_flags),
                )
            };
        }
    };
}

read_fn!(
    /// Reads one byte of device memory (`mov r8, [r64]`: `8A /r`).
    read_u8, u8, reg_byte, __mmio_read_u8_template
);
read_fn!(
    /// Reads 2 bytes of device memory (`mov r16, [r64]`: `66 8B /r`).
    read_u16, u16, reg, __mmio_read_u16_template
);
read_fn!(
    /// Reads 4 bytes of device memory (`mov r32, [r64]`: `8B /r`).
    read_u32, u32, reg, __mmio_read_u32_template
);
read_fn!(
    /// Reads 8 bytes of device memory (`mov r64, [r64]`: `REX.W 8B /r`).
    read_u64, u64, reg, __mmio_read_u64_template
);
write_fn!(
    /// Writes one byte of device memory (`mov [r64], r8`: `88 /r`).
    write_u8, u8, reg_byte, __mmio_write_u8_template
);
write_fn!(
    /// Writes 2 bytes of device memory (`mov [r64], r16`: `66 89 /r`).
    write_u16, u16, reg, __mmio_write_u16_template
);
write_fn!(
    /// Writes 4 bytes of device memory (`mov [r64], r32`: `89 /r`).
    write_u32, u32, reg, __mmio_write_u32_template
);
write_fn!(
    /// Writes 8 bytes of device memory (`mov [r64], r64`: `REX.W 89 /r`).
    write_u64, u64, reg, __mmio_write_u64_template
);
