//! The BSP side of the wake protocol: one AP at a time, bounded waits, no reuse after a timeout.
//!
//! For each AP: check that no earlier AP still owns the trampoline slot; publish the AP's CR3 and
//! block in the slot; write the wakeup vector, then APIC ID and WAKEUP in one release store; wait
//! until the firmware acknowledges (command back to NOOP); wait until the AP sets its started flag.
//!
//! Every wait is bounded by the caller's `keep_waiting` closure, called once per poll: return
//! `false` to give up (a spin count, a TSC deadline, ...). Giving up cannot cancel anything: the
//! VMM decides when a vCPU runs and may start the AP much later (Linux waits for ever for this
//! reason). So a timed-out AP keeps its block (consumed by [`MpWaker::wake`]) and the trampoline
//! slot, and [`MpWaker::wake`] refuses to wake another AP with [`WakeError::Busy`] until the late
//! AP has started. A kernel must be ready for such a late AP to run its entry function.

use super::ap_boot::ApBoot;
use super::first_occurrence::FirstOccurrence;
use super::madt::Madt;
use super::mailbox::{APIC_ID_BROADCAST, APIC_ID_INVALID, Command, Mailbox};
use super::trampoline::Trampoline;

/// Why an AP was not woken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WakeError {
    /// The APIC ID is one the firmware reads as "invalid" or "broadcast".
    InvalidApicId(u32),
    /// The mailbox's command was not NOOP before posting: someone else's command is pending.
    MailboxBusy {
        /// The command found.
        command: u16,
    },
    /// An earlier AP timed out and still owns the trampoline slot.
    Busy {
        /// That AP's APIC ID.
        pending_apic_id: u32,
    },
    /// The firmware did not acknowledge the wakeup before the budget ran out. The AP may still
    /// start later, with the block it was given.
    NotAcknowledged {
        /// The AP's APIC ID.
        apic_id: u32,
    },
    /// The firmware acknowledged, but the AP did not reach the kernel's state in time. It may
    /// still start later, with the block it was given.
    NotStarted {
        /// The AP's APIC ID.
        apic_id: u32,
    },
    /// [`MpWaker::test`]: the mailbox is not bound to a wakeup entry that implements TEST
    /// (version 1 with a reset vector): older firmware would park the AP for good, so nothing
    /// was posted.
    TestUnsupported,
    /// [`MpWaker::test`]: no acknowledgement before the budget ran out, so the AP is not (yet)
    /// in the firmware's loop. The TEST stays posted; a later acknowledgement frees the mailbox.
    TestNotAcknowledged {
        /// The AP's APIC ID.
        apic_id: u32,
    },
}

impl WakeError {
    /// The APIC ID this error is about.
    pub fn apic_id(&self) -> Option<u32> {
        match *self {
            WakeError::InvalidApicId(id)
            | WakeError::NotAcknowledged { apic_id: id }
            | WakeError::NotStarted { apic_id: id }
            | WakeError::TestNotAcknowledged { apic_id: id }
            | WakeError::Busy {
                pending_apic_id: id,
            } => Some(id),
            WakeError::MailboxBusy { .. } | WakeError::TestUnsupported => None,
        }
    }
}

/// Wakes APs through one mailbox into one trampoline.
#[derive(Debug)]
pub struct MpWaker<'a> {
    mailbox: Mailbox<'a>,
    trampoline: &'a Trampoline<'a>,
    /// An AP whose wake timed out; it owns the trampoline slot until it starts.
    pending: Option<&'static ApBoot>,
}

impl<'a> MpWaker<'a> {
    /// A waker over `mailbox` (from the MADT's [`super::MpWakeup`]) and an installed trampoline.
    ///
    /// Safe, with [`Self::wake`] and [`Self::wake_all`]: waking starts real CPUs only through a
    /// firmware mailbox, which only the `unsafe` [`super::Mailbox::from_address`] provides; its
    /// contract covers the trampoline's address and every [`ApBoot`] woken through it. What the
    /// mailbox page reads back (it is VMM-writable) is only compared, never used as an address.
    pub fn new(mailbox: Mailbox<'a>, trampoline: &'a Trampoline<'a>) -> Self {
        MpWaker {
            mailbox,
            trampoline,
            pending: None,
        }
    }

    /// The APIC ID of a timed-out AP that still owns the trampoline slot, if any.
    pub fn pending(&self) -> Option<u32> {
        self.pending.map(|boot| boot.apic_id)
    }

