//! Parallel and background acceptance against the model.

// A job over one range is a slice holding one `Range`, not a range to iterate.
#![allow(clippy::single_range_in_vec_init)]

mod common;

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::thread;
use tdx_boot::accept::{
    AcceptError, AcceptJob, BackgroundAcceptor, CpuShare, HostMappingGuess, ItemSizing, Progress,
    UnacceptedBitmap,
};
use tdx_boot::model::{HostPageSize, ModelConfig, PageState, TdxModule, Vcpu};
use tdx_boot::tdcall::leaf;

const K4: u64 = 0x1000;
const M2: u64 = 0x20_0000;

fn leak<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

fn model(cpus: u32, host: HostPageSize) -> Arc<TdxModule> {
    Arc::new(TdxModule::new(ModelConfig {
        num_vcpus: cpus,
        host_page_size: host,
        ..Default::default()
    }))
}

fn run_on_all(tdx: &Arc<TdxModule>, job: &'static AcceptJob<'static>, cpus: u32) -> Vec<CpuShare> {
    let handles: Vec<_> = (0..cpus)
        .map(|cpu| {
            let tdx = tdx.clone();
            thread::spawn(move || job.run(&tdx.vcpu(cpu)).unwrap())
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn every_cpu_shares_the_job_and_each_page_is_accepted_once() {
    let cpus = 4;
    let tdx = model(cpus, HostPageSize::Size2M);
    // Unaligned ranges with holes between them.
    let ranges: &'static [Range<u64>] = leak([
        K4..(37 * M2 + 3 * K4),
        (40 * M2)..(300 * M2),
        (301 * M2 + 8 * K4)..(301 * M2 + 12 * K4),
    ]);
    for r in ranges {
        tdx.add_memory(r.start, r.end, PageState::Unaccepted);
    }
    // SAFETY: the model's memory, which the firmware (the test) added unaccepted and nothing uses.
    let job = leak(unsafe { AcceptJob::new(ranges, ItemSizing::Guided { cpus }) }.unwrap());
    let shares = run_on_all(&tdx, job, cpus);
    assert_eq!(job.wait(), Ok(()));
    let total: u64 = ranges.iter().map(|r| r.end - r.start).sum();
    assert_eq!(shares.iter().map(|s| s.bytes).sum::<u64>(), total);
    for r in ranges {
        assert!(
            tdx.page_runs(r.start, r.end)
                .iter()
                .all(|&(_, _, s)| s == PageState::Private)
        );
    }
    let stats = tdx.accept_stats();
    assert_eq!(
        stats.already_accepted + stats.busy + stats.size_mismatch,
        0,
        "{stats:?}"
    );
    // Item boundaries fall on 2 MiB, so the call count is the single-CPU optimum.
    let optimum = 511 + 36 + 3 + 260 + 4;
    assert_eq!(tdx.tdcall_count(leaf::MEM_PAGE_ACCEPT), optimum);
    assert_eq!(job.settled_bytes(), job.total_bytes());
}

#[test]
fn a_4k_host_job_learns_once_for_all_cpus() {
    let cpus = 4;
    let tdx = model(cpus, HostPageSize::Size4K);
    let ranges: &'static [Range<u64>] = leak([0..(128 * M2)]);
    tdx.add_memory(0, 128 * M2, PageState::Unaccepted);
    // SAFETY: the model's memory, which the firmware (the test) added unaccepted and nothing uses.
    let job = leak(unsafe { AcceptJob::new(ranges, ItemSizing::Guided { cpus }) }.unwrap());
    let shares = run_on_all(&tdx, job, cpus);
    let mismatches: u64 = shares.iter().map(|s| s.stats.size_mismatches).sum();
    assert_eq!(mismatches, tdx.accept_stats().size_mismatch);
    // The streak is shared: MISMATCH_STREAK failed attempts in total (racing CPUs may add one
    // each), then probes.
    let bound = u64::from(HostMappingGuess::MISMATCH_STREAK) + u64::from(cpus) + 6 + 128 / 32;
    assert!(mismatches <= bound, "{mismatches}");
    assert_eq!(tdx.accept_stats().accepted_4k, 128 * 512);
}

/// vCPU `index` of `tdx`, refusing the ACCEPT of the page at `gpa` (a broken module: a real
/// one never refuses guest RAM).
fn refusing_at(tdx: &TdxModule, index: u32, gpa: u64) -> common::RefusesAccept<Vcpu<'_>> {
    common::RefusesAccept {
        cpu: tdx.vcpu(index),
        start: gpa,
        end: gpa + K4,
    }
}

