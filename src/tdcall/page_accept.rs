//! TDG.MEM.PAGE.ACCEPT: one call, one page of 4 KiB or 2 MiB.

use super::{Regs, TdCall, TdxStatus, leaf};

/// The size of the page one ACCEPT covers. The TDX module accepts only these two levels; a 1 GiB
/// request (level 2) is refused with `TDX_OPERAND_INVALID`, so it is not offered here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PageLevel {
    /// 4 KiB (level 0).
    Size4K,
    /// 2 MiB (level 1).
    Size2M,
}

impl PageLevel {
    /// The page size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            Self::Size4K => 0x1000,
            Self::Size2M => 0x20_0000,
        }
    }

    /// The level number placed in RCX\[2:0\].
    pub const fn level(self) -> u64 {
        match self {
            Self::Size4K => 0,
            Self::Size2M => 1,
        }
    }
}

/// What one ACCEPT did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptOutcome {
    /// The page was pending and is now private and zeroed.
    Accepted,
    /// The page was already accepted; its contents were left alone (not zeroed).
    AlreadyAccepted,
    /// The host maps the range with 4 KiB pages (or part of it is already accepted): accept the
    /// range at 4 KiB instead.
    SizeMismatch,
    /// Another vCPU or the host holds the page; the call may be retried.
    Busy,
    /// Any other status, kept whole for the error report. A `gpa` not aligned to `level` gets
    /// `TDX_OPERAND_INVALID` without a call, as the module would answer.
    Failed(TdxStatus),
}

/// Executes one TDG.MEM.PAGE.ACCEPT of the page at `gpa`.
///
/// # Safety
///
/// On success the TDX module zeroes the page: nothing may be using the memory at `gpa`
/// (no live Rust object, no page table, no code), or its contents must be meaningless to
/// everyone who can still reach it.
pub unsafe fn accept_page(tdx: &impl TdCall, gpa: u64, level: PageLevel) -> AcceptOutcome {
    if gpa & (level.bytes() - 1) != 0 {
        return AcceptOutcome::Failed(TdxStatus::OPERAND_INVALID);
    }
    let mut regs = Regs {
        rax: leaf::MEM_PAGE_ACCEPT,
        rcx: gpa | level.level(),
        ..Regs::default()
    };
    // SAFETY: ACCEPT writes only the page at `gpa`, which the caller guarantees is unused.
    unsafe { tdx.tdcall(&mut regs) };
    let status = TdxStatus::from_raw(regs.rax);
    if status == TdxStatus::SUCCESS {
        AcceptOutcome::Accepted
    } else if status == TdxStatus::PAGE_ALREADY_ACCEPTED {
        AcceptOutcome::AlreadyAccepted
    } else if status == TdxStatus::PAGE_SIZE_MISMATCH {
        AcceptOutcome::SizeMismatch
    } else if status == TdxStatus::OPERAND_BUSY {
        AcceptOutcome::Busy
    } else {
        AcceptOutcome::Failed(status)
    }
}
