//! Differential testing of the MMIO decoder against iced-x86 over generated encodings.
//!
//! Whenever one decoder accepts an MMIO move, the other must agree on its length, access size,
//! direction, register (high bytes included), extension, immediate and memory operand; whenever
//! iced-x86 sees one of the supported moves, ours must accept it unless a LOCK/REP prefix is
//! present (which ours refuses by design); and a truncated input must be truncated for both.

#[path = "common/iced.rs"]
mod iced_registers;

use iced_x86::{Decoder, DecoderError, DecoderOptions, Instruction, Mnemonic, OpKind};
use tdx_boot::ve::mmio::{
    AddressForm, Extension, Mmio, MmioError, Operation, Register, SegmentBase, Source, decode,
};

/// iced-x86's view: the instruction, or why it is not one.
fn iced(bytes: &[u8]) -> Result<Instruction, DecoderError> {
    let mut decoder = Decoder::new(64, bytes, DecoderOptions::NONE);
    let insn = decoder.decode();
    if insn.is_invalid() {
        Err(decoder.last_error())
    } else {
        Ok(insn)
    }
}

/// Whether iced decoded one of the moves our decoder emulates.
fn is_supported_move(insn: &Instruction) -> bool {
    matches!(
        insn.mnemonic(),
        Mnemonic::Mov | Mnemonic::Movzx | Mnemonic::Movsx
    ) && insn.op_count() == 2
        && (insn.op0_kind() == OpKind::Memory || insn.op1_kind() == OpKind::Memory)
        && (0..2).all(|op| insn.op_kind(op) != OpKind::Register || insn.op_register(op).is_gpr())
}

fn iced_register(register: Register) -> iced_x86::Register {
    use iced_x86::Register as R;
    let n = usize::from(register.number);
    if register.high_byte {
        return [R::AH, R::CH, R::DH, R::BH][n];
    }
    iced_registers::gprs(register.width.into())[n]
}

fn number_of(register: iced_x86::Register) -> Option<u8> {
    (0..16u8).find(|&number| {
        [4, 8].into_iter().any(|width| {
            iced_register(Register {
                number,
                width,
                high_byte: false,
            }) == register
        })
    })
}

fn assert_same(bytes: &[u8], ours: &Mmio, insn: &Instruction) {
    let context = format!("{bytes:02x?}: ours {ours:?}, iced {:?}", insn.code());
    assert_eq!(ours.insn_len(), insn.len(), "{context}");
    assert_eq!(ours.size(), insn.memory_size().size(), "{context}");
    assert_eq!(
        ours.is_write(),
        insn.op0_kind() == OpKind::Memory,
        "{context}"
    );
    match ours.operation() {
        Operation::Write(Source::Register(r)) => {
            assert_eq!(insn.op1_kind(), OpKind::Register, "{context}");
            assert_eq!(insn.op_register(1), iced_register(r), "{context}");
        }
        Operation::Write(Source::Immediate(value)) => {
            assert_eq!(insn.immediate(1) & mask(ours.size()), value, "{context}");
        }
        Operation::Read {
            destination,
            extension,
        } => {
            assert_eq!(insn.op_register(0), iced_register(destination), "{context}");
            let mnemonic = match extension {
                Extension::None => Mnemonic::Mov,
                Extension::Zero => Mnemonic::Movzx,
                Extension::Sign => Mnemonic::Movsx,
            };
            assert_eq!(insn.mnemonic(), mnemonic, "{context}");
        }
    }
    let operand = ours.operand();
    let segment = match insn.segment_prefix() {
        iced_x86::Register::FS => Some(SegmentBase::Fs),
        iced_x86::Register::GS => Some(SegmentBase::Gs),
        _ => None,
    };
    assert_eq!(operand.segment, segment, "{context}");
    match operand.form {
        AddressForm::Absolute(address) => {
            assert_eq!(insn.memory_displacement64(), address, "{context}");
        }
        AddressForm::RipRelative(displacement) => {
            assert!(insn.is_ip_rel_memory_operand(), "{context}");
            let target = (insn.len() as i64 + i64::from(displacement)) as u64;
            let target = if operand.address_size == 4 {
                target & 0xffff_ffff
            } else {
                target
            };
            assert_eq!(insn.ip_rel_memory_address(), target, "{context}");
        }
        AddressForm::Indirect {
            base,
            index,
            scale,
            displacement,
        } => {
            assert_eq!(number_of(insn.memory_base()), base, "{context}");
            assert_eq!(number_of(insn.memory_index()), index, "{context}");
            if index.is_some() {
                assert_eq!(insn.memory_index_scale(), u32::from(scale), "{context}");
            }
            let expected = if operand.address_size == 4 {
                u64::from(displacement as u32)
            } else {
                displacement as i64 as u64
            };
            assert_eq!(insn.memory_displacement64(), expected, "{context}");
        }
    }
}

fn mask(size: usize) -> u64 {
    if size == 8 {
        u64::MAX
    } else {
        (1 << (8 * size)) - 1
    }
}

/// The bytes before the opcode (legacy prefixes and REX).
fn prefix_bytes(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .position(|b| {
            !matches!(
                b,
                0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3 | 0x40
                    ..=0x4f
            )
        })
        .unwrap_or(bytes.len());
    &bytes[..end]
}

