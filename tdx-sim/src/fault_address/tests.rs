use std::vec::Vec;

use iced_x86::code_asm::*;
use proptest::prelude::*;

use super::*;

const RAX: usize = 0;
const RCX: usize = 1;
const RDX: usize = 2;
const RBX: usize = 3;
const RSP: usize = 4;
const RBP: usize = 5;
const RSI: usize = 6;
const RDI: usize = 7;
const R12: usize = 12;
const R13: usize = 13;

const RIP: u64 = 0xffff_8000_0010_2000;

/// Registers with distinct, recognisable values: GPR n holds 0x1111_0000_0000 * (n + 1) plus
/// a low part, so that a wrong register or width shows in the address.
fn registers() -> AddressRegisters {
    let mut gprs = [0u64; 16];
    for (n, gpr) in gprs.iter_mut().enumerate() {
        *gpr = 0x1111_0000_0000 * (n as u64 + 1) + 0x10_0000 * n as u64 + 0x1234;
    }
    AddressRegisters {
        gprs,
        rip: RIP,
        fs_base: 0x7f00_0000_0000,
        gs_base: 0xffff_8880_0000_0000,
    }
}

/// Assembles `build`'s one instruction at `RIP`.
fn assemble(build: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    build(&mut a).unwrap();
    a.assemble(RIP).unwrap()
}

fn address(bytes: &[u8], regs: &AddressRegisters) -> Result<u64, Unresolved> {
    memory_access(bytes, regs).map(|access| access.linear_address)
}

#[test]
fn base_index_scale_displacement_stores_and_loads() {
    let r = registers();
    let g = r.gprs;
    let cases: [(Vec<u8>, u64); 5] = [
        (
            assemble(|a| a.mov(qword_ptr(rax + rbx * 8 + 0x10), rcx)),
            g[RAX] + g[RBX] * 8 + 0x10,
        ),
        (
            assemble(|a| a.mov(rdx, qword_ptr(r12 + r13 * 4 - 0x80))),
            (g[R12] + g[R13] * 4).wrapping_sub(0x80),
        ),
        (
            assemble(|a| a.mov(dword_ptr(rsi + rdi * 2 + 0x1234_5678), eax)),
            g[RSI] + g[RDI] * 2 + 0x1234_5678,
        ),
        // RSP as a base (a SIB byte with no index) and RBP as a base (a displacement always).
        (assemble(|a| a.mov(rax, qword_ptr(rsp + 8))), g[RSP] + 8),
        (assemble(|a| a.mov(eax, dword_ptr(rbp))), g[RBP]),
    ];
    for (bytes, expected) in cases {
        assert_eq!(address(&bytes, &r), Ok(expected), "{bytes:02x?}");
        let access = memory_access(&bytes, &r).unwrap();
        assert_eq!(access.instruction_length, bytes.len());
    }
}

#[test]
fn hand_encoded_mmio_accesses_like_a_drivers() {
    let r = registers();
    let g = r.gprs;
    // mov [rax], ecx (89 08); mov eax, [rdx+0x10] (8B 42 10); mov [rdi+rcx*4+0x40], ebx.
    assert_eq!(address(&[0x89, 0x08], &r), Ok(g[RAX]));
    assert_eq!(address(&[0x8b, 0x42, 0x10], &r), Ok(g[RDX] + 0x10));
    assert_eq!(
        address(&[0x89, 0x5c, 0x8f, 0x40], &r),
        Ok(g[RDI] + g[RCX] * 4 + 0x40)
    );
    // A negative disp8: mov eax, [rbx-4] (8B 43 FC).
    assert_eq!(address(&[0x8b, 0x43, 0xfc], &r), Ok(g[RBX] - 4));
    // XLATB reads DS:[RBX+AL], AL being RAX's low byte.
    assert_eq!(address(&[0xd7], &r), Ok(g[RBX] + (g[RAX] & 0xff)));
}

#[test]
fn rip_relative_operands_count_from_the_next_instruction() {
    let r = registers();
    // mov rax, [rip+0x100] (48 8B 05 00 01 00 00): seven bytes long.
    let bytes = [0x48, 0x8b, 0x05, 0x00, 0x01, 0x00, 0x00];
    assert_eq!(address(&bytes, &r), Ok(RIP + 7 + 0x100));
    // mov dword [rip-0x20], 1 (C7 05 E0 FF FF FF 01 00 00 00): ten bytes, the immediate after
    // the displacement still counts.
    let bytes = [0xc7, 0x05, 0xe0, 0xff, 0xff, 0xff, 0x01, 0x00, 0x00, 0x00];
    assert_eq!(address(&bytes, &r), Ok(RIP + 10 - 0x20));
    // A different RIP moves the address with it.
    let moved = AddressRegisters {
        rip: 0x1000,
        ..registers()
    };
    assert_eq!(address(&bytes, &moved), Ok(0x1000 + 10 - 0x20));
}

