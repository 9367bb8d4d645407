//! iced-x86 register names by instruction-encoding number, for the tests that check the MMIO
//! decoder against iced-x86. Declared with `#[path]` where needed, so those tests do not pull in
//! the model helpers of `common/mod.rs`.
#![allow(dead_code)]

use iced_x86::Register as R;

/// The general-purpose registers of `width` bytes (1, 2, 4; anything else means 8), indexed by
/// their encoding number 0..16. Byte registers 4..7 are SPL, BPL, SIL, DIL (the REX forms), never
/// AH..BH.
pub fn gprs(width: usize) -> [R; 16] {
    match width {
        1 => [
            R::AL,
            R::CL,
            R::DL,
            R::BL,
            R::SPL,
            R::BPL,
            R::SIL,
            R::DIL,
            R::R8L,
            R::R9L,
            R::R10L,
            R::R11L,
            R::R12L,
            R::R13L,
            R::R14L,
            R::R15L,
        ],
        2 => [
            R::AX,
            R::CX,
            R::DX,
            R::BX,
            R::SP,
            R::BP,
            R::SI,
            R::DI,
            R::R8W,
            R::R9W,
            R::R10W,
            R::R11W,
            R::R12W,
            R::R13W,
            R::R14W,
            R::R15W,
        ],
        4 => [
            R::EAX,
            R::ECX,
            R::EDX,
            R::EBX,
            R::ESP,
            R::EBP,
            R::ESI,
            R::EDI,
            R::R8D,
            R::R9D,
            R::R10D,
            R::R11D,
            R::R12D,
            R::R13D,
            R::R14D,
            R::R15D,
        ],
        _ => [
            R::RAX,
            R::RCX,
            R::RDX,
            R::RBX,
            R::RSP,
            R::RBP,
            R::RSI,
            R::RDI,
            R::R8,
            R::R9,
            R::R10,
            R::R11,
            R::R12,
            R::R13,
            R::R14,
            R::R15,
        ],
    }
}
