//! APs handed back to the firmware and woken again, TEST bounded and refused where firmware lacks
//! it, and the kexec hand-over, with host threads playing the firmware loops of edk2 2025.08 (TEST
//! acknowledged) and edk2 2022.11 (command 2 parks the AP for ever).

#[path = "common/acpi.rs"]
mod acpi;
#[path = "common/ap_state.rs"]
mod ap_state;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use acpi::{local_apic, madt, wakeup};
use ap_state::state;
use tdx_boot::e820::{MemoryMap, RegionKind, UnacceptedBitmap};
use tdx_boot::mpwk::{
    ApBoot, BootSlot, FirmwareRequest, Madt, Mailbox, MailboxPage, MpWaker, MpWakeup,
    ResetVectorError, Trampoline, WakeError, hand_over, install_trampoline, return_to_firmware,
    return_to_firmware_code,
};

const MAILBOX: u64 = 0x7FF7_E000;
const RESET_VECTOR: u64 = 0x7FF7_D000;
const MIB: u64 = 1 << 20;

/// edk2 2025.08's entry: version 1, 24 bytes, reset vector.
const V1_24: MpWakeup = MpWakeup {
    version: 1,
    mailbox_address: MAILBOX,
    reset_vector: Some(RESET_VECTOR),
};

#[repr(C, align(4096))]
struct Page([u8; 4096]);

extern "C" fn never_called(_: &ApBoot) -> ! {
    loop {
        thread::park();
    }
}

fn block(apic_id: u32, arg: u64) -> &'static mut ApBoot {
    Box::leak(Box::new(ApBoot::new(
        apic_id,
        state(0x10_0000),
        never_called,
        arg,
    )))
}

fn seconds(s: f64) -> impl FnMut() -> bool {
    let deadline = Instant::now() + Duration::from_secs_f64(s);
    move || {
        thread::yield_now();
        Instant::now() < deadline
    }
}

fn leak_trampoline() -> &'static Trampoline<'static> {
    let page: &'static mut Page = Box::leak(Box::new(Page([0; 4096])));
    Box::leak(Box::new(install_trampoline(&mut page.0, 0x8000).unwrap()))
}