#[test]
fn a_failed_item_is_reported_by_wait() {
    let tdx = model(2, HostPageSize::Size2M);
    let ranges: &'static [Range<u64>] = leak([0..(64 * M2)]);
    tdx.add_memory(0, 64 * M2, PageState::Unaccepted);
    // SAFETY: the model's memory, which the firmware (the test) added unaccepted and nothing uses.
    let job = leak(unsafe { AcceptJob::new(ranges, ItemSizing::Fixed(4 * M2)) }.unwrap());
    let a = job.run(&refusing_at(&tdx, 0, 33 * M2));
    let b = job.run(&refusing_at(&tdx, 1, 33 * M2));
    assert!(a.is_err() || b.is_err());
    assert_eq!(job.wait(), Err(33 * M2));
}

#[test]
fn one_cpu_goes_on_past_a_failed_item_so_wait_returns() {
    let tdx = model(1, HostPageSize::Size2M);
    let ranges: &'static [Range<u64>] = leak([0..(16 * M2)]);
    tdx.add_memory(0, 16 * M2, PageState::Unaccepted);
    // SAFETY: the model's memory, which the firmware (the test) added unaccepted and nothing uses.
    let job = unsafe { AcceptJob::new(ranges, ItemSizing::Fixed(2 * M2)) }.unwrap();
    let err = job.run(&refusing_at(&tdx, 0, 3 * M2)).unwrap_err();
    assert!(matches!(err, AcceptError::Refused { gpa, .. } if gpa == 3 * M2));
    assert_eq!(job.wait(), Err(3 * M2));
    assert_eq!(tdx.page_state(3 * M2 + K4), PageState::Unaccepted);
    for block in (0..16).filter(|&b| b != 3) {
        assert_eq!(
            tdx.page_state(block * M2),
            PageState::Private,
            "block {block}"
        );
    }
}

#[test]
fn bad_ranges_are_refused() {
    // SAFETY: the model's memory, which the firmware (the test) added unaccepted and nothing uses.
    assert!(unsafe { AcceptJob::new(&[1..M2], ItemSizing::Guided { cpus: 2 }) }.is_err());
    assert!(
        // SAFETY: the model's memory, which the firmware (the test) added unaccepted and nothing uses.
        unsafe {
            AcceptJob::new(
                &[Range { start: M2, end: 0 }],
                ItemSizing::Guided { cpus: 2 },
            )
        }
        .is_err()
    );
    // SAFETY: the model's memory, which the firmware (the test) added unaccepted and nothing uses.
    assert!(unsafe { AcceptJob::new(&[0..M2], ItemSizing::Fixed(100)) }.is_err());
    // SAFETY: the model's memory, which the firmware (the test) added unaccepted and nothing uses.
    assert!(unsafe { AcceptJob::new(&[0..!0xfff], ItemSizing::Guided { cpus: 2 }) }.is_err());
}

#[test]
fn an_oversized_fixed_item_is_one_item() {
    let tdx = model(1, HostPageSize::Size2M);
    tdx.add_memory(0, 4 * M2, PageState::Unaccepted);
    let ranges: &'static [Range<u64>] = leak([0..(4 * M2)]);
    // SAFETY: the model's memory, which the firmware (the test) added unaccepted and nothing uses.
    let job = unsafe { AcceptJob::new(ranges, ItemSizing::Fixed(!0xfff)) }.unwrap();
    let share = job.run(&tdx.vcpu(0)).unwrap();
    assert_eq!((share.items, share.bytes), (1, 4 * M2));
    assert_eq!(tdx.accept_stats().accepted_2m, 4);
}

