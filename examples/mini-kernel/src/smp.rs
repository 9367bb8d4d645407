//! The APs on the kernel's side: woken through the mailbox with tdx-boot's `mpwk`, brought into
//! the kernel's state, then running work the BSP hands to every CPU; with a version-1 wakeup
//! entry, an AP can be handed back to the firmware through the reset vector and woken again.

use crate::{gdt, interrupts, percpu, tsc};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use spin::Mutex;
use tdx_boot::e820::MemoryMap;
use tdx_boot::mpwk::{self, ApBoot, ApState, Madt, Mailbox, MpWaker, MpWakeup};
use x86_64::instructions::segmentation::{CS, SS, Segment};
use x86_64::instructions::tables::{sgdt, sidt};

/// Each AP's kernel stack.
const AP_STACK: usize = 64 * 1024;
/// How long one AP may take from WAKEUP to its entry (generous: under TCG on a busy host a
/// vCPU thread can wait a long time for a host CPU).
const WAKE_TIMEOUT_MS: u64 = 5_000;

/// APs that reached [`ap_entry`] and did not go back to the firmware.
static ONLINE: AtomicU32 = AtomicU32::new(0);
/// The APIC ID (plus one) of the AP asked to go back to the firmware; 0 when none is.
static OFFLINE_REQUEST: AtomicU32 = AtomicU32::new(0);
/// The wakeup entry the APs came through (for the reset vector).
static WAKEUP: spin::Once<MpWakeup> = spin::Once::new();

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
    WAKEUP.call_once(|| wakeup);
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
    AP_IDS.lock().clone_from(&started);
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
    let in_td = crate::platform::in_td();
    if in_td {
        crate::x2apic::enable();
    }
    // Work handed out before this AP (re)joined is not its own: an AP woken again after going
    // back to the firmware must not count itself into a job it never ran.
    let mut seen = GENERATION.load(Ordering::Acquire);
    ONLINE.fetch_add(1, Ordering::Release);
    loop {
        // Interrupts are off while the AP looks for work: a wake IPI sent after it looked stays
        // pending and ends the halt below at once (STI takes effect with the TDVMCALL).
        x86_64::instructions::interrupts::disable();
        if STOP.load(Ordering::Acquire) {
            crate::qemu_exit::halt_forever();
        }
        if OFFLINE_REQUEST.load(Ordering::Acquire) == boot.apic_id + 1 {
            go_back_to_firmware();
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
            continue;
        }
        if in_td {
            // Idle: halt through the VMM until the BSP's wake IPI (or any interrupt).
            // SAFETY: the IDT is loaded and every vector has a stub; the loop is ready for an
            // interrupt here.
            let _ = unsafe { tdx_boot::ve::safe_halt(&tdx_boot::tdcall::Hardware) };
        } else {
            core::hint::spin_loop();
        }
    }
}

/// In a TD, sends every AP the wake IPI: the BSP has set something its loop looks at. (Without
/// TDX the APs spin: TCG offers them no x2APIC.) Skipped if the AP list is locked, which only a
/// fatal path interrupting [`wake_aps`] could see.
fn kick_aps() {
    if !crate::platform::in_td() {
        return;
    }
    if let Some(ids) = AP_IDS.try_lock() {
        for &apic_id in ids.iter() {
            crate::x2apic::send(apic_id, crate::x2apic::WAKE_VECTOR);
        }
    }
}

