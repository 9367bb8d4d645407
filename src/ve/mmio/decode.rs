//! [`decode`]: opcode dispatch for the MMIO moves.

use super::{
    AddressForm, Extension, MAX_INSN_LEN, MemoryOperand, Mmio, MmioError, Operation, Register,
    Source, modrm, prefix,
};

/// Reads instruction bytes front to back, never past the input or the 15-byte limit.
pub(super) struct Cursor<'a> {
    code: &'a [u8],
    position: usize,
}

impl<'a> Cursor<'a> {
    fn new(code: &'a [u8]) -> Self {
        let window = code.get(..MAX_INSN_LEN).unwrap_or(code);
        Self {
            code: window,
            position: 0,
        }
    }

    fn exhausted(&self) -> MmioError {
        if self.code.len() == MAX_INSN_LEN {
            // A 16th byte would be needed: no instruction is that long, whatever follows.
            MmioError::TooLong
        } else {
            MmioError::Truncated
        }
    }

    pub(super) fn byte(&mut self) -> Result<u8, MmioError> {
        let byte = *self
            .code
            .get(self.position)
            .ok_or_else(|| self.exhausted())?;
        self.position += 1;
        Ok(byte)
    }

    /// The next byte, without consuming it.
    fn peek(&self) -> Result<u8, MmioError> {
        self.code
            .get(self.position)
            .copied()
            .ok_or_else(|| self.exhausted())
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], MmioError> {
        let end = self.position.checked_add(N).ok_or(MmioError::TooLong)?;
        let slice = self
            .code
            .get(self.position..end)
            .ok_or_else(|| self.exhausted())?;
        let mut out = [0; N];
        out.copy_from_slice(slice);
        self.position = end;
        Ok(out)
    }

    pub(super) fn i32(&mut self) -> Result<i32, MmioError> {
        self.bytes::<4>().map(i32::from_le_bytes)
    }

    fn u16(&mut self) -> Result<u16, MmioError> {
        self.bytes::<2>().map(u16::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, MmioError> {
        self.bytes::<8>().map(u64::from_le_bytes)
    }

    fn len(&self) -> u8 {
        // At most MAX_INSN_LEN.
        self.position as u8
    }
}

/// Decodes the 64-bit-mode MMIO move at the start of `code`.
///
/// `code` may be longer than the instruction (the rest is ignored) or shorter
/// ([`MmioError::Truncated`]: supply more bytes and decode again). Only the first 15 bytes are
/// ever read.
pub fn decode(code: &[u8]) -> Result<Mmio, MmioError> {
    let mut cursor = Cursor::new(code);
    let (prefixes, opcode) = prefix::parse(&mut cursor)?;
    let operand_size = prefixes.operand_size();
    let has_rex = prefixes.rex.is_some();
    let address_size = if prefixes.address_size_32 { 4 } else { 8 };
    let memory = |form| MemoryOperand {
        form,
        address_size,
        segment: prefixes.segment,
    };

    let (size, operation, form) = match opcode {
        0x88..=0x8b => {
            let modrm = modrm::parse(&mut cursor, &prefixes)?;
            let width = if opcode & 1 == 0 { 1 } else { operand_size };
            let register = register(modrm.reg, width, has_rex);
            let operation = if opcode & 2 == 0 {
                Operation::Write(Source::Register(register))
            } else {
                Operation::Read {
                    destination: register,
                    extension: Extension::None,
                }
            };
            (width, operation, modrm.form)
        }
        0xc6 | 0xc7 => {
            // Refuse other opcode extensions before asking for displacement bytes, so a caller
            // holding only part of the instruction learns it is unsupported, not truncated.
            let extension = (cursor.peek()? >> 3) & 7;
            if extension != 0 {
                return Err(MmioError::UnsupportedOpcodeExtension(extension));
            }
            let modrm = modrm::parse(&mut cursor, &prefixes)?;
            let (size, immediate) = match (opcode, operand_size) {
                (0xc6, _) => (1, u64::from(cursor.byte()?)),
                (_, 2) => (2, u64::from(cursor.u16()?)),
                (_, 4) => (4, u64::from(cursor.i32()? as u32)),
                _ => (8, cursor.i32()? as i64 as u64),
            };
            (
                size,
                Operation::Write(Source::Immediate(immediate)),
                modrm.form,
            )
        }
        0x0f => {
            let second = cursor.byte()?;
            let (size, extension) = match second {
                0xb6 => (1, Extension::Zero),
                0xb7 => (2, Extension::Zero),
                0xbe => (1, Extension::Sign),
                0xbf => (2, Extension::Sign),
                _ => return Err(MmioError::UnsupportedOpcode(0x0f00 | u16::from(second))),
            };
            let modrm = modrm::parse(&mut cursor, &prefixes)?;
            let destination = register(modrm.reg, operand_size, has_rex);
            let operation = Operation::Read {
                destination,
                extension,
            };
            (size, operation, modrm.form)
        }
        0xa0..=0xa3 => {
            let address = if prefixes.address_size_32 {
                u64::from(cursor.i32()? as u32)
            } else {
                cursor.u64()?
            };
            let width = if opcode & 1 == 0 { 1 } else { operand_size };
            let accumulator = Register {
                number: 0,
                width,
                high_byte: false,
            };
            let operation = if opcode & 2 == 0 {
                Operation::Read {
                    destination: accumulator,
                    extension: Extension::None,
                }
            } else {
                Operation::Write(Source::Register(accumulator))
            };
            (width, operation, AddressForm::Absolute(address))
        }
        other => return Err(MmioError::UnsupportedOpcode(other.into())),
    };
    Ok(Mmio {
        len: cursor.len(),
        size,
        operation,
        operand: memory(form),
    })
}

/// The register `number` (ModRM.reg with REX.R) at `width` bytes: without any REX, byte registers
/// 4..7 are AH, CH, DH, BH; with one they are SPL, BPL, SIL, DIL.
fn register(number: u8, width: u8, has_rex: bool) -> Register {
    if width == 1 && !has_rex && (4..8).contains(&number) {
        Register {
            number: number - 4,
            width,
            high_byte: true,
        }
    } else {
        Register {
            number,
            width,
            high_byte: false,
        }
    }
}
