//! Private <-> shared conversion against the model: round trips, MapGPA chunking, hostile R11
//! values, VMM refusals, mapper failures, accept failures, and the shared pool.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use tdx_boot::accept::{AcceptError, accept_range};
use tdx_boot::convert::{
    ConvertCause, ConvertError, ConvertRange, MAX_RETRIES_WITHOUT_PROGRESS, MapGpaFailure,
    MapperError, RangeState, SharedBitMapper, SharedPool, make_private, make_shared, map_gpa_range,
};
use tdx_boot::model::{MapGpaFault, ModelConfig, PageState, TdxModule};
use tdx_boot::tdcall::vmcall::{VmcallError, function};
use tdx_boot::tdcall::{TdxStatus, VmcallStatus, leaf, vp_info};

const K4: u64 = 0x1000;
const M2: u64 = 0x20_0000;
const DIRECT_MAP: u64 = 0xffff_8000_0000_0000;

/// A page table as a map from virtual page to "shared bit set", with injectable failures.
#[derive(Default)]
struct TableMapper {
    shared: BTreeMap<u64, bool>,
    /// `set_shared` fails on reaching this page while setting this value.
    fail_on: Vec<(u64, bool)>,
    flushes: u32,
    /// Every `flush(va, len)` as a `[va, va + len)` range.
    flushed: Vec<(u64, u64)>,
}

impl TableMapper {
    fn mapping(gpa: u64, len: u64) -> Self {
        let mut mapper = Self::default();
        for page in (gpa..gpa + len).step_by(K4 as usize) {
            mapper.shared.insert(DIRECT_MAP + page, false);
        }
        mapper
    }

    fn all(&self, shared: bool) -> bool {
        self.shared.values().all(|&s| s == shared)
    }

    /// Whether some flush since `since` (an index into `flushed`) covered `[start, end)`.
    fn flushed_since(&self, since: usize, start: u64, end: u64) -> bool {
        self.flushed
            .iter()
            .skip(since)
            .any(|&(s, e)| s <= start && end <= e)
    }
}

impl SharedBitMapper for TableMapper {
    unsafe fn set_shared(&mut self, va: u64, len: u64, shared: bool) -> Result<(), MapperError> {
        let mut done = 0;
        while done < len {
            let page = va + done;
            if self.fail_on.contains(&(page, shared)) {
                return Err(MapperError {
                    done,
                    reason: "injected",
                });
            }
            match self.shared.get_mut(&page) {
                Some(s) => *s = shared,
                None => {
                    return Err(MapperError {
                        done,
                        reason: "not mapped",
                    });
                }
            }
            done += K4;
        }
        Ok(())
    }

    fn flush(&mut self, va: u64, len: u64) {
        self.flushes += 1;
        self.flushed.push((va, va + len));
    }
}

fn model(chunk: u64) -> TdxModule {
    TdxModule::new(ModelConfig {
        map_gpa_chunk: chunk,
        ..Default::default()
    })
}

/// A TD whose VMM converts `chunk` bytes per MapGPA (0: all), with `[0, end)` in `state`, and
/// its shared bit as TDG.VP.INFO reports it.
fn td(chunk: u64, end: u64, state: PageState) -> (TdxModule, u64) {
    let tdx = model(chunk);
    let shared_mask = vp_info(&tdx.vcpu(0)).unwrap().shared_mask();
    tdx.add_memory(0, end, state);
    (tdx, shared_mask)
}

fn range(gpa: u64, len: u64) -> ConvertRange {
    ConvertRange {
        va: DIRECT_MAP.wrapping_add(gpa),
        gpa,
        len,
    }
}

fn states(tdx: &TdxModule, gpa: u64, len: u64) -> Vec<PageState> {
    tdx.page_runs(gpa, gpa + len).iter().map(|r| r.2).collect()
}

fn map_gpa_calls(tdx: &TdxModule) -> u64 {
    tdx.vmcall_count(function::MAP_GPA)
}

