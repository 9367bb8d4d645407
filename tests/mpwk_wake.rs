//! The wake protocol on a real mailbox page, with host threads playing TDVF's AP loop and the AP's
//! trampoline (its data side: read the boot slot, check the block, set started).

#[path = "common/ap_state.rs"]
mod ap_state;

use ap_state::{KERNEL_CR3, state};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tdx_boot::mpwk::{
    ApBoot, BootSlot, Madt, Mailbox, MailboxPage, MpWaker, Trampoline, WakeAllError, WakeError,
    install_trampoline,
};

const TRAMPOLINE_PHYS: u64 = 0x8000;

#[repr(C, align(4096))]
struct Page([u8; 4096]);

extern "C" fn never_called(_: &ApBoot) -> ! {
    loop {
        thread::park();
    }
}

fn block(apic_id: u32) -> &'static mut ApBoot {
    Box::leak(Box::new(ApBoot::new(
        apic_id,
        state(0x10_0000 + u64::from(apic_id) * 0x1000),
        never_called,
        u64::from(apic_id) * 100,
    )))
}

fn leak_mailbox() -> &'static MailboxPage {
    Box::leak(Box::new(MailboxPage::new()))
}

fn leak_trampoline() -> &'static Trampoline<'static> {
    let page: &'static mut Page = Box::leak(Box::new(Page([0xCC; 4096])));
    Box::leak(Box::new(
        install_trampoline(&mut page.0, TRAMPOLINE_PHYS).expect("install"),
    ))
}

fn seconds(s: f64) -> impl FnMut() -> bool {
    let deadline = Instant::now() + Duration::from_secs_f64(s);
    move || {
        thread::yield_now();
        Instant::now() < deadline
    }
}

/// Waits up to 20 s for the acknowledgement (scheduling on a loaded host may be slow), then
/// `after_ack` for the started flag: a test expecting `NotStarted` never sees `NotAcknowledged`.
fn started_within(mailbox: &'static MailboxPage, after_ack: f64) -> impl FnMut() -> bool {
    let mailbox = Mailbox::new(mailbox);
    let start = Instant::now();
    let mut acknowledged_at = None;
    move || {
        thread::yield_now();
        if mailbox.is_idle() {
            let at = *acknowledged_at.get_or_insert_with(Instant::now);
            at.elapsed() < Duration::from_secs_f64(after_ack)
        } else {
            start.elapsed() < Duration::from_secs(20)
        }
    }
}

/// How a simulated AP behaves once it sees WAKEUP for its ID.
#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// Acknowledge and start at once.
    Prompt,
    /// Wait for the release flag, then acknowledge and start.
    AckLate,
    /// Acknowledge at once; start only after the release flag.
    StartLate,
    /// Never acknowledge.
    Never,
}

/// What the AP saw when it ran the trampoline's data side.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Arrival {
    apic_id: u32,
    vector: u64,
    cr3: u64,
    block_apic_id: u32,
    block_arg: u64,
    stack_top: u64,
}

struct Ap {
    handle: thread::JoinHandle<Option<Arrival>>,
}

struct Harness {
    mailbox: &'static MailboxPage,
    trampoline: &'static Trampoline<'static>,
    stop: Arc<AtomicBool>,
    release: Arc<AtomicBool>,
    wakeups_seen: Arc<AtomicU32>,
}

impl Harness {
    fn new() -> Self {
        Harness {
            mailbox: leak_mailbox(),
            trampoline: leak_trampoline(),
            stop: Arc::new(AtomicBool::new(false)),
            release: Arc::new(AtomicBool::new(false)),
            wakeups_seen: Arc::new(AtomicU32::new(0)),
        }
    }

