//! `accept_range` against the model: every ACCEPT outcome, hosts mapping at 2 MiB and at 4 KiB,
//! busy injection, refusals, contents.

use proptest::prelude::*;
use tdx_boot::accept::{
    AcceptError, HostMappingGuess, MAX_BUSY_RETRIES, accept_range, accept_range_with,
};
use tdx_boot::model::{
    HostPageSize, ModelConfig, PageState, TD_KILLED_STATUS, TdKilled, TdxModule,
};
use tdx_boot::tdcall::{PageLevel, TdxStatus, leaf};

mod common;
use common::HostMemory;

const K4: u64 = 0x1000;
const M2: u64 = 0x20_0000;

fn model(host: HostPageSize) -> TdxModule {
    TdxModule::new(ModelConfig {
        host_page_size: host,
        ..Default::default()
    })
}

fn accepts(tdx: &TdxModule) -> u64 {
    tdx.tdcall_count(leaf::MEM_PAGE_ACCEPT)
}

fn all_private(tdx: &TdxModule, start: u64, end: u64) -> bool {
    tdx.page_runs(start, end)
        .iter()
        .all(|&(_, _, s)| s == PageState::Private)
        && tdx
            .page_runs(start, end)
            .iter()
            .map(|r| r.1 - r.0)
            .sum::<u64>()
            == end - start
}

/// The fewest calls for `[start, end)` when the host maps every block at 2 MiB.
fn optimum_2m(start: u64, end: u64) -> u64 {
    let first_block = start.next_multiple_of(M2);
    let last_block = end - end % M2;
    if first_block >= last_block {
        return (end - start) / K4;
    }
    (first_block - start) / K4 + (last_block - first_block) / M2 + (end - last_block) / K4
}

#[test]
fn a_2m_host_gets_one_call_per_block() {
    let tdx = model(HostPageSize::Size2M);
    tdx.add_memory(0, 64 << 20, PageState::Unaccepted);
    // SAFETY: model memory that nothing in this test uses.
    unsafe { accept_range(&tdx.vcpu(0), 0, 64 << 20) }.unwrap();
    assert!(all_private(&tdx, 0, 64 << 20));
    assert_eq!(accepts(&tdx), 32);
    assert_eq!(tdx.accept_stats().accepted_2m, 32);
}

#[test]
fn unaligned_edges_are_accepted_at_4k_and_the_middle_at_2m() {
    let tdx = model(HostPageSize::Size2M);
    tdx.add_memory(0, 8 << 20, PageState::Unaccepted);
    let (start, end) = (K4, 6 * M2 / 2 + 2 * K4);
    // SAFETY: model memory that nothing in this test uses.
    unsafe { accept_range(&tdx.vcpu(0), start, end) }.unwrap();
    assert!(all_private(&tdx, start, end));
    assert_eq!(tdx.page_state(0), PageState::Unaccepted);
    assert_eq!(tdx.page_state(end), PageState::Unaccepted);
    assert_eq!(accepts(&tdx), optimum_2m(start, end));
    assert_eq!(optimum_2m(start, end), 511 + 2 + 2);
}

#[test]
fn a_4k_host_stops_paying_for_2m_attempts() {
    let tdx = model(HostPageSize::Size4K);
    let size = 256u64 << 20;
    tdx.add_memory(0, size, PageState::Unaccepted);
    let guess = HostMappingGuess::new();
    // SAFETY: model memory that nothing in this test uses.
    let stats = unsafe { accept_range_with(&tdx.vcpu(0), 0, size, &guess) }.unwrap();
    assert!(all_private(&tdx, 0, size));
    assert!(guess.assumes_4k_only());
    let pages = size / K4;
    let blocks = size / M2;
    let mismatches = tdx.accept_stats().size_mismatch;
    // The streak, probes after 1, 2, 4, ... blocks, then one per MAX_PROBE_INTERVAL blocks.
    let bound = u64::from(HostMappingGuess::MISMATCH_STREAK)
        + 6
        + blocks / u64::from(HostMappingGuess::MAX_PROBE_INTERVAL);
    assert!(
        mismatches <= bound,
        "{mismatches} failed 2M attempts, bound {bound}"
    );
    assert_eq!(stats.size_mismatches, mismatches);
    assert_eq!(accepts(&tdx), pages + mismatches);
}