#[test]
fn round_trip_loses_contents_and_re_accepts() {
    let tdx = model(0);
    let cpu = tdx.vcpu(0);
    let shared_mask = vp_info(&cpu).unwrap().shared_mask();
    let (gpa, len) = (2 * M2, 2 * M2);
    tdx.add_memory(0, 8 * M2, PageState::Private);
    let mut memory = vec![0x5Au8; len as usize];
    // SAFETY: `memory` outlives the model's use of it and is only read between calls.
    assert!(unsafe { tdx.add_backing(gpa, memory.as_mut_ptr(), len) });
    let mut mapper = TableMapper::mapping(gpa, len);

    // SAFETY: nothing uses the model's memory; its contents are expendable.
    let stats = unsafe { make_shared(&cpu, &mut mapper, shared_mask, range(gpa, len)) }.unwrap();
    assert_eq!(stats.calls, 1);
    assert_eq!(states(&tdx, gpa, len), [PageState::Shared]);
    assert!(mapper.all(true));
    assert!(mapper.flushes >= 1);
    assert!(
        memory.iter().all(|&b| b == 0),
        "private contents leaked to shared memory"
    );
    assert_eq!(tdx.page_state(gpa - K4), PageState::Private);

    // The VMM writes into the shared pages.
    memory.fill(0xEE);
    let accepts = tdx.tdcall_count(leaf::MEM_PAGE_ACCEPT);
    // SAFETY: as above.
    unsafe { make_private(&cpu, &mut mapper, shared_mask, range(gpa, len)) }.unwrap();
    assert_eq!(states(&tdx, gpa, len), [PageState::Private]);
    assert!(mapper.all(false));
    assert!(
        memory.iter().all(|&b| b == 0),
        "the VMM's data survived into private memory"
    );
    assert!(tdx.tdcall_count(leaf::MEM_PAGE_ACCEPT) > accepts);
    assert_eq!(tdx.accept_stats().already_accepted, 0);
    assert_eq!(map_gpa_calls(&tdx), 2);
}

#[test]
fn chunking_vmms_cost_ceil_size_over_chunk_calls() {
    for (chunk, len) in [(M2, 16 * M2 + K4), (64 << 20, 200 << 20)] {
        let (tdx, shared_mask) = td(chunk, len, PageState::Private);
        let cpu = tdx.vcpu(0);
        let mut mapper = TableMapper::mapping(0, len);
        // SAFETY: nothing uses the model's memory.
        let stats = unsafe { make_shared(&cpu, &mut mapper, shared_mask, range(0, len)) }.unwrap();
        let expected = len.div_ceil(chunk);
        assert_eq!(stats.calls, expected);
        assert_eq!(stats.retries, expected - 1);
        assert_eq!(map_gpa_calls(&tdx), expected);
        assert_eq!(states(&tdx, 0, len), [PageState::Shared]);
        // SAFETY: as above.
        unsafe { make_private(&cpu, &mut mapper, shared_mask, range(0, len)) }.unwrap();
        assert_eq!(states(&tdx, 0, len), [PageState::Private]);
        assert_eq!(map_gpa_calls(&tdx), 2 * expected);
    }
}

fn map_gpa_cause(err: &ConvertError) -> (MapGpaFailure, u64) {
    match err.cause {
        ConvertCause::MapGpa(e) => (e.cause, e.converted_upto),
        other => panic!("not a MapGPA failure: {other:?}"),
    }
}

#[test]
fn hostile_resume_values_are_refused() {
    let (gpa, len) = (4 * M2, 4 * M2);
    let faults = [
        MapGpaFault::ResumePastEnd,
        MapGpaFault::ResumeBeforeStart,
        MapGpaFault::ResumeWithoutSharedBit,
        MapGpaFault::ResumeAt(gpa + len + K4),
        MapGpaFault::ResumeAt(gpa + M2 + 1),
        MapGpaFault::ResumeAt(u64::MAX),
    ];
    for fault in faults {
        let (tdx, shared_mask) = td(M2, 16 * M2, PageState::Private);
        let cpu = tdx.vcpu(0);
        tdx.set_map_gpa_fault(Some(fault));
        let mut mapper = TableMapper::mapping(gpa, len);
        // SAFETY: nothing uses the model's memory.
        let err =
            unsafe { make_shared(&cpu, &mut mapper, shared_mask, range(gpa, len)) }.unwrap_err();
        let (cause, upto) = map_gpa_cause(&err);
        assert!(
            matches!(cause, MapGpaFailure::HostileResume { .. }),
            "{fault:?}: {cause:?}"
        );
        assert_eq!(upto, gpa, "{fault:?}");
        assert_eq!(
            err.state,
            RangeState::Converting {
                converted_upto: gpa
            }
        );
        // Nothing confirmed; the mappings show the new side, the VMM did convert a chunk.
        assert!(mapper.all(true), "{fault:?}");
        assert_eq!(states(&tdx, gpa, M2), [PageState::Shared], "{fault:?}");
        assert_eq!(
            map_gpa_calls(&tdx),
            1,
            "{fault:?}: kept calling a lying VMM"
        );
    }
}