    /// Frees the slot if the timed-out AP has arrived since; true when no AP is pending.
    pub fn poll_pending(&mut self) -> bool {
        if let Some(boot) = self.pending
            && boot.has_started()
            && self.mailbox.is_idle()
        {
            self.pending = None;
        }
        self.pending.is_none()
    }

    /// Wakes the AP `boot.apic_id` and waits until it has started (then it is running
    /// `boot.entry`). `keep_waiting` is called once per poll and bounds both waits together.
    ///
    /// The block is consumed: on success it comes back as the shared reference the AP also holds;
    /// on timeout it stays with the AP (which may still use it) and is never handed out again.
    pub fn wake(
        &mut self,
        boot: &'static mut ApBoot,
        mut keep_waiting: impl FnMut() -> bool,
    ) -> Result<&'static ApBoot, WakeError> {
        let apic_id = boot.apic_id;
        self.ready_for(apic_id)?;
        // A flag set before the wake (e.g. by a stray `mark_started`) would let the wait below
        // succeed at once and the next wake overwrite the slot this AP is about to read.
        boot.clear_started();
        let boot: &'static ApBoot = boot;
        self.trampoline.publish(boot);
        // WAKEUP is never refused: only TEST depends on the firmware.
        let _ = self
            .mailbox
            .post(Command::Wakeup, apic_id, self.trampoline.wakeup_vector());

