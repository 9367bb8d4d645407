//! The MMIO decoder, form by form: lengths, sizes, directions, registers (high bytes included),
//! immediates, prefixes in any order, every refusal, and how reads land in the registers.

use tdx_boot::ve::Frame;
use tdx_boot::ve::mmio::{
    AddressForm, Extension, MmioError, Operation, Register, SegmentBase, Source, decode,
};

const FILL: u64 = 0x1122_3344_5566_7788;

fn frame_filled() -> Frame {
    let mut frame = Frame::default();
    for n in 0..16 {
        *frame.gpr_mut(n) = FILL ^ (u64::from(n) << 56);
    }
    frame
}

fn reg(number: u8, width: u8) -> Register {
    Register {
        number,
        width,
        high_byte: false,
    }
}

fn high(number: u8) -> Register {
    Register {
        number,
        width: 1,
        high_byte: true,
    }
}

#[test]
fn byte_stores_name_every_register_and_the_high_bytes_without_rex() {
    for reg_field in 0..8u8 {
        let modrm = reg_field << 3; // [rax]
        let plain = decode(&[0x88, modrm]).unwrap();
        let expected = if reg_field < 4 {
            reg(reg_field, 1)
        } else {
            high(reg_field - 4)
        };
        assert_eq!(
            plain.operation(),
            Operation::Write(Source::Register(expected))
        );
        assert_eq!(
            (plain.insn_len(), plain.size(), plain.is_write()),
            (2, 1, true)
        );

        // Any REX, even 0x40, turns 4..7 into SPL, BPL, SIL, DIL; REX.R adds 8.
        let with_rex = decode(&[0x40, 0x88, modrm]).unwrap();
        assert_eq!(
            with_rex.operation(),
            Operation::Write(Source::Register(reg(reg_field, 1)))
        );
        let extended = decode(&[0x44, 0x88, modrm]).unwrap();
        assert_eq!(
            extended.operation(),
            Operation::Write(Source::Register(reg(reg_field + 8, 1)))
        );
        assert_eq!(extended.insn_len(), 3);
    }
}

#[test]
fn byte_store_values_come_from_the_right_byte() {
    let mut frame = frame_filled();
    frame.rax = 0xaaaa_aaaa_aaaa_1234;
    frame.rsp = 0xbbbb_bbbb_bbbb_5678;
    // mov [rcx], ah
    assert_eq!(decode(&[0x88, 0x21]).unwrap().write_value(&frame), 0x12);
    // mov [rcx], spl
    assert_eq!(
        decode(&[0x40, 0x88, 0x21]).unwrap().write_value(&frame),
        0x78
    );
    // mov [rcx], al
    assert_eq!(decode(&[0x88, 0x01]).unwrap().write_value(&frame), 0x34);
    frame.r15 = 0x0102_0304_0506_0708;
    // mov [rcx], r15b / r15w / r15d / r15
    assert_eq!(
        decode(&[0x44, 0x88, 0x39]).unwrap().write_value(&frame),
        0x08
    );
    assert_eq!(
        decode(&[0x66, 0x44, 0x89, 0x39])
            .unwrap()
            .write_value(&frame),
        0x0708
    );
    assert_eq!(
        decode(&[0x44, 0x89, 0x39]).unwrap().write_value(&frame),
        0x0506_0708
    );
    assert_eq!(
        decode(&[0x4c, 0x89, 0x39]).unwrap().write_value(&frame),
        0x0102_0304_0506_0708
    );
}