#[test]
fn retries_without_progress_give_up() {
    let (tdx, shared_mask) = td(0, 4 * M2, PageState::Private);
    let cpu = tdx.vcpu(0);
    tdx.set_map_gpa_fault(Some(MapGpaFault::RetryWithoutProgress));
    let mut mapper = TableMapper::mapping(0, M2);
    // SAFETY: nothing uses the model's memory.
    let err = unsafe { make_shared(&cpu, &mut mapper, shared_mask, range(0, M2)) }.unwrap_err();
    assert_eq!(map_gpa_cause(&err), (MapGpaFailure::NoProgress, 0));
    assert_eq!(map_gpa_calls(&tdx), u64::from(MAX_RETRIES_WITHOUT_PROGRESS));
    // The VMM converted nothing, but it said RETRY: the state stays "converting" from 0.
    assert_eq!(err.state, RangeState::Converting { converted_upto: 0 });
}

#[test]
fn a_clean_refusal_leaves_the_range_unchanged() {
    let (tdx, shared_mask) = td(0, 4 * M2, PageState::Private);
    let cpu = tdx.vcpu(0);
    tdx.refuse_vmcall(function::MAP_GPA, VmcallStatus::GPA_INUSE_RAW, 1);
    let mut mapper = TableMapper::mapping(0, M2);
    // SAFETY: nothing uses the model's memory.
    let err = unsafe { make_shared(&cpu, &mut mapper, shared_mask, range(0, M2)) }.unwrap_err();
    assert_eq!(err.state, RangeState::Unchanged);
    assert!(mapper.all(false), "mappings not restored");
    assert_eq!(states(&tdx, 0, M2), [PageState::Private]);
}

#[test]
fn mapper_failures_are_undone_or_reported() {
    let (tdx, shared_mask) = td(0, 4 * M2, PageState::Private);
    let cpu = tdx.vcpu(0);
    let va = DIRECT_MAP;
    let mut mapper = TableMapper::mapping(0, 16 * K4);
    mapper.fail_on.push((va + 5 * K4, true));
    // SAFETY: nothing uses the model's memory.
    let err =
        unsafe { make_shared(&cpu, &mut mapper, shared_mask, range(0, 16 * K4)) }.unwrap_err();
    assert_eq!(err.state, RangeState::Unchanged);
    assert!(matches!(err.cause, ConvertCause::Mapper(MapperError { done, .. }) if done == 5 * K4));
    assert!(mapper.all(false));
    assert_eq!(map_gpa_calls(&tdx), 0);

    // The undo fails too, at page 2: pages 2..5 keep the shared bit.
    mapper.fail_on.push((va + 2 * K4, false));
    // SAFETY: as above.
    let err =
        unsafe { make_shared(&cpu, &mut mapper, shared_mask, range(0, 16 * K4)) }.unwrap_err();
    assert_eq!(
        err.state,
        RangeState::MappingsPartial {
            changed_from: va + 2 * K4,
            changed_upto: va + 5 * K4
        }
    );
    let shared: Vec<u64> = mapper
        .shared
        .iter()
        .filter(|e| *e.1)
        .map(|e| (e.0 - va) / K4)
        .collect();
    assert_eq!(shared, [2, 3, 4]);
}

#[test]
fn a_failed_accept_leaves_the_range_pending_and_accept_range_finishes_it() {
    let (tdx, shared_mask) = td(0, 4 * M2, PageState::Shared);
    let cpu = tdx.vcpu(0);
    let mut mapper = TableMapper::mapping(0, M2);
    for s in mapper.shared.values_mut() {
        *s = true;
    }
    tdx.inject_tdcall_status(
        leaf::MEM_PAGE_ACCEPT,
        TdxStatus::OPERAND_ADDR_RANGE_ERROR,
        1,
    );
    // SAFETY: nothing uses the model's memory.
    let err = unsafe { make_private(&cpu, &mut mapper, shared_mask, range(0, M2)) }.unwrap_err();
    assert_eq!(
        err.state,
        RangeState::PrivatePendingAccept { accepted_upto: 0 }
    );
    assert!(matches!(
        err.cause,
        ConvertCause::Accept(AcceptError::Refused { gpa: 0, .. })
    ));
    assert_eq!(states(&tdx, 0, M2), [PageState::Unaccepted]);
    assert!(mapper.all(true), "no private mapping of a pending page");
    // SAFETY: a conversion left it pending; nothing uses the model's memory.
    unsafe { accept_range(&cpu, 0, M2) }.unwrap();
    assert_eq!(states(&tdx, 0, M2), [PageState::Private]);
}

