//! The single-instruction MMIO accessors: they move exactly their width, and the instructions
//! they are made of are ones the #VE decoder understands, for every register the compiler may
//! pick (the exact templates are assembled here and decoded; iced-x86 encodes every register
//! combination of the same forms).

#![cfg(target_arch = "x86_64")]

#[path = "common/iced.rs"]
mod iced_registers;

use core::arch::asm;
use iced_registers::gprs;
use iced_x86::{Code, Encoder, Instruction, MemoryOperand};
use tdx_boot::ve::mmio::{AddressForm, Operation, Source, decode};
use tdx_boot::ve::mmio_access::{
    read_u8, read_u16, read_u32, read_u64, write_u8, write_u16, write_u32, write_u64,
};

#[test]
fn accessors_move_exactly_their_width() {
    let mut word = [0x1122_3344_5566_7788u64, 0];
    let base = word.as_mut_ptr().cast::<u8>();
    // SAFETY: every access stays inside `word`, which lives across the calls; ordinary memory
    // stands in for a device.
    unsafe {
        assert_eq!(read_u8(base.add(1)), 0x77);
        assert_eq!(read_u16(base.add(2).cast()), 0x5566);
        assert_eq!(read_u32(base.add(4).cast()), 0x1122_3344);
        assert_eq!(read_u64(base.cast()), 0x1122_3344_5566_7788);
        write_u8(base.add(1), 0xaa);
        assert_eq!(word[0], 0x1122_3344_5566_aa88);
        write_u16(base.add(2).cast(), 0xbbcc);
        assert_eq!(word[0], 0x1122_3344_bbcc_aa88);
        write_u32(base.add(4).cast(), 0xddee_ff00);
        assert_eq!(word[0], 0xddee_ff00_bbcc_aa88);
        write_u64(base.add(8).cast(), 0x0102_0304_0506_0708);
    }
    assert_eq!(word, [0xddee_ff00_bbcc_aa88, 0x0102_0304_0506_0708]);
}

/// The bytes of one template, assembled here with compiler-chosen registers (jumped over, so it
/// never executes).
macro_rules! template_bytes {
    ($template:ident, $class:ident, $ty:ty) => {{
        let (start, end): (usize, usize);
        // SAFETY: the template lies between two labels and is jumped over; only the labels'
        // addresses are taken.
        unsafe {
            asm!(
                "lea {start}, [rip + 2f]",
                "lea {end}, [rip + 3f]",
                "jmp 3f",
                "2:",
                tdx_boot::$template!(),
                "3:",
                start = out(reg) start,
                end = out(reg) end,
                address = in(reg) 0usize,
                value = in($class) 0 as $ty,
                options(nostack, preserves_flags),
            )
        };
        // SAFETY: `start..end` is this function's own code, mapped readable.
        unsafe { std::slice::from_raw_parts(start as *const u8, end - start) }.to_vec()
    }};
}

#[test]
fn the_templates_decode_as_single_moves_of_their_width() {
    let cases = [
        (
            template_bytes!(__mmio_read_u8_template, reg_byte, u8),
            1,
            false,
        ),
        (
            template_bytes!(__mmio_read_u16_template, reg, u16),
            2,
            false,
        ),
        (
            template_bytes!(__mmio_read_u32_template, reg, u32),
            4,
            false,
        ),
        (
            template_bytes!(__mmio_read_u64_template, reg, u64),
            8,
            false,
        ),
        (
            template_bytes!(__mmio_write_u8_template, reg_byte, u8),
            1,
            true,
        ),
        (
            template_bytes!(__mmio_write_u16_template, reg, u16),
            2,
            true,
        ),
        (
            template_bytes!(__mmio_write_u32_template, reg, u32),
            4,
            true,
        ),
        (
            template_bytes!(__mmio_write_u64_template, reg, u64),
            8,
            true,
        ),
    ];
    for (bytes, size, is_write) in cases {
        let mmio = decode(&bytes).unwrap_or_else(|e| panic!("{bytes:02x?}: {e}"));
        assert_eq!(
            mmio.insn_len(),
            bytes.len(),
            "{bytes:02x?} is one instruction"
        );
        assert_eq!(
            (mmio.size(), mmio.is_write()),
            (size, is_write),
            "{bytes:02x?}"
        );
    }
}

#[test]
fn every_register_combination_of_the_accessor_forms_decodes() {
    let forms = [
        (Code::Mov_r8_rm8, 1, false),
        (Code::Mov_r16_rm16, 2, false),
        (Code::Mov_r32_rm32, 4, false),
        (Code::Mov_r64_rm64, 8, false),
        (Code::Mov_rm8_r8, 1, true),
        (Code::Mov_rm16_r16, 2, true),
        (Code::Mov_rm32_r32, 4, true),
        (Code::Mov_rm64_r64, 8, true),
    ];
    let mut encoder = Encoder::new(64);
    for (code, width, is_write) in forms {
        // The registers `reg_byte`/`reg` may allocate (never AH..BH: `reg_byte` excludes them).
        for (number, &value) in gprs(width).iter().enumerate() {
            for (base_number, &base) in gprs(8).iter().enumerate() {
                let memory = MemoryOperand::with_base(base);
                let insn = if is_write {
                    Instruction::with2(code, memory, value)
                } else {
                    Instruction::with2(code, value, memory)
                }
                .unwrap();
                let len = encoder.encode(&insn, 0).unwrap();
                let bytes = encoder.take_buffer();
                let mmio = decode(&bytes).unwrap_or_else(|e| panic!("{bytes:02x?}: {e}"));
                assert_eq!(mmio.insn_len(), len);
                assert_eq!(
                    (mmio.size(), mmio.is_write()),
                    (width, is_write),
                    "{bytes:02x?}"
                );
                let register = match mmio.operation() {
                    Operation::Write(Source::Register(r)) => r,
                    Operation::Read { destination, .. } => destination,
                    other => panic!("{bytes:02x?}: {other:?}"),
                };
                assert_eq!(
                    (usize::from(register.number), register.high_byte),
                    (number, false),
                    "{bytes:02x?}"
                );
                let AddressForm::Indirect {
                    base: Some(b),
                    index: None,
                    ..
                } = mmio.operand().form
                else {
                    panic!("{bytes:02x?}: {:?}", mmio.operand());
                };
                assert_eq!(usize::from(b), base_number, "{bytes:02x?}");
            }
        }
    }
}
