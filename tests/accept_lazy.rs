//! The lazy bitmap against the model: construction, the guard unit, the fast path, failures,
//! and many threads on overlapping ranges (the model counts every double accept).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::thread;
use tdx_boot::accept::{AcceptError, BitmapError, DEFAULT_UNIT_SIZE, UnacceptedBitmap};
use tdx_boot::model::{ModelConfig, PageState, TdxModule};
use tdx_boot::tdcall::{Regs, TdCall, TdxStatus, leaf};

mod common;
use common::HostMemory;

const K4: u64 = 0x1000;
const M2: u64 = 0x20_0000;

fn storage(words: usize) -> Vec<AtomicU64> {
    (0..words).map(|_| AtomicU64::new(0)).collect()
}

fn accepts(tdx: &TdxModule) -> u64 {
    tdx.tdcall_count(leaf::MEM_PAGE_ACCEPT)
}

#[test]
fn construction_marks_whole_units_and_accepts_partial_ones_now() {
    let tdx = TdxModule::new(ModelConfig::default());
    tdx.add_memory(0, 64 * M2, PageState::Unaccepted);
    let mut words = storage(UnacceptedBitmap::words_needed(0, 64 * M2, M2));
    assert_eq!(words.len(), 2);
    let (start, end) = (M2 / 2, 10 * M2 + 3 * K4);
    let bitmap =
        // SAFETY: the model's memory, which the firmware (the test) added unaccepted and nothing uses.
        unsafe { UnacceptedBitmap::from_ranges(&tdx.vcpu(0), &mut words, 0, DEFAULT_UNIT_SIZE, [(start, end)]) }
            .unwrap();
    // Head (half a unit) and tail (3 pages) accepted eagerly; units 1..10 marked.
    assert_eq!(tdx.page_state(M2 / 2), PageState::Private);
    assert_eq!(tdx.page_state(10 * M2 + 2 * K4), PageState::Private);
    assert_eq!(tdx.page_state(M2), PageState::Unaccepted);
    assert_eq!(bitmap.unaccepted_bytes(), 9 * M2);
    assert!(bitmap.needs_accept(M2, M2 + 1));
    assert!(!bitmap.needs_accept(0, M2 / 2));
}

#[test]
fn bad_parameters_and_ranges_are_refused() {
    let tdx = TdxModule::new(ModelConfig::default());
    let mut words = storage(1);
    let cpu = tdx.vcpu(0);
    assert_eq!(
        UnacceptedBitmap::new(&mut words, 0, 3 * K4).unwrap_err(),
        BitmapError::BadUnitSize(3 * K4)
    );
    assert_eq!(
        UnacceptedBitmap::new(&mut words, K4, M2).unwrap_err(),
        BitmapError::UnalignedBase(K4)
    );
    let bitmap = UnacceptedBitmap::new(&mut words, 0, M2).unwrap();
    assert_eq!(bitmap.coverage_end(), 32 * M2);
    assert_eq!(
        // SAFETY: the model's memory, which the firmware (the test) added unaccepted and nothing uses.
        unsafe { bitmap.mark_unaccepted(&cpu, 0, 33 * M2) },
        Err(BitmapError::OutsideCoverage {
            start: 0,
            end: 33 * M2
        })
    );
    assert_eq!(
        // SAFETY: the model's memory, which the firmware (the test) added unaccepted and nothing uses.
        unsafe { bitmap.mark_unaccepted(&cpu, 1, M2) },
        Err(BitmapError::BadRange { start: 1, end: M2 })
    );
    assert_eq!(
        // SAFETY: the model's memory, which the firmware (the test) added unaccepted and nothing uses.
        unsafe { bitmap.mark_unaccepted(&cpu, M2, 0) },
        Err(BitmapError::BadRange { start: M2, end: 0 })
    );
    let mut huge = storage(4);
    assert_eq!(
        UnacceptedBitmap::new(&mut huge, u64::MAX - (M2 - 1), M2).unwrap_err(),
        BitmapError::CoverageOverflow
    );
}