/// The IPI check (TD only): every AP halted in its idle loop is woken by the BSP's wake IPI
/// (ICR through #VE and TDVMCALL<WRMSR>, delivered by the VMM) and runs a job.
pub fn check_wake_ipis() {
    if !crate::platform::in_td() {
        return;
    }
    let aps = AP_IDS.lock().len() as u32;
    let before: Vec<u32> = (1..=aps).map(crate::x2apic::wake_ipis).collect();
    let ran = AtomicU64::new(0);
    run_on_all(&|cpu| {
        ran.fetch_or(1 << (cpu % 64), Ordering::Relaxed);
    });
    // The job ran; the IPI itself may be taken just after, at the AP's next STI.
    let start = tsc::now();
    let woken = |before: &[u32]| {
        (1..=aps)
            .zip(before)
            .filter(|&(index, &count)| crate::x2apic::wake_ipis(index) > count)
            .count() as u32
    };
    while woken(&before) < aps && tsc::ms(tsc::now() - start) < WAKE_TIMEOUT_MS {
        core::hint::spin_loop();
    }
    let all_ran = (1..=aps).all(|index| ran.load(Ordering::Relaxed) & (1 << (index % 64)) != 0);
    crate::check!(
        "wake IPIs",
        aps > 0 && all_ran && woken(&before) == aps,
        "{} of {aps} idle APs woken from TDVMCALL<HLT> by the BSP's IPI (vector {:#x}) and ran the job; IPIs taken per AP {:?}",
        woken(&before),
        crate::x2apic::WAKE_VECTOR,
        (1..=aps).map(crate::x2apic::wake_ipis).collect::<Vec<_>>()
    );
}

/// The AP leaves the kernel for the firmware's reset vector, on the kernel's page tables (they
/// identity-map everything, the reset vector and tdx-boot's stub included).
fn go_back_to_firmware() -> ! {
    ONLINE.fetch_sub(1, Ordering::AcqRel);
    OFFLINE_REQUEST.store(0, Ordering::Release);
    let cr3 = x86_64::registers::control::Cr3::read_raw()
        .0
        .start_address()
        .as_u64();
    if let Some(wakeup) = WAKEUP.get() {
        // SAFETY: this AP holds no lock and the kernel never uses its stack again (a new wake
        // gets a fresh one); CR3 is the kernel's identity map in the current paging mode, which
        // maps the reset vector and the stub; the reset vector is the firmware's loop.
        let refused = unsafe { mpwk::return_to_firmware(wakeup, cr3) };
        crate::kprintln!("smp: AP cannot go back: {refused}");
    }
    crate::qemu_exit::halt_forever()
}

/// What [`cycle_through_firmware`] found.
#[derive(Debug)]
#[allow(
    dead_code,
    reason = "the fields are read through Debug, in the boot log"
)]
pub enum CycleFailure {
    /// The wakeup entry has no reset vector: APs cannot be handed back (Linux then disables
    /// CPU offlining).
    NoResetVector(u16),
    /// The AP did not leave the kernel.
    DidNotLeave,
    /// TEST was not answered.
    Test(mpwk::WakeError),
    /// The second wake failed.
    Trampoline(mpwk::TrampolineError),
    /// The second wake failed.
    Wake(mpwk::WakeError),
    /// The AP did not come back online in the kernel.
    NotOnline,
}

/// Hands the AP `apic_id` (kernel CPU `index`) back to the firmware through the reset vector,
/// confirms with TEST (1 s, as Linux) that it is in the firmware's loop, and wakes it again into
/// the kernel with a fresh block.
///
/// # Safety
///
/// As for [`wake_aps`], which woke the AP: `trampoline_page` is the same page, no AP is inside
/// the trampoline any more.
pub unsafe fn cycle_through_firmware(
    apic_id: u32,
    index: u32,
    trampoline_page: u64,
) -> Result<(), CycleFailure> {
    let wakeup = *WAKEUP.get().ok_or(CycleFailure::NoResetVector(0))?;
    if wakeup.reset_vector.is_none() {
        return Err(CycleFailure::NoResetVector(wakeup.version));
    }
    let online = online_aps();
    OFFLINE_REQUEST.store(apic_id + 1, Ordering::Release);
    kick_aps();
    let start = tsc::now();
    while (OFFLINE_REQUEST.load(Ordering::Acquire) != 0 || online_aps() == online)
        && tsc::ms(tsc::now() - start) < WAKE_TIMEOUT_MS
    {
        core::hint::spin_loop();
    }
    if online_aps() == online {
        OFFLINE_REQUEST.store(0, Ordering::Release);
        return Err(CycleFailure::DidNotLeave);
    }
    // SAFETY: `wake_aps` checked this mailbox's placement; it stays mapped for good.
    let mailbox = unsafe { Mailbox::from_address(wakeup.mailbox_address) }.for_entry(&wakeup);
    // SAFETY: the caller gives us the page again; no AP runs in it now.
    let page =
        unsafe { &mut *(trampoline_page as *mut [u8; mpwk::trampoline::TRAMPOLINE_PAGE_SIZE]) };
    let trampoline =
        mpwk::install_trampoline(page, trampoline_page).map_err(CycleFailure::Trampoline)?;
    let mut waker = MpWaker::new(mailbox, &trampoline);
    let start = tsc::now();
    waker
        .test(apic_id, || tsc::ms(tsc::now() - start) < 1_000)
        .map_err(CycleFailure::Test)?;
    let boot = Box::leak(Box::new(ApBoot::new(
        apic_id,
        kernel_state(),
        ap_entry,
        u64::from(index),
    )));
    let start = tsc::now();
    waker
        .wake(boot, || tsc::ms(tsc::now() - start) < WAKE_TIMEOUT_MS)
        .map_err(CycleFailure::Wake)?;
    let start = tsc::now();
    while online_aps() == online - 1 && tsc::ms(tsc::now() - start) < WAKE_TIMEOUT_MS {
        core::hint::spin_loop();
    }
    if online_aps() != online {
        return Err(CycleFailure::NotOnline);
    }
    Ok(())
}

