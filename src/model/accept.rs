//! TDG.MEM.PAGE.ACCEPT: the checks and outcomes of the TDX module's `tdg_mem_page_accept`.
//!
//! Order of checks, as in the module: RCX's level (only 4 KiB and 2 MiB), reserved bits and
//! alignment; the GPA within GPAW and private; then the Secure-EPT walk. A page that is already
//! guest-accessible answers `TDX_PAGE_ALREADY_ACCEPTED` (a success-class status) and is not
//! zeroed; a 2 MiB request where the host maps the block with 4 KiB pages answers
//! `TDX_PAGE_SIZE_MISMATCH`; a 4 KiB request inside a pending 2 MiB mapping makes the host split
//! the block (transparent to the guest, as with KVM). A page locked by another ACCEPT answers
//! `TDX_OPERAND_BUSY`.
//!
//! Where the module would exit to the VMM with an EPT violation (the GPA has no private page:
//! never added, shared or MMIO), which a VMM normally answers by killing the TD, the model
//! returns `TDX_EPT_WALK_FAILED` so a test sees the mistake instead of a dead TD.

use super::memory::{PAGE_2M, PAGE_4K};
use super::{OPERAND_RCX, PageState, TdxModule, status_with_operand};
use crate::tdcall::TdxStatus;

/// RCX[11:3] must be zero.
const RESERVED_LOW: u64 = 0xff8;

/// What the locked phase of an ACCEPT decided.
enum Decision {
    /// Answer this status at once.
    Answer(u64),
    /// Zero `[start, end)` and mark it private.
    Accept { start: u64, end: u64 },
}

impl TdxModule {
    /// Executes TDG.MEM.PAGE.ACCEPT with RCX = GPA | level; returns the status.
    pub(super) fn page_accept(&self, rcx: u64) -> u64 {
        let level = rcx & 0x7;
        let gpa = rcx & !0xfff;
        let size = match level {
            0 => PAGE_4K,
            1 => PAGE_2M,
            _ => {
                return self
                    .accept_answer(status_with_operand(TdxStatus::OPERAND_INVALID, OPERAND_RCX));
            }
        };
        if rcx & RESERVED_LOW != 0 || gpa & (size - 1) != 0 {
            return self
                .accept_answer(status_with_operand(TdxStatus::OPERAND_INVALID, OPERAND_RCX));
        }
        let shared_bit = self.config.shared_bit();
        if !self.config.gpa_in_range(gpa) || gpa & shared_bit != 0 {
            return self
                .accept_answer(status_with_operand(TdxStatus::OPERAND_INVALID, OPERAND_RCX));
        }
        let decision = {
            let mut memory = self.memory.lock();
            let end = gpa + size;
            if memory.busy(gpa, end) {
                Decision::Answer(status_with_operand(TdxStatus::OPERAND_BUSY, OPERAND_RCX))
            } else if size == PAGE_4K {
                let block = gpa & !(PAGE_2M - 1);
                match memory.state(gpa) {
                    PageState::Absent | PageState::Shared | PageState::Mmio => {
                        Decision::Answer(TdxStatus::EPT_WALK_FAILED.raw())
                    }
                    // The operand id is the level of the leaf found: 1 for a 2 MiB mapping.
                    PageState::Private => Decision::Answer(
                        TdxStatus::PAGE_ALREADY_ACCEPTED.raw()
                            | u64::from(!memory.host_maps_4k(block)),
                    ),
                    PageState::Unaccepted => {
                        if !memory.host_maps_4k(block) {
                            memory.set_host_size(
                                block,
                                block + PAGE_2M,
                                super::HostPageSize::Size4K,
                            );
                            self.stats
                                .host_splits
                                .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
                        }
                        memory.in_flight.push((gpa, end));
                        Decision::Accept { start: gpa, end }
                    }
                }
            } else {
                let has_private_memory = memory
                    .states
                    .runs(gpa, end)
                    .any(|(_, _, s)| matches!(s, PageState::Unaccepted | PageState::Private));
                if !has_private_memory {
                    Decision::Answer(TdxStatus::EPT_WALK_FAILED.raw())
                } else if memory.host_maps_4k(gpa) {
                    Decision::Answer(TdxStatus::PAGE_SIZE_MISMATCH.raw() | 1)
                } else if memory.state(gpa) == PageState::Private {
                    Decision::Answer(TdxStatus::PAGE_ALREADY_ACCEPTED.raw() | 1)
                } else {
                    memory.in_flight.push((gpa, end));
                    Decision::Accept { start: gpa, end }
                }
            }
        };
        match decision {
            Decision::Answer(status) => self.accept_answer(status),
            Decision::Accept { start, end } => {
                while self
                    .stall_accepts
                    .load(core::sync::atomic::Ordering::SeqCst)
                {
                    core::hint::spin_loop();
                }
                // Zeroing happens without the lock, so vCPUs accepting disjoint pages zero in
                // parallel, as on hardware; the in-flight entry keeps others off these pages.
                self.zero_backing(start, end - start);
                let mut memory = self.memory.lock();
                memory.set_state(start, end, PageState::Private);
                memory.finish_in_flight(start, end);
                drop(memory);
                self.stats.record_accepted(end - start);
                TdxStatus::SUCCESS.raw()
            }
        }
    }

    /// Counts a non-success answer of ACCEPT in the statistics and returns it.
    fn accept_answer(&self, status: u64) -> u64 {
        self.stats.record_accept_answer(TdxStatus::from_raw(status));
        status
    }
}
