//! Legacy prefixes and REX in 64-bit mode.

use super::{MmioError, SegmentBase, decode::Cursor};

/// The prefixes in front of an opcode, as they affect an MMIO move.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Prefixes {
    /// 66: 16-bit operand size (unless REX.W).
    pub operand_size_16: bool,
    /// 67: 32-bit addresses (a 4-byte moffs).
    pub address_size_32: bool,
    /// The last FS/GS override, if any; ES/CS/SS/DS overrides are ignored in 64-bit mode.
    pub segment: Option<SegmentBase>,
    /// The REX prefix immediately before the opcode, if any.
    pub rex: Option<Rex>,
}

/// A REX prefix (0x40..=0x4F).
#[derive(Clone, Copy, Debug)]
pub(super) struct Rex(u8);

impl Rex {
    /// REX.W: 64-bit operand size.
    pub fn w(self) -> bool {
        self.0 & 8 != 0
    }

    /// REX.R as the bit 3 of ModRM.reg.
    pub fn r(self) -> u8 {
        (self.0 & 4) << 1
    }

    /// REX.X as the bit 3 of SIB.index.
    pub fn x(self) -> u8 {
        (self.0 & 2) << 2
    }

    /// REX.B as the bit 3 of ModRM.rm or SIB.base.
    pub fn b(self) -> u8 {
        (self.0 & 1) << 3
    }
}

impl Prefixes {
    /// The operand size of a non-byte operation: 8 with REX.W, 2 with 66, otherwise 4.
    pub fn operand_size(&self) -> u8 {
        match self.rex {
            Some(rex) if rex.w() => 8,
            _ if self.operand_size_16 => 2,
            _ => 4,
        }
    }

    /// REX.R, REX.X and REX.B as register-number bits (all zero without REX).
    pub fn rex_bits(&self) -> (u8, u8, u8) {
        self.rex
            .map_or((0, 0, 0), |rex| (rex.r(), rex.x(), rex.b()))
    }
}

/// Consumes the prefixes and returns them with the first opcode byte.
pub(super) fn parse(cursor: &mut Cursor<'_>) -> Result<(Prefixes, u8), MmioError> {
    let mut prefixes = Prefixes::default();
    loop {
        let byte = cursor.byte()?;
        match byte {
            0x66 => prefixes.operand_size_16 = true,
            0x67 => prefixes.address_size_32 = true,
            0x26 | 0x2e | 0x36 | 0x3e => {}
            0x64 => prefixes.segment = Some(SegmentBase::Fs),
            0x65 => prefixes.segment = Some(SegmentBase::Gs),
            0xf0 => return Err(MmioError::Lock),
            0xf2 | 0xf3 => return Err(MmioError::Rep),
            0x40..=0x4f => {
                // Only the REX that immediately precedes the opcode counts: skip to the next
                // byte without clearing it below.
                prefixes.rex = Some(Rex(byte));
                continue;
            }
            opcode => return Ok((prefixes, opcode)),
        }
        // A legacy prefix after a REX makes the CPU ignore that REX.
        prefixes.rex = None;
    }
}