/// Tells every AP to leave its work loop and halt for good (through the VMM in a TD), so that
/// a finished kernel does not keep host CPUs spinning where no exit device ends the VM.
pub fn stop_aps() {
    STOP.store(true, Ordering::Release);
    kick_aps();
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
    kick_aps();
    job(0);
    while DONE.load(Ordering::Acquire) < aps {
        core::hint::spin_loop();
    }
    *JOB.lock() = None;
}

/// The hand-back check: the last AP goes back to the firmware through the reset vector, TEST
/// confirms it is in the firmware's loop, it is woken again and runs work. Only where the wakeup
/// entry has a reset vector (edk2 2025.08 and the fake firmware); elsewhere it says why not.
/// With `fake_firmware`, its own counters must agree (one return through the reset vector, TEST
/// answered).
///
/// # Safety
///
/// As for [`cycle_through_firmware`].
pub unsafe fn check_hand_back(trampoline_page: u64, fake_firmware: bool) {
    let aps = online_aps();
    let (last, index) = {
        let ids = AP_IDS.lock();
        (ids.last().copied(), ids.len() as u32)
    };
    let Some(apic_id) = last else {
        crate::kprintln!("mini-kernel: no AP to hand back to the firmware");
        return;
    };
    if WAKEUP.get().is_some_and(|w| w.reset_vector.is_none()) {
        crate::kprintln!(
            "mini-kernel: the wakeup entry has no reset vector (edk2 before 2025.08): APs cannot go back to the firmware, CPU offlining stays off (as Linux)"
        );
        return;
    }
    // SAFETY: forwarded; the APs are all past the trampoline.
    let cycled = unsafe { cycle_through_firmware(apic_id, index, trampoline_page) };
    let ran = AtomicU32::new(0);
    if cycled.is_ok() {
        run_on_all(&|cpu| {
            if cpu == index {
                ran.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let (returned, tested) = (
        crate::fake_firmware::parking::RETURNED.load(Ordering::Relaxed),
        crate::fake_firmware::parking::TESTED.load(Ordering::Relaxed),
    );
    let firmware_agrees = !fake_firmware || (returned == 1 && tested >= 1);
    crate::check!(
        "AP handed back to the firmware",
        cycled.is_ok()
            && ran.load(Ordering::Relaxed) == 1
            && online_aps() == aps
            && firmware_agrees,
        "APIC ID {apic_id}: reset vector, TEST answered, woken again, ran work: {cycled:?}; {} online{}",
        online_aps(),
        if fake_firmware {
            alloc::format!(
                " (fake firmware: {returned} back through its reset vector, {tested} TEST answered)"
            )
        } else {
            alloc::string::String::new()
        }
    );
}

/// APIC IDs of the woken APs, in kernel CPU order (index 1 first).
static AP_IDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
