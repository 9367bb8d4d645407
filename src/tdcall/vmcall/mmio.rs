//! #VE.RequestMMIO: reads and writes of emulated device memory at a shared GPA.

use super::{Regs, TdCall, VmcallError, expose, function, vmcall_registers_only};

/// The width of an MMIO access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MmioSize {
    /// 1 byte.
    U8 = 1,
    /// 2 bytes.
    U16 = 2,
    /// 4 bytes.
    U32 = 4,
    /// 8 bytes.
    U64 = 8,
}

impl MmioSize {
    /// The width in bytes.
    pub const fn bytes(self) -> u64 {
        self as u64
    }

    /// The size for a width of `bytes`, if MMIO has one.
    pub const fn from_bytes(bytes: u64) -> Option<Self> {
        match bytes {
            1 => Some(Self::U8),
            2 => Some(Self::U16),
            4 => Some(Self::U32),
            8 => Some(Self::U64),
            _ => None,
        }
    }

    /// The bits an access of this width carries.
    pub const fn mask(self) -> u64 {
        match self {
            Self::U8 => 0xff,
            Self::U16 => 0xffff,
            Self::U32 => 0xffff_ffff,
            Self::U64 => u64::MAX,
        }
    }
}

const MMIO_READ: u64 = 0;
const MMIO_WRITE: u64 = 1;

/// Reads `size` bytes of device memory at `gpa` (a shared GPA); the result is truncated to the
/// access width.
pub fn mmio_read(tdx: &impl TdCall, gpa: u64, size: MmioSize) -> Result<u64, VmcallError> {
    let args = Regs {
        r12: size.bytes(),
        r13: MMIO_READ,
        r14: gpa,
        ..Regs::default()
    };
    let out = vmcall_registers_only(
        tdx,
        function::REQUEST_MMIO,
        expose::R12 | expose::R13 | expose::R14,
        args,
    )?;
    Ok(out.r11 & size.mask())
}

/// Writes the low `size` bytes of `value` to device memory at `gpa` (a shared GPA).
pub fn mmio_write(
    tdx: &impl TdCall,
    gpa: u64,
    size: MmioSize,
    value: u64,
) -> Result<(), VmcallError> {
    let args = Regs {
        r12: size.bytes(),
        r13: MMIO_WRITE,
        r14: gpa,
        r15: value & size.mask(),
        ..Regs::default()
    };
    vmcall_registers_only(tdx, function::REQUEST_MMIO, expose::R12_TO_R15, args).map(drop)
}