#[test]
fn ensure_accepted_takes_the_guard_unit_and_then_costs_no_call() {
    let tdx = TdxModule::new(ModelConfig::default());
    tdx.add_memory(0, 32 * M2, PageState::Unaccepted);
    let mut words = storage(1);
    let cpu = tdx.vcpu(0);
    // SAFETY: the model's memory, which the firmware (the test) added unaccepted and nothing uses.
    let bitmap =
        unsafe { UnacceptedBitmap::from_ranges(&cpu, &mut words, 0, M2, [(0, 32 * M2)]) }.unwrap();
    // Ends inside unit 2: units 1 and 2 only.
    bitmap.ensure_accepted(&cpu, M2 + 5, 2 * M2 + 1).unwrap();
    assert_eq!(accepts(&tdx), 2);
    assert_eq!(tdx.page_state(3 * M2), PageState::Unaccepted);
    // Ends on a unit boundary: the guard unit 4 comes too.
    bitmap.ensure_accepted(&cpu, 3 * M2, 4 * M2).unwrap();
    assert_eq!(tdx.page_state(4 * M2), PageState::Private);
    assert_eq!(accepts(&tdx), 4);
    let before = accepts(&tdx);
    for _ in 0..100 {
        bitmap.ensure_accepted(&cpu, M2, 3 * M2).unwrap();
    }
    assert_eq!(accepts(&tdx), before, "the fast path made calls");
    assert!(!bitmap.needs_accept(M2, 3 * M2));
    assert_eq!(bitmap.unaccepted_bytes(), 28 * M2);
    // The last unit has no guard unit to take; ranges beyond the coverage are accepted memory.
    bitmap.ensure_accepted(&cpu, 31 * M2, 40 * M2).unwrap();
    assert_eq!(
        bitmap.ensure_accepted(&cpu, 2, 1),
        Err(AcceptError::Reversed { start: 2, end: 1 })
    );
}

#[test]
fn small_units_still_get_2m_accepts_across_words() {
    let tdx = TdxModule::new(ModelConfig::default());
    tdx.add_memory(0, 4 * M2, PageState::Unaccepted);
    // 4 KiB units: one word holds 128 KiB, a 2 MiB block spans 16 words.
    let mut words = storage(UnacceptedBitmap::words_needed(0, 4 * M2, K4));
    let cpu = tdx.vcpu(0);
    // SAFETY: the model's memory, which the firmware (the test) added unaccepted and nothing uses.
    let bitmap =
        unsafe { UnacceptedBitmap::from_ranges(&cpu, &mut words, 0, K4, [(0, 4 * M2)]) }.unwrap();
    bitmap.ensure_accepted(&cpu, 0, 2 * M2 + K4).unwrap();
    assert_eq!(tdx.accept_stats().accepted_2m, 2);
    assert_eq!(bitmap.unaccepted_bytes(), 2 * M2 - 2 * K4);
}

#[test]
fn a_failed_unit_stays_unaccepted_and_a_retry_finishes_it() {
    let tdx = TdxModule::new(ModelConfig::default());
    tdx.add_memory(0, 32 * M2, PageState::Unaccepted);
    let mut words = storage(1);
    let cpu = tdx.vcpu(0);
    // SAFETY: the model's memory, which the firmware (the test) added unaccepted and nothing uses.
    let bitmap =
        unsafe { UnacceptedBitmap::from_ranges(&cpu, &mut words, 0, M2, [(0, 32 * M2)]) }.unwrap();
    // Units 0 and 1 accept, unit 2's ACCEPT is refused.
    let cpu_failing = tdx.vcpu(1);
    bitmap.ensure_accepted(&cpu, 0, M2 / 2).unwrap();
    tdx.inject_tdcall_status(leaf::MEM_PAGE_ACCEPT, TdxStatus::EPT_WALK_FAILED, 1);
    let err = bitmap
        .ensure_accepted(&cpu_failing, M2, 3 * M2 - 1)
        .unwrap_err();
    assert!(matches!(err, AcceptError::Refused { gpa, .. } if gpa == M2));
    assert!(bitmap.needs_accept(M2, M2 + 1));
    assert_eq!(bitmap.unaccepted_bytes(), 31 * M2);
    bitmap.ensure_accepted(&cpu, M2, 3 * M2 - 1).unwrap();
    assert_eq!(bitmap.unaccepted_bytes(), 29 * M2);
    assert_eq!(tdx.accept_stats().already_accepted, 0);
}