/// A host thread playing one AP of edk2 2025.08: in the firmware loop it serves WAKEUP and TEST;
/// woken, it runs the trampoline's data side and "the kernel" until told to go back through the
/// reset vector, which puts it in the loop again.
struct Ap {
    /// The `arg` of each block it started with, in order.
    started_args: Arc<std::sync::Mutex<Vec<u64>>>,
    tests_answered: Arc<AtomicU32>,
    go_offline: Arc<AtomicBool>,
    in_firmware: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Ap {
    fn spawn(mailbox: &'static MailboxPage, slot: &'static BootSlot, apic_id: u32) -> Ap {
        let mut ap = Ap {
            started_args: Arc::default(),
            tests_answered: Arc::default(),
            go_offline: Arc::default(),
            in_firmware: Arc::new(AtomicBool::new(true)),
            stop: Arc::default(),
            handle: None,
        };
        let (args, tests, offline, in_firmware, stop) = (
            ap.started_args.clone(),
            ap.tests_answered.clone(),
            ap.go_offline.clone(),
            ap.in_firmware.clone(),
            ap.stop.clone(),
        );
        let handle = thread::spawn(move || {
            let mailbox = Mailbox::new(mailbox);
            while !stop.load(Ordering::Acquire) {
                match mailbox.firmware_serve(apic_id) {
                    FirmwareRequest::Wakeup(_) => {
                        in_firmware.store(false, Ordering::Release);
                        // SAFETY: the BSP published a leaked, never-freed block.
                        let boot: &ApBoot = unsafe { &*(slot.ap_boot() as usize as *const ApBoot) };
                        args.lock().unwrap().push(boot.arg);
                        boot.mark_started();
                        // The kernel runs here until it sends the AP back.
                        while !offline.swap(false, Ordering::AcqRel) {
                            if stop.load(Ordering::Acquire) {
                                return;
                            }
                            thread::yield_now();
                        }
                        in_firmware.store(true, Ordering::Release);
                    }
                    FirmwareRequest::Tested => {
                        tests.fetch_add(1, Ordering::AcqRel);
                    }
                    FirmwareRequest::None => thread::yield_now(),
                }
            }
        });
        ap.handle = Some(handle);
        ap
    }
}

impl Drop for Ap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

#[test]
fn an_ap_sent_back_answers_test_and_is_woken_again_with_a_new_block() {
    let page: &'static MailboxPage = Box::leak(Box::new(MailboxPage::new()));
    let trampoline = leak_trampoline();
    let mut waker = MpWaker::new(Mailbox::new(page).for_entry(&V1_24), trampoline);
    let ap = Ap::spawn(page, trampoline.slot(), 3);

    waker.wake(block(3, 1), seconds(20.0)).unwrap();
    // While the AP runs the kernel it cannot answer: the bounded TEST gives up.
    assert_eq!(
        waker.test(3, seconds(0.05)),
        Err(WakeError::TestNotAcknowledged { apic_id: 3 })
    );
    // The AP goes back through the reset vector; the TEST still posted is answered there.
    ap.go_offline.store(true, Ordering::Release);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !Mailbox::new(page).is_idle() && Instant::now() < deadline {
        thread::yield_now();
    }
    assert!(ap.in_firmware.load(Ordering::Acquire));
    assert_eq!(waker.test(3, seconds(20.0)), Ok(()));
    assert_eq!(ap.tests_answered.load(Ordering::Acquire), 2);
    // Woken again: the same mailbox, a fresh block (a new kernel would do the same).
    let again = waker.wake(block(3, 2), seconds(20.0)).unwrap();
    assert_eq!(again.arg, 2);
    assert_eq!(*ap.started_args.lock().unwrap(), [1, 2]);
}

#[test]
fn test_is_never_sent_to_firmware_without_it() {
    // edk2 2022.11's loop: command 2 for this AP means `jmp $`, for ever.
    let page: &'static MailboxPage = Box::leak(Box::new(MailboxPage::new()));
    let slept = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let firmware = {
        let (slept, stop) = (slept.clone(), stop.clone());
        thread::spawn(move || {
            let mailbox = Mailbox::new(page);
            while !stop.load(Ordering::Acquire) {
                if mailbox.command_raw() == 2 && mailbox.apic_id() == 1 {
                    slept.store(true, Ordering::Release);
                }
                thread::yield_now();
            }
        })
    };
    let trampoline = leak_trampoline();
    let entries = [
        None,
        Some(MpWakeup {
            version: 1,
            mailbox_address: MAILBOX,
            reset_vector: None,
        }),
        Some(MpWakeup {
            version: 0,
            mailbox_address: MAILBOX,
            reset_vector: None,
        }),
    ];
    for entry in entries {
        let mailbox = match &entry {
            Some(entry) => Mailbox::new(page).for_entry(entry),
            None => Mailbox::new(page),
        };
        let mut waker = MpWaker::new(mailbox, trampoline);
        assert_eq!(waker.test(1, seconds(0.2)), Err(WakeError::TestUnsupported));
        assert!(Mailbox::new(page).is_idle());
        if let Some(entry) = entry {
            // SAFETY: without a reset vector the call returns at once and executes nothing.
            let refused = unsafe { return_to_firmware(&entry, 0) };
            assert_eq!(
                refused,
                ResetVectorError {
                    version: entry.version
                }
            );
        }
    }
    thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Release);
    firmware.join().unwrap();
    assert!(!slept.load(Ordering::Acquire), "an AP was put to sleep");
}

#[test]
fn the_reset_stub_fits_one_page_and_refuses_bad_ids() {
    let code = return_to_firmware_code();
    assert!(code.start < code.end && code.end - code.start < 64);
    assert_eq!(code.start / 4096, (code.end - 1) / 4096);
    let page: &'static MailboxPage = Box::leak(Box::new(MailboxPage::new()));
    let mut waker = MpWaker::new(Mailbox::new(page).for_entry(&V1_24), leak_trampoline());
    for id in [0xFFFF_FFFF, 0xFFFF_FFFE] {
        assert_eq!(
            waker.test(id, seconds(0.01)),
            Err(WakeError::InvalidApicId(id))
        );
    }
    Mailbox::new(page)
        .post(tdx_boot::mpwk::Command::Wakeup, 9, 0x1000)
        .unwrap();
    assert_eq!(
        waker.test(1, seconds(0.01)),
        Err(WakeError::MailboxBusy { command: 1 })
    );
}