#[test]
fn a_probe_notices_when_the_host_maps_2m_again() {
    let tdx = model(HostPageSize::Size2M);
    let size = 512u64 << 20;
    tdx.add_memory(0, size, PageState::Unaccepted);
    // The first 256 MiB at 4K (long enough to be taken for a 4K-only host), the rest at 2M.
    tdx.set_host_page_size(0, 256 << 20, HostPageSize::Size4K);
    let guess = HostMappingGuess::new();
    // SAFETY: model memory that nothing in this test uses.
    let stats = unsafe { accept_range_with(&tdx.vcpu(0), 0, size, &guess) }.unwrap();
    assert!(all_private(&tdx, 0, size));
    assert!(!guess.assumes_4k_only());
    // At most MAX_PROBE_INTERVAL blocks of the 2M part go at 4K before a probe succeeds.
    let later_blocks = (size - (256 << 20)) / M2;
    assert!(
        stats.accepted_2m + u64::from(HostMappingGuess::MAX_PROBE_INTERVAL) >= later_blocks,
        "{stats:?}"
    );
    assert!(
        stats.accepted_2m < later_blocks,
        "the 4K part never looked 4K-only: {stats:?}"
    );
}

#[test]
fn size_mismatch_on_a_partly_accepted_block_falls_back_to_4k() {
    let tdx = model(HostPageSize::Size2M);
    tdx.add_memory(0, 2 * M2, PageState::Unaccepted);
    // SAFETY: model memory that nothing in this test uses.
    unsafe { accept_range(&tdx.vcpu(0), M2 + 5 * K4, M2 + 6 * K4) }.unwrap();
    // SAFETY: model memory that nothing in this test uses.
    let stats =
        unsafe { accept_range_with(&tdx.vcpu(0), 0, 2 * M2, &HostMappingGuess::new()) }.unwrap();
    assert!(all_private(&tdx, 0, 2 * M2));
    assert_eq!(stats.accepted_2m, 1);
    assert_eq!(stats.size_mismatches, 1);
    assert_eq!(stats.accepted_4k, 512);
    assert_eq!(stats.already_accepted, 1);
}

#[test]
fn already_accepted_is_success_and_keeps_contents() {
    let tdx = model(HostPageSize::Size2M);
    let mut memory = vec![0xA5u8; (4 * M2) as usize];
    // SAFETY: `memory` outlives the model's use of it in this test and is only read after.
    assert!(unsafe { tdx.add_backing(0, memory.as_mut_ptr(), 4 * M2) });
    tdx.add_memory(0, 2 * M2, PageState::Private);
    tdx.add_memory(2 * M2, 4 * M2, PageState::Unaccepted);
    // SAFETY: the model writes `memory` only under `add_backing`'s contract and the test reads
    // it only afterwards; the accepted first half stands for memory the kernel gave up.
    unsafe { accept_range(&tdx.vcpu(0), 0, 4 * M2) }.unwrap();
    assert!(all_private(&tdx, 0, 4 * M2));
    assert_eq!(tdx.accept_stats().already_accepted, 2);
    let (kept, zeroed) = memory.split_at((2 * M2) as usize);
    assert!(
        kept.iter().all(|&b| b == 0xA5),
        "accepted memory was zeroed"
    );
    assert!(
        zeroed.iter().all(|&b| b == 0),
        "newly accepted memory was not zeroed"
    );
}

#[test]
fn busy_is_retried_a_bounded_number_of_times() {
    let tdx = model(HostPageSize::Size2M);
    tdx.add_memory(0, 2 * M2, PageState::Unaccepted);
    tdx.inject_busy(u64::from(MAX_BUSY_RETRIES));
    // SAFETY: model memory that nothing in this test uses.
    let stats =
        unsafe { accept_range_with(&tdx.vcpu(0), 0, M2, &HostMappingGuess::new()) }.unwrap();
    assert_eq!(stats.busy_retries, u64::from(MAX_BUSY_RETRIES));
    assert!(all_private(&tdx, 0, M2));

    tdx.inject_busy(u64::from(MAX_BUSY_RETRIES) + 1);
    // SAFETY: model memory that nothing in this test uses.
    let err = unsafe { accept_range(&tdx.vcpu(0), M2, 2 * M2) }.unwrap_err();
    assert_eq!(
        err,
        AcceptError::Busy {
            gpa: M2,
            level: PageLevel::Size2M
        }
    );
    assert_eq!(tdx.page_state(M2), PageState::Unaccepted);
}

