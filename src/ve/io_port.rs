//! IN and OUT under #VE.

use super::handler::{advance, instruction_length};
use super::{Frame, VeError};
use crate::tdcall::vmcall::{self, IoSize};
use crate::tdcall::{TdCall, VeInfo};

/// The exit qualification of an IO exit.
struct IoQualification {
    size: IoSize,
    is_in: bool,
    port: u16,
}

impl IoQualification {
    /// Bits 2:0 size - 1, bit 3 IN, bit 4 string, bit 5 REP, bits 31:16 port.
    fn parse(raw: u64) -> Result<Self, VeError> {
        let port = (raw >> 16) as u16;
        if raw & (1 << 4 | 1 << 5) != 0 {
            return Err(VeError::StringIo { port });
        }
        let size = IoSize::from_bytes((raw & 7) + 1).ok_or(VeError::BadIoSize(raw))?;
        Ok(Self {
            size,
            is_in: raw & (1 << 3) != 0,
            port,
        })
    }
}

/// IN AL/AX/EAX, port and OUT port, AL/AX/EAX (immediate or DX port: the qualification names
/// it). IN of 1 or 2 bytes keeps the rest of RAX; IN of 4 bytes zero-extends into RAX.
pub(super) fn emulate(tdx: &impl TdCall, info: &VeInfo, frame: &mut Frame) -> Result<(), VeError> {
    let io = IoQualification::parse(info.exit_qualification)?;
    let len = instruction_length(info)?;
    let refused = |error| VeError::Vmcall {
        exit_reason: info.exit_reason,
        error,
    };
    if io.is_in {
        let value = u64::from(vmcall::io_read(tdx, io.port, io.size).map_err(refused)?);
        frame.rax = match io.size {
            IoSize::U8 => (frame.rax & !0xff) | (value & 0xff),
            IoSize::U16 => (frame.rax & !0xffff) | (value & 0xffff),
            IoSize::U32 => value & 0xffff_ffff,
        };
    } else {
        let value = frame.rax as u32 & io.size.mask();
        vmcall::io_write(tdx, io.port, io.size, value).map_err(refused)?;
    }
    advance(frame, len);
    Ok(())
}
