//! Misbehaviour on demand: injected statuses, a hostile VMM.
//!
//! Code that runs on a real host meets contention (`TDX_OPERAND_BUSY`), VMMs that refuse
//! requests, and VMMs that lie. These knobs let a test produce each of them deterministically.

use super::{OPERAND_RCX, TdcallHook, TdxModule, status_with_operand};
use crate::tdcall::{TdxStatus, leaf};
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

/// How many times a fault fires: a count, or [`FOREVER`].
pub type Times = u64;

/// A count that never runs out.
pub const FOREVER: Times = u64::MAX;

/// A way for the VMM to answer MapGPA wrongly. While set, every MapGPA answers RETRY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapGpaFault {
    /// Convert nothing and ask to resume from the start of the request, again and again.
    RetryWithoutProgress,
    /// Convert one chunk, then ask to resume past the end of the request.
    ResumePastEnd,
    /// Convert one chunk, then ask to resume one page before the start of the request.
    ResumeBeforeStart,
    /// Convert one chunk, then ask to resume at the right place but with the shared bit
    /// cleared (a to-shared request then looks like a to-private one).
    ResumeWithoutSharedBit,
    /// Convert one chunk, then ask to resume at this GPA.
    ResumeAt(u64),
}

/// One pending injection: `status` for the next `remaining` calls matching `key`.
#[derive(Clone, Copy, Debug)]
struct Injection {
    key: u64,
    status: u64,
    remaining: Times,
}

/// The armed faults.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    tdcall_status: Vec<Injection>,
    vmcall_status: Vec<Injection>,
    pub(crate) map_gpa: Option<MapGpaFault>,
}

fn take(list: &mut Vec<Injection>, key: u64) -> Option<u64> {
    let at = list.iter().position(|i| i.key == key)?;
    let entry = list.get_mut(at)?;
    let status = entry.status;
    if entry.remaining != FOREVER {
        entry.remaining -= 1;
        if entry.remaining == 0 {
            list.remove(at);
        }
    }
    Some(status)
}

fn arm(list: &mut Vec<Injection>, key: u64, status: u64, times: Times) {
    if times > 0 {
        list.push(Injection {
            key,
            status,
            remaining: times,
        });
    }
}

impl Faults {
    pub(crate) fn arm_tdcall(&mut self, leaf: u64, status: u64, times: Times) {
        arm(&mut self.tdcall_status, leaf, status, times);
    }

    pub(crate) fn take_tdcall(&mut self, leaf: u64) -> Option<u64> {
        take(&mut self.tdcall_status, leaf)
    }

    pub(crate) fn arm_vmcall(&mut self, function: u64, status: u64, times: Times) {
        arm(&mut self.vmcall_status, function, status, times);
    }

    pub(crate) fn take_vmcall(&mut self, function: u64) -> Option<u64> {
        take(&mut self.vmcall_status, function)
    }

    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }
}

impl TdxModule {
    /// The next `times` calls of TDCALL `leaf` (any vCPU) return `status` and do nothing else.
    /// [`FOREVER`] never runs out.
    pub fn inject_tdcall_status(&self, leaf: u64, status: TdxStatus, times: Times) {
        self.faults_armed.store(true, Ordering::SeqCst);
        self.faults.lock().arm_tdcall(leaf, status.raw(), times);
    }
    /// The next `times` ACCEPTs answer `TDX_OPERAND_BUSY` (operand RCX), as under contention.
    pub fn inject_busy(&self, times: Times) {
        self.inject_tdcall_status(
            leaf::MEM_PAGE_ACCEPT,
            TdxStatus::from_raw(status_with_operand(TdxStatus::OPERAND_BUSY, OPERAND_RCX)),
            times,
        );
    }
    /// The VMM answers the next `times` TDG.VP.VMCALLs of sub-function `function` with the raw
    /// VMCALL status `status` (R10) and does nothing else.
    pub fn refuse_vmcall(&self, function: u64, status: u64, times: Times) {
        self.faults_armed.store(true, Ordering::SeqCst);
        self.faults.lock().arm_vmcall(function, status, times);
    }
    /// Makes every following MapGPA misbehave as `fault` says; `None` restores honest answers.
    pub fn set_map_gpa_fault(&self, fault: Option<MapGpaFault>) {
        self.faults_armed.store(true, Ordering::SeqCst);
        self.faults.lock().map_gpa = fault;
    }
    /// Installs (`Some`) or removes (`None`) the hook that may rewrite every TDCALL's answer.
    pub fn set_tdcall_hook(&self, hook: Option<Box<TdcallHook>>) {
        let hook: Option<Arc<TdcallHook>> = hook.map(Arc::from);
        self.hook_set.store(hook.is_some(), Ordering::SeqCst);
        *self.hook.lock() = hook;
    }
    /// Disarms every injected status, refusal and MapGPA fault.
    pub fn clear_faults(&self) {
        self.faults.lock().clear();
    }
}