#[test]
fn a_refusal_names_the_gpa_and_leaves_the_rest_untouched() {
    let tdx = model(HostPageSize::Size4K);
    tdx.add_memory(0, 16 * K4, PageState::Unaccepted);
    tdx.add_memory(20 * K4, 32 * K4, PageState::Unaccepted);
    // SAFETY: model memory that nothing in this test uses.
    let err = unsafe { accept_range(&tdx.vcpu(0), 0, 32 * K4) }.unwrap_err();
    match err {
        AcceptError::Refused { gpa, level, status } => {
            assert_eq!(gpa, 16 * K4);
            assert_eq!(level, PageLevel::Size4K);
            // No module answers that ACCEPT: the VMM has no memory there and ends the TD.
            assert_eq!(status.raw(), TD_KILLED_STATUS);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        tdx.td_killed(),
        Some(TdKilled {
            vcpu: 0,
            gpa: 16 * K4,
            state: PageState::Absent
        })
    );
    assert!(all_private(&tdx, 0, 16 * K4));
    assert_eq!(tdx.page_state(20 * K4), PageState::Unaccepted);
}

#[test]
fn injected_statuses_come_back_typed() {
    let tdx = model(HostPageSize::Size2M);
    tdx.add_memory(0, M2, PageState::Unaccepted);
    tdx.inject_tdcall_status(leaf::MEM_PAGE_ACCEPT, TdxStatus::OPERAND_INVALID, 1);
    // SAFETY: model memory that nothing in this test uses.
    let err = unsafe { accept_range(&tdx.vcpu(0), 0, M2) }.unwrap_err();
    assert!(matches!(
        err,
        AcceptError::Refused { gpa: 0, level: PageLevel::Size2M, status } if status == TdxStatus::OPERAND_INVALID
    ));
    // A 4K SIZE_MISMATCH cannot be fallen back from.
    tdx.inject_tdcall_status(leaf::MEM_PAGE_ACCEPT, TdxStatus::PAGE_SIZE_MISMATCH, 2);
    // SAFETY: model memory that nothing in this test uses.
    let err = unsafe { accept_range(&tdx.vcpu(0), 0, M2) }.unwrap_err();
    assert!(matches!(
        err,
        AcceptError::Refused { gpa: 0, level: PageLevel::Size4K, status } if status == TdxStatus::PAGE_SIZE_MISMATCH
    ));
}

#[test]
fn bounds_are_checked_before_any_call() {
    let tdx = model(HostPageSize::Size2M);
    tdx.add_memory(0, M2, PageState::Unaccepted);
    let cpu = tdx.vcpu(0);
    assert_eq!(
        // SAFETY: model memory that nothing in this test uses.
        unsafe { accept_range(&cpu, 1, M2) },
        Err(AcceptError::Unaligned { start: 1, end: M2 })
    );
    assert_eq!(
        // SAFETY: model memory that nothing in this test uses.
        unsafe { accept_range(&cpu, 0, M2 - 1) },
        Err(AcceptError::Unaligned {
            start: 0,
            end: M2 - 1
        })
    );
    assert_eq!(
        // SAFETY: model memory that nothing in this test uses.
        unsafe { accept_range(&cpu, M2, 0) },
        Err(AcceptError::Reversed { start: M2, end: 0 })
    );
    // SAFETY: model memory that nothing in this test uses.
    assert_eq!(unsafe { accept_range(&cpu, K4, K4) }, Ok(()));
    assert_eq!(accepts(&tdx), 0);
}

#[test]
fn never_asks_for_1g() {
    let tdx = model(HostPageSize::Size2M);
    tdx.add_memory(0, 2 << 30, PageState::Unaccepted);
    tdx.enable_trace(true);
    // SAFETY: model memory that nothing in this test uses.
    unsafe { accept_range(&tdx.vcpu(0), 0, 2 << 30) }.unwrap();
    let trace = tdx.trace();
    assert_eq!(trace.len(), 1024);
    assert!(
        trace
            .iter()
            .all(|e| e.input.rcx & 7 == PageLevel::Size2M.level())
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random maps: unaccepted runs, blocks the host maps at 4K, already accepted pages.
    #[test]
    fn random_maps_end_fully_private_with_few_calls(
        start_page in 0u64..2048,
        len_pages in 1u64..4096,
        host_4k_blocks in proptest::collection::vec(0u64..12, 0..4),
        accepted_pages in proptest::collection::vec(0u64..6144, 0..8),
    ) {
        let tdx = model(HostPageSize::Size2M);
        let (start, end) = (start_page * K4, (start_page + len_pages) * K4);
        tdx.add_memory(0, 24 << 20, PageState::Unaccepted);
        for b in &host_4k_blocks {
            tdx.set_host_page_size(b * M2, (b + 1) * M2, HostPageSize::Size4K);
        }
        for p in &accepted_pages {
            tdx.add_memory(p * K4, (p + 1) * K4, PageState::Private);
        }
        // SAFETY: model memory that nothing in this test uses.
        let stats = unsafe { accept_range_with(&tdx.vcpu(0), start, end, &HostMappingGuess::new()) }.unwrap();
        prop_assert!(all_private(&tdx, start, end));
        prop_assert_eq!(stats.calls(), accepts(&tdx));
        if host_4k_blocks.is_empty() && accepted_pages.is_empty() {
            prop_assert_eq!(accepts(&tdx), optimum_2m(start, end));
        }
        // Scattered 4K blocks never look like a 4K-only host: every 2M block gets its attempt.
        if accepted_pages.is_empty() {
            let blocks_4k = (start..end).step_by(M2 as usize).filter(|&g| tdx.host_maps_4k(g)).count() as u64;
            prop_assert!(accepts(&tdx) <= optimum_2m(start, end) + blocks_4k * 512 + blocks_4k);
        }
        // Never more than one failed 2M attempt per block on top of the 4K pages.
        prop_assert!(accepts(&tdx) <= (end - start) / K4 + (end - start) / M2);
    }
}

#[test]
fn the_top_of_the_address_space_neither_overflows_nor_loops() {
    // GPAW 52: private GPAs end at the shared bit (2^51); above it the module refuses.
    let tdx = TdxModule::new(ModelConfig {
        gpaw: 52,
        ..Default::default()
    });
    let cpu = tdx.vcpu(0);
    let top = 1u64 << 51;
    tdx.add_memory(top - 4 * M2, top, PageState::Unaccepted);
    // SAFETY: model memory that nothing in this test uses.
    let stats =
        unsafe { accept_range_with(&cpu, top - 3 * M2 - K4, top, &HostMappingGuess::new()) }
            .unwrap();
    assert_eq!((stats.accepted_2m, stats.accepted_4k), (3, 1));
    assert!(all_private(&tdx, top - 3 * M2 - K4, top));

    // Ranges ending at the last page of the 64-bit space: every call is refused at the first
    // GPA, with no arithmetic past 2^64.
    for start in [
        u64::MAX - 2 * M2 + 1 - K4,
        u64::MAX - K4 + 1 - K4,
        !(M2 - 1),
    ] {
        let end = u64::MAX - K4 + 1;
        let before = accepts(&tdx);
        // SAFETY: model memory that nothing in this test uses.
        let err = unsafe { accept_range(&cpu, start, end) }.unwrap_err();
        assert!(
            matches!(err, AcceptError::Refused { gpa, .. } if gpa == start),
            "{start:#x}: {err:?}"
        );
        assert!(accepts(&tdx) - before <= 2, "{start:#x}");
    }
}

/// What `accept_range`'s `unsafe` guards against. Accepting memory that is already accepted is
/// harmless while the host plays fair (`ALREADY_ACCEPTED`, contents kept), so a safe
/// `accept_range` would look fine in every honest test. But a host can remove an accepted page
/// and add a pending one at the same GPA (TDH.MEM.PAGE.REMOVE + AUG, here `add_memory`); the
/// next ACCEPT of that GPA succeeds and zeroes the kernel's live data.
#[test]
fn accepting_memory_in_use_lets_a_hostile_host_zero_it() {
    let tdx = model(HostPageSize::Size2M);
    let memory = HostMemory::new(M2 as usize, 0xEE);
    memory.back(&tdx, 0);
    tdx.add_memory(0, M2, PageState::Unaccepted);
    let cpu = tdx.vcpu(0);
    // SAFETY: the firmware left this memory unaccepted and nothing uses it yet.
    unsafe { accept_range(&cpu, 0, M2) }.unwrap();
    let live = b"the kernel's page tables live here";
    memory.write(0x1000, live);

    // SAFETY: deliberately broken for the demonstration: the range is in use. The model writes
    // only `HostMemory`, which the test reaches through raw pointers, so nothing is UB here.
    unsafe { accept_range(&cpu, 0, M2) }.unwrap();
    assert_eq!(
        memory.read(0x1000, live.len()),
        live,
        "an honest host keeps the data"
    );
    assert_eq!(tdx.accept_stats().already_accepted, 1);

    tdx.add_memory(0x1000, 0x2000, PageState::Unaccepted); // the host swaps one page
    // SAFETY: as above, deliberately broken.
    unsafe { accept_range(&cpu, 0, M2) }.unwrap();
    assert_eq!(
        memory.read(0x1000, live.len()),
        vec![0; live.len()],
        "the swapped page was accepted, and the live data zeroed"
    );
}

/// `accept_range_with` is the same call with a guess that outlives it; the guess changes page
/// sizes, not what is zeroed, so the same swap zeroes live data through it too.
#[test]
fn accept_range_with_zeroes_a_swapped_page_as_accept_range_does() {
    let tdx = model(HostPageSize::Size4K);
    let memory = common::live_data_on_a_swapped_page(&tdx, M2, 0x3000, b"live");
    let guess = HostMappingGuess::new();
    // SAFETY: deliberately broken for the demonstration (the range is in use); the model
    // writes only `HostMemory`, reached through raw pointers.
    let stats = unsafe { accept_range_with(&tdx.vcpu(0), 0, M2, &guess) }.unwrap();
    assert_eq!(stats.already_accepted, 511);
    assert_eq!(memory.read(0x3000, 4), vec![0; 4], "live data zeroed");
}