    fn waker(&self) -> MpWaker<'static> {
        MpWaker::new(Mailbox::new(self.mailbox), self.trampoline)
    }

    /// A thread playing TDVF's parked AP `apic_id`, then the trampoline.
    fn spawn_ap(&self, apic_id: u32, behaviour: Behaviour) -> Ap {
        let mailbox = Mailbox::new(self.mailbox);
        let slot: &'static BootSlot = self.trampoline.slot();
        let (stop, release, seen) = (
            self.stop.clone(),
            self.release.clone(),
            self.wakeups_seen.clone(),
        );
        let handle = thread::spawn(move || {
            let wait_release = || {
                while !release.load(Ordering::Acquire) {
                    if stop.load(Ordering::Acquire) {
                        return false;
                    }
                    thread::yield_now();
                }
                true
            };
            // The firmware loop.
            let vector = loop {
                if stop.load(Ordering::Acquire) {
                    return None;
                }
                // Peek first so the behaviours can decide when to acknowledge.
                let for_me = !mailbox.is_idle() && mailbox.apic_id() == apic_id;
                if for_me {
                    seen.fetch_add(1, Ordering::AcqRel);
                    match behaviour {
                        Behaviour::Never => {
                            // Stay parked until the test ends.
                            while !stop.load(Ordering::Acquire) {
                                thread::yield_now();
                            }
                            return None;
                        }
                        Behaviour::AckLate if !wait_release() => return None,
                        _ => {}
                    }
                    if let Some(vector) = mailbox.firmware_poll(apic_id) {
                        break vector;
                    }
                }
                thread::yield_now();
            };
            // The trampoline's data side: read the slot, then the block, then set started.
            let cr3 = slot.cr3();
            let block_address = slot.ap_boot();
            // SAFETY: the BSP published the address of a leaked, never-freed `ApBoot`.
            let boot: &ApBoot = unsafe { &*(block_address as usize as *const ApBoot) };
            let arrival = Arrival {
                apic_id,
                vector,
                cr3,
                block_apic_id: boot.apic_id,
                block_arg: boot.arg,
                stack_top: boot.stack_top,
            };
            if behaviour == Behaviour::StartLate && !wait_release() {
                return Some(arrival);
            }
            boot.mark_started();
            Some(arrival)
        });
        Ap { handle }
    }

    fn finish(&self, aps: Vec<Ap>) -> Vec<Option<Arrival>> {
        self.stop.store(true, Ordering::Release);
        aps.into_iter()
            .map(|ap| ap.handle.join().unwrap())
            .collect()
    }
}

fn expected_arrival(apic_id: u32) -> Arrival {
    Arrival {
        apic_id,
        vector: TRAMPOLINE_PHYS,
        cr3: KERNEL_CR3,
        block_apic_id: apic_id,
        block_arg: u64::from(apic_id) * 100,
        stack_top: 0x10_0000 + u64::from(apic_id) * 0x1000,
    }
}

#[test]
fn prompt_aps_start_in_order_with_their_own_blocks() {
    let h = Harness::new();
    let ids = [1u32, 2, 3, 7];
    let aps = ids
        .iter()
        .map(|&id| h.spawn_ap(id, Behaviour::Prompt))
        .collect();
    let mut waker = h.waker();
    for &id in &ids {
        let boot = waker.wake(block(id), seconds(20.0)).expect("woken");
        assert!(boot.has_started());
        assert_eq!(boot.apic_id, id);
        assert!(Mailbox::new(h.mailbox).is_idle());
    }
    let arrivals = h.finish(aps);
    for (arrival, &id) in arrivals.iter().zip(&ids) {
        assert_eq!(*arrival, Some(expected_arrival(id)));
    }
    assert_eq!(h.wakeups_seen.load(Ordering::Acquire), ids.len() as u32);
}

#[test]
fn never_acknowledged_times_out_and_blocks_the_slot() {
    let h = Harness::new();
    let aps = vec![
        h.spawn_ap(1, Behaviour::Never),
        h.spawn_ap(2, Behaviour::Prompt),
    ];
    let mut waker = h.waker();
    let started = Instant::now();
    assert_eq!(
        waker.wake(block(1), seconds(0.05)).map(|b| b.apic_id),
        Err(WakeError::NotAcknowledged { apic_id: 1 })
    );
    assert!(started.elapsed() < Duration::from_secs(10), "bounded wait");
    assert_eq!(waker.pending(), Some(1));
    // AP 1 may still read the slot: nobody else may be woken through it.
    assert_eq!(
        waker.wake(block(2), seconds(0.05)).map(|b| b.apic_id),
        Err(WakeError::Busy { pending_apic_id: 1 })
    );
    let arrivals = h.finish(aps);
    assert_eq!(arrivals, vec![None, None]);
}