#[test]
fn bad_ranges_change_nothing() {
    let tdx = model(0);
    let cpu = tdx.vcpu(0);
    let shared_mask = vp_info(&cpu).unwrap().shared_mask();
    let mut mapper = TableMapper::mapping(0, M2);
    let cases = [
        (range(1, K4), shared_mask, ConvertCause::Unaligned),
        (range(0, K4 + 1), shared_mask, ConvertCause::Unaligned),
        (range(0, K4), shared_mask | 1, ConvertCause::Unaligned),
        (
            range(shared_mask - K4, 2 * K4),
            shared_mask,
            ConvertCause::OutOfRange,
        ),
        (range(!0xfff, 2 * K4), shared_mask, ConvertCause::OutOfRange),
    ];
    for (r, mask, cause) in cases {
        // SAFETY: refused before any change.
        let err = unsafe { make_shared(&cpu, &mut mapper, mask, r) }.unwrap_err();
        assert_eq!(
            err,
            ConvertError {
                state: RangeState::Unchanged,
                cause
            }
        );
    }
    assert!(mapper.all(false));
    assert_eq!(map_gpa_calls(&tdx), 0);
}

#[test]
fn the_pool_hands_out_shared_pages_once() {
    let tdx = model(M2);
    let cpu = tdx.vcpu(0);
    let shared_mask = vp_info(&cpu).unwrap().shared_mask();
    let (gpa, pages) = (M2, 70u64);
    tdx.add_memory(0, 4 * M2, PageState::Private);
    let mut mapper = TableMapper::mapping(gpa, pages * K4);
    let words: Vec<AtomicU64> = (0..SharedPool::words_needed(pages))
        .map(|_| AtomicU64::new(0))
        .collect();
    // SAFETY: the pool owns the range; nothing else uses it.
    let (pool, _) = unsafe {
        SharedPool::new(
            &cpu,
            &mut mapper,
            shared_mask,
            range(gpa, pages * K4),
            &words,
        )
    }
    .unwrap();
    assert_eq!(states(&tdx, gpa, pages * K4), [PageState::Shared]);
    assert_eq!(pool.free_pages(), pages);
    assert!(pool.alloc(65).is_none());
    assert!(pool.alloc(0).is_none());
    let big = pool.alloc(64).unwrap();
    assert_eq!(big.device_gpa(), gpa | shared_mask);
    assert!(pool.alloc(7).is_none(), "a run crossed the pool's end");
    let mut small: Vec<_> = std::iter::from_fn(|| pool.alloc(1)).collect();
    assert_eq!(small.len(), 6);
    assert_eq!(pool.free_pages(), 0);
    let mut seen: Vec<u64> = small.iter().map(|b| b.va()).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 6);
    assert!(seen.iter().all(|&va| va >= big.va() + big.len()));
    pool.free(small.pop().unwrap()).unwrap();
    assert_eq!(pool.free_pages(), 1);
    pool.free(big).unwrap();
    assert_eq!(pool.alloc(64).map(|b| b.va()), Some(DIRECT_MAP + gpa));

    // A buffer from another pool is refused.
    let other_words = [AtomicU64::new(0)];
    let mut other_mapper = TableMapper::mapping(3 * M2, K4);
    // SAFETY: as above.
    let (other, _) = unsafe {
        SharedPool::new(
            &cpu,
            &mut other_mapper,
            shared_mask,
            range(3 * M2, K4),
            &other_words,
        )
    }
    .unwrap();
    let foreign = other.alloc(1).unwrap();
    assert!(pool.free(foreign).is_err());

    // Too little bookkeeping for 70 pages: refused before converting anything.
    let one_word = [AtomicU64::new(0)];
    let mut mapper = TableMapper::mapping(0, pages * K4);
    // SAFETY: as above.
    let err = unsafe {
        SharedPool::new(
            &cpu,
            &mut mapper,
            shared_mask,
            range(0, pages * K4),
            &one_word,
        )
    }
    .unwrap_err();
    assert_eq!(err.cause, ConvertCause::PoolStorageTooSmall);
    assert_eq!(err.state, RangeState::Unchanged);
    assert_eq!(tdx.page_state(0), PageState::Private);
}

