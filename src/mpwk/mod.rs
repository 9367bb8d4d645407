//! Multiprocessor wakeup: find the APs in the MADT and wake each one through the firmware mailbox
//! into the kernel.
//!
//! A TD has no INIT-SIPI. TDVF parks every AP in a loop watching a mailbox page and publishes that
//! page in the MADT's multiprocessor wakeup entry (type 0x10). The OS writes an APIC ID and a wakeup
//! vector, then the WAKEUP command; the AP's firmware loop acknowledges (command = NOOP) and jumps
//! to the vector in 64-bit mode on the firmware's page tables.
//!
//! | file | concept |
//! |---|---|
//! | [`madt`] | parse and validate the MADT: enabled APIC IDs, the wakeup entry |
//! | [`rsdp`] | find the MADT from the RSDP (RSDP -> XSDT/RSDT -> "APIC"), checksums checked |
//! | [`placement`] | the mailbox lies in reserved / ACPI NVS memory of the memory map |
//! | [`parked_ap_memory`] | the firmware page tables parked APs run on, held back from the allocator |
//! | [`mailbox`] | the mailbox page, accessed only through atomics |
//! | [`ap_boot`] | the per-AP boot block (CR3, GDT, IDT, selectors, stack, entry, argument) |
//! | [`trampoline`] | the AP's 64-bit code from firmware state to kernel state, and its handshake |
//! | [`wake`] | the BSP's protocol: one AP at a time, bounded waits, no reuse after a timeout, TEST |
//! | `first_occurrence` | each APIC ID woken once: duplicates found in caller or stack memory, no allocator |
//! | [`reset_vector`] | an AP handed back to the firmware through the version-1 reset vector |
//! | [`kexec`] | the hand-over to a kexec'd kernel: APs back, unaccepted table, truthful MADT |
//! | `from_acpi` | feature `acpi`: the MADT and mailbox from the `acpi` crate's tables |
//!
//! # Using it
//! ```no_run
//! use tdx_boot::mpwk::{self, ApBoot, Madt, Mailbox, MpWaker};
//!
//! # fn kernel(madt_bytes: &'static [u8], page: &'static mut [u8; 4096], page_phys: u64,
//! #           my_apic_id: u32, gpaw: u8, map_mailbox: impl Fn(u64) -> u64,
//! #           memory_map: &[(u64, u64, bool)],
//! #           block_for: impl FnMut(u32) -> Option<&'static mut ApBoot>) -> Option<usize> {
//! let madt = Madt::parse(madt_bytes).ok()?;
//! let wakeup = madt.mailbox()?;                       // None unless usable
//! mpwk::check_mailbox_placement(wakeup.mailbox_address, memory_map.iter().copied()).ok()?;
//! mpwk::check_mailbox_private(wakeup.mailbox_address, gpaw).ok()?;
//! // SAFETY: the kernel mapped the mailbox page (private, write-back) at this address for good.
//! let mailbox = unsafe { Mailbox::from_address(map_mailbox(wakeup.mailbox_address)) }
//!     .for_entry(&wakeup);
//! let trampoline = mpwk::install_trampoline(page, page_phys).ok()?;
//! let mut waker = MpWaker::new(mailbox, &trampoline);
//! let budget = |_apic_id| { let mut spins = 0u64; move || { spins += 1; spins < 100_000_000 } };
//! waker.wake_all(&madt, my_apic_id, block_for, budget, |_started| {}).ok()
//! # }
//! ```

pub mod ap_boot;
mod first_occurrence;
#[cfg(feature = "acpi")]
#[cfg_attr(docsrs, doc(cfg(feature = "acpi")))]
pub mod from_acpi;
pub mod kexec;
pub mod madt;
pub mod mailbox;
pub mod parked_ap_memory;
pub mod placement;
pub mod reset_vector;
pub mod rsdp;
pub mod trampoline;
pub mod wake;

pub use ap_boot::{ApBoot, ApEntry, ApState};
pub use kexec::{HandOverError, HandOverReport, hand_over};
pub use madt::{Madt, MadtError, MpWakeup, Processor, WakeupUnusable};
pub use mailbox::{Command, FirmwareRequest, Mailbox, MailboxPage, PostError};
pub use parked_ap_memory::{TDVF_PARKED_AP_PAGE_TABLES, hold_back_parked_ap_memory};
pub use placement::{
    PlacementError, check_mailbox_in_memory_map, check_mailbox_placement, check_mailbox_private,
};
pub use reset_vector::{ResetVectorError, return_to_firmware, return_to_firmware_code};
pub use rsdp::{RsdpError, find_madt, find_table};
pub use trampoline::{BootSlot, Trampoline, TrampolineError, install_trampoline};
pub use wake::{MpWaker, WAKE_ALL_STACK_WORDS, WakeAllError, WakeError};
/// The GDTR/IDTR image stored in [`ApBoot`] (re-exported from `x86_64`).
pub use x86_64::structures::DescriptorTablePointer;