#[test]
fn late_acknowledgement_keeps_its_own_block_and_frees_the_slot_after() {
    let h = Harness::new();
    let aps = vec![
        h.spawn_ap(4, Behaviour::AckLate),
        h.spawn_ap(5, Behaviour::Prompt),
    ];
    let mut waker = h.waker();
    assert_eq!(
        waker.wake(block(4), seconds(0.05)).map(|b| b.apic_id),
        Err(WakeError::NotAcknowledged { apic_id: 4 })
    );
    assert_eq!(
        waker.wake(block(5), seconds(0.05)).map(|b| b.apic_id),
        Err(WakeError::Busy { pending_apic_id: 4 })
    );
    // The late AP wakes up now.
    h.release.store(true, Ordering::Release);
    let mut budget = seconds(20.0);
    while !waker.poll_pending() {
        assert!(budget(), "late AP never arrived");
    }
    let boot = waker
        .wake(block(5), seconds(20.0))
        .expect("slot free again");
    assert_eq!(boot.apic_id, 5);
    let arrivals = h.finish(aps);
    // The late AP used its own block, not the one published later for AP 5.
    assert_eq!(
        arrivals,
        vec![Some(expected_arrival(4)), Some(expected_arrival(5))]
    );
}

#[test]
fn acknowledged_but_not_started() {
    let h = Harness::new();
    let aps = vec![
        h.spawn_ap(6, Behaviour::StartLate),
        h.spawn_ap(8, Behaviour::Prompt),
    ];
    let mut waker = h.waker();
    assert_eq!(
        waker
            .wake(block(6), started_within(h.mailbox, 0.05))
            .map(|b| b.apic_id),
        Err(WakeError::NotStarted { apic_id: 6 })
    );
    // The firmware did acknowledge: the mailbox is idle, yet the slot is still AP 6's.
    assert!(Mailbox::new(h.mailbox).is_idle());
    assert_eq!(
        waker.wake(block(8), seconds(0.05)).map(|b| b.apic_id),
        Err(WakeError::Busy { pending_apic_id: 6 })
    );
    h.release.store(true, Ordering::Release);
    let mut budget = seconds(20.0);
    while !waker.poll_pending() {
        assert!(budget(), "AP 6 never started");
    }
    waker.wake(block(8), seconds(20.0)).expect("woken");
    let arrivals = h.finish(aps);
    assert_eq!(
        arrivals,
        vec![Some(expected_arrival(6)), Some(expected_arrival(8))]
    );
}

#[test]
fn wrong_apic_id_is_not_answered() {
    let h = Harness::new();
    let aps = vec![h.spawn_ap(9, Behaviour::Prompt)];
    let mut waker = h.waker();
    assert_eq!(
        waker.wake(block(10), seconds(0.05)).map(|b| b.apic_id),
        Err(WakeError::NotAcknowledged { apic_id: 10 })
    );
    let arrivals = h.finish(aps);
    assert_eq!(arrivals, vec![None]);
    assert_eq!(h.wakeups_seen.load(Ordering::Acquire), 0);
}

#[test]
fn firmware_that_acknowledges_without_starting() {
    // A hostile VMM clears the command but never runs the AP.
    let h = Harness::new();
    let mailbox = Mailbox::new(h.mailbox);
    let stop = h.stop.clone();
    let vmm = thread::spawn(move || {
        while !stop.load(Ordering::Acquire) {
            if !mailbox.is_idle() {
                mailbox.firmware_acknowledge();
            }
            thread::yield_now();
        }
    });
    let mut waker = h.waker();
    assert_eq!(
        waker
            .wake(block(11), started_within(h.mailbox, 0.05))
            .map(|b| b.apic_id),
        Err(WakeError::NotStarted { apic_id: 11 })
    );
    assert_eq!(waker.pending(), Some(11));
    h.stop.store(true, Ordering::Release);
    vmm.join().unwrap();
}

#[test]
fn refuses_reserved_ids_and_a_busy_mailbox() {
    let h = Harness::new();
    let mut waker = h.waker();
    assert_eq!(
        waker
            .wake(block(0xFFFF_FFFF), seconds(0.01))
            .map(|b| b.apic_id),
        Err(WakeError::InvalidApicId(0xFFFF_FFFF))
    );
    assert_eq!(
        waker
            .wake(block(0xFFFF_FFFE), seconds(0.01))
            .map(|b| b.apic_id),
        Err(WakeError::InvalidApicId(0xFFFF_FFFE))
    );
    // A command left pending (by a VMM or an earlier owner of the page).
    Mailbox::new(h.mailbox)
        .post(tdx_boot::mpwk::Command::Wakeup, 3, 0x9000)
        .unwrap();
    assert_eq!(
        waker.wake(block(3), seconds(0.01)).map(|b| b.apic_id),
        Err(WakeError::MailboxBusy { command: 1 })
    );
    // Nothing was taken: no AP is pending and the mailbox still holds the foreign command.
    assert_eq!(waker.pending(), None);
    assert_eq!(Mailbox::new(h.mailbox).wakeup_vector(), 0x9000);
}