#[test]
fn progress_then_a_stuck_vmm_reports_how_far_it_got() {
    let (tdx, shared_mask) = td(M2, 16 * M2, PageState::Private);
    let cpu = tdx.vcpu(0);
    // Every answer says "resume at 2 MiB": progress once, then none.
    tdx.set_map_gpa_fault(Some(MapGpaFault::ResumeAt(M2 | shared_mask)));
    let mut mapper = TableMapper::mapping(0, 8 * M2);
    // SAFETY: nothing uses the model's memory.
    let err = unsafe { make_shared(&cpu, &mut mapper, shared_mask, range(0, 8 * M2)) }.unwrap_err();
    assert_eq!(map_gpa_cause(&err), (MapGpaFailure::NoProgress, M2));
    assert_eq!(err.state, RangeState::Converting { converted_upto: M2 });
    assert_eq!(
        map_gpa_calls(&tdx),
        1 + u64::from(MAX_RETRIES_WITHOUT_PROGRESS)
    );
    // What the state claims, page by page: confirmed up to 2 MiB (the VMM's unconfirmed
    // retries did convert more: "either side" beyond), the mappings all shared.
    assert_eq!(states(&tdx, 0, M2), [PageState::Shared]);
    assert!(mapper.all(true));

    // Resuming behind the point already reached is moving backwards.
    let tdx = model(M2);
    tdx.add_memory(0, 16 * M2, PageState::Private);
    let cpu = tdx.vcpu(0);
    let mut mapper = TableMapper::mapping(0, 8 * M2);
    tdx.set_map_gpa_fault(Some(MapGpaFault::ResumeAt((2 * M2) | shared_mask)));
    // SAFETY: as above.
    let first = unsafe { make_shared(&cpu, &mut mapper, shared_mask, range(0, 8 * M2)) };
    assert!(first.is_err());
    tdx.set_map_gpa_fault(Some(MapGpaFault::ResumeAt((3 * M2) | shared_mask)));
    let mut mapper = TableMapper::mapping(4 * M2, 4 * M2);
    // SAFETY: as above.
    let err =
        unsafe { make_shared(&cpu, &mut mapper, shared_mask, range(4 * M2, 4 * M2)) }.unwrap_err();
    assert!(matches!(
        map_gpa_cause(&err).0,
        MapGpaFailure::HostileResume { .. }
    ));
}

#[test]
fn every_vmm_refusal_and_a_failed_tdcall_leave_the_range_unchanged() {
    let refusals = [
        VmcallStatus::INVALID_OPERAND_RAW,
        VmcallStatus::GPA_INUSE_RAW,
        VmcallStatus::ALIGN_ERROR_RAW,
        0x8000_0000_0000_0042,
    ];
    for status in refusals {
        let (tdx, shared_mask) = td(M2, 4 * M2, PageState::Private);
        let cpu = tdx.vcpu(0);
        tdx.refuse_vmcall(function::MAP_GPA, status, 1);
        let mut mapper = TableMapper::mapping(0, 2 * M2);
        // SAFETY: nothing uses the model's memory.
        let err =
            unsafe { make_shared(&cpu, &mut mapper, shared_mask, range(0, 2 * M2)) }.unwrap_err();
        assert_eq!(err.state, RangeState::Unchanged, "{status:#x}");
        assert!(matches!(
            map_gpa_cause(&err).0,
            MapGpaFailure::Vmcall(tdx_boot::tdcall::vmcall::VmcallError::Vmm(s)) if s.raw() == status
        ));
        assert!(mapper.all(false));
        assert_eq!(states(&tdx, 0, 2 * M2), [PageState::Private]);
    }

    // The TDCALL itself failing (the module refusing TDG.VP.VMCALL).
    let (tdx, shared_mask) = td(0, M2, PageState::Private);
    let cpu = tdx.vcpu(0);
    let mut mapper = TableMapper::mapping(0, M2);
    tdx.inject_tdcall_status(leaf::VP_VMCALL, TdxStatus::OPERAND_INVALID, 1);
    // SAFETY: as above.
    let err = unsafe { make_shared(&cpu, &mut mapper, shared_mask, range(0, M2)) }.unwrap_err();
    assert_eq!(err.state, RangeState::Unchanged);
    assert!(matches!(
        map_gpa_cause(&err).0,
        MapGpaFailure::Vmcall(tdx_boot::tdcall::vmcall::VmcallError::Tdcall(_))
    ));
    assert_eq!(tdx.page_state(0), PageState::Private);
}