#[test]
fn word_stores_follow_the_operand_size() {
    for reg_number in 0..16u8 {
        let rex_r = if reg_number >= 8 { 0x44 } else { 0 };
        let modrm = (reg_number & 7) << 3 | 0x03; // [rbx]
        let cases: [(&[u8], u8); 3] = [
            (&[0x66, rex_r, 0x89, modrm], 2),
            (&[rex_r, 0x89, modrm], 4),
            (&[0x66, rex_r | 0x48, 0x89, modrm], 8), // REX.W beats 66
        ];
        for (bytes, width) in cases {
            let bytes: Vec<u8> = bytes.iter().copied().filter(|&b| b != 0).collect();
            let mmio = decode(&bytes).unwrap();
            assert_eq!(mmio.size(), usize::from(width), "{bytes:02x?}");
            assert_eq!(mmio.insn_len(), bytes.len());
            assert_eq!(
                mmio.operation(),
                Operation::Write(Source::Register(reg(reg_number, width)))
            );
            let frame = frame_filled();
            let mask = if width == 8 {
                u64::MAX
            } else {
                (1 << (8 * width)) - 1
            };
            assert_eq!(mmio.write_value(&frame), frame.gpr(reg_number) & mask);
        }
    }
}

#[test]
fn byte_loads_merge_including_the_high_bytes() {
    for reg_field in 0..8u8 {
        let mmio = decode(&[0x8a, reg_field << 3 | 0x06]).unwrap(); // mov r8, [rsi]
        assert!(!mmio.is_write());
        let mut frame = frame_filled();
        let before = frame;
        mmio.complete_read(&mut frame, 0xffff_ffff_ffff_ffab);
        let (number, shift) = if reg_field < 4 {
            (reg_field, 0)
        } else {
            (reg_field - 4, 8)
        };
        let expected = (before.gpr(number) & !(0xff << shift)) | (0xab << shift);
        assert_eq!(frame.gpr(number), expected, "reg field {reg_field}");
        // Nothing else changed.
        let mut other = frame;
        *other.gpr_mut(number) = before.gpr(number);
        assert_eq!(other, before);

        let mut frame = frame_filled();
        decode(&[0x40, 0x8a, reg_field << 3 | 0x06])
            .unwrap()
            .complete_read(&mut frame, 0xab);
        assert_eq!(
            frame.gpr(reg_field),
            (before.gpr(reg_field) & !0xff) | 0xab,
            "with REX, reg field {reg_field} is a low byte"
        );
    }
}

#[test]
fn wider_loads_merge_16_and_zero_extend_32() {
    let value = 0x8877_6655_4433_2211;
    for reg_number in 0..16u8 {
        let rex_r = if reg_number >= 8 { 0x44 } else { 0 };
        let modrm = (reg_number & 7) << 3 | 0x07; // [rdi]
        let strip =
            |bytes: &[u8]| -> Vec<u8> { bytes.iter().copied().filter(|&b| b != 0).collect() };

        let mut frame = frame_filled();
        let before = frame.gpr(reg_number);
        decode(&strip(&[0x66, rex_r, 0x8b, modrm]))
            .unwrap()
            .complete_read(&mut frame, value);
        assert_eq!(frame.gpr(reg_number), (before & !0xffff) | 0x2211);

        decode(&strip(&[rex_r, 0x8b, modrm]))
            .unwrap()
            .complete_read(&mut frame, value);
        assert_eq!(frame.gpr(reg_number), 0x4433_2211);

        decode(&strip(&[rex_r | 0x48, 0x8b, modrm]))
            .unwrap()
            .complete_read(&mut frame, value);
        assert_eq!(frame.gpr(reg_number), value);
    }
}

#[test]
fn immediates_have_the_access_width_and_rex_w_sign_extends() {
    let frame = frame_filled();
    let cases: [(&[u8], usize, usize, u64); 6] = [
        (&[0xc6, 0x00, 0x9a], 3, 1, 0x9a),
        (&[0x66, 0xc7, 0x00, 0x34, 0x92], 5, 2, 0x9234),
        (&[0xc7, 0x00, 0x78, 0x56, 0x34, 0x92], 6, 4, 0x9234_5678),
        (
            &[0x48, 0xc7, 0x00, 0x78, 0x56, 0x34, 0x92],
            7,
            8,
            0xffff_ffff_9234_5678,
        ),
        (
            &[0x48, 0xc7, 0x00, 0x78, 0x56, 0x34, 0x12],
            7,
            8,
            0x1234_5678,
        ),
        // 66 does not change a REX.W form: still imm32.
        (
            &[0x66, 0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0xff],
            8,
            8,
            u64::MAX,
        ),
    ];
    for (bytes, len, size, value) in cases {
        let mmio = decode(bytes).unwrap();
        assert_eq!((mmio.insn_len(), mmio.size()), (len, size), "{bytes:02x?}");
        assert!(mmio.is_write());
        assert_eq!(mmio.write_value(&frame), value, "{bytes:02x?}");
        assert_eq!(mmio.operation(), Operation::Write(Source::Immediate(value)));
    }
    // C6/C7 with a displacement: the immediate follows it.
    let mmio = decode(&[0xc7, 0x80, 0x00, 0x10, 0x00, 0x00, 0xef, 0xbe, 0xad, 0xde]).unwrap();
    assert_eq!(mmio.insn_len(), 10);
    assert_eq!(mmio.write_value(&frame), 0xdead_beef);
}