#[test]
fn fs_and_gs_overrides_add_their_base_and_the_others_add_none() {
    let r = registers();
    let g = r.gprs;
    let in_fs = assemble(|a| a.mov(rax, qword_ptr(rbx + 8).fs()));
    assert_eq!(address(&in_fs, &r), Ok(r.fs_base.wrapping_add(g[RBX] + 8)));
    let in_gs = assemble(|a| a.mov(dword_ptr(rcx + rdx * 2).gs(), esi));
    assert_eq!(
        address(&in_gs, &r),
        Ok(r.gs_base.wrapping_add(g[RCX] + g[RDX] * 2))
    );
    // mov rax, gs:[0x28] (65 48 8B 04 25 28 00 00 00), an absolute address in GS.
    let bytes = [0x65, 0x48, 0x8b, 0x04, 0x25, 0x28, 0x00, 0x00, 0x00];
    assert_eq!(address(&bytes, &r), Ok(r.gs_base + 0x28));
    // ES, CS and SS overrides have base 0 in 64-bit mode (26, 2E, 36 prefixes).
    for prefix in [0x26, 0x2e, 0x36, 0x3e] {
        assert_eq!(
            address(&[prefix, 0x8b, 0x03], &r),
            Ok(g[RBX]),
            "{prefix:#x}"
        );
    }
}

#[test]
fn every_operand_size_addresses_the_same_byte() {
    let r = registers();
    let expected = r.gprs[RDI] + 4;
    let sizes = [
        assemble(|a| a.mov(byte_ptr(rdi + 4), al)),
        assemble(|a| a.mov(word_ptr(rdi + 4), ax)),
        assemble(|a| a.mov(dword_ptr(rdi + 4), eax)),
        assemble(|a| a.mov(qword_ptr(rdi + 4), rax)),
        assemble(|a| a.mov(ah, byte_ptr(rdi + 4))),
        assemble(|a| a.mov(r13w, word_ptr(rdi + 4))),
        assemble(|a| a.movzx(eax, byte_ptr(rsi + rcx * 2))),
        assemble(|a| a.movzx(rax, word_ptr(rsi + rcx * 2))),
    ];
    for bytes in &sizes[..6] {
        assert_eq!(address(bytes, &r), Ok(expected), "{bytes:02x?}");
    }
    let movzx = r.gprs[RSI] + r.gprs[RCX] * 2;
    for bytes in &sizes[6..] {
        assert_eq!(address(bytes, &r), Ok(movzx), "{bytes:02x?}");
    }
}

#[test]
fn a_32_bit_address_size_truncates_base_and_index() {
    let r = registers();
    // mov eax, [ebx+ecx*4+8] (67 8B 44 8B 08): the 0x67 prefix makes the address 32-bit.
    let bytes = [0x67, 0x8b, 0x44, 0x8b, 0x08];
    let expected = (r.gprs[RBX] as u32)
        .wrapping_add((r.gprs[RCX] as u32).wrapping_mul(4))
        .wrapping_add(8);
    assert_eq!(address(&bytes, &r), Ok(u64::from(expected)));
}

#[test]
fn string_instructions_with_one_access_are_resolved_and_movs_is_not() {
    let r = registers();
    // STOSD writes ES:[RDI]; LODSB reads DS:[RSI]; FS LODSB reads FS:[RSI].
    assert_eq!(address(&[0xab], &r), Ok(r.gprs[RDI]));
    assert_eq!(address(&[0xac], &r), Ok(r.gprs[RSI]));
    assert_eq!(address(&[0x64, 0xac], &r), Ok(r.fs_base + r.gprs[RSI]));
    // MOVSB, REP MOVSQ and CMPSB read one place and write or read another.
    for bytes in [&[0xa4][..], &[0xf3, 0x48, 0xa5], &[0xa6]] {
        assert_eq!(
            address(bytes, &r),
            Err(Unresolved::SeveralAccesses),
            "{bytes:02x?}"
        );
    }
}

