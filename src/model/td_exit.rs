//! The end of the TD: what the VMM does with an EPT violation it cannot resolve, or with a
//! MapGPA to private over memory that is not guest RAM.
//!
//! The TDX module never answers an ACCEPT of a GPA that has no private page with an error: it
//! exits to the VMM with an EPT violation. KVM then either adds the page (the GPA is guest RAM it
//! has not added yet, see [`TdxModule::add_ram_on_demand`]) and re-enters the TDCALL, which
//! succeeds, or it has nothing to add (MMIO, a shared page, no memory at all) and the TD is
//! terminated. The model does the same: the first case is invisible to the guest, the second
//! records a [`TdKilled`] and from then on no TDCALL of any vCPU executes. A MapGPA to private
//! of MMIO or of a GPA without memory ends the TD the same way: QEMU fails that exit and stops
//! the VM (see the model's MapGPA, `map_gpa.rs`).

use super::{PageState, TdxModule};
use core::sync::atomic::Ordering;

/// What every TDCALL returns in RAX once the TD is dead. Not a TDX status (the module defines no
/// such value, and on hardware the TDCALL never returns at all): the model needs *some* way back
/// to the test, and an all-ones value is an error to every status check. Tests look at
/// [`TdxModule::td_killed`], not at this value.
pub const TD_KILLED_STATUS: u64 = u64::MAX;

/// Why the VMM ended the TD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TdKilled {
    /// The vCPU whose TDCALL caused it.
    pub vcpu: u32,
    /// The GPA of the EPT violation (4 KiB or 2 MiB aligned, as the ACCEPT named it), or the
    /// first page of a MapGPA to private that is not guest RAM.
    pub gpa: u64,
    /// What the GPA was: [`PageState::Absent`] outside guest RAM, [`PageState::Shared`] for
    /// RAM the guest had converted to shared (an ACCEPT without MapGPA back to private, never
    /// for a MapGPA), or [`PageState::Mmio`].
    pub state: PageState,
}

impl TdxModule {
    /// Why the TD was ended, if it was: an ACCEPT of a GPA outside guest memory, of a shared page
    /// or of MMIO, or a MapGPA to private of MMIO or outside guest memory. After that every TDCALL returns [`TD_KILLED_STATUS`] without executing.
    pub fn td_killed(&self) -> Option<TdKilled> {
        *self.killed.lock()
    }

    /// Ends the TD (the first reason is kept).
    pub(super) fn kill(&self, reason: TdKilled) {
        let mut killed = self.killed.lock();
        if killed.is_none() {
            *killed = Some(reason);
        }
        self.dead.store(true, Ordering::SeqCst);
    }

    /// Whether the TD was ended: checked before every TDCALL.
    pub(super) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }
}
