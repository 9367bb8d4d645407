//! TDG.VP.VMCALL: requests to the VMM, one typed function per sub-function (GHCI).
//!
//! Each call exposes to the VMM only the registers its sub-function uses (RCX's mask), and
//! every value the VMM returns is treated as untrusted: results are truncated to their width
//! and statuses decoded into [`VmcallError`]. [`Hardware`](super::Hardware) zeroes every register
//! the VMM could have written once the results are stored.
//!
//! # Why these are safe functions
//!
//! A TDVMCALL hands values to the VMM and gets values back; it never lets the VMM read or
//! write private memory. Port IO, MMIO, MSR, CPUID, HLT and WBINVD requests reach only the
//! VMM's emulation (a device it controls can DMA into shared memory only, which the VMM
//! controls anyway), so whatever port, GPA, MSR or value a caller passes, the worst outcome is
//! a VMM that misbehaves, which it may do regardless; what comes back is validated data,
//! never an address. The exceptions take a GPA the VMM or the module then acts on and are
//! `unsafe`: [`map_gpa`] (it remaps memory between private and shared) and [`get_quote`]
//! (the VMM writes the buffer); [`safe_halt`] re-enables interrupts.
//!
//! # Errors
//!
//! Every function here fails the same three ways:
//! - [`VmcallError::InvalidArgument`]: the wrapper refused an argument before any call (a
//!   misaligned or empty MapGPA/GetQuote range, an event-notify vector below 32);
//! - [`VmcallError::Tdcall`]: the TDX module refused the TDCALL itself (a malformed RCX control,
//!   which these wrappers never build, or a model told to fail);
//! - [`VmcallError::Vmm`]: the VMM answered with a status other than success in R10. For the
//!   instruction sub-functions this means it does not emulate that port, MSR, leaf or device
//!   address (a kernel treats a refused RDMSR/WRMSR as #GP); for MapGPA `Retry` is reported as
//!   [`MapGpaOutcome::Retry`], not as an error.

mod fatal;
mod instruction;
mod map_gpa;
mod mmio;
mod quote;
mod service;

pub use fatal::{FATAL_MESSAGE_SIZE, report_fatal_error};
pub use instruction::{
    CpuidResult, IoSize, cpuid, hlt, io_read, io_write, rdmsr, safe_halt, wbinvd, wrmsr,
};
pub use map_gpa::{MapGpaOutcome, map_gpa};
pub use mmio::{MmioSize, mmio_read, mmio_write};
pub use quote::get_quote;
pub use service::{get_td_vmcall_info, setup_event_notify_interrupt};

use super::{Regs, TdCall, TdxError, TdxStatus, VmcallStatus, leaf};
use core::fmt;

/// Sub-function numbers (R11 on entry).
pub mod function {
    /// Instruction.CPUID.
    pub const CPUID: u64 = 10;
    /// Instruction.HLT.
    pub const HLT: u64 = 12;
    /// Instruction.IO.
    pub const IO: u64 = 30;
    /// Instruction.RDMSR.
    pub const RDMSR: u64 = 31;
    /// Instruction.WRMSR.
    pub const WRMSR: u64 = 32;
    /// #VE.RequestMMIO.
    pub const REQUEST_MMIO: u64 = 48;
    /// Instruction.WBINVD.
    pub const WBINVD: u64 = 54;
    /// GetTdVmCallInfo.
    pub const GET_TD_VMCALL_INFO: u64 = 0x10000;
    /// MapGPA.
    pub const MAP_GPA: u64 = 0x10001;
    /// GetQuote.
    pub const GET_QUOTE: u64 = 0x10002;
    /// ReportFatalError.
    pub const REPORT_FATAL_ERROR: u64 = 0x10003;
    /// SetupEventNotifyInterrupt.
    pub const SETUP_EVENT_NOTIFY_INTERRUPT: u64 = 0x10004;
}

