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
//! Where the module exits to the VMM with an EPT violation (the GPA has no private page), the
//! model's VMM does what KVM does: RAM it has not added yet
//! ([`TdxModule::add_ram_on_demand`]) is added as pending pages and the ACCEPT re-runs, which the
//! guest never notices; a GPA outside guest RAM, a shared page (the guest did not MapGPA it back
//! to private) or MMIO ends the TD ([`TdxModule::td_killed`]). `TDX_EPT_WALK_FAILED` is never an
//! answer: the module does not give it to ACCEPT.

use super::memory::{Memory, PAGE_2M, PAGE_4K};
use super::{
    HostPageSize, OPERAND_RCX, PageState, TD_KILLED_STATUS, TdKilled, TdxModule,
    status_with_operand,
};
use crate::tdcall::TdxStatus;
use core::sync::atomic::Ordering;

/// RCX[11:3] must be zero.
const RESERVED_LOW: u64 = 0xff8;

/// What the locked phase of an ACCEPT decided.
enum Decision {
    /// Answer this status at once.
    Answer(u64),
    /// Zero `[start, end)` and mark it private; `split` if the host split a 2 MiB block first.
    Accept { start: u64, end: u64, split: bool },
    /// The EPT violation the VMM cannot resolve: the TD ends.
    Kill { state: PageState },
}

/// The operand id of ALREADY_ACCEPTED and SIZE_MISMATCH: the level of the entry found.
const LEVEL_2M: u64 = 1;

impl Memory {
    /// A 4 KiB ACCEPT of `gpa`, with the memory locked.
    fn decide_4k(&mut self, gpa: u64) -> Decision {
        let block = gpa & !(PAGE_2M - 1);
        if self.state(gpa) == PageState::Absent {
            self.add_on_demand(gpa, gpa + PAGE_4K);
        }
        match self.state(gpa) {
            state @ (PageState::Absent | PageState::Shared | PageState::Mmio) => {
                Decision::Kill { state }
            }
            PageState::Private if self.host_maps_4k(block) => {
                Decision::Answer(TdxStatus::PAGE_ALREADY_ACCEPTED.raw())
            }
            PageState::Private => {
                Decision::Answer(TdxStatus::PAGE_ALREADY_ACCEPTED.raw() | LEVEL_2M)
            }
            PageState::Unaccepted => {
                // A pending 2 MiB mapping: the module exits with an EPT violation and the host
                // splits the block to 4 KiB; the guest's retried ACCEPT then succeeds. Seen
                // from the guest, the ACCEPT simply works.
                let split = !self.host_maps_4k(block);
                if split {
                    self.set_host_size(block, block + PAGE_2M, HostPageSize::Size4K);
                }
                self.in_flight.push((gpa, gpa + PAGE_4K));
                Decision::Accept {
                    start: gpa,
                    end: gpa + PAGE_4K,
                    split,
                }
            }
        }
    }

    /// A 2 MiB ACCEPT of `gpa` (2 MiB aligned), with the memory locked.
    fn decide_2m(&mut self, gpa: u64) -> Decision {
        let end = gpa + PAGE_2M;
        self.add_on_demand(gpa, end);
        let has_private_memory = self
            .states
            .runs(gpa, end)
            .any(|(_, _, s)| matches!(s, PageState::Unaccepted | PageState::Private));
        if !has_private_memory {
            Decision::Kill {
                state: self.state(gpa),
            }
        } else if self.host_maps_4k(gpa) {
            Decision::Answer(TdxStatus::PAGE_SIZE_MISMATCH.raw() | LEVEL_2M)
        } else if self.state(gpa) == PageState::Private {
            Decision::Answer(TdxStatus::PAGE_ALREADY_ACCEPTED.raw() | LEVEL_2M)
        } else {
            self.in_flight.push((gpa, end));
            Decision::Accept {
                start: gpa,
                end,
                split: false,
            }
        }
    }
}

impl TdxModule {
    /// Executes TDG.MEM.PAGE.ACCEPT of vCPU `vcpu` with RCX = GPA | level; returns the status.
    pub(super) fn page_accept(&self, vcpu: u32, rcx: u64) -> u64 {
        let gpa = rcx & !0xfff;
        let size = match rcx & 0x7 {
            0 => PAGE_4K,
            1 => PAGE_2M,
            _ => 0,
        };
        let operand_ok = size != 0
            && rcx & RESERVED_LOW == 0
            && gpa & (size - 1) == 0
            && self.config.gpa_in_range(gpa)
            && gpa & self.config.shared_bit() == 0;
        if !operand_ok {
            return self
                .accept_answer(status_with_operand(TdxStatus::OPERAND_INVALID, OPERAND_RCX));
        }
        let decision = {
            let mut memory = self.memory.lock();
            if memory.busy(gpa, gpa + size) {
                Decision::Answer(status_with_operand(TdxStatus::OPERAND_BUSY, OPERAND_RCX))
            } else if size == PAGE_4K {
                memory.decide_4k(gpa)
            } else {
                memory.decide_2m(gpa)
            }
        };
        let (start, end, split) = match decision {
            Decision::Answer(status) => return self.accept_answer(status),
            Decision::Accept { start, end, split } => (start, end, split),
            Decision::Kill { state } => {
                self.kill(TdKilled { vcpu, gpa, state });
                return TD_KILLED_STATUS;
            }
        };
        if split {
            self.stats.host_splits.fetch_add(1, Ordering::Relaxed);
        }
        while self.stall_accepts.load(Ordering::SeqCst) {
            core::hint::spin_loop();
        }
        // Zeroing happens without the lock, so vCPUs accepting disjoint pages zero in
        // parallel, as on hardware; the in-flight entry keeps others off these pages.
        self.zero_backing(start, end - start);
        {
            let mut memory = self.memory.lock();
            memory.set_state(start, end, PageState::Private);
            memory.finish_in_flight(start, end);
        }
        self.stats.record_accepted(end - start);
        TdxStatus::SUCCESS.raw()
    }

    /// Counts a non-success answer of ACCEPT in the statistics and returns it.
    fn accept_answer(&self, status: u64) -> u64 {
        self.stats.record_accept_answer(TdxStatus::from_raw(status));
        status
    }
}

impl TdxModule {
    /// While `stall` is true, every ACCEPT that passed its checks waits in flight (its pages
    /// locked, before zeroing) until `stall` is set false again: lets a test make two vCPUs
    /// meet on the same page deterministically. See [`TdxModule::accepts_in_flight`].
    pub fn stall_accepts(&self, stall: bool) {
        self.stall_accepts.store(stall, Ordering::SeqCst);
    }
    /// How many ACCEPTs are in flight right now.
    pub fn accepts_in_flight(&self) -> usize {
        self.memory.lock().in_flight.len()
    }
}