#[test]
fn movzx_and_movsx_extend_to_the_destination_width() {
    // (bytes, source size, destination register number, extension, value, expected from before)
    type Expect = fn(u64) -> u64;
    let cases: [(&[u8], usize, u8, Extension, Expect); 10] = [
        (&[0x0f, 0xb6, 0x01], 1, 0, Extension::Zero, |_| 0x80),
        (&[0x0f, 0xbe, 0x01], 1, 0, Extension::Sign, |_| 0xffff_ff80),
        (&[0x48, 0x0f, 0xbe, 0x01], 1, 0, Extension::Sign, |_| {
            0xffff_ffff_ffff_ff80
        }),
        (&[0x66, 0x0f, 0xbe, 0x01], 1, 0, Extension::Sign, |b| {
            (b & !0xffff) | 0xff80
        }),
        (&[0x66, 0x0f, 0xb6, 0x01], 1, 0, Extension::Zero, |b| {
            (b & !0xffff) | 0x0080
        }),
        (&[0x0f, 0xb7, 0x19], 2, 3, Extension::Zero, |_| 0x8080),
        (&[0x0f, 0xbf, 0x19], 2, 3, Extension::Sign, |_| 0xffff_8080),
        (&[0x4c, 0x0f, 0xbf, 0x39], 2, 15, Extension::Sign, |_| {
            0xffff_ffff_ffff_8080
        }),
        (&[0x4c, 0x0f, 0xb7, 0x39], 2, 15, Extension::Zero, |_| {
            0x8080
        }),
        (&[0x66, 0x0f, 0xbf, 0x19], 2, 3, Extension::Sign, |b| {
            (b & !0xffff) | 0x8080
        }),
    ];
    for (bytes, size, number, extension, expected) in cases {
        let mmio = decode(bytes).unwrap();
        assert_eq!(mmio.size(), size, "{bytes:02x?}");
        assert_eq!(mmio.insn_len(), bytes.len());
        let Operation::Read {
            destination,
            extension: decoded,
        } = mmio.operation()
        else {
            panic!("{bytes:02x?} is a read");
        };
        assert_eq!((destination.number, decoded), (number, extension));
        let mut frame = frame_filled();
        let before = frame.gpr(number);
        // The VMM's extra high bits must not leak in.
        mmio.complete_read(&mut frame, 0xdead_beef_0000_8080);
        assert_eq!(frame.gpr(number), expected(before), "{bytes:02x?}");
    }
}

