//! The TDCALL layer: the only code in the crate that executes the TDCALL instruction.
//!
//! [`Regs`] carries the register file into and out of one TDCALL; [`TdCall`] is implemented by
//! [`Hardware`] (the real instruction) and by the software model (`model`, feature `model`), so
//! everything built on top runs unchanged on both. The typed wrappers in this module decode
//! the module's answers into Rust types; [`vmcall`] does the same for TDG.VP.VMCALL
//! sub-functions, which reach the VMM.

mod hardware;
mod info;
pub mod leaf;
mod page_accept;
mod report;
mod status;
mod veinfo;
mod vm_field;
pub mod vmcall;

pub use hardware::Hardware;
pub use info::{TdAttributes, TdInfo, TdInfoError, vp_info};
pub use page_accept::{AcceptOutcome, PageLevel, accept_page};
pub use report::{
    REPORT_DATA_SIZE, ReportData, RtmrDigest, TDREPORT_SIZE, TdReport, rtmr_extend, tdreport,
};
pub use status::{StatusClass, TdxError, TdxStatus, VmcallStatus};
pub use veinfo::{VeInfo, ve_info_get};
pub use vm_field::{TdcsField, vm_rd, vm_wr};

/// The general-purpose registers that carry a TDCALL's inputs and outputs.
///
/// `rax` holds the leaf number on entry and the completion status on return. RSP and RBP never
/// carry TDCALL arguments and are not part of this structure.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
#[allow(missing_docs)]
pub struct Regs {
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rbx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

/// Something that executes TDCALL: the hardware or a model of the TDX module.
///
/// Implementations must be usable from several CPUs (`&self`); the model is `Sync`.
///
/// Implementing it is safe: the crate treats every answer as data to validate, never as an
/// address to dereference, so a wrong implementation makes calls fail or report states the
/// memory is not in (touching memory a lying "module" claimed accepted faults), but cannot
/// make safe code corrupt memory. Calling it is `unsafe` because a real TDCALL can.
pub trait TdCall {
    /// Executes one TDCALL with `regs` as the register file: the leaf in `regs.rax` on entry,
    /// the completion status in `regs.rax` and the leaf's outputs in the other fields on return.
    ///
    /// # Safety
    ///
    /// Several leaves make the TDX module read or write guest memory at a physical address taken
    /// from a register (ACCEPT zeroes a page, REPORT writes a buffer, RTMR.EXTEND reads one,
    /// MapGPA and GetQuote hand memory to the VMM). The caller guarantees that every address
    /// in `regs` names memory the leaf may legitimately read or write, and that no Rust reference
    /// to memory the call changes is live across it.
    unsafe fn tdcall(&self, regs: &mut Regs);

    /// Like [`TdCall::tdcall`], but on hardware executes `STI` immediately before TDCALL, so an
    /// interrupt that arrives during the call is not lost (the STI shadow covers TDCALL itself).
    ///
    /// Used by [`vmcall::safe_halt`] for idle loops. Implementations without real interrupts
    /// (the model) may treat it as `tdcall` and record that interrupts were enabled.
    ///
    /// # Safety
    ///
    /// As for [`TdCall::tdcall`]; in addition the caller must be ready to take interrupts: an
    /// IDT is loaded and the current code may be interrupted.
    unsafe fn tdcall_enabling_interrupts(&self, regs: &mut Regs) {
        // SAFETY: the caller upholds `tdcall`'s contract.
        unsafe { self.tdcall(regs) }
    }
}

impl<T: TdCall + ?Sized> TdCall for &T {
    unsafe fn tdcall(&self, regs: &mut Regs) {
        // SAFETY: forwarded unchanged; the caller upholds `tdcall`'s contract.
        unsafe { (**self).tdcall(regs) }
    }

    unsafe fn tdcall_enabling_interrupts(&self, regs: &mut Regs) {
        // SAFETY: forwarded unchanged; the caller upholds the contract.
        unsafe { (**self).tdcall_enabling_interrupts(regs) }
    }
}

/// Executes a leaf whose only memory effect is on the register file and returns the registers.
///
/// For the crate's own wrappers of leaves that touch no guest memory (VP.INFO, VEINFO.GET, VM.RD,
/// VM.WR), so each wrapper needs no `unsafe` of its own.
pub(crate) fn call_registers_only(tdx: &impl TdCall, mut regs: Regs) -> Regs {
    debug_assert!(matches!(
        regs.rax,
        leaf::VP_INFO | leaf::VP_VEINFO_GET | leaf::VM_RD | leaf::VM_WR
    ));
    // SAFETY: the leaves allowed here read and write no guest memory, so no address in `regs`
    // can make the module touch memory the caller owns.
    unsafe { tdx.tdcall(&mut regs) };
    regs
}