#[test]
fn many_threads_on_overlapping_ranges_accept_each_unit_once() {
    for unit in [M2, 64 * K4] {
        let tdx = Arc::new(TdxModule::new(ModelConfig {
            num_vcpus: 8,
            ..Default::default()
        }));
        let size = 256 * M2;
        tdx.add_memory(0, size, PageState::Unaccepted);
        let words: &'static mut [AtomicU64] =
            Box::leak(storage(UnacceptedBitmap::words_needed(0, size, unit)).into_boxed_slice());
        let bitmap: &'static UnacceptedBitmap<'static> = Box::leak(Box::new(
            // SAFETY: the model's memory, which the firmware (the test) added unaccepted and nothing uses.
            unsafe { UnacceptedBitmap::from_ranges(&tdx.vcpu(0), words, 0, unit, [(0, size)]) }
                .unwrap(),
        ));
        let handles: Vec<_> = (0..8u32)
            .map(|cpu| {
                let tdx = tdx.clone();
                thread::spawn(move || {
                    let vcpu = tdx.vcpu(cpu);
                    // Each thread walks the whole TD in its own stride and order.
                    let mut x = u64::from(cpu) * 7919 + 1;
                    for _ in 0..150 {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let start = (x >> 20) % size;
                        let len = (x >> 44) % (8 * M2) + 1;
                        bitmap
                            .ensure_accepted(&vcpu, start, (start + len).min(size))
                            .unwrap();
                        assert!(!bitmap.needs_accept(start, (start + len).min(size)));
                        let page = start & !(K4 - 1);
                        assert_eq!(tdx.page_state(page), PageState::Private);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        bitmap.ensure_accepted(&tdx.vcpu(0), 0, size).unwrap();
        let stats = tdx.accept_stats();
        assert_eq!(
            stats.already_accepted, 0,
            "a unit was accepted twice: {stats:?}"
        );
        assert_eq!(
            stats.busy, 0,
            "two CPUs accepted the same page at once: {stats:?}"
        );
        assert_eq!(stats.accepted_bytes(), size);
        assert_eq!(bitmap.unaccepted_bytes(), 0);
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Against a reference set of accepted units: after each call the range and its guard
        /// unit are accepted, nothing else changed, and the model saw each unit accepted once.
        #[test]
        fn ensure_accepted_matches_a_reference(
            unit_shift in 12u32..=22,
            calls in proptest::collection::vec((0u64..(64 << 20), 0u64..(8 << 20)), 1..24),
        ) {
            let unit = 1u64 << unit_shift;
            let size = 64u64 << 20;
            let tdx = TdxModule::new(ModelConfig::default());
            tdx.add_memory(0, size, PageState::Unaccepted);
            let mut words = storage(UnacceptedBitmap::words_needed(0, size, unit));
            let cpu = tdx.vcpu(0);
            // SAFETY: the model's memory, which the firmware (the test) added unaccepted and nothing uses.
            let bitmap = unsafe { UnacceptedBitmap::from_ranges(&cpu, &mut words, 0, unit, [(0, size)]) }.unwrap();
            let units = bitmap.coverage_end().min(size) / unit;
            let mut accepted = BTreeSet::new();
            for (start, len) in calls {
                let end = (start + len).min(size);
                bitmap.ensure_accepted(&cpu, start, end).unwrap();
                if start < end {
                    let mut last = end.div_ceil(unit);
                    if end.is_multiple_of(unit) {
                        last += 1;
                    }
                    accepted.extend(start / unit..last.min(units));
                }
                prop_assert_eq!(bitmap.unaccepted_bytes(), (units - accepted.len() as u64) * unit);
                for &u in &accepted {
                    prop_assert_eq!(tdx.page_state(u * unit), PageState::Private);
                    prop_assert_eq!(tdx.page_state(u * unit + unit - K4), PageState::Private);
                }
            }
            let stats = tdx.accept_stats();
            prop_assert_eq!(stats.already_accepted, 0);
            prop_assert_eq!(stats.accepted_bytes(), accepted.len() as u64 * unit);
        }
    }
}

/// A vCPU whose first ACCEPT waits (before reaching the module) until `release` is set.
struct FirstAcceptWaits<T> {
    cpu: T,
    entered: std::sync::atomic::AtomicBool,
    release: std::sync::atomic::AtomicBool,
}

impl<T: TdCall> TdCall for FirstAcceptWaits<T> {
    unsafe fn tdcall(&self, regs: &mut Regs) {
        use std::sync::atomic::Ordering::SeqCst;
        if regs.rax == leaf::MEM_PAGE_ACCEPT && !self.entered.swap(true, SeqCst) {
            while !self.release.load(SeqCst) {
                thread::yield_now();
            }
        }
        // SAFETY: forwarded unchanged; the caller upholds the contract.
        unsafe { self.cpu.tdcall(regs) }
    }
}

#[test]
fn a_long_range_does_not_hold_units_it_is_not_yet_accepting() {
    // CPU A ensures 128 MiB (two words of 2 MiB units) and is slow in its very first ACCEPT.
    // Units of the second word must not sit claimed behind it: CPU B, needing one of them,
    // takes it itself instead of waiting for A to get there.
    use std::sync::atomic::Ordering::SeqCst;
    let tdx = TdxModule::new(ModelConfig::default());
    tdx.add_memory(0, 64 * M2, PageState::Unaccepted);
    let mut words = storage(2);
    let bitmap =
        // SAFETY: the model's memory, which the firmware (the test) added unaccepted and nothing uses.
        unsafe { UnacceptedBitmap::from_ranges(&tdx.vcpu(0), &mut words, 0, M2, [(0, 64 * M2)]) }.unwrap();
    let slow = FirstAcceptWaits {
        cpu: tdx.vcpu(0),
        entered: false.into(),
        release: false.into(),
    };
    thread::scope(|s| {
        let a = s.spawn(|| bitmap.ensure_accepted(&slow, 0, 64 * M2));
        while !slow.entered.load(SeqCst) {
            thread::yield_now();
        }
        let by_b = bitmap.accept_unclaimed(&tdx.vcpu(1), 40 * M2, 41 * M2);
        slow.release.store(true, SeqCst);
        assert_eq!(a.join().unwrap(), Ok(()));
        assert_eq!(
            by_b,
            Ok(M2),
            "a unit of the second word was held by a CPU still busy with the first"
        );
    });
    assert_eq!(bitmap.unaccepted_bytes(), 0);
    assert_eq!(tdx.accept_stats().already_accepted, 0);
}

/// What `mark_unaccepted`'s `unsafe` guards against: marking memory the bitmap has already
/// handed out. Its next `ensure_accepted` ACCEPTs it again, which an honest host answers with
/// ALREADY_ACCEPTED; but if the host has swapped the page for a pending one meanwhile, the
/// ACCEPT zeroes data in use.
#[test]
fn marking_memory_in_use_lets_a_hostile_host_zero_it() {
    let tdx = TdxModule::new(ModelConfig::default());
    let memory = HostMemory::new(2 * M2 as usize, 0);
    memory.back(&tdx, 0);
    tdx.add_memory(0, 2 * M2, PageState::Unaccepted);
    let cpu = tdx.vcpu(0);
    let mut words = storage(1);
    // SAFETY: the firmware (the test) added this memory unaccepted and nothing uses it.
    let bitmap = unsafe { UnacceptedBitmap::from_ranges(&cpu, &mut words, 0, M2, [(0, 2 * M2)]) };
    let bitmap = bitmap.unwrap();
    bitmap.ensure_accepted(&cpu, 0, 0x2000).unwrap();
    memory.write(0x1000, b"allocated and in use");

    tdx.add_memory(0x1000, 0x2000, PageState::Unaccepted); // the host swaps one page
    // Safe code cannot make the bitmap accept unit 0 again: the data survives (touching the
    // swapped page would fault, a denial of service the host can always cause).
    bitmap.ensure_accepted(&cpu, 0, 0x2000).unwrap();
    assert_eq!(memory.read(0x1000, 20), b"allocated and in use");
    assert_eq!(tdx.page_state(0x1000), PageState::Unaccepted);

    // SAFETY: deliberately broken for the demonstration: unit 0 is in use. The model writes
    // only `HostMemory`, which the test reaches through raw pointers, so nothing is UB here.
    unsafe { bitmap.mark_unaccepted(&cpu, 0, M2) }.unwrap();
    bitmap.ensure_accepted(&cpu, 0, 0x2000).unwrap();
    assert_eq!(
        memory.read(0x1000, 20),
        vec![0; 20],
        "the re-marked unit was accepted again and its live data zeroed"
    );
}

/// The constructors take the same promise for every range they are given: a memory map (or
/// an EFI table) that calls memory in use "unaccepted" has it zeroed the same way, here even
/// before anything asks for it (the partial unit at the range's end is accepted at once).
#[test]
fn a_map_that_calls_memory_in_use_unaccepted_gets_it_zeroed() {
    use tdx_boot::e820::{MemoryMap, RegionKind};
    let tdx = TdxModule::new(ModelConfig::default());
    let memory = common::live_data_on_a_swapped_page(&tdx, M2, 0x3000, b"kernel image");
    let mut map = MemoryMap::<8>::new();
    map.insert(0, 0x8000, RegionKind::Unaccepted).unwrap();
    let mut words = storage(1);
    // SAFETY: deliberately broken for the demonstration: the map's "unaccepted" region holds
    // the kernel. The model writes only `HostMemory`, reached through raw pointers.
    let bitmap =
        unsafe { UnacceptedBitmap::from_memory_map(&tdx.vcpu(0), &mut words, 0, M2, &map) };
    assert_eq!(bitmap.unwrap().unaccepted_bytes(), 0);
    assert_eq!(memory.read(0x3000, 12), vec![0; 12], "live data zeroed");
}

/// The pending count behind the fast path is exact through marking (twice), accepting and
/// failures: the fast path never reports an unaccepted unit accepted, and once everything is
/// accepted it answers without touching the words (here: without any ACCEPT).
#[test]
fn the_fast_path_follows_every_unit_state() {
    let tdx = TdxModule::new(ModelConfig::default());
    tdx.add_memory(0, 64 * M2, PageState::Unaccepted);
    let cpu = tdx.vcpu(0);
    let mut words = storage(2);
    let bitmap = UnacceptedBitmap::new(&mut words, 0, M2).unwrap();
    assert!(!bitmap.needs_accept(0, 64 * M2));
    // SAFETY: unaccepted model memory that nothing uses; marked twice on purpose (an
    // overlapping report), which must not count units twice.
    unsafe {
        bitmap.mark_unaccepted(&cpu, 30 * M2, 34 * M2).unwrap();
        bitmap.mark_unaccepted(&cpu, 31 * M2, 33 * M2).unwrap();
    }
    assert_eq!(bitmap.unaccepted_bytes(), 4 * M2);
    // Accepted units next to pending ones in the same word, and a range across two words.
    assert!(!bitmap.needs_accept(29 * M2, 29 * M2 + K4));
    assert!(
        bitmap.needs_accept(29 * M2, 30 * M2),
        "the guard unit 30 is pending"
    );
    assert!(bitmap.needs_accept(31 * M2 + K4, 32 * M2 + K4));
    assert!(!bitmap.needs_accept(34 * M2, 34 * M2 + K4));
    assert!(bitmap.needs_accept(0, 64 * M2));
    // A failure leaves its unit pending and the count with it.
    tdx.inject_tdcall_status(leaf::MEM_PAGE_ACCEPT, TdxStatus::EPT_WALK_FAILED, 1);
    assert!(bitmap.ensure_accepted(&cpu, 30 * M2, 30 * M2 + 1).is_err());
    assert!(bitmap.needs_accept(30 * M2, 30 * M2 + 1));
    bitmap.ensure_accepted(&cpu, 30 * M2, 33 * M2 + 1).unwrap();
    assert!(!bitmap.needs_accept(0, 64 * M2));
    let calls = accepts(&tdx);
    for gpa in (0..64 * M2).step_by(M2 as usize / 2) {
        bitmap.ensure_accepted(&cpu, gpa, gpa + 3 * K4).unwrap();
    }
    assert_eq!(accepts(&tdx), calls);
    assert_eq!(
        bitmap.ensure_accepted(&cpu, 2, 1),
        Err(AcceptError::Reversed { start: 2, end: 1 }),
        "the fast path still refuses a reversed range"
    );
    // Marking again after everything was accepted turns the fast path off again.
    // SAFETY: unit 40 was accepted by nobody (never marked) and nothing uses it.
    unsafe { bitmap.mark_unaccepted(&cpu, 40 * M2, 41 * M2) }.unwrap();
    assert!(bitmap.needs_accept(40 * M2, 40 * M2 + 1));
    bitmap.ensure_accepted(&cpu, 40 * M2, 40 * M2 + 1).unwrap();
    assert_eq!(tdx.page_state(40 * M2), PageState::Private);
}

/// `from_ranges` takes `mark_unaccepted`'s promise for every range: a range in use that the
/// caller passes as "unaccepted" is zeroed on first use once the host swaps a page in it.
#[test]
fn from_ranges_given_memory_in_use_gets_it_zeroed() {
    let tdx = TdxModule::new(ModelConfig::default());
    let memory = common::live_data_on_a_swapped_page(&tdx, 2 * M2, M2 + K4, b"in use");
    let mut words = storage(1);
    let cpu = tdx.vcpu(0);
    // SAFETY: deliberately broken for the demonstration: the range is in use. The model writes
    // only `HostMemory`, which the test reaches through raw pointers, so nothing is UB here.
    let bitmap = unsafe { UnacceptedBitmap::from_ranges(&cpu, &mut words, 0, M2, [(M2, 2 * M2)]) };
    bitmap.unwrap().ensure_accepted(&cpu, M2, M2 + 1).unwrap();
    assert_eq!(
        memory.read((M2 + K4) as usize, 6),
        vec![0; 6],
        "live data zeroed"
    );
}

/// The fast path's answers (one unit, one word, everything accepted) against an oracle that
/// knows which units are pending: for a base that is unit aligned but not word aligned, both
/// a 2 MiB and a 4 KiB unit, and ranges that sit in one unit, end on a unit boundary (the
/// guard unit), cross words, start below the base or run past the coverage, or are empty.
#[test]
fn the_fast_path_agrees_with_an_oracle_of_pending_units() {
    for unit in [M2, K4] {
        let base = 5 * unit;
        let units = 3 * 32;
        let tdx = TdxModule::new(ModelConfig::default());
        let cpu = tdx.vcpu(0);
        let mut words = storage(3);
        let bitmap = UnacceptedBitmap::new(&mut words, base, unit).unwrap();
        let pending = |u: u64| u % 7 == 3 || [31, 32, 63, 95].contains(&u);
        for u in (0..units).filter(|&u| pending(u)) {
            let gpa = base + u * unit;
            // SAFETY: unbacked model memory that nothing uses; whole units, so no ACCEPT.
            unsafe { bitmap.mark_unaccepted(&cpu, gpa, gpa + unit) }.unwrap();
        }
        let coverage_end = base + units * unit;
        let expected = |start: u64, end: u64| {
            if start >= end || end <= base || start >= coverage_end {
                return false;
            }
            let first = (start.max(base) - base) / unit;
            // The units the bytes touch, plus the next one when `end` is unit aligned.
            let mut last = (end.min(coverage_end) - base).div_ceil(unit);
            if end.is_multiple_of(unit) {
                last += 1;
            }
            (first..last.min(units)).any(pending)
        };
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let span = coverage_end + 4 * unit;
        for _ in 0..20_000 {
            let mut start = next() % span;
            if next() % 4 == 0 {
                start -= start % unit;
            }
            let length = match next() % 5 {
                0 => next() % unit,
                1 => unit - start % unit, // ends on a unit boundary
                2 => unit,
                3 => next() % (40 * unit),
                _ => 0,
            };
            let end = start + length;
            assert_eq!(
                bitmap.needs_accept(start, end),
                expected(start, end),
                "unit {unit:#x}: range {start:#x}..{end:#x}"
            );
        }
    }
}
