//! The MMIO instruction decoder: which access a faulting `mov` makes and how to finish it.
//!
//! An EPT violation on a shared GPA tells the #VE handler *where* the access went (the GPA) but
//! not *what* it was: the instruction length VEINFO reports is not valid for EPT violations, so the
//! handler decodes the instruction at RIP with [`decode`]. The decoder understands exactly the
//! 64-bit-mode forms compilers and [`crate::ve::mmio_access`] use for device registers:
//!
//! | opcode | form | access |
//! |---|---|---|
//! | `88 /r`, `89 /r` | `mov m, r8` / `mov m, r16/32/64` | write |
//! | `8A /r`, `8B /r` | `mov r8, m` / `mov r16/32/64, m` | read |
//! | `C6 /0 ib`, `C7 /0 iw/id` | `mov m, imm` (REX.W sign-extends imm32) | write |
//! | `0F B6`, `0F B7` | `movzx r, m8` / `movzx r, m16` | read |
//! | `0F BE`, `0F BF` | `movsx r, m8` / `movsx r, m16` | read |
//! | `A0`..`A3` | `mov al/eAX, moffs` and back | read / write |
//!
//! Prefixes: operand size (66), address size (67) and segment overrides in any order and number;
//! REX counts only when it immediately precedes the opcode (as on hardware, an earlier REX is
//! ignored). Everything else is refused with an [`MmioError`]: register operands, LOCK, REP/REPNE
//! (and XACQUIRE/XRELEASE), VEX/EVEX, string instructions, other opcodes, instructions longer than
//! 15 bytes and input that ends inside the instruction. [`decode`] reads only the bytes it is
//! given and never more than 15.

mod address;
mod complete;
mod decode;
mod modrm;
mod prefix;

pub use decode::decode;

use crate::tdcall::vmcall::MmioSize;
use core::fmt;

/// The longest x86 instruction, in bytes.
pub const MAX_INSN_LEN: usize = 15;

/// One decoded MMIO instruction: its length, the memory access it makes and its register side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mmio {
    pub(crate) len: u8,
    pub(crate) size: u8,
    pub(crate) operation: Operation,
    pub(crate) operand: MemoryOperand,
}

/// What the instruction does with the memory operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// The instruction writes `source` to memory.
    Write(Source),
    /// The instruction reads memory into `destination`, extended as `extension` says.
    Read {
        /// The register written.
        destination: Register,
        /// How the value read is widened to the destination.
        extension: Extension,
    },
}

/// The value a write stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A register (its low `width` bytes, or AH/CH/DH/BH).
    Register(Register),
    /// An immediate, already widened to the access size (C7 with REX.W: sign-extended imm32).
    Immediate(u64),
}

/// A general-purpose register operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Register {
    /// The register number in instruction encoding (0 RAX .. 7 RDI, 8..15 R8..R15).
    pub number: u8,
    /// The operand width in bytes: 1, 2, 4 or 8.
    pub width: u8,
    /// For `number` 0..3 with width 1: the high byte (AH, CH, DH, BH), encoded as 4..7 without REX.
    pub high_byte: bool,
}

/// How a read value becomes the destination's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extension {
    /// `mov`: the destination has the access width.
    None,
    /// `movzx`.
    Zero,
    /// `movsx`.
    Sign,
}

/// The memory operand as encoded. The #VE handler computes the access's linear address from it
/// ([`Mmio::linear_address`]) to refuse accesses that span two pages; the GPA comes from VEINFO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryOperand {
    /// How the address is formed.
    pub form: AddressForm,
    /// The address size: 8 bytes, or 4 with the 67 prefix.
    pub address_size: u8,
    /// An FS or GS override (the only segments that change an address in 64-bit mode).
    pub segment: Option<SegmentBase>,
}

/// The addressing form of a memory operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressForm {
    /// `[base + index * scale + displacement]`; either register may be absent.
    Indirect {
        /// The base register number, if any.
        base: Option<u8>,
        /// The index register number, if any.
        index: Option<u8>,
        /// 1, 2, 4 or 8.
        scale: u8,
        /// The sign-extended displacement.
        displacement: i32,
    },
    /// `[rip + displacement]`, relative to the end of the instruction.
    RipRelative(i32),
    /// The absolute address of the `A0`..`A3` forms (moffs).
    Absolute(u64),
}

/// A segment override that adds a base in 64-bit mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentBase {
    /// 64 prefix.
    Fs,
    /// 65 prefix.
    Gs,
}

/// Why [`decode`] refused an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioError {
    /// The input ends inside the instruction: more bytes are needed.
    Truncated,
    /// The instruction would be longer than 15 bytes (#GP on hardware).
    TooLong,
    /// A LOCK prefix.
    Lock,
    /// A REP/REPNE (or XACQUIRE/XRELEASE) prefix.
    Rep,
    /// An opcode the decoder does not emulate (`0x0Fxx` for two-byte opcodes).
    UnsupportedOpcode(u16),
    /// C6/C7 with a ModRM.reg other than 0 (not a MOV).
    UnsupportedOpcodeExtension(u8),
    /// The ModRM operand is a register, so the instruction accesses no memory.
    RegisterOperand,
}

impl fmt::Display for MmioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("the instruction continues past the bytes given"),
            Self::TooLong => f.write_str("the instruction is longer than 15 bytes"),
            Self::Lock => f.write_str("LOCK prefix on an MMIO access"),
            Self::Rep => f.write_str("REP/REPNE prefix on an MMIO access"),
            Self::UnsupportedOpcode(op) => write!(f, "opcode {op:#x} is not an emulated MMIO move"),
            Self::UnsupportedOpcodeExtension(reg) => {
                write!(f, "opcode extension /{reg} is not a MOV")
            }
            Self::RegisterOperand => f.write_str("the instruction has no memory operand"),
        }
    }
}

impl core::error::Error for MmioError {}

impl Mmio {
    /// The instruction's length in bytes: how far RIP advances once the access is done.
    pub fn insn_len(&self) -> usize {
        self.len.into()
    }

    /// The memory access width in bytes: 1, 2, 4 or 8.
    pub fn size(&self) -> usize {
        self.size.into()
    }

    /// The access width as the TDVMCALL takes it.
    pub fn access_size(&self) -> MmioSize {
        match self.size {
            1 => MmioSize::U8,
            2 => MmioSize::U16,
            4 => MmioSize::U32,
            _ => MmioSize::U64,
        }
    }

    /// Whether the instruction writes memory (otherwise it reads).
    pub fn is_write(&self) -> bool {
        matches!(self.operation, Operation::Write(_))
    }

    /// What the instruction does with memory and registers.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// The memory operand as encoded.
    pub fn operand(&self) -> MemoryOperand {
        self.operand
    }
}
