//! [`VeError`]: why a #VE could not be handled.

use super::mmio::MmioError;
use crate::tdcall::vmcall::VmcallError;
use crate::tdcall::{TdInfoError, TdxError};
use core::fmt;

/// Why [`handle`](super::handle) did not emulate the instruction. RIP is unchanged in every case;
/// returning to the interrupted code without acting on the error would fault again on the same
/// RIP, so the kernel must report it (see [`default_handler`](super::default_handler)), inject
/// #GP (see [`VeError::should_inject_gp`]) or stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VeError {
    /// TDG.VP.VEINFO.GET failed (e.g. no #VE was pending).
    VeInfo(TdxError),
    /// TDG.VP.INFO failed while the handler needed the shared bit.
    TdInfo(TdInfoError),
    /// The exit reason is not one this handler emulates.
    UnsupportedExitReason(u32),
    /// VEINFO's instruction length is outside 1..=15.
    BadInstructionLength(u32),
    /// The VMM refused to emulate CPUID, HLT, port IO or MMIO.
    Vmcall {
        /// The #VE's exit reason.
        exit_reason: u32,
        /// What the VMM (or the module) answered.
        error: VmcallError,
    },
    /// The VMM refused RDMSR/WRMSR: the kernel should inject #GP, as hardware would.
    Msr {
        /// The MSR (ECX).
        index: u32,
        /// WRMSR (otherwise RDMSR).
        write: bool,
        /// What the VMM answered.
        error: VmcallError,
    },
    /// IN/OUT with a size other than 1, 2 or 4 bytes in the exit qualification.
    BadIoSize(u64),
    /// INS/OUTS or a REP form: not emulated (it would need guest memory walks).
    StringIo {
        /// The port.
        port: u16,
    },
    /// An EPT violation on a private GPA: the VMM removed a private page. Fatal.
    PrivateGpa(u64),
    /// An EPT violation outside the TD's guest physical address width.
    GpaOutOfRange(u64),
    /// An EPT violation on a shared GPA that the exit qualification marks as a guest
    /// paging-structure access (bit 7 set, bit 8 clear): the kernel's page tables reach shared
    /// memory. The GPA is a page-table entry's, not the instruction's operand: never emulated.
    PagingStructureAccess(u64),
    /// A #VE from user mode (CS.RPL 3) other than CPUID: HLT, port IO, MSR and MMIO exits are
    /// emulated for the kernel only, as in Linux; a kernel usually sends the process a signal.
    UserMode,
    /// The access spans two 4 KiB pages (its linear address, from the decoded operand and the
    /// registers), so part of it is not MMIO: a bug, or a `load_unaligned_zeropad()`-style read
    /// that stepped from a private page into an MMIO page. Never emulated, as in Linux.
    CrossesPage {
        /// The linear address of the access's first byte.
        linear: u64,
        /// Its width in bytes.
        size: usize,
    },
    /// The access's linear address does not match the EPT violation: not at the GPA's page
    /// offset, or not VEINFO's linear address when the exit qualification marks that valid. The
    /// instruction at RIP is not the one that faulted.
    AddressMismatch {
        /// The linear address computed from the instruction and the registers.
        linear: u64,
        /// VEINFO's GPA.
        gpa: u64,
    },
    /// An FS- or GS-relative MMIO access: without the segment base its linear address is unknown,
    /// so a split access could not be told apart. Kernels access MMIO through plain pointers
    /// (see [`mmio_access`](super::mmio_access)).
    SegmentOverride,
    /// The instruction at RIP is not an MMIO move this crate emulates.
    Decode(MmioError),
}

impl VeError {
    /// Whether the architecturally right reaction is a #GP in the interrupted code (an MSR the
    /// VMM refuses behaves like an MSR the CPU does not have).
    pub fn should_inject_gp(&self) -> bool {
        matches!(self, Self::Msr { .. })
    }
}

impl fmt::Display for VeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::VeInfo(e) => write!(f, "VEINFO.GET: {e}"),
            Self::TdInfo(e) => write!(f, "{e}"),
            Self::UnsupportedExitReason(r) => write!(f, "#VE exit reason {r} not handled"),
            Self::BadInstructionLength(l) => write!(f, "#VE instruction length {l}"),
            Self::Vmcall { exit_reason, error } => write!(f, "#VE {exit_reason}: {error}"),
            Self::Msr {
                index,
                write,
                error,
            } => {
                let op = if *write { "WRMSR" } else { "RDMSR" };
                write!(f, "{op} {index:#x}: {error}")
            }
            Self::BadIoSize(q) => write!(f, "port IO size in qualification {q:#x}"),
            Self::StringIo { port } => write!(f, "string/REP port IO on {port:#x}"),
            Self::PrivateGpa(gpa) => write!(f, "EPT violation on private GPA {gpa:#x}"),
            Self::GpaOutOfRange(gpa) => write!(f, "EPT violation beyond GPAW: {gpa:#x}"),
            Self::PagingStructureAccess(gpa) => write!(
                f,
                "EPT violation on a paging-structure entry at shared GPA {gpa:#x}"
            ),
            Self::UserMode => f.write_str("#VE from user mode other than CPUID"),
            Self::CrossesPage { linear, size } => {
                write!(f, "MMIO of {size} bytes at {linear:#x} crosses a page")
            }
            Self::AddressMismatch { linear, gpa } => write!(
                f,
                "MMIO at {linear:#x} does not match the EPT violation at GPA {gpa:#x}"
            ),
            Self::SegmentOverride => f.write_str("FS/GS-relative MMIO is not emulated"),
            Self::Decode(e) => write!(f, "MMIO instruction: {e}"),
        }
    }
}

impl core::error::Error for VeError {}