#[test]
fn moffs_forms_use_an_8_byte_address_or_4_with_67() {
    let addr = [0x00, 0x10, 0xe0, 0xfe, 0x00, 0x00, 0x00, 0x80];
    let with = |prefix: &[u8], opcode: u8, address: &[u8]| -> Vec<u8> {
        let mut v = prefix.to_vec();
        v.push(opcode);
        v.extend_from_slice(address);
        v
    };
    let mmio = decode(&with(&[], 0xa1, &addr)).unwrap();
    assert_eq!(
        (mmio.insn_len(), mmio.size(), mmio.is_write()),
        (9, 4, false)
    );
    assert_eq!(
        mmio.operand().form,
        AddressForm::Absolute(0x8000_0000_fee0_1000)
    );
    let mmio = decode(&with(&[0x67], 0xa1, &addr[..4])).unwrap();
    assert_eq!((mmio.insn_len(), mmio.size()), (6, 4));
    assert_eq!(mmio.operand().form, AddressForm::Absolute(0xfee0_1000));
    assert_eq!(mmio.operand().address_size, 4);
    let mmio = decode(&with(&[0x48], 0xa3, &addr)).unwrap();
    assert_eq!(
        (mmio.insn_len(), mmio.size(), mmio.is_write()),
        (10, 8, true)
    );
    let mmio = decode(&with(&[0x66], 0xa3, &addr)).unwrap();
    assert_eq!((mmio.insn_len(), mmio.size()), (10, 2));
    let mmio = decode(&with(&[], 0xa2, &addr)).unwrap();
    assert_eq!((mmio.size(), mmio.is_write()), (1, true));
    let mut frame = frame_filled();
    frame.rax = 0x1234;
    assert_eq!(mmio.write_value(&frame), 0x34, "A2 stores AL, never AH");
    let mmio = decode(&with(&[0x41], 0xa0, &addr)).unwrap();
    mmio.complete_read(&mut frame, 0xee);
    assert_eq!(frame.rax, 0x12ee, "A0 loads AL even with REX.B");
    // Truncated moffs.
    assert_eq!(
        decode(&with(&[], 0xa1, &addr[..7])),
        Err(MmioError::Truncated)
    );
}

#[test]
fn addressing_forms_and_their_lengths() {
    let cases: [(&[u8], AddressForm); 9] = [
        (
            &[0x89, 0x00],
            AddressForm::Indirect {
                base: Some(0),
                index: None,
                scale: 1,
                displacement: 0,
            },
        ),
        (
            &[0x89, 0x04, 0x24],
            AddressForm::Indirect {
                base: Some(4),
                index: None,
                scale: 1,
                displacement: 0,
            },
        ),
        (
            &[0x89, 0x44, 0x24, 0xf8],
            AddressForm::Indirect {
                base: Some(4),
                index: None,
                scale: 1,
                displacement: -8,
            },
        ),
        (
            &[0x89, 0x84, 0x8b, 0x00, 0x01, 0x00, 0x00],
            AddressForm::Indirect {
                base: Some(3),
                index: Some(1),
                scale: 4,
                displacement: 0x100,
            },
        ),
        (
            &[0x89, 0x04, 0x25, 0x00, 0x10, 0x00, 0x00],
            AddressForm::Indirect {
                base: None,
                index: None,
                scale: 1,
                displacement: 0x1000,
            },
        ),
        (
            &[0x89, 0x05, 0xfc, 0xff, 0xff, 0xff],
            AddressForm::RipRelative(-4),
        ),
        (
            &[0x41, 0x89, 0x45, 0x00],
            AddressForm::Indirect {
                base: Some(13),
                index: None,
                scale: 1,
                displacement: 0,
            },
        ),
        (
            &[0x42, 0x89, 0x04, 0xe0],
            AddressForm::Indirect {
                base: Some(0),
                index: Some(12),
                scale: 8,
                displacement: 0,
            },
        ),
        (
            &[0x41, 0x89, 0x04, 0x6d, 0x10, 0x00, 0x00, 0x00],
            AddressForm::Indirect {
                base: None,
                index: Some(5),
                scale: 2,
                displacement: 0x10,
            },
        ),
    ];
    for (bytes, form) in cases {
        let mmio = decode(bytes).unwrap();
        assert_eq!(mmio.insn_len(), bytes.len(), "{bytes:02x?}");
        assert_eq!(mmio.operand().form, form, "{bytes:02x?}");
        // Trailing bytes are not part of the instruction.
        let mut longer = bytes.to_vec();
        longer.extend_from_slice(&[0x90; 20]);
        assert_eq!(decode(&longer), Ok(mmio));
    }
}