#[test]
fn background_and_lazy_acceptance_share_the_bitmap() {
    let cpus = 4;
    let tdx = model(cpus, HostPageSize::Size2M);
    let size = 512 * M2;
    tdx.add_memory(0, size, PageState::Unaccepted);
    let words: &'static mut [AtomicU64] = Box::leak(
        (0..UnacceptedBitmap::words_needed(0, size, M2))
            .map(|_| AtomicU64::new(0))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    let bitmap =
        // SAFETY: the model's memory, which the firmware (the test) added unaccepted and nothing uses.
        leak(unsafe { UnacceptedBitmap::from_ranges(&tdx.vcpu(0), words, 0, M2, [(0, size)]) }.unwrap());
    let background = leak(BackgroundAcceptor::new(bitmap).unwrap());
    // One slice of one item accepts at most one unit.
    let mut share = CpuShare::default();
    assert_eq!(
        background.run_for(&tdx.vcpu(0), 1, &mut share),
        Ok(Progress::More)
    );
    assert_eq!(share.bytes, M2);
    assert_eq!(bitmap.unaccepted_bytes(), size - M2);

    let handles: Vec<_> = (0..cpus)
        .map(|cpu| {
            let tdx = tdx.clone();
            thread::spawn(move || {
                let vcpu = tdx.vcpu(cpu);
                let mut share = CpuShare::default();
                if cpu % 2 == 0 {
                    // Idle CPUs: slices of 3 items until the cursor is exhausted.
                    while background.run_for(&vcpu, 3, &mut share).unwrap() == Progress::More {}
                } else {
                    // Busy CPUs: lazily accept what they touch, walking down from the top.
                    for unit in (0..512u64).rev().step_by(3) {
                        bitmap
                            .ensure_accepted(&vcpu, unit * M2, unit * M2 + K4)
                            .unwrap();
                    }
                }
                share.bytes
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(bitmap.unaccepted_bytes(), 0);
    let stats = tdx.accept_stats();
    assert_eq!(stats.already_accepted + stats.busy, 0, "{stats:?}");
    assert_eq!(stats.accepted_2m, 512);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn optimum(r: &Range<u64>) -> u64 {
        let first = r.start.next_multiple_of(M2);
        let last = r.end - r.end % M2;
        if first >= last {
            return (r.end - r.start) / K4;
        }
        (first - r.start) / K4 + (last - first) / M2 + (r.end - last) / K4
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Disjoint random ranges, any sizing, CPUs interleaved item by item: every page
        /// accepted once, the single-CPU optimum of calls, shares adding up.
        #[test]
        fn interleaved_cpus_accept_every_page_once_with_optimal_calls(
            cuts in proptest::collection::btree_set(1u64..(96 * 512), 2..12),
            cpus in 1u32..6,
            fixed_pages in proptest::option::of(1u64..2048),
            schedule in proptest::collection::vec(0u32..6, 64),
        ) {
            let cuts: Vec<u64> = cuts.into_iter().map(|p| p * K4).collect();
            let ranges: Vec<Range<u64>> = cuts.chunks_exact(2).map(|c| c[0]..c[1]).collect();
            let tdx = model(cpus, HostPageSize::Size2M);
            for r in &ranges {
                tdx.add_memory(r.start, r.end, PageState::Unaccepted);
            }
            let sizing = match fixed_pages {
                Some(p) => ItemSizing::Fixed(p * K4),
                None => ItemSizing::Guided { cpus },
            };
            // SAFETY: the model's memory, which the firmware (the test) added unaccepted and nothing uses.
            let job = unsafe { AcceptJob::new(&ranges, sizing) }.unwrap();
            let mut shares = vec![CpuShare::default(); cpus as usize];
            let mut turn = schedule.iter().cycle();
            loop {
                let cpu = turn.next().copied().unwrap_or(0) % cpus;
                let progress = job.run_for(&tdx.vcpu(cpu), 1, &mut shares[cpu as usize]).unwrap();
                if progress == Progress::Exhausted {
                    break;
                }
            }
            prop_assert_eq!(job.wait(), Ok(()));
            let total: u64 = ranges.iter().map(|r| r.end - r.start).sum();
            prop_assert_eq!(shares.iter().map(|s| s.bytes).sum::<u64>(), total);
            for r in &ranges {
                prop_assert!(tdx.page_runs(r.start, r.end).iter().all(|&(_, _, s)| s == PageState::Private));
            }
            let stats = tdx.accept_stats();
            prop_assert_eq!(stats.already_accepted + stats.busy, 0);
            prop_assert_eq!(stats.accepted_bytes(), total);
            // Items of at least 2 MiB (multiples of it) never split a block.
            if fixed_pages.is_none_or(|p| p % 512 == 0) {
                let best: u64 = ranges.iter().map(optimum).sum();
                prop_assert_eq!(tdx.tdcall_count(leaf::MEM_PAGE_ACCEPT), best);
            }
        }
    }
}

/// What `AcceptJob::new`'s `unsafe` guards against: a job given memory in use. Its runs are
/// safe calls, so the promise has to be taken where the ranges are: here a job whose range
/// holds live data on a page the host swapped zeroes that data when any CPU runs it.
#[test]
fn a_job_over_memory_in_use_lets_a_hostile_host_zero_it() {
    let tdx = model(1, HostPageSize::Size2M);
    let memory = common::live_data_on_a_swapped_page(&tdx, M2, 0x5000, b"a live stack");
    let ranges: &'static [Range<u64>] = leak([0..M2]);
    // SAFETY: deliberately broken for the demonstration: the range is in use. The model writes
    // only `HostMemory`, which the test reaches through raw pointers, so nothing is UB here.
    let job = unsafe { AcceptJob::new(ranges, ItemSizing::Guided { cpus: 1 }) }.unwrap();
    let share = job.run(&tdx.vcpu(0)).unwrap();
    assert_eq!(job.wait(), Ok(()));
    assert_eq!(share.stats.already_accepted, 511);
    assert_eq!(memory.read(0x5000, 12), vec![0; 12], "live data zeroed");
}
