//! MapGPA: the VMM converting a GPA range between private and shared.
//!
//! Checks in KVM's order (`tdx_map_gpa`): non-empty, not wrapping, inside GPAW and on one
//! side of the shared bit (else INVALID_OPERAND); then start and length 4 KiB aligned (else
//! ALIGN_ERROR). KVM does not look at its memslots: every valid range goes to the VMM, which
//! is QEMU's `kvm_convert_memory`, and that treats pages that are not guest RAM by direction.
//! To shared, they are left as they are and the call succeeds (OVMF maps the 32-bit PCI MMIO
//! window and the IO-APIC page shared before any device claims them); the RAM pages of the
//! range are converted. To private, QEMU fails the exit and stops the VM: the model ends the
//! TD ([`TdxModule::td_killed`]) with the first such page, the chunk unconverted.
//!
//! A page made shared loses its private contents (the backing is zeroed); a page made private
//! is pending (`Unaccepted`) until the guest accepts it; on-demand RAM not added yet
//! ([`TdxModule::add_ram_on_demand`]) becomes shared, or stays to be added by an ACCEPT. Pages
//! already in the target state stay as they are. With
//! [`ModelConfig::map_gpa_chunk`](super::ModelConfig::map_gpa_chunk) the VMM converts that
//! much per call and answers RETRY with R11 = the GPA to resume from, shared bit as given.
//! (KVM converts 2 MiB at a time and answers RETRY only when an interrupt is pending between
//! steps; RETRY after every chunk is the worst case of that.)

use super::faults::MapGpaFault;
use super::memory::PAGE_4K;
use super::vmcall::{R11, R12, R13, VmmRegs, VmmReply};
use super::{PageState, TdKilled, TdxModule};
use crate::tdcall::VmcallStatus;
use alloc::vec::Vec;

impl TdxModule {
    pub(super) fn vmm_map_gpa(&self, vcpu: u32, seen: &VmmRegs) -> VmmReply {
        let gpa = seen.get(R12).copied().unwrap_or(0);
        let len = seen.get(R13).copied().unwrap_or(0);
        let shared_bit = self.shared_bit();
        let Some(end) = gpa.checked_add(len).filter(|_| len != 0) else {
            return VmmReply::invalid();
        };
        let last = end - 1;
        if !self.config.gpa_in_range(last) || (gpa ^ last) & shared_bit != 0 {
            return VmmReply::invalid();
        }
        if gpa % PAGE_4K != 0 || len % PAGE_4K != 0 {
            return VmmReply::status(VmcallStatus::ALIGN_ERROR_RAW);
        }
        let to_shared = gpa & shared_bit != 0;
        let start = gpa & !shared_bit;
        let fault = self.faults.lock().map_gpa;
        if fault == Some(MapGpaFault::RetryWithoutProgress) {
            return VmmReply::status(VmcallStatus::RETRY_RAW).with(R11, gpa);
        }
        let chunk = match self.config.map_gpa_chunk {
            0 => len,
            // A chunk below a page would never progress; the VMM converts at least one page.
            c => c.max(PAGE_4K) & !(PAGE_4K - 1),
        }
        .min(len);
        if !to_shared {
            let not_ram = self.memory.lock().first_not_ram(start, start + chunk);
            if let Some((gpa, state)) = not_ram {
                self.kill(TdKilled { vcpu, gpa, state });
                return VmmReply::invalid();
            }
        }
        self.convert(start, start + chunk, to_shared);
        let next = gpa + chunk;
        let resume = match fault {
            None if chunk == len => return VmmReply::success(),
            None => next,
            Some(MapGpaFault::ResumePastEnd) => end.wrapping_add(PAGE_4K),
            Some(MapGpaFault::ResumeBeforeStart) => gpa.wrapping_sub(PAGE_4K),
            Some(MapGpaFault::ResumeWithoutSharedBit) => next & !shared_bit,
            Some(MapGpaFault::ResumeAt(value)) => value,
            Some(MapGpaFault::RetryWithoutProgress) => gpa,
        };
        VmmReply::status(VmcallStatus::RETRY_RAW).with(R11, resume)
    }

    /// Converts the RAM of `[start, end)` (no shared bit) to shared or to private; MMIO and
    /// holes stay as they are.
    fn convert(&self, start: u64, end: u64, to_shared: bool) {
        let mut lost_contents: Vec<(u64, u64)> = Vec::new();
        {
            // The host cannot change Secure-EPT entries an ACCEPT holds locked: like KVM on
            // TDX_OPERAND_BUSY, it tries again until the ACCEPT is done.
            let mut memory = loop {
                let memory = self.memory.lock();
                if !memory.busy(start, end) {
                    break memory;
                }
                drop(memory);
                core::hint::spin_loop();
            };
            if to_shared {
                for (hole_start, hole_end) in memory.on_demand_holes(start, end) {
                    memory.set_state(hole_start, hole_end, PageState::Shared);
                }
            }
            let runs: Vec<_> = memory.states.runs(start, end).collect();
            for (run_start, run_end, state) in runs {
                let new_state = match (to_shared, state) {
                    (true, PageState::Unaccepted | PageState::Private) => {
                        lost_contents.push((run_start, run_end));
                        PageState::Shared
                    }
                    (false, PageState::Shared) => PageState::Unaccepted,
                    (_, unchanged) => unchanged,
                };
                memory.set_state(run_start, run_end, new_state);
            }
        }
        for (run_start, run_end) in lost_contents {
            self.zero_backing(run_start, run_end - run_start);
        }
    }
}
