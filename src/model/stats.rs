//! Counters and the optional call trace: what tests assert about how code used the module.

use super::TdxModule;
use crate::tdcall::{Regs, TdxStatus};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use spin::Mutex;

/// Leaves below this count in a lock-free array; others in a map.
const FAST_LEAVES: usize = 32;

/// How ACCEPTs went, summed over all vCPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcceptStats {
    /// 4 KiB pages accepted (made private and zeroed).
    pub accepted_4k: u64,
    /// 2 MiB pages accepted.
    pub accepted_2m: u64,
    /// `TDX_PAGE_ALREADY_ACCEPTED` answers: double accepts.
    pub already_accepted: u64,
    /// `TDX_PAGE_SIZE_MISMATCH` answers.
    pub size_mismatch: u64,
    /// `TDX_OPERAND_BUSY` answers (contention and injected).
    pub busy: u64,
    /// Any other error answer (bad operands, no memory).
    pub failed: u64,
    /// 2 MiB blocks the host split to 4 KiB because a 4 KiB page inside was accepted.
    pub host_splits: u64,
}

impl AcceptStats {
    /// Bytes accepted in total.
    pub fn accepted_bytes(&self) -> u64 {
        self.accepted_4k
            .saturating_mul(0x1000)
            .saturating_add(self.accepted_2m.saturating_mul(0x20_0000))
    }
}

/// One TDCALL as the trace records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    /// The calling vCPU.
    pub vcpu: u32,
    /// The registers on entry (leaf in `rax`; for TDG.VP.VMCALL the sub-function in `r11`).
    pub input: Regs,
    /// The registers on return (status in `rax`; VMCALL status in `r10` if exposed).
    pub output: Regs,
    /// Whether the caller asked for interrupts to be enabled (STI before TDCALL).
    pub sti: bool,
}

/// All counters of one model.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    tdcalls_fast: [AtomicU64; FAST_LEAVES],
    tdcalls_other: Mutex<BTreeMap<u64, u64>>,
    vmcalls: Mutex<BTreeMap<u64, u64>>,
    accepted_4k: AtomicU64,
    accepted_2m: AtomicU64,
    already_accepted: AtomicU64,
    size_mismatch: AtomicU64,
    busy: AtomicU64,
    failed: AtomicU64,
    pub(crate) host_splits: AtomicU64,
    trace_enabled: AtomicBool,
    trace: Mutex<Vec<TraceEvent>>,
}

impl Stats {
    pub(crate) fn count_tdcall(&self, leaf: u64) {
        match usize::try_from(leaf)
            .ok()
            .and_then(|i| self.tdcalls_fast.get(i))
        {
            Some(counter) => {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            None => *self.tdcalls_other.lock().entry(leaf).or_insert(0) += 1,
        }
    }

    pub(crate) fn tdcall_count(&self, leaf: u64) -> u64 {
        match usize::try_from(leaf)
            .ok()
            .and_then(|i| self.tdcalls_fast.get(i))
        {
            Some(counter) => counter.load(Ordering::Relaxed),
            None => self.tdcalls_other.lock().get(&leaf).copied().unwrap_or(0),
        }
    }

    pub(crate) fn count_vmcall(&self, function: u64) {
        *self.vmcalls.lock().entry(function).or_insert(0) += 1;
    }

    pub(crate) fn vmcall_count(&self, function: u64) -> u64 {
        self.vmcalls.lock().get(&function).copied().unwrap_or(0)
    }

    pub(crate) fn record_accepted(&self, bytes: u64) {
        if bytes == 0x1000 {
            self.accepted_4k.fetch_add(1, Ordering::Relaxed);
        } else {
            self.accepted_2m.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn record_accept_answer(&self, status: TdxStatus) {
        let counter = if status == TdxStatus::PAGE_ALREADY_ACCEPTED {
            &self.already_accepted
        } else if status == TdxStatus::PAGE_SIZE_MISMATCH {
            &self.size_mismatch
        } else if status == TdxStatus::OPERAND_BUSY {
            &self.busy
        } else if status.is_error() {
            &self.failed
        } else {
            return;
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn accept_stats(&self) -> AcceptStats {
        AcceptStats {
            accepted_4k: self.accepted_4k.load(Ordering::Relaxed),
            accepted_2m: self.accepted_2m.load(Ordering::Relaxed),
            already_accepted: self.already_accepted.load(Ordering::Relaxed),
            size_mismatch: self.size_mismatch.load(Ordering::Relaxed),
            busy: self.busy.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            host_splits: self.host_splits.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn set_trace(&self, enabled: bool) {
        self.trace_enabled.store(enabled, Ordering::Relaxed);
    }

    pub(crate) fn tracing(&self) -> bool {
        self.trace_enabled.load(Ordering::Relaxed)
    }

    pub(crate) fn push_trace(&self, event: TraceEvent) {
        self.trace.lock().push(event);
    }

    pub(crate) fn take_trace(&self) -> Vec<TraceEvent> {
        self.trace.lock().clone()
    }

    pub(crate) fn clear_trace(&self) {
        self.trace.lock().clear();
    }
}

impl TdxModule {
    /// How many TDCALLs of `leaf` (RAX bits 15:0, any version) were made, on all vCPUs.
    pub fn tdcall_count(&self, leaf: u64) -> u64 {
        self.stats.tdcall_count(leaf)
    }
    /// How many TDG.VP.VMCALLs of sub-function `function` reached the VMM.
    pub fn vmcall_count(&self, function: u64) -> u64 {
        self.stats.vmcall_count(function)
    }
    /// ACCEPT statistics.
    pub fn accept_stats(&self) -> AcceptStats {
        self.stats.accept_stats()
    }
    /// Starts (`true`) or stops recording every TDCALL in the trace.
    pub fn enable_trace(&self, enabled: bool) {
        self.stats.set_trace(enabled);
    }
    /// The recorded TDCALLs, oldest first.
    pub fn trace(&self) -> Vec<TraceEvent> {
        self.stats.take_trace()
    }
    /// Forgets the recorded TDCALLs.
    pub fn clear_trace(&self) {
        self.stats.clear_trace();
    }
}
