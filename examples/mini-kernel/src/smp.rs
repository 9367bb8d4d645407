//! The APs on the kernel's side: woken through the mailbox with tdx-boot's `mpwk`, brought into
//! the kernel's state, then running work the BSP hands to every CPU.

use crate::{gdt, interrupts, percpu, tsc};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use spin::Mutex;
use tdx_boot::e820::MemoryMap;
use tdx_boot::mpwk::{self, ApBoot, ApState, Madt, Mailbox, MpWaker};
use x86_64::instructions::segmentation::{CS, SS, Segment};
use x86_64::instructions::tables::{sgdt, sidt};

/// Each AP's kernel stack.
const AP_STACK: usize = 64 * 1024;
/// How long one AP may take from WAKEUP to its entry (generous: under TCG on a busy host a
/// vCPU thread can wait a long time for a host CPU).
const WAKE_TIMEOUT_MS: u64 = 5_000;

/// APs that reached [`ap_entry`].
static ONLINE: AtomicU32 = AtomicU32::new(0);

/// Why the APs could not be woken (printed with `Debug`).
#[derive(Debug)]
#[allow(
    dead_code,
    reason = "the fields are read through Debug, in the boot log"
)]
pub enum WakeFailure {
    NoMailbox,
    Placement(mpwk::PlacementError),
    Trampoline(mpwk::TrampolineError),
    Wake(mpwk::WakeAllError),
}

/// Wakes every AP of `madt` through its mailbox (checked against `memory_map` and the TD's
/// GPA width `gpaw`); returns the APIC IDs that reached the kernel.
///
/// # Safety
///
/// `trampoline_page` is an identity-mapped, executable page below 4 GiB the kernel owns for
/// good; the MADT's processors are parked in a firmware mailbox loop.
pub unsafe fn wake_aps<const N: usize>(
    madt: &Madt<'_>,
    memory_map: &MemoryMap<N>,
    gpaw: u8,
    trampoline_page: u64,
) -> Result<Vec<u32>, WakeFailure> {
    let wakeup = madt.mailbox().ok_or(WakeFailure::NoMailbox)?;
    // The MADT comes from the VMM: the page must be firmware memory (so the kernel never hands
    // it out) and private (so the VMM can neither read nor rewrite a wake-up).
    mpwk::check_mailbox_in_memory_map(wakeup.mailbox_address, memory_map)
        .and_then(|()| mpwk::check_mailbox_private(wakeup.mailbox_address, gpaw))
        .map_err(WakeFailure::Placement)?;
    // SAFETY: the placement checks put the page in private firmware memory, which stays
    // identity-mapped and is never handed out.
    let mailbox = unsafe { Mailbox::from_address(wakeup.mailbox_address) }.for_entry(&wakeup);
    // SAFETY: the caller gives us the page, identity-mapped (virtual = physical).
    let page =
        unsafe { &mut *(trampoline_page as *mut [u8; mpwk::trampoline::TRAMPOLINE_PAGE_SIZE]) };
    let trampoline =
        mpwk::install_trampoline(page, trampoline_page).map_err(WakeFailure::Trampoline)?;
    let mut waker = MpWaker::new(mailbox, &trampoline);
    let me = percpu::current().map_or(0, |c| c.apic_id);
    let mut next_index = 1u32;
    let mut started = Vec::new();
    waker
        .wake_all(
            madt,
            me,
            |apic_id| {
                let index = next_index;
                next_index += 1;
                Some(Box::leak(Box::new(ApBoot::new(
                    apic_id,
                    kernel_state(),
                    ap_entry,
                    u64::from(index),
                ))))
            },
            |_| {
                let start = tsc::now();
                move || tsc::ms(tsc::now() - start) < WAKE_TIMEOUT_MS
            },
            |boot| started.push(boot.apic_id),
        )
        .map_err(WakeFailure::Wake)?;
    // Each AP reports online after setting up its descriptor tables, a little after `started`.
    let start = tsc::now();
    while (online_aps() as usize) < started.len() && tsc::ms(tsc::now() - start) < WAKE_TIMEOUT_MS {
        core::hint::spin_loop();
    }
    Ok(started)
}

/// This CPU's paging, GDT, IDT and selectors, with a fresh stack: what an AP loads.
fn kernel_state() -> ApState {
    ApState {
        cr3: x86_64::registers::control::Cr3::read_raw()
            .0
            .start_address()
            .as_u64(),
        gdtr: sgdt(),
        idtr: sidt(),
        code_selector: CS::get_reg().0,
        data_selector: SS::get_reg().0,
        stack_top: gdt::allocate_stack(AP_STACK).as_u64(),
    }
}

/// Where a woken AP enters the kernel (on its stack, with the BSP's GDT and the IDT loaded).
extern "C" fn ap_entry(boot: &ApBoot) -> ! {
    let index = boot.arg as u32;
    percpu::init(index, boot.apic_id);
    gdt::init();
    interrupts::init();
    ONLINE.fetch_add(1, Ordering::Release);
    let mut seen = 0;
    loop {
        if STOP.load(Ordering::Acquire) {
            crate::qemu_exit::halt_forever();
        }
        let generation = GENERATION.load(Ordering::Acquire);
        if generation != seen {
            seen = generation;
            let job = *JOB.lock();
            if let Some(job) = job {
                // SAFETY: the BSP keeps the job alive until every AP reported done.
                (unsafe { &*job.0 })(index);
            }
            DONE.fetch_add(1, Ordering::Release);
        }
        core::hint::spin_loop();
    }
}

/// Tells every AP to leave its work loop and halt for good (through the VMM in a TD), so that
/// a finished kernel does not keep host CPUs spinning where no exit device ends the VM.
pub fn stop_aps() {
    STOP.store(true, Ordering::Release);
}

/// APs online (in their work loop).
pub fn online_aps() -> u32 {
    ONLINE.load(Ordering::Acquire)
}

#[derive(Clone, Copy)]
struct JobRef(*const (dyn Fn(u32) + Sync));
// SAFETY: the pointee is `Sync`, and it is only called while the BSP keeps it alive.
unsafe impl Send for JobRef {}

static JOB: Mutex<Option<JobRef>> = Mutex::new(None);
static GENERATION: AtomicU64 = AtomicU64::new(0);
static DONE: AtomicU32 = AtomicU32::new(0);
static STOP: AtomicBool = AtomicBool::new(false);

/// Runs `job(cpu_index)` on every online CPU (the BSP too) and returns when all are done.
pub fn run_on_all(job: &(dyn Fn(u32) + Sync)) {
    let aps = online_aps();
    // SAFETY: lifetime erasure only; this function does not return before every AP finished.
    let erased: *const (dyn Fn(u32) + Sync) = unsafe { core::mem::transmute(job) };
    *JOB.lock() = Some(JobRef(erased));
    DONE.store(0, Ordering::Release);
    GENERATION.fetch_add(1, Ordering::AcqRel);
    job(0);
    while DONE.load(Ordering::Acquire) < aps {
        core::hint::spin_loop();
    }
    *JOB.lock() = None;
}
