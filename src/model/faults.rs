//! Misbehaviour on demand: injected statuses, a hostile VMM.
//!
//! Code that runs on a real host meets contention (`TDX_OPERAND_BUSY`), VMMs that refuse
//! requests, and VMMs that lie. These knobs let a test produce each of them deterministically.

use alloc::vec::Vec;

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