fn memory_map() -> MemoryMap<8> {
    let mut map = MemoryMap::new();
    map.insert(0, 512 * MIB, RegionKind::Usable).unwrap();
    map.insert(512 * MIB, 1024 * MIB, RegionKind::Unaccepted)
        .unwrap();
    map
}

#[test]
fn kexec_hand_over_with_a_reset_vector_disables_only_the_aps_not_back() {
    let page: &'static MailboxPage = Box::leak(Box::new(MailboxPage::new()));
    let trampoline = leak_trampoline();
    let mut waker = MpWaker::new(Mailbox::new(page).for_entry(&V1_24), trampoline);
    // APs 1 and 2 are back in the loop; AP 3 never came back.
    let _one = Ap::spawn(page, trampoline.slot(), 1);
    let _two = Ap::spawn(page, trampoline.slot(), 2);
    let mut table = madt(&[
        local_apic(0, 0, 1),
        local_apic(1, 1, 1),
        local_apic(2, 2, 1),
        local_apic(3, 3, 1),
        local_apic(4, 4, 0), // disabled: not asked
        wakeup(1, 24, MAILBOX, RESET_VECTOR),
    ]);
    let map = memory_map();
    let mut unaccepted = vec![0u8; 4096];
    let budget = |id: u32| seconds(if id == 3 { 0.1 } else { 20.0 });
    let report = hand_over(
        &mut waker,
        &mut table,
        0,
        budget,
        &map,
        &mut unaccepted,
        |_| {},
    )
    .unwrap();
    assert_eq!(report.aps_back, 2);
    assert_eq!(
        report.first_not_back,
        Some((3, WakeError::TestNotAcknowledged { apic_id: 3 }))
    );
    assert_eq!(report.processors_disabled, 1);
    assert!(!report.mailbox_cleared);
    // What the next kernel reads: a valid table, APs 1 and 2, the same mailbox.
    let next = Madt::parse(&table).expect("checksum fixed");
    assert_eq!(next.apic_ids().collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(next.mailbox(), Some(V1_24));
    let bitmap = UnacceptedBitmap::parse(&unaccepted[..report.unaccepted_table_len]).unwrap();
    assert_eq!(
        bitmap.ranges().collect::<Vec<_>>(),
        vec![512 * MIB..1024 * MIB]
    );
}

#[test]
fn kexec_hand_over_without_a_reset_vector_clears_the_mailbox() {
    let page: &'static MailboxPage = Box::leak(Box::new(MailboxPage::new()));
    let entry = MpWakeup {
        version: 1,
        mailbox_address: MAILBOX,
        reset_vector: None,
    };
    let mut waker = MpWaker::new(Mailbox::new(page).for_entry(&entry), leak_trampoline());
    let mut table = madt(&[
        local_apic(0, 0, 1),
        local_apic(1, 1, 1),
        wakeup(1, 16, MAILBOX, 0),
    ]);
    let before = table.clone();
    let map = memory_map();
    let asked = AtomicU64::new(0);
    let budget = |_| {
        asked.fetch_add(1, Ordering::Relaxed);
        seconds(0.01)
    };
    // A buffer too small for the unaccepted table: nothing is written to the MADT.
    let mut small = [0u8; 8];
    assert!(hand_over(&mut waker, &mut table, 0, budget, &map, &mut small, |_| {}).is_err());
    assert_eq!(table, before);

    let mut unaccepted = vec![0u8; 4096];
    let report = hand_over(
        &mut waker,
        &mut table,
        0,
        budget,
        &map,
        &mut unaccepted,
        |_| {},
    )
    .unwrap();
    assert!(report.mailbox_cleared);
    assert_eq!(report.aps_back, 0);
    assert_eq!(report.first_not_back, Some((1, WakeError::TestUnsupported)));
    assert!(Mailbox::new(page).is_idle(), "no TEST was posted");
    let next = Madt::parse(&table).expect("checksum fixed");
    assert_eq!(next.mailbox(), None, "the next kernel waits for no AP");
    assert_eq!(next.apic_ids().collect::<Vec<_>>(), [0]);
    assert_eq!(asked.load(Ordering::Relaxed), 1);
}