/// QEMU's `kvm_convert_memory` leaves what is not RAM alone on a MapGPA to shared and succeeds
/// (tests/model_map_gpa_not_ram.rs has the sources): a range running past RAM converts its RAM.
#[test]
fn making_shared_a_range_that_runs_past_ram_converts_the_ram() {
    let (tdx, shared_mask) = td(0, M2, PageState::Private);
    let cpu = tdx.vcpu(0);
    let mut mapper = TableMapper::mapping(0, 2 * M2);
    // SAFETY: nothing uses the model's memory.
    unsafe { make_shared(&cpu, &mut mapper, shared_mask, range(0, 2 * M2)) }.unwrap();
    assert!(mapper.all(true));
    assert_eq!(tdx.page_state(0), PageState::Shared);
    assert_eq!(tdx.page_state(M2), PageState::Absent);
    assert_eq!(tdx.td_killed(), None);
}

#[test]
fn making_private_on_a_4k_host_accepts_every_page() {
    let tdx = TdxModule::new(ModelConfig {
        host_page_size: tdx_boot::model::HostPageSize::Size4K,
        ..Default::default()
    });
    let cpu = tdx.vcpu(0);
    let shared_mask = vp_info(&cpu).unwrap().shared_mask();
    tdx.add_memory(0, 4 * M2, PageState::Shared);
    let mut mapper = TableMapper::mapping(0, 2 * M2);
    for s in mapper.shared.values_mut() {
        *s = true;
    }
    // SAFETY: nothing uses the model's memory.
    unsafe { make_private(&cpu, &mut mapper, shared_mask, range(0, 2 * M2)) }.unwrap();
    assert_eq!(states(&tdx, 0, 2 * M2), [PageState::Private]);
    assert_eq!(states(&tdx, 2 * M2, 2 * M2), [PageState::Shared]);
    let stats = tdx.accept_stats();
    assert_eq!(stats.accepted_4k, 1024);
    assert!(stats.size_mismatch <= 2, "{stats:?}");
}

#[test]
fn undone_mappings_are_flushed_from_the_tlb() {
    // The processor may cache a translation of the new side between the change and the undo
    // (page walks are speculative), so a range reported `Unchanged` or `MappingsPartial` after
    // touching entries must have been flushed after the undo.
    let (tdx, shared_mask) = td(0, 4 * M2, PageState::Private);
    let cpu = tdx.vcpu(0);
    let va = DIRECT_MAP;
    let mut mapper = TableMapper::mapping(0, 16 * K4);
    mapper.fail_on.push((va + 5 * K4, true));
    let before = mapper.flushed.len();
    // SAFETY: nothing uses the model's memory.
    let err =
        unsafe { make_shared(&cpu, &mut mapper, shared_mask, range(0, 16 * K4)) }.unwrap_err();
    assert_eq!(err.state, RangeState::Unchanged);
    assert!(
        mapper.flushed_since(before, va, va + 5 * K4),
        "entries changed and undone without a flush: {:?}",
        mapper.flushed
    );

    // The undo fails too: the entries it did restore were also briefly on the new side.
    mapper.fail_on.push((va + 2 * K4, false));
    let before = mapper.flushed.len();
    // SAFETY: as above.
    let err =
        unsafe { make_shared(&cpu, &mut mapper, shared_mask, range(0, 16 * K4)) }.unwrap_err();
    assert!(matches!(err.state, RangeState::MappingsPartial { .. }));
    assert!(mapper.flushed_since(before, va, va + 5 * K4));
}

