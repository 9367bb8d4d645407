//! The code tdx-boot's bare-metal images share: the mini-kernel (a TD guest kernel) and tdx-sim
//! (a software TDX host). Both are freestanding static PIEs built for the host target and turned
//! into EFI applications by `cargo xtask`.
//!
//! - `runtime` (only in an image, `--cfg bare_metal_image`): the memory intrinsics and
//!   unwinding symbols a freestanding image must provide itself.
//! - [`heap`]: a bump allocator over memory the firmware handed out.
//! - [`gdt`] and [`idt`]: the descriptor tables, a TSS with a stack per IST slot and 256 raw
//!   interrupt gates for entry stubs made with `tdx_boot::entry_stub!`.
//! - [`uart`]: a 16550 UART driven with port IO.
//! - [`image`]: how an image is linked (for the images' build scripts).
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod gdt;
pub mod heap;
pub mod idt;
pub mod image;
#[cfg(bare_metal_image)]
pub mod runtime;
pub mod uart;