/// Decodes `bytes` with both and checks they agree. Returns whether ours accepted.
fn compare(bytes: &[u8]) -> bool {
    let ours = decode(bytes);
    let theirs = iced(bytes);
    match (&ours, &theirs) {
        (Ok(mmio), Ok(insn)) => {
            assert!(
                is_supported_move(insn),
                "{bytes:02x?}: ours {mmio:?}, iced {:?}",
                insn.code()
            );
            assert_same(bytes, mmio, insn);
        }
        (Ok(mmio), Err(error)) => panic!("{bytes:02x?}: ours {mmio:?}, iced {error:?}"),
        (Err(MmioError::Truncated), theirs) => {
            assert!(
                matches!(theirs, Err(DecoderError::NoMoreBytes)),
                "{bytes:02x?}: ours Truncated, iced {theirs:?}"
            );
        }
        (Err(MmioError::TooLong), theirs) => {
            assert!(
                theirs.is_err(),
                "{bytes:02x?}: ours TooLong, iced {theirs:?}"
            );
        }
        (Err(error), Ok(insn)) if is_supported_move(insn) => {
            let prefixes = prefix_bytes(bytes);
            let allowed = match error {
                MmioError::Lock => prefixes.contains(&0xf0),
                MmioError::Rep => prefixes.contains(&0xf2) || prefixes.contains(&0xf3),
                _ => false,
            };
            assert!(
                allowed,
                "{bytes:02x?}: ours {error:?}, iced {:?}",
                insn.code()
            );
        }
        (Err(_), _) => {}
    }
    ours.is_ok()
}

#[path = "common/rng.rs"]
mod rng;
use rng::Rng;

const OPCODES: [&[u8]; 14] = [
    &[0x88],
    &[0x89],
    &[0x8a],
    &[0x8b],
    &[0xc6],
    &[0xc7],
    &[0x0f, 0xb6],
    &[0x0f, 0xb7],
    &[0x0f, 0xbe],
    &[0x0f, 0xbf],
    &[0xa0],
    &[0xa1],
    &[0xa2],
    &[0xa3],
];

#[test]
fn random_encodings_agree_with_iced() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let prefix_pool = [
        0x66, 0x67, 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x40, 0x41, 0x44, 0x48, 0x4c, 0x4f, 0x42,
        0xf0, 0xf2, 0xf3,
    ];
    let mut accepted = 0;
    let cases = 300_000;
    for _ in 0..cases {
        let mut bytes = Vec::with_capacity(32);
        for _ in 0..rng.below(5) {
            bytes.push(rng.pick(&prefix_pool));
        }
        if rng.below(2) == 0 {
            bytes.push(0x40 | rng.below(16) as u8);
        }
        match rng.below(10) {
            0 => bytes.push(rng.next() as u8),
            1 => bytes.extend_from_slice(&[0x0f, rng.next() as u8]),
            _ => bytes.extend_from_slice(rng.pick(&OPCODES)),
        }
        for _ in 0..14 {
            bytes.push(rng.next() as u8);
        }
        if rng.below(5) == 0 {
            bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize);
        }
        accepted += usize::from(compare(&bytes));
    }
    // The generator must actually exercise the accepted forms.
    assert!(accepted > cases / 4, "only {accepted} of {cases} accepted");
}

#[test]
fn every_modrm_and_sib_agree_with_iced() {
    let prefix_sets: [&[u8]; 6] = [
        &[],
        &[0x4f],
        &[0x66, 0x41],
        &[0x67],
        &[0x40],
        &[0x65, 0x66, 0x4a],
    ];
    let tail = [
        0x78, 0x56, 0x34, 0x92, 0xef, 0xcd, 0xab, 0x89, 0x10, 0x20, 0x30, 0x40,
    ];
    let mut accepted = 0;
    for prefixes in prefix_sets {
        for opcode in OPCODES.iter().take(10) {
            for modrm in 0..=255u8 {
                let sibs: &[u8] = if modrm & 7 == 4 && modrm >> 6 != 3 {
                    &SIB_ALL
                } else {
                    &[0x00]
                };
                for &sib in sibs {
                    let mut bytes = prefixes.to_vec();
                    bytes.extend_from_slice(opcode);
                    bytes.push(modrm);
                    if modrm & 7 == 4 && modrm >> 6 != 3 {
                        bytes.push(sib);
                    }
                    bytes.extend_from_slice(&tail);
                    accepted += usize::from(compare(&bytes));
                }
            }
        }
    }
    assert!(accepted > 100_000, "only {accepted} accepted");
}

const SIB_ALL: [u8; 256] = {
    let mut all = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        all[i] = i as u8;
        i += 1;
    }
    all
};

#[test]
fn every_single_byte_opcode_with_and_without_rex() {
    for rex in [None, Some(0x40u8), Some(0x48), Some(0x4d)] {
        for opcode in 0..=255u8 {
            for second in [0x00u8, 0x05, 0x44, 0x84, 0xb6, 0xbf, 0xc0] {
                let mut bytes: Vec<u8> = rex.into_iter().collect();
                bytes.extend_from_slice(&[opcode, second, 0x24, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
                compare(&bytes);
            }
        }
    }
}