#[test]
fn publication_is_ordered_before_the_command() {
    // Many rounds against one AP thread that checks, the moment it sees WAKEUP, that the APIC ID,
    // vector and boot slot belong to this round (a later write would show the previous round's).
    let h = Harness::new();
    let mailbox = Mailbox::new(h.mailbox);
    let slot: &'static BootSlot = h.trampoline.slot();
    let rounds = 300u32;
    let failures = Arc::new(Mutex::new(Vec::new()));
    let (stop, f) = (h.stop.clone(), failures.clone());
    let ap = thread::spawn(move || {
        let mut round = 0u32;
        while round < rounds && !stop.load(Ordering::Acquire) {
            if mailbox.command_raw() == 1 {
                let apic_id = mailbox.apic_id();
                let vector = mailbox.wakeup_vector();
                let block = slot.ap_boot();
                if block == 0 {
                    f.lock().unwrap().push((round, apic_id, 0));
                    mailbox.firmware_acknowledge();
                    round += 1;
                    continue;
                }
                // SAFETY: non-zero slots hold blocks leaked by the test and never freed.
                let boot: &ApBoot = unsafe { &*(block as usize as *const ApBoot) };
                if boot.apic_id != apic_id || vector != TRAMPOLINE_PHYS || apic_id != 1000 + round {
                    f.lock().unwrap().push((round, apic_id, boot.apic_id));
                }
                mailbox.firmware_acknowledge();
                boot.mark_started();
                round += 1;
            }
            std::hint::spin_loop();
        }
    });
    let mut waker = h.waker();
    for round in 0..rounds {
        waker
            .wake(block(1000 + round), seconds(20.0))
            .expect("woken");
    }
    ap.join().unwrap();
    assert_eq!(*failures.lock().unwrap(), vec![]);
}

// ---- wake_all ----

fn madt_with(ids: &[(u32, u32)]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(b"APIC");
    t.extend_from_slice(&[0; 32]);
    t.extend_from_slice(&0xFEE0_0000u32.to_le_bytes());
    t.extend_from_slice(&1u32.to_le_bytes());
    for &(id, flags) in ids {
        t.extend_from_slice(&[9, 16, 0, 0]);
        t.extend_from_slice(&id.to_le_bytes());
        t.extend_from_slice(&flags.to_le_bytes());
        t.extend_from_slice(&id.to_le_bytes());
    }
    let len = t.len() as u32;
    t[4..8].copy_from_slice(&len.to_le_bytes());
    let sum = t.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    t[9] = 0u8.wrapping_sub(sum);
    t
}

fn budget_for(_: u32) -> impl FnMut() -> bool {
    seconds(20.0)
}

#[test]
fn wake_all_skips_self_duplicates_and_disabled() {
    let h = Harness::new();
    // BSP 0; APs 1, 2, 3; 2 listed twice; 4 disabled; 5 online-capable only.
    let bytes = madt_with(&[(0, 1), (1, 1), (2, 1), (2, 1), (3, 1), (4, 0), (5, 2)]);
    let madt = Madt::parse(&bytes).unwrap();
    let aps = [1, 2, 3, 4, 5]
        .iter()
        .map(|&id| h.spawn_ap(id, Behaviour::Prompt))
        .collect();
    let mut waker = h.waker();
    let mut started = Vec::new();
    let result = waker.wake_all(
        &madt,
        0,
        |id| Some(block(id)),
        budget_for,
        |boot| started.push(boot.apic_id),
    );
    assert_eq!(result, Ok(3));
    assert_eq!(started, vec![1, 2, 3]);
    let arrivals = h.finish(aps);
    assert_eq!(
        arrivals,
        vec![
            Some(expected_arrival(1)),
            Some(expected_arrival(2)),
            Some(expected_arrival(3)),
            None,
            None
        ]
    );
    assert_eq!(h.wakeups_seen.load(Ordering::Acquire), 3);
}