/// RCX bits of TDG.VP.VMCALL: which registers the VMM sees and may change.
pub mod expose {
    /// RDX.
    pub const RDX: u64 = 1 << 2;
    /// RBX.
    pub const RBX: u64 = 1 << 3;
    /// RSI.
    pub const RSI: u64 = 1 << 6;
    /// RDI.
    pub const RDI: u64 = 1 << 7;
    /// R8.
    pub const R8: u64 = 1 << 8;
    /// R9.
    pub const R9: u64 = 1 << 9;
    /// R10: the VMCALL type (in) and status (out); always exposed.
    pub const R10: u64 = 1 << 10;
    /// R11: the sub-function (in) and first result (out); always exposed.
    pub const R11: u64 = 1 << 11;
    /// R12.
    pub const R12: u64 = 1 << 12;
    /// R13.
    pub const R13: u64 = 1 << 13;
    /// R14.
    pub const R14: u64 = 1 << 14;
    /// R15.
    pub const R15: u64 = 1 << 15;
    /// R12 and R13: the two-argument sub-functions.
    pub const R12_R13: u64 = R12 | R13;
    /// R12 through R15.
    pub const R12_TO_R15: u64 = R12 | R13 | R14 | R15;
}

/// Why a TDG.VP.VMCALL failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmcallError {
    /// The TDCALL itself failed (the TDX module refused it).
    Tdcall(TdxError),
    /// The VMM answered with a status other than success (R10).
    Vmm(VmcallStatus),
    /// An argument was refused before the call (the text says which rule it broke).
    InvalidArgument(&'static str),
}

impl fmt::Display for VmcallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tdcall(e) => write!(f, "TDG.VP.VMCALL: {e}"),
            Self::Vmm(status) => write!(f, "the VMM answered {status}"),
            Self::InvalidArgument(why) => write!(f, "invalid TDVMCALL argument: {why}"),
        }
    }
}

impl core::error::Error for VmcallError {}

impl From<TdxError> for VmcallError {
    fn from(e: TdxError) -> Self {
        Self::Tdcall(e)
    }
}

/// Builds the register file of sub-function `function` exposing `exposed` besides R10/R11.
pub(crate) fn vmcall_regs(function: u64, exposed: u64, args: Regs) -> Regs {
    Regs {
        rax: leaf::VP_VMCALL,
        rcx: exposed | expose::R10 | expose::R11,
        r10: 0,
        r11: function,
        ..args
    }
}

/// Executes the TDG.VP.VMCALL in `regs` and returns the VMM's status with the registers.
///
/// # Safety
///
/// As for [`TdCall::tdcall`]: any GPA in `regs` names memory the VMM may read or write for this
/// sub-function (MapGPA, GetQuote); the register-only sub-functions are always safe.
pub(crate) unsafe fn vmcall_raw(
    tdx: &impl TdCall,
    mut regs: Regs,
    enable_interrupts: bool,
) -> Result<(VmcallStatus, Regs), VmcallError> {
    // SAFETY: forwarded; the caller upholds the contract. `tdcall_enabling_interrupts` is only
    // requested by `safe_halt`, whose own contract covers taking interrupts.
    unsafe {
        if enable_interrupts {
            tdx.tdcall_enabling_interrupts(&mut regs)
        } else {
            tdx.tdcall(&mut regs)
        }
    }
    TdxStatus::from_raw(regs.rax).into_result()?;
    Ok((VmcallStatus::from_raw(regs.r10), regs))
}

/// Executes a sub-function that passes no guest memory to the VMM and returns the registers,
/// or the VMM's error status.
pub(crate) fn vmcall_registers_only(
    tdx: &impl TdCall,
    function: u64,
    exposed: u64,
    args: Regs,
) -> Result<Regs, VmcallError> {
    debug_assert!(!matches!(function, function::MAP_GPA | function::GET_QUOTE));
    // SAFETY: the sub-functions allowed here carry no guest physical address of guest memory
    // (MMIO GPAs are shared device addresses the VMM emulates), so neither the module nor the
    // VMM touches memory the caller owns.
    match unsafe { vmcall_raw(tdx, vmcall_regs(function, exposed, args), false) }? {
        (VmcallStatus::Success, regs) => Ok(regs),
        (status, _) => Err(VmcallError::Vmm(status)),
    }
}