#[test]
fn pages_the_vmm_never_took_away_are_not_reported_as_zeroed() {
    // The VMM answered the earlier MapGPA to shared without removing the private pages (here:
    // they simply stayed private), so ACCEPT finds them already accepted and does not zero
    // them: they still hold their old private contents. `make_private` promises zeroes; it
    // must not return `Ok` for these pages.
    let tdx = model(0);
    let cpu = tdx.vcpu(0);
    let shared_mask = vp_info(&cpu).unwrap().shared_mask();
    let (gpa, len) = (M2, M2);
    tdx.add_memory(0, 4 * M2, PageState::Private);
    let mut memory = vec![0x5Au8; len as usize];
    // SAFETY: `memory` outlives the model's use of it and is only read between calls.
    assert!(unsafe { tdx.add_backing(gpa, memory.as_mut_ptr(), len) });
    let mut mapper = TableMapper::mapping(gpa, len);
    for s in mapper.shared.values_mut() {
        *s = true;
    }
    // SAFETY: nothing uses the model's memory.
    let err = unsafe { make_private(&cpu, &mut mapper, shared_mask, range(gpa, len)) }.unwrap_err();
    assert_eq!(err.cause, ConvertCause::AlreadyAccepted);
    // What the state claims is what the TD has: private, accepted, old contents.
    assert_eq!(err.state, RangeState::PrivateNotZeroed);
    assert_eq!(states(&tdx, gpa, len), [PageState::Private]);
    assert!(mapper.all(false));
    assert!(memory.iter().all(|&b| b == 0x5A));
}

#[test]
fn map_gpa_range_refuses_a_mask_or_range_that_would_convert_the_wrong_way() {
    let (tdx, shared_mask) = td(0, 4 * M2, PageState::Private);
    let cpu = tdx.vcpu(0);
    let cases = [
        // No shared bit: "to shared" would be a MapGPA to private.
        (0, M2, 0),
        // Not one bit.
        (0, M2, shared_mask | M2),
        // The range reaches the shared bit: its GPAs are not "without the shared bit".
        (shared_mask - K4, 2 * K4, shared_mask),
        (shared_mask, K4, shared_mask),
    ];
    for (start, len, mask) in cases {
        // SAFETY: refused before any call; nothing uses the model's memory anyway.
        let err = unsafe { map_gpa_range(&cpu, start, len, true, mask) }.unwrap_err();
        assert!(
            matches!(
                err.cause,
                MapGpaFailure::Vmcall(VmcallError::InvalidArgument(_))
            ),
            "{start:#x}+{len:#x} mask {mask:#x}: {err:?}"
        );
        assert_eq!(err.converted_upto, start);
    }
    assert_eq!(map_gpa_calls(&tdx), 0);
    assert_eq!(states(&tdx, 0, 4 * M2), [PageState::Private]);
}

#[test]
fn a_failed_accept_mid_range_is_reported_page_exactly() {
    // On a 2 MiB host the refusal of the second block; on a 4 KiB host of a page inside one.
    for (host, refused) in [
        (tdx_boot::model::HostPageSize::Size2M, M2),
        (tdx_boot::model::HostPageSize::Size4K, M2 + 5 * K4),
    ] {
        let tdx = TdxModule::new(ModelConfig {
            host_page_size: host,
            ..Default::default()
        });
        let shared_mask = vp_info(&tdx.vcpu(0)).unwrap().shared_mask();
        tdx.add_memory(0, 4 * M2, PageState::Shared);
        let cpu = common::RefusesAccept {
            cpu: tdx.vcpu(0),
            start: refused,
            end: refused + K4,
        };
        let mut mapper = TableMapper::mapping(0, 3 * M2);
        for s in mapper.shared.values_mut() {
            *s = true;
        }
        // SAFETY: nothing uses the model's memory.
        let err =
            unsafe { make_private(&cpu, &mut mapper, shared_mask, range(0, 3 * M2)) }.unwrap_err();
        assert_eq!(
            err.state,
            RangeState::PrivatePendingAccept {
                accepted_upto: refused
            },
            "{host:?}"
        );
        // What the state claims, page by page.
        assert_eq!(states(&tdx, 0, refused), [PageState::Private], "{host:?}");
        assert_eq!(
            states(&tdx, refused, 3 * M2 - refused),
            [PageState::Unaccepted],
            "{host:?}"
        );
        assert!(
            mapper.all(true),
            "the mappings stay shared until every page is accepted"
        );
        // SAFETY: a conversion left it pending; nothing uses the model's memory.
        unsafe { accept_range(&tdx.vcpu(0), refused, 3 * M2) }.unwrap();
        assert_eq!(states(&tdx, 0, 3 * M2), [PageState::Private]);
    }
}