#[test]
fn legacy_prefixes_in_any_order_and_number() {
    let prefixes = [0x66u8, 0x67, 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65];
    // Every ordered pair, and a long run ending in GS.
    for &a in &prefixes {
        for &b in &prefixes {
            let mmio = decode(&[a, b, 0x89, 0x00]).unwrap();
            assert_eq!(mmio.insn_len(), 4);
            let expected = if a == 0x66 || b == 0x66 { 2 } else { 4 };
            assert_eq!(mmio.size(), expected, "{a:02x} {b:02x}");
        }
    }
    let mmio = decode(&[0x2e, 0x3e, 0x26, 0x64, 0x36, 0x67, 0x65, 0x66, 0x89, 0x00]).unwrap();
    assert_eq!((mmio.insn_len(), mmio.size()), (10, 2));
    assert_eq!(mmio.operand().segment, Some(SegmentBase::Gs));
    assert_eq!(mmio.operand().address_size, 4);
    assert_eq!(
        decode(&[0x64, 0x89, 0x00]).unwrap().operand().segment,
        Some(SegmentBase::Fs)
    );
    assert_eq!(decode(&[0x3e, 0x89, 0x00]).unwrap().operand().segment, None);
}

#[test]
fn rex_counts_only_right_before_the_opcode() {
    // REX.W then 66: the REX is ignored, 66 makes it 16-bit.
    assert_eq!(decode(&[0x48, 0x66, 0x89, 0x00]).unwrap().size(), 2);
    // 66 then REX.W: 64-bit.
    assert_eq!(decode(&[0x66, 0x48, 0x89, 0x00]).unwrap().size(), 8);
    // Two REX: the last one counts.
    let mmio = decode(&[0x48, 0x41, 0x89, 0x00]).unwrap();
    assert_eq!(mmio.size(), 4);
    // A REX before a segment prefix does not turn AH into SPL.
    let mmio = decode(&[0x40, 0x2e, 0x88, 0x20]).unwrap();
    assert_eq!(
        mmio.operation(),
        Operation::Write(Source::Register(high(0)))
    );
    // REX.R ignored when a prefix follows: reg field 0 is AL, not R8B.
    let mmio = decode(&[0x44, 0x64, 0x88, 0x00]).unwrap();
    assert_eq!(
        mmio.operation(),
        Operation::Write(Source::Register(reg(0, 1)))
    );
}

#[test]
fn refusals() {
    let cases: [(&[u8], MmioError); 16] = [
        (&[0xf0, 0x89, 0x00], MmioError::Lock),
        (&[0x66, 0xf0, 0x89, 0x00], MmioError::Lock),
        (&[0xf3, 0x89, 0x00], MmioError::Rep),
        (&[0xf2, 0x89, 0x00], MmioError::Rep),
        (&[0xf3, 0xa5], MmioError::Rep),
        (&[0xa5], MmioError::UnsupportedOpcode(0xa5)),
        (&[0xac], MmioError::UnsupportedOpcode(0xac)),
        (&[0x89, 0xc0], MmioError::RegisterOperand),
        (&[0x8b, 0xff], MmioError::RegisterOperand),
        (&[0x0f, 0xb6, 0xc1], MmioError::RegisterOperand),
        (
            &[0xc7, 0x08, 0, 0, 0, 0],
            MmioError::UnsupportedOpcodeExtension(1),
        ),
        (
            &[0xc6, 0xf8, 0x00],
            MmioError::UnsupportedOpcodeExtension(7),
        ), // XABORT
        (
            &[0xc5, 0xf9, 0x6f, 0x00],
            MmioError::UnsupportedOpcode(0xc5),
        ), // VEX vmovdqa
        (
            &[0x62, 0xf1, 0x7d, 0x48, 0x6f, 0x00],
            MmioError::UnsupportedOpcode(0x62),
        ), // EVEX
        (
            &[0x0f, 0x38, 0xf0, 0x00],
            MmioError::UnsupportedOpcode(0x0f38),
        ), // MOVBE
        (&[0x01, 0x00], MmioError::UnsupportedOpcode(0x01)),
    ];
    for (bytes, error) in cases {
        assert_eq!(decode(bytes), Err(error), "{bytes:02x?}");
    }
    // C6/C7 with REX.R and reg field 0 is still MOV (REX.R does not extend an opcode extension).
    assert!(decode(&[0x44, 0xc6, 0x00, 0x01]).is_ok());
}