#[test]
fn wake_all_stops_at_the_first_missing_ap() {
    let h = Harness::new();
    let bytes = madt_with(&[(0, 1), (1, 1), (2, 1), (3, 1)]);
    let madt = Madt::parse(&bytes).unwrap();
    let aps = vec![
        h.spawn_ap(1, Behaviour::Prompt),
        h.spawn_ap(3, Behaviour::Prompt),
    ];
    let mut waker = h.waker();
    let result = waker.wake_all(
        &madt,
        0,
        |id| Some(block(id)),
        |id| seconds(if id == 2 { 0.05 } else { 20.0 }),
        |_| {},
    );
    assert_eq!(
        result,
        Err(WakeAllError {
            started: 1,
            error: WakeError::NotAcknowledged { apic_id: 2 }
        })
    );
    let arrivals = h.finish(aps);
    assert_eq!(arrivals, vec![Some(expected_arrival(1)), None]);
}

#[test]
fn wake_all_skips_aps_without_a_block_and_rejects_mismatched_blocks() {
    let h = Harness::new();
    let bytes = madt_with(&[(0, 1), (1, 1), (2, 1)]);
    let madt = Madt::parse(&bytes).unwrap();
    let aps = vec![h.spawn_ap(2, Behaviour::Prompt)];
    let mut waker = h.waker();
    // The kernel supports only one AP: skip 1.
    let result = waker.wake_all(
        &madt,
        0,
        |id| (id == 2).then(|| block(id)),
        budget_for,
        |_| {},
    );
    assert_eq!(result, Ok(1));
    h.finish(aps);

    let h = Harness::new();
    let mut waker = h.waker();
    let result = waker.wake_all(&madt, 0, |_| Some(block(42)), budget_for, |_| {});
    assert_eq!(
        result,
        Err(WakeAllError {
            started: 0,
            error: WakeError::InvalidApicId(42)
        })
    );
    assert!(Mailbox::new(h.mailbox).is_idle());
}

/// The IDs `wake_all` must ask for: each enabled ID once, in table order, the caller's excluded.
fn first_occurrences(madt: &Madt<'_>, self_apic_id: u32) -> Vec<u32> {
    let mut seen = std::collections::HashSet::new();
    madt.apic_ids()
        .filter(|&id| id != self_apic_id && seen.insert(id))
        .collect()
}

/// The IDs `wake_all_with_scratch` asks `block_for` for (which declines them all, so no AP is
/// woken and only the duplicate check runs), and its result.
fn asked_with_scratch(
    madt: &Madt<'_>,
    self_apic_id: u32,
    scratch: &mut [u64],
) -> (Vec<u32>, Result<usize, WakeAllError>) {
    let h = Harness::new();
    let mut asked = Vec::new();
    let result = h.waker().wake_all_with_scratch(
        madt,
        self_apic_id,
        scratch,
        |id| {
            asked.push(id);
            None
        },
        budget_for,
        |_| {},
    );
    (asked, result)
}

/// A hostile table: `count` entries over a few IDs, the reserved and extreme ones among them,
/// some disabled, in a scrambled order.
fn hostile_ids(count: u32) -> Vec<(u32, u32)> {
    const IDS: [u32; 9] = [
        0,
        1,
        0xFFFF_FFFF, // "invalid": dropped by the parser, never asked
        0xFFFF_FFFE,
        0x8000_0000,
        255,
        256,
        7,
        0x1_0000 - 1,
    ];
    let mut x = 0x2545_F491_u32;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let flags = if x.is_multiple_of(11) { 0 } else { 1 };
            (IDS[(x % IDS.len() as u32) as usize], flags)
        })
        .collect()
}

