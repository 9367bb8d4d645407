//! The kernel playing TDVF, so the AP wake-up path runs on QEMU's real vCPUs without TDX.
//!
//! In a TD, the firmware parks every AP in a loop that watches the ACPI multiprocessor wakeup
//! mailbox and publishes that mailbox in the MADT. Plain QEMU's OVMF does not, so this module
//! does it: it starts each AP with INIT-SIPI-SIPI into a real-mode trampoline that enters long
//! mode and runs the mailbox parking loop, then builds a MADT with the processors' local APICs
//! and the multiprocessor wakeup entry. From there the kernel wakes the APs with tdx-boot's
//! `mpwk` exactly as it would in a TD.

pub mod ccel;
mod local_apic;
pub mod madt;
pub mod parking;
mod trampoline;

use crate::percpu::apic_id_from_cpuid;
use crate::{gdt, tsc};
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use parking::{MAILBOX, PARKED, RESET_STACKS};
use tdx_boot::mpwk::MailboxPage;

/// What the fake firmware publishes.
pub struct Published {
    /// The MADT, as the OS would find it through the XSDT.
    pub madt: Vec<u8>,
    /// APIC IDs of the APs that reached the parking loop.
    pub parked: Vec<u32>,
}

const PARKING_STACK: usize = 16 * 1024;
/// How long one AP may take to reach the parking loop.
const START_TIMEOUT_MS: u64 = 5_000;

/// Starts the APs `apic_ids` (all but this CPU) into the parking loop and publishes a MADT with
/// them and the mailbox.
///
/// # Safety
///
/// `low_page` is a page below 1 MiB and `mailbox_page` a page below 4 GiB, both owned by the
/// kernel for good and identity-mapped; the APs are idle in the firmware (after
/// ExitBootServices) and nothing else starts them.
pub unsafe fn park_aps(low_page: u64, mailbox_page: u64, apic_ids: &[u32]) -> Published {
    // SAFETY: the caller gives us the page; a zeroed mailbox is idle (command NOOP).
    unsafe { (mailbox_page as *mut MailboxPage).write(MailboxPage::new()) };
    // SAFETY: the caller gives us the page.
    let trampoline = unsafe { trampoline::Trampoline::install(low_page) };
    MAILBOX.store(mailbox_page, Ordering::Release);
    let bsp = apic_id_from_cpuid();
    let mut parked = Vec::new();
    for &apic_id in apic_ids.iter().filter(|&&id| id != bsp) {
        let before = PARKED.load(Ordering::Acquire);
        let stack = gdt::allocate_stack(PARKING_STACK);
        // The reset vector's own stack for this AP: its parking stack is the OS's once woken.
        if let Some(slot) = RESET_STACKS.get(apic_id as usize) {
            slot.store(
                gdt::allocate_stack(PARKING_STACK).as_u64(),
                Ordering::Release,
            );
        }
        trampoline.set_launch(stack.as_u64(), mailbox_page, parking::park);
        local_apic::start_ap(apic_id, trampoline.sipi_vector());
        let start = tsc::now();
        while PARKED.load(Ordering::Acquire) == before
            && tsc::ms(tsc::now() - start) < START_TIMEOUT_MS
        {
            core::hint::spin_loop();
        }
        if PARKED.load(Ordering::Acquire) != before {
            parked.push(apic_id);
        } else {
            crate::kprintln!("fake firmware: AP {apic_id} did not reach the parking loop");
        }
    }
    let mut all = Vec::with_capacity(parked.len() + 1);
    all.push(bsp);
    all.extend_from_slice(&parked);
    // The kernel identity-maps its image, so the reset vector's address is its physical one.
    let reset_vector = parking::reset_vector as *const () as u64;
    let madt = madt::build(&all, 0xfee0_0000, mailbox_page, reset_vector);
    Published { madt, parked }
}
