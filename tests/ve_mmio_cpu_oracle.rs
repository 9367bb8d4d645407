//! The host CPU as the oracle for `complete_read` and `write_value`: each instruction is executed
//! for real on ordinary memory and decoded from its own bytes, and the registers (or the memory)
//! the CPU produced must equal what the decoder's emulation produces from the same start state.
//! Covers high-byte registers, 8/16-bit merges, 32-bit zero extension, MOVZX/MOVSX at each width
//! and the immediate forms, including C7 with REX.W (sign-extended imm32).

#![cfg(target_arch = "x86_64")]

use core::arch::asm;
use tdx_boot::ve::Frame;
use tdx_boot::ve::mmio::decode;

const START: [u64; 4] = [
    0xa1a2_a3a4_a5a6_a7a8, // rax
    0xb1b2_b3b4_b5b6_b7b8, // rcx
    0xc1c2_c3c4_c5c6_c7c8, // rdx
    0xd1d2_d3d4_d5d6_d7d8, // r8
];

/// Memory contents that exercise sign extension (every byte >= 0x80) and its absence.
const MEMORY: [u64; 2] = [0x8182_8384_8586_8788, 0x0102_0304_0506_0708];

struct Run {
    bytes: Vec<u8>,
    regs: [u64; 4],
    memory: u64,
}

/// Executes `$insn` (which uses RAX, RCX, RDX, R8 and `[rdi]`) with START in the registers and
/// `$memory` at `[rdi]`, and returns its bytes, the registers and the memory afterwards.
macro_rules! execute {
    ($insn:literal, $memory:expr) => {{
        let mut memory: u64 = $memory;
        let [mut rax, mut rcx, mut rdx, mut r8] = START;
        let (start, end): (usize, usize);
        // SAFETY: the instruction touches only the four declared registers and the 8 bytes at
        // RDI, which point at `memory`; the labels only delimit it to read its bytes.
        unsafe {
            asm!(
                "lea {start}, [rip + 2f]",
                "lea {end}, [rip + 3f]",
                "2:",
                $insn,
                "3:",
                start = out(reg) start,
                end = out(reg) end,
                inout("rax") rax,
                inout("rcx") rcx,
                inout("rdx") rdx,
                inout("r8") r8,
                in("rdi") &mut memory as *mut u64,
                options(nostack, preserves_flags),
            )
        };
        // SAFETY: `start..end` is this function's own code.
        let bytes = unsafe { std::slice::from_raw_parts(start as *const u8, end - start) }.to_vec();
        Run {
            bytes,
            regs: [rax, rcx, rdx, r8],
            memory,
        }
    }};
}

fn start_frame() -> Frame {
    Frame {
        rax: START[0],
        rcx: START[1],
        rdx: START[2],
        r8: START[3],
        ..Frame::default()
    }
}

fn check_load(run: Run, memory: u64) {
    let mmio = decode(&run.bytes).unwrap_or_else(|e| panic!("{:02x?}: {e}", run.bytes));
    assert_eq!(mmio.insn_len(), run.bytes.len());
    assert!(!mmio.is_write(), "{:02x?}", run.bytes);
    let mut frame = start_frame();
    // The VMM returns more than the access width; only `size` bytes may count.
    mmio.complete_read(&mut frame, memory);
    assert_eq!(
        [frame.rax, frame.rcx, frame.rdx, frame.r8],
        run.regs,
        "{:02x?} with memory {memory:#x}",
        run.bytes
    );
}

fn check_store(run: Run) {
    let mmio = decode(&run.bytes).unwrap_or_else(|e| panic!("{:02x?}: {e}", run.bytes));
    assert_eq!(mmio.insn_len(), run.bytes.len());
    assert!(mmio.is_write(), "{:02x?}", run.bytes);
    let frame = start_frame();
    let size = mmio.size();
    let mask = if size == 8 {
        u64::MAX
    } else {
        (1 << (8 * size)) - 1
    };
    // Memory started as all ones: the store replaced exactly `size` bytes.
    let emulated = !mask | (mmio.write_value(&frame) & mask);
    assert_eq!(emulated, run.memory, "{:02x?}", run.bytes);
    assert_eq!(run.regs, START, "a store changes no register");
}

macro_rules! loads {
    ($($insn:literal),* $(,)?) => {
        $(for memory in MEMORY {
            check_load(execute!($insn, memory), memory);
        })*
    };
}

macro_rules! stores {
    ($($insn:literal),* $(,)?) => {
        $(check_store(execute!($insn, u64::MAX));)*
    };
}

#[test]
fn loads_match_the_cpu() {
    loads!(
        "mov al, byte ptr [rdi]",
        "mov ah, byte ptr [rdi]",
        "mov ch, byte ptr [rdi]",
        "mov dh, byte ptr [rdi]",
        "mov dl, byte ptr [rdi]",
        "mov r8b, byte ptr [rdi]",
        "mov ax, word ptr [rdi]",
        "mov r8w, word ptr [rdi]",
        "mov eax, dword ptr [rdi]",
        "mov ecx, dword ptr [rdi + 0]",
        "mov r8d, dword ptr [rdi]",
        "mov rdx, qword ptr [rdi]",
        // with a redundant DS override: 3e 4c 8b 07
        ".byte 0x3e, 0x4c, 0x8b, 0x07",
        "movzx eax, byte ptr [rdi]",
        "movzx ax, byte ptr [rdi]",
        "movzx rcx, byte ptr [rdi]",
        "movzx edx, word ptr [rdi]",
        "movzx r8, word ptr [rdi]",
        "movsx eax, byte ptr [rdi]",
        "movsx ax, byte ptr [rdi]",
        "movsx rcx, byte ptr [rdi]",
        "movsx edx, word ptr [rdi]",
        "movsx r8, word ptr [rdi]",
        // movsx r8w, word ptr [rdi] (assemblers refuse the 16-from-16 form; the CPU does not)
        ".byte 0x66, 0x44, 0x0f, 0xbf, 0x07",
        // 66 + REX.W: REX.W wins, a 64-bit load
        ".byte 0x66, 0x48, 0x8b, 0x07",
        // REX.W then 66: the REX is ignored, a 16-bit load into AX
        ".byte 0x48, 0x66, 0x8b, 0x07",
    );
}

#[test]
fn stores_match_the_cpu() {
    stores!(
        "mov byte ptr [rdi], al",
        "mov byte ptr [rdi], ah",
        "mov byte ptr [rdi], ch",
        "mov byte ptr [rdi], dh",
        "mov byte ptr [rdi], r8b",
        "mov word ptr [rdi], cx",
        "mov dword ptr [rdi], edx",
        "mov dword ptr [rdi], r8d",
        "mov qword ptr [rdi], rax",
        "mov qword ptr [rdi], r8",
        "mov byte ptr [rdi], 0x9a",
        "mov word ptr [rdi], 0x8123",
        "mov dword ptr [rdi], 0x81234567",
        "mov qword ptr [rdi], -2",
        "mov qword ptr [rdi], 0x7fffffff",
        "mov qword ptr [rdi], -0x80000000",
        // mov byte ptr [rdi], dl with an empty REX (40 88 17)
        ".byte 0x40, 0x88, 0x17",
    );
}