#[test]
fn instructions_without_one_explicit_access_are_refused_with_their_reason() {
    let r = registers();
    let refused = [
        (
            assemble(|a| a.lea(rax, qword_ptr(rbx + 8))),
            Unresolved::NotAnAccess,
        ),
        (vec![0x0f, 0x1f, 0x40, 0x00], Unresolved::NotAnAccess), // nop [rax]
        (assemble(|a| a.mov(rax, rbx)), Unresolved::NoMemoryOperand),
        (vec![0x0f, 0x0b], Unresolved::NoMemoryOperand), // ud2
        (vec![0x50], Unresolved::NoMemoryOperand),       // push rax
        (vec![0xff, 0x30], Unresolved::SeveralAccesses), // push [rax]
        (vec![0x8f, 0x00], Unresolved::SeveralAccesses), // pop [rax]
        (vec![0xff, 0x10], Unresolved::SeveralAccesses), // call [rax]
        // vpgatherdd xmm0, [rax+xmm1*4], xmm2: four addresses.
        (
            vec![0xc4, 0xe2, 0x69, 0x90, 0x04, 0x88],
            Unresolved::SeveralAccesses,
        ),
    ];
    for (bytes, why) in refused {
        assert_eq!(address(&bytes, &r), Err(why), "{bytes:02x?}");
    }
    // JMP through memory reads one place: resolved.
    assert_eq!(address(&[0xff, 0x20], &r), Ok(r.gprs[RAX]));
}

#[test]
fn truncated_and_invalid_bytes_are_told_apart() {
    let r = registers();
    let whole = assemble(|a| a.mov(dword_ptr(rax + rbx * 8 + 0x1000), 0x5a5a_5a5au32 as i32));
    assert!(whole.len() > 8);
    for end in 0..whole.len() {
        assert_eq!(
            address(&whole[..end], &r),
            Err(Unresolved::Truncated),
            "{end} of {} bytes",
            whole.len()
        );
    }
    assert!(address(&whole, &r).is_ok());
    // PUSH ES, DAA and SALC do not exist in 64-bit mode; LOCK on a register move is #UD.
    // Each is followed by NOPs, as the bytes read at a guest's RIP would be.
    for invalid in [&[0x06][..], &[0x27], &[0xd6], &[0xf0, 0x89, 0xc8]] {
        let mut bytes = invalid.to_vec();
        bytes.resize(15, 0x90);
        assert_eq!(
            address(&bytes, &r),
            Err(Unresolved::Undecodable),
            "{bytes:02x?}"
        );
    }
    // Fifteen prefixes and an opcode: longer than an instruction may be.
    let mut long = vec![0x66u8; 15];
    long.extend([0x89, 0x08]);
    assert_eq!(address(&long, &r), Err(Unresolved::Undecodable));
}

/// The general-purpose registers iced names, by their encoding number.
const GPR64: [AsmRegister64; 16] = [
    rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
];

proptest! {
    /// Any base, index (not RSP, which cannot be one), scale and displacement: the address is
    /// the plain sum, computed here without iced.
    #[test]
    fn any_base_index_scale_displacement_is_the_plain_sum(
        gprs in prop::array::uniform16(any::<u64>()),
        base in 0usize..16,
        index in 0usize..16,
        scale_shift in 0u32..4,
        displacement in any::<i32>(),
    ) {
        prop_assume!(index != RSP);
        let r = AddressRegisters { gprs, ..registers() };
        let scale = 1u32 << scale_shift;
        let bytes = assemble(|a| {
            a.mov(eax, dword_ptr(GPR64[base] + GPR64[index] * scale + displacement))
        });
        let expected = gprs[base]
            .wrapping_add(gprs[index].wrapping_mul(u64::from(scale)))
            .wrapping_add(displacement as i64 as u64);
        prop_assert_eq!(address(&bytes, &r), Ok(expected));
    }

    /// Whatever the guest's bytes and registers, an answer or a reason, never a panic; a
    /// resolved access is never longer than 15 bytes nor than the bytes given.
    #[test]
    fn hostile_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..20),
        gprs in prop::array::uniform16(any::<u64>()),
        rip in any::<u64>(),
    ) {
        let r = AddressRegisters { gprs, rip, ..registers() };
        if let Ok(access) = memory_access(&bytes, &r) {
            prop_assert!(access.instruction_length <= 15.min(bytes.len()));
        }
    }
}