#[test]
fn wake_all_asks_each_id_once_in_table_order_whatever_the_scratch() {
    let tables = [
        hostile_ids(1200),
        vec![(7, 1); 1500],
        (0..500).rev().map(|i| (0xFFFF_FFFE - i * 3, 1)).collect(),
        vec![(0, 1)],
    ];
    for ids in &tables {
        let bytes = madt_with(ids);
        let madt = Madt::parse(&bytes).unwrap();
        let n = madt.apic_ids().count();
        let expected = first_occurrences(&madt, 0);
        assert!(!expected.contains(&0xFFFF_FFFF));
        for len in [0, 1, 2, 3, 5, 8, 64, n.saturating_sub(1), n, n + 7] {
            // Leftover contents must not matter.
            let mut scratch = vec![u64::MAX; len];
            let (asked, result) = asked_with_scratch(&madt, 0, &mut scratch);
            assert_eq!(result, Ok(0), "{n} entries, scratch {len}");
            assert_eq!(asked, expected, "{n} entries, scratch {len}");
        }
        let h = Harness::new();
        let mut asked = Vec::new();
        let result = h.waker().wake_all(
            &madt,
            0,
            |id| {
                asked.push(id);
                None
            },
            budget_for,
            |_| {},
        );
        assert_eq!((asked, result), (expected, Ok(0)), "wake_all, {n} entries");
    }
}

#[test]
fn wake_all_with_scratch_handles_a_table_too_large_for_a_rescan() {
    // 200 000 distinct IDs (a 3.2 MB table) and as many again repeated: the rescan would read
    // 8 * 10^10 entries; sorted, this is a few million steps.
    let mut ids: Vec<(u32, u32)> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761), 1))
        .collect();
    ids.extend_from_within(..);
    let bytes = madt_with(&ids);
    let madt = Madt::parse(&bytes).unwrap();
    let mut scratch = vec![0u64; madt.apic_ids().count()];
    let self_apic_id = ids[1234].0;
    let (asked, result) = asked_with_scratch(&madt, self_apic_id, &mut scratch);
    assert_eq!(result, Ok(0));
    assert_eq!(asked.len(), 199_999);
    assert_eq!(asked, first_occurrences(&madt, self_apic_id));
}

#[test]
fn wake_all_with_scratch_wakes_duplicated_aps_once() {
    let h = Harness::new();
    let bytes = madt_with(&[
        (0, 1),
        (2, 1),
        (1, 1),
        (2, 1),
        (0, 1),
        (1, 1),
        (3, 0),
        (2, 1),
    ]);
    let madt = Madt::parse(&bytes).unwrap();
    let aps = [2, 1, 3]
        .iter()
        .map(|&id| h.spawn_ap(id, Behaviour::Prompt))
        .collect();
    let mut waker = h.waker();
    let mut started = Vec::new();
    let mut scratch = [0u64; 3];
    let result = waker.wake_all_with_scratch(
        &madt,
        0,
        &mut scratch,
        |id| Some(block(id)),
        budget_for,
        |boot| started.push(boot.apic_id),
    );
    assert_eq!(result, Ok(2));
    assert_eq!(started, vec![2, 1]);
    let arrivals = h.finish(aps);
    assert_eq!(
        arrivals,
        vec![Some(expected_arrival(2)), Some(expected_arrival(1)), None]
    );
    assert_eq!(h.wakeups_seen.load(Ordering::Acquire), 2);
}

// ---- the mailbox's bytes, as firmware reads them ----

/// The first 16 bytes of the page, read the way firmware would (plain bytes).
fn raw_head(page: &MailboxPage) -> [u8; 16] {
    // SAFETY: the page is 4096 readable bytes; no other thread runs in these tests.
    unsafe { *(page as *const MailboxPage as *const [u8; 16]) }
}

#[test]
fn wire_layout_of_a_posted_wakeup() {
    let page: &'static MailboxPage = leak_mailbox();
    let mailbox = Mailbox::new(page);
    mailbox
        .post(
            tdx_boot::mpwk::Command::Wakeup,
            0x0102_0304,
            0x1122_3344_5566_7788,
        )
        .unwrap();
    let bytes = raw_head(page);
    assert_eq!(&bytes[0..2], &1u16.to_le_bytes(), "command");
    assert_eq!(&bytes[2..4], &[0, 0], "reserved");
    assert_eq!(&bytes[4..8], &0x0102_0304u32.to_le_bytes(), "APIC ID");
    assert_eq!(
        &bytes[8..16],
        &0x1122_3344_5566_7788u64.to_le_bytes(),
        "vector"
    );
    // TDVF acknowledges by zeroing the first qword, APIC ID included.
    assert_eq!(
        mailbox.firmware_poll(0x0102_0304),
        Some(0x1122_3344_5566_7788)
    );
    assert_eq!(&raw_head(page)[0..8], &[0; 8]);
    assert!(mailbox.is_idle());
}

