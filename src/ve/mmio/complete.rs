//! Applying a decoded MMIO move to the interrupted code's registers.

use super::{Extension, Mmio, Operation, Register, Source};
use crate::ve::Frame;

/// The low `bytes` bytes of a value.
fn mask(bytes: u8) -> u64 {
    match bytes {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

impl Register {
    /// The register's current value as the operand sees it (zero-extended).
    fn read(self, frame: &Frame) -> u64 {
        let full = frame.gpr(self.number);
        if self.high_byte {
            (full >> 8) & 0xff
        } else {
            full & mask(self.width)
        }
    }

    /// Writes `value` as an instruction with this destination would: 8- and 16-bit writes keep
    /// the other bits, 32-bit writes zero bits 63..32, 64-bit writes replace the register.
    fn write(self, frame: &mut Frame, value: u64) {
        let slot = frame.gpr_mut(self.number);
        *slot = match (self.width, self.high_byte) {
            (1, true) => (*slot & !0xff00) | ((value & 0xff) << 8),
            (1, false) => (*slot & !0xff) | (value & 0xff),
            (2, _) => (*slot & !0xffff) | (value & 0xffff),
            (4, _) => value & 0xffff_ffff,
            _ => value,
        };
    }
}

impl Mmio {
    /// The value a write stores (the low [`Mmio::size`] bytes are significant): the source
    /// register's operand, or the immediate (C7 with REX.W: the sign-extended imm32). Zero for a
    /// read.
    pub fn write_value(&self, frame: &Frame) -> u64 {
        match self.operation {
            Operation::Write(Source::Register(register)) => register.read(frame),
            Operation::Write(Source::Immediate(value)) => value & mask(self.size),
            Operation::Read { .. } => 0,
        }
    }

    /// Finishes a read with `value` from the device, as the CPU would: only the low
    /// [`Mmio::size`] bytes of `value` count (the VMM may return more); MOVZX/MOVSX extend them to
    /// the destination; 8- and 16-bit destinations (AH/CH/DH/BH included) keep the register's
    /// other bits; 32-bit destinations zero-extend to 64 bits. Does nothing for a write.
    ///
    /// RIP is not changed: the caller advances it by [`Mmio::insn_len`].
    pub fn complete_read(&self, frame: &mut Frame, value: u64) {
        let Operation::Read {
            destination,
            extension,
        } = self.operation
        else {
            return;
        };
        let value = value & mask(self.size);
        let value = match extension {
            Extension::None | Extension::Zero => value,
            Extension::Sign => {
                let unused_bits = 64 - 8 * u32::from(self.size);
                (((value << unused_bits) as i64) >> unused_bits) as u64
            }
        };
        destination.write(frame, value);
    }
}