        while !self.mailbox.is_idle() {
            if !keep_waiting() {
                self.pending = Some(boot);
                return Err(WakeError::NotAcknowledged { apic_id });
            }
            core::hint::spin_loop();
        }
        while !boot.has_started() {
            if !keep_waiting() {
                self.pending = Some(boot);
                return Err(WakeError::NotStarted { apic_id });
            }
            core::hint::spin_loop();
        }
        Ok(boot)
    }

    /// Asks the AP `apic_id` to prove it is back in the firmware's loop (after it went through the
    /// reset vector, see [`super::return_to_firmware`]) with the TEST command, and waits for the
    /// acknowledgement; `keep_waiting` is called once per poll and bounds the wait (Linux waits
    /// 1 s). Afterwards the AP can be woken again with [`MpWaker::wake`].
    ///
    /// Only through a mailbox bound to a version-1 entry with a reset vector
    /// ([`super::Mailbox::for_entry`]); anywhere else TEST is never sent
    /// ([`WakeError::TestUnsupported`]).
    pub fn test(
        &mut self,
        apic_id: u32,
        mut keep_waiting: impl FnMut() -> bool,
    ) -> Result<(), WakeError> {
        if !self.mailbox.supports_test() {
            return Err(WakeError::TestUnsupported);
        }
        self.ready_for(apic_id)?;
        self.mailbox
            .post(Command::Test, apic_id, 0)
            .map_err(|_| WakeError::TestUnsupported)?;
        while !self.mailbox.is_idle() {
            if !keep_waiting() {
                return Err(WakeError::TestNotAcknowledged { apic_id });
            }
            core::hint::spin_loop();
        }
        Ok(())
    }

    /// The checks before posting a command for `apic_id`: a valid target, no timed-out AP that
    /// may still take the mailbox's next command, and no command pending.
    fn ready_for(&mut self, apic_id: u32) -> Result<(), WakeError> {
        if apic_id == APIC_ID_INVALID || apic_id == APIC_ID_BROADCAST {
            return Err(WakeError::InvalidApicId(apic_id));
        }
        if !self.poll_pending() {
            return Err(WakeError::Busy {
                pending_apic_id: self.pending().unwrap_or(apic_id),
            });
        }
        let command = self.mailbox.command_raw();
        if command != Command::Noop as u16 {
            return Err(WakeError::MailboxBusy { command });
        }
        Ok(())
    }

    /// Wakes every enabled processor of `madt` except `self_apic_id` (the caller), each APIC ID
    /// once, in table order, stopping at the first failure (after a timeout the slot is taken).
    ///
    /// `block_for(apic_id)` supplies each AP's block (`None` skips that AP, e.g. more CPUs than
    /// the kernel supports); `budget_for(apic_id)` supplies each AP's `keep_waiting` closure;
    /// `on_started` is called with each started AP's block. Returns how many APs started.
    ///
    /// Duplicates are found without allocating, in
    /// [`WAKE_ALL_STACK_WORDS`] words of stack: O(n log n) for up to that many processor entries,
    /// about n^2 / (2 * WAKE_ALL_STACK_WORDS) entry reads plus the sorting beyond. For a table
    /// of any size in O(n log n), give the memory with [`Self::wake_all_with_scratch`].
    pub fn wake_all<B, K, S>(
        &mut self,
        madt: &Madt<'_>,
        self_apic_id: u32,
        block_for: B,
        budget_for: impl FnMut(u32) -> K,
        on_started: S,
    ) -> Result<usize, WakeAllError>
    where
        B: FnMut(u32) -> Option<&'static mut ApBoot>,
        K: FnMut() -> bool,
        S: FnMut(&'static ApBoot),
    {
        let mut scratch = [0u64; WAKE_ALL_STACK_WORDS];
        self.wake_all_with_scratch(
            madt,
            self_apic_id,
            &mut scratch,
            block_for,
            budget_for,
            on_started,
        )
    }

    /// [`Self::wake_all`], finding duplicate APIC IDs with `scratch` as working memory: with one
    /// word per enabled processor entry (`madt.apic_ids().count()`) in O(n log n) whatever the
    /// table holds. Shorter works too, in blocks of `scratch.len()` entries (each block one more
    /// pass over the entries before it); empty rescans the earlier entries for every entry.
    /// The contents of `scratch` on entry do not matter and on return mean nothing.
    pub fn wake_all_with_scratch<B, K, S>(
        &mut self,
        madt: &Madt<'_>,
        self_apic_id: u32,
        scratch: &mut [u64],
        mut block_for: B,
        mut budget_for: impl FnMut(u32) -> K,
        mut on_started: S,
    ) -> Result<usize, WakeAllError>
    where
        B: FnMut(u32) -> Option<&'static mut ApBoot>,
        K: FnMut() -> bool,
        S: FnMut(&'static ApBoot),
    {
        let mut first = FirstOccurrence::new(scratch);
        let mut started = 0usize;
        for (index, apic_id) in madt.apic_ids().enumerate() {
            if apic_id == self_apic_id || !first.is_first(madt, index, apic_id) {
                continue;
            }
            let Some(boot) = block_for(apic_id) else {
                continue;
            };
            if boot.apic_id != apic_id {
                return Err(WakeAllError {
                    started,
                    error: WakeError::InvalidApicId(boot.apic_id),
                });
            }
            match self.wake(boot, budget_for(apic_id)) {
                Ok(boot) => {
                    started = started.saturating_add(1);
                    on_started(boot);
                }
                Err(error) => return Err(WakeAllError { started, error }),
            }
        }
        Ok(started)
    }
}

/// The stack words [`MpWaker::wake_all`] sorts APIC IDs in (512 bytes): tables with up to this
/// many processor entries, every TD QEMU builds up to 64 vCPUs, take O(n log n).
pub const WAKE_ALL_STACK_WORDS: usize = 64;

/// [`MpWaker::wake_all`] stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WakeAllError {
    /// APs that started before the failure.
    pub started: usize,
    /// The failure.
    pub error: WakeError,
}

impl core::fmt::Display for WakeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::InvalidApicId(id) => {
                write!(f, "APIC ID {id:#x} cannot be woken (invalid or broadcast)")
            }
            Self::MailboxBusy { command } => {
                write!(f, "the wakeup mailbox already holds command {command}")
            }
            Self::Busy { pending_apic_id } => write!(
                f,
                "AP {pending_apic_id} timed out earlier and still owns the trampoline slot"
            ),
            Self::NotAcknowledged { apic_id } => {
                write!(
                    f,
                    "firmware did not acknowledge the wakeup of AP {apic_id} in time"
                )
            }
            Self::NotStarted { apic_id } => {
                write!(
                    f,
                    "AP {apic_id} was acknowledged but did not reach the kernel in time"
                )
            }
            Self::TestUnsupported => {
                f.write_str("the wakeup entry has no TEST (version 1 with a reset vector needed)")
            }
            Self::TestNotAcknowledged { apic_id } => {
                write!(
                    f,
                    "AP {apic_id} did not answer TEST: not back in the firmware loop"
                )
            }
        }
    }
}

impl core::error::Error for WakeError {}

impl core::fmt::Display for WakeAllError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} (after {} APs started)", self.error, self.started)
    }
}

impl core::error::Error for WakeAllError {}