#[test]
fn garbage_in_the_reserved_half_is_cleared_by_the_post() {
    // TDVF compares the command as a dword: a non-zero reserved half would hide WAKEUP from it.
    let page: &'static mut MailboxPage = Box::leak(Box::new(MailboxPage::new()));
    // SAFETY: the page is exclusively borrowed and no thread shares it yet; byte 2 is the low
    // byte of the reserved field.
    unsafe { (page as *mut MailboxPage as *mut u8).add(2).write(0x5A) };
    let page: &'static MailboxPage = page;
    let mailbox = Mailbox::new(page);
    assert!(mailbox.is_idle(), "the command itself is NOOP");
    let h = Harness {
        mailbox: page,
        ..Harness::new()
    };
    let aps = vec![h.spawn_ap(12, Behaviour::Prompt)];
    let mut waker = h.waker();
    assert_eq!(
        waker.wake(block(12), seconds(20.0)).map(|b| b.apic_id),
        Ok(12)
    );
    assert_eq!(h.finish(aps), vec![Some(expected_arrival(12))]);
}

/// `ApBoot::mark_started` is safe, so a block can reach `wake` already marked. If `wake`
/// trusted that flag it would report the AP started while the AP has not yet read the
/// trampoline slot, and the next wake would overwrite the slot under it (two APs on one stack).
/// `wake` clears the flag when it takes the block.
#[test]
fn a_block_marked_started_beforehand_does_not_fool_the_waker() {
    let page = leak_mailbox();
    let mut waker = MpWaker::new(Mailbox::new(page), leak_trampoline());
    let boot = block(3);
    boot.mark_started();
    // A firmware that acknowledges the wakeup but never starts the AP.
    let firmware = thread::spawn(move || {
        let mailbox = Mailbox::new(page);
        let deadline = Instant::now() + Duration::from_secs(20);
        while mailbox.is_idle() && Instant::now() < deadline {
            thread::yield_now();
        }
        mailbox.firmware_acknowledge();
    });
    let result = waker.wake(boot, started_within(page, 0.2));
    firmware.join().expect("firmware thread");
    assert_eq!(result.unwrap_err(), WakeError::NotStarted { apic_id: 3 });
    assert_eq!(waker.pending(), Some(3), "the slot stays the AP's");
}

/// Command 2 never reaches firmware that is not known to implement TEST: edk2 2022.11 to 2025.05
/// (16-byte entries) park an AP that sees it for ever. Only a version-1 entry with a reset vector
/// (edk2 2025.08) lets it through.
#[test]
fn test_command_is_refused_without_a_version_one_entry() {
    use tdx_boot::mpwk::{Command, MpWakeup, PostError};
    let mailbox = Mailbox::new(leak_mailbox());
    assert_eq!(
        mailbox.post(Command::Test, 5, 0),
        Err(PostError::TestUnsupported)
    );
    assert!(mailbox.is_idle(), "TEST was posted: {mailbox:?}");
    let entries = [
        (1, None, false),         // edk2 2022.11: version 1, 16 bytes
        (0, None, false),         // edk2 2023.11: version 0, 16 bytes
        (2, Some(0x7000), false), // a version this crate does not know TEST for
        (1, Some(0x7000), true),  // edk2 2025.08: version 1, 24 bytes
    ];
    for (version, reset_vector, allowed) in entries {
        let entry = MpWakeup {
            version,
            mailbox_address: 0x7FF7_E000,
            reset_vector,
        };
        let mailbox = Mailbox::new(leak_mailbox()).for_entry(&entry);
        assert_eq!(mailbox.supports_test(), allowed, "{entry:?}");
        assert_eq!(mailbox.post(Command::Test, 5, 0).is_ok(), allowed);
        let expected = if allowed { Command::Test as u16 } else { 0 };
        assert_eq!(mailbox.command_raw(), expected, "{entry:?}");
        // WAKEUP goes through whatever the entry.
        let mailbox = Mailbox::new(leak_mailbox()).for_entry(&entry);
        assert_eq!(mailbox.post(Command::Wakeup, 5, 0x8000), Ok(()));
        assert_eq!(mailbox.firmware_poll(5), Some(0x8000));
    }
}