#[test]
fn fifteen_bytes_is_the_limit() {
    let mut bytes = vec![0x66; 13];
    bytes.extend_from_slice(&[0x89, 0x00]);
    assert_eq!(decode(&bytes).unwrap().insn_len(), 15);
    let mut too_long = vec![0x66; 14];
    too_long.extend_from_slice(&[0x89, 0x00]);
    assert_eq!(decode(&too_long), Err(MmioError::TooLong));
    assert_eq!(decode(&[0x2e; 64]), Err(MmioError::TooLong));
    assert_eq!(decode(&[0x2e; 14]), Err(MmioError::Truncated));
}

#[test]
fn every_strict_prefix_of_a_valid_instruction_is_truncated() {
    let valid: [&[u8]; 8] = [
        &[0x89, 0x00],
        &[0x67, 0x66, 0x44, 0x89, 0x84, 0x8b, 0x00, 0x01, 0x00, 0x00],
        &[
            0x48, 0xc7, 0x80, 0x00, 0x10, 0x00, 0x00, 0x78, 0x56, 0x34, 0x12,
        ],
        &[0x65, 0x48, 0xa1, 1, 2, 3, 4, 5, 6, 7, 8],
        &[0x67, 0xa3, 1, 2, 3, 4],
        &[0x4c, 0x0f, 0xbf, 0x39],
        &[0x8b, 0x05, 1, 2, 3, 4],
        &[0x8a, 0x44, 0x24, 0x10],
    ];
    for bytes in valid {
        assert_eq!(decode(bytes).unwrap().insn_len(), bytes.len());
        for cut in 0..bytes.len() {
            assert_eq!(
                decode(&bytes[..cut]),
                Err(MmioError::Truncated),
                "{bytes:02x?} at {cut}"
            );
        }
    }
}

/// The linear address of each addressing form, as the CPU computes it.
#[test]
fn linear_addresses_follow_the_addressing_form() {
    let mut frame = Frame {
        rip: 0xffff_8000_0010_0000,
        ..Frame::default()
    };
    frame.rdi = 0xffff_9000_0000_1000;
    frame.rsi = 3;
    frame.r12 = 0x40;
    frame.rsp = 0xffff_8000_0020_0000;
    let cases: [(&[u8], Option<u64>); 9] = [
        (&[0x8b, 0x07], Some(0xffff_9000_0000_1000)), // [rdi]
        (&[0x8b, 0x47, 0xf0], Some(0xffff_9000_0000_0ff0)), // [rdi - 0x10]
        (&[0x8b, 0x04, 0xf7], Some(0xffff_9000_0000_1018)), // [rdi + rsi*8]
        (&[0x42, 0x8b, 0x04, 0x27], Some(0xffff_9000_0000_1040)), // [rdi + r12]
        (&[0x8b, 0x04, 0x24], Some(0xffff_8000_0020_0000)), // [rsp]
        (
            &[0x8b, 0x04, 0x25, 0x00, 0x10, 0x00, 0xfe],
            Some(0xffff_ffff_fe00_1000),
        ), // [disp32]
        (
            &[0x8b, 0x05, 0x10, 0x00, 0x00, 0x00],
            Some(0xffff_8000_0010_0016),
        ), // [rip + 0x10]
        (&[0x67, 0x8b, 0x47, 0x10], Some(0x0000_1010)), // [edi + 0x10]
        (&[0x65, 0x8b, 0x07], None),                  // gs:[rdi]: base unknown
    ];
    for (code, expected) in cases {
        let insn = decode(code).unwrap();
        assert_eq!(insn.linear_address(&frame), expected, "{code:02x?}");
    }
    let moffs = decode(&[0x48, 0xa1, 0x08, 0x10, 0, 0, 0, 0x90, 0xff, 0xff]).unwrap();
    assert_eq!(moffs.linear_address(&frame), Some(0xffff_9000_0000_1008));
}