/// A page-table mapper that, whenever it switches a mapping to private, records every page the
/// module does not hold as private and accepted at that moment: a private mapping of a page that
/// is still shared (or pending) is what Linux never allows ("there is never a private mapping to
/// a shared page"): `load_unaligned_zeropad()` or a speculative access through it kills the TD.
struct OrderWatcher<'a> {
    table: TableMapper,
    tdx: &'a TdxModule,
    private_mapping_of: Vec<(u64, PageState)>,
}

impl SharedBitMapper for OrderWatcher<'_> {
    unsafe fn set_shared(&mut self, va: u64, len: u64, shared: bool) -> Result<(), MapperError> {
        if !shared {
            for page in (va..va + len).step_by(K4 as usize) {
                let state = self.tdx.page_state(page - DIRECT_MAP);
                if state != PageState::Private {
                    self.private_mapping_of.push((page - DIRECT_MAP, state));
                }
            }
        }
        // SAFETY: forwarded; the table is plain bookkeeping.
        unsafe { self.table.set_shared(va, len, shared) }
    }

    fn flush(&mut self, va: u64, len: u64) {
        self.table.flush(va, len);
    }
}

#[test]
fn shared_to_private_converts_and_accepts_before_the_mapping_turns_private() {
    let (tdx, shared_mask) = td(0, 4 * M2, PageState::Private);
    let cpu = tdx.vcpu(0);
    let (gpa, len) = (M2, M2 + 3 * K4);
    let mut watcher = OrderWatcher {
        table: TableMapper::mapping(gpa, len),
        tdx: &tdx,
        private_mapping_of: Vec::new(),
    };
    // SAFETY: nothing uses the model's memory.
    unsafe { make_shared(&cpu, &mut watcher, shared_mask, range(gpa, len)) }.unwrap();
    assert!(watcher.table.all(true));
    assert_eq!(states(&tdx, gpa, len), [PageState::Shared]);
    let flushes = watcher.table.flushed.len();
    // SAFETY: as above.
    unsafe { make_private(&cpu, &mut watcher, shared_mask, range(gpa, len)) }.unwrap();
    assert!(
        watcher.private_mapping_of.is_empty(),
        "{} pages mapped private before the module held them private, the first {:x?}",
        watcher.private_mapping_of.len(),
        watcher.private_mapping_of.first()
    );
    assert!(watcher.table.all(false));
    assert_eq!(states(&tdx, gpa, len), [PageState::Private]);
    assert!(
        watcher
            .table
            .flushed_since(flushes, DIRECT_MAP + gpa, DIRECT_MAP + gpa + len)
    );
}

#[test]
fn a_mapper_failing_after_the_accept_leaves_a_private_range_partly_mapped_shared() {
    let (tdx, shared_mask) = td(0, 4 * M2, PageState::Shared);
    let cpu = tdx.vcpu(0);
    let va = DIRECT_MAP;
    let mut mapper = TableMapper::mapping(0, 16 * K4);
    for s in mapper.shared.values_mut() {
        *s = true;
    }
    mapper.fail_on.push((va + 5 * K4, false));
    // SAFETY: nothing uses the model's memory.
    let err =
        unsafe { make_private(&cpu, &mut mapper, shared_mask, range(0, 16 * K4)) }.unwrap_err();
    assert_eq!(
        err.state,
        RangeState::PrivateMappedPartly {
            mapped_private_upto: va + 5 * K4
        }
    );
    assert!(matches!(err.cause, ConvertCause::Mapper(MapperError { done, .. }) if done == 5 * K4));
    // What the state claims: all private and accepted, pages 0..5 mapped private, the rest
    // still shared, the changed part flushed.
    assert_eq!(states(&tdx, 0, 16 * K4), [PageState::Private]);
    let private: Vec<u64> = mapper
        .shared
        .iter()
        .filter(|e| !*e.1)
        .map(|e| (e.0 - va) / K4)
        .collect();
    assert_eq!(private, [0, 1, 2, 3, 4]);
    assert!(mapper.flushed_since(0, va, va + 5 * K4));
}
