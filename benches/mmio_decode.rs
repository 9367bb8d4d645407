//! Decode time per MMIO instruction: `tdx_boot::ve::mmio::decode` against iced-x86's decoder
//! over the same mix of encodings, in the same run.
//!
//! Prints ns per instruction for both and the ratio (iced / ours: above 1 means ours is faster).

use iced_x86::{Decoder, DecoderOptions};
use std::hint::black_box;
use std::time::Instant;
use tdx_boot::ve::mmio::decode;

/// A mix of the forms a kernel's MMIO paths contain: plain loads/stores, SIB, displacements,
/// immediates, movzx, REX and 66 prefixes, moffs.
const MIX: [&[u8]; 12] = [
    &[0x8b, 0x07],                                           // mov eax, [rdi]
    &[0x89, 0x47, 0x10],                                     // mov [rdi+0x10], eax
    &[0x48, 0x8b, 0x84, 0x24, 0x00, 0x01, 0x00, 0x00],       // mov rax, [rsp+0x100]
    &[0x44, 0x88, 0x3e],                                     // mov [rsi], r15b
    &[0x66, 0x89, 0x0a],                                     // mov [rdx], cx
    &[0x0f, 0xb6, 0x46, 0x04],                               // movzx eax, byte [rsi+4]
    &[0x0f, 0xb7, 0x0e],                                     // movzx ecx, word [rsi]
    &[0xc7, 0x47, 0x08, 0x01, 0x00, 0x00, 0x00],             // mov dword [rdi+8], 1
    &[0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0xff],             // mov qword [rax], -1
    &[0x8b, 0x05, 0x00, 0x10, 0x00, 0x00],                   // mov eax, [rip+0x1000]
    &[0x41, 0x8b, 0x44, 0x8d, 0x00],                         // mov eax, [r13+rcx*4]
    &[0xa1, 0x00, 0x00, 0xe0, 0xfe, 0x00, 0x00, 0x00, 0x00], // mov eax, [moffs]
];

const ROUNDS: usize = 100_000;

/// One timed pass over the mix, in ns per instruction.
fn pass(decode_one: &mut impl FnMut(&[u8]) -> usize) -> f64 {
    let start = Instant::now();
    let mut total = 0usize;
    for _ in 0..ROUNDS {
        for code in MIX {
            total = total.wrapping_add(decode_one(black_box(code)));
        }
    }
    black_box(total);
    start.elapsed().as_nanos() as f64 / (ROUNDS * MIX.len()) as f64
}

/// Alternates passes of both decoders (so load from other processes hits both alike) and keeps
/// each one's best pass.
fn best_of_interleaved(
    mut ours: impl FnMut(&[u8]) -> usize,
    mut theirs: impl FnMut(&[u8]) -> usize,
) -> (f64, f64) {
    pass(&mut ours);
    pass(&mut theirs);
    let (mut best_ours, mut best_theirs) = (f64::MAX, f64::MAX);
    for _ in 0..10 {
        best_ours = best_ours.min(pass(&mut ours));
        best_theirs = best_theirs.min(pass(&mut theirs));
    }
    (best_ours, best_theirs)
}

fn main() {
    // Both must agree on every length, or the comparison is meaningless.
    for code in MIX {
        let ours = decode(code).map(|m| m.insn_len());
        let theirs = Decoder::new(64, code, DecoderOptions::NONE).decode().len();
        assert_eq!(ours, Ok(theirs), "{code:02x?}");
    }
    let (ours, iced) = best_of_interleaved(
        |code| decode(code).map_or(0, |m| m.insn_len() + m.size()),
        |code| {
            let insn = Decoder::new(64, code, DecoderOptions::NONE).decode();
            insn.len() + insn.op_count() as usize
        },
    );
    println!("mmio_decode: tdx_boot::ve::mmio::decode {ours:.2} ns/insn");
    println!("mmio_decode: iced-x86 Decoder            {iced:.2} ns/insn (incl. Decoder::new)");
    println!("mmio_decode: ratio iced / ours = {:.2}x", iced / ours);
}
