//! Unaccepted memory: lazy acceptance on first use, then the rest in parallel on every CPU.
//!
//! The unaccepted regions of the memory map go into tdx-boot's `UnacceptedBitmap` (2 MiB
//! units). The kernel first takes a buffer out of unaccepted memory the way an allocator would
//! (`ensure_accepted`, which also accepts the guard unit after it), then runs one `AcceptJob`
//! over the bitmap on the BSP and every woken AP, each taking work items from the job's cursor.

use crate::platform::Platform;
use crate::{check, kprintln};
use crate::{smp, tsc};
use alloc::vec::Vec;
use core::sync::atomic::AtomicU64;
use spin::Mutex;
use tdx_boot::accept::{
    AcceptError, AcceptJob, CpuShare, DEFAULT_UNIT_SIZE, ItemSizing, UnacceptedBitmap,
};
use tdx_boot::e820::MemoryMap;
use tdx_boot::tdcall::Hardware;

/// The bitmap over the map's unaccepted memory.
pub struct Lazy {
    pub bitmap: &'static UnacceptedBitmap<'static>,
    pub ranges: Vec<(u64, u64)>,
}

/// Builds the bitmap from the map's unaccepted regions; `None` if there are none.
///
/// # Safety
///
/// The map's unaccepted regions are what the firmware reported unaccepted (or, on the model,
/// conventional memory the kernel does not use), not accepted or used since, and nothing uses
/// them until the bitmap has accepted them: `UnacceptedBitmap::from_ranges`'s contract.
pub unsafe fn bitmap<const N: usize>(
    map: &MemoryMap<N>,
) -> Option<Result<Lazy, tdx_boot::accept::BitmapError>> {
    let ranges: Vec<(u64, u64)> = map.unaccepted_ranges().map(|r| (r.start, r.end)).collect();
    let base = ranges.first()?.0 & !(DEFAULT_UNIT_SIZE - 1);
    let end = ranges.last()?.1;
    let words = UnacceptedBitmap::words_needed(base, end, DEFAULT_UNIT_SIZE);
    let storage: &'static mut [AtomicU64] = (0..words)
        .map(|_| AtomicU64::new(0))
        .collect::<Vec<_>>()
        .leak();
    // SAFETY: forwarded: the caller promises the ranges meet the contract.
    let bitmap = unsafe {
        UnacceptedBitmap::from_ranges(
            &Hardware,
            storage,
            base,
            DEFAULT_UNIT_SIZE,
            ranges.iter().copied(),
        )
    };
    Some(bitmap.map(|bitmap| Lazy {
        bitmap: alloc::boxed::Box::leak(alloc::boxed::Box::new(bitmap)),
        ranges,
    }))
}

/// What the parallel run did.
pub struct Parallel {
    /// (CPU index, APIC ID, share), by CPU index.
    pub shares: Vec<(u32, u32, CpuShare)>,
    pub result: Result<(), u64>,
    pub first_error: Option<AcceptError>,
    pub ms: u64,
}

/// Accepts everything still unaccepted in `lazy`, on every online CPU.
pub fn accept_rest_in_parallel(lazy: &Lazy) -> Parallel {
    let cpus = smp::online_aps() + 1;
    let job = match AcceptJob::over_bitmap(lazy.bitmap, ItemSizing::Guided { cpus }) {
        Ok(job) => job,
        Err(e) => {
            return Parallel {
                shares: Vec::new(),
                result: Err(0),
                first_error: Some(e),
                ms: 0,
            };
        }
    };
    let shares = Mutex::new(Vec::new());
    let errors = Mutex::new(None);
    let start = tsc::now();
    smp::run_on_all(&|cpu| match job.run(&Hardware) {
        Ok(share) => {
            let apic_id = crate::percpu::current().map_or(0, |c| c.apic_id);
            shares.lock().push((cpu, apic_id, share));
        }
        Err(e) => *errors.lock() = Some(e),
    });
    let result = job.wait();
    let ms = tsc::ms(tsc::now() - start);
    let mut shares = shares.into_inner();
    shares.sort_by_key(|(cpu, _, _)| *cpu);
    Parallel {
        shares,
        result,
        first_error: errors.into_inner(),
        ms,
    }
}

/// Takes 16 MiB out of unaccepted memory the way an allocator would: accepted on first use.
pub fn check_lazy(platform: &Platform, lazy: &Lazy) {
    const TAKE: u64 = 16 << 20;
    let Some(&(start, end)) = lazy.ranges.iter().find(|(s, e)| e - s > TAKE + (2 << 20)) else {
        return kprintln!("mini-kernel: lazy acceptance: no unaccepted range above 18 MiB");
    };
    let before = lazy.bitmap.unaccepted_bytes();
    let begin = tsc::now();
    let result = lazy.bitmap.ensure_accepted(&Hardware, start, start + TAKE);
    let ms = tsc::ms(tsc::now() - begin);
    let accepted = before - lazy.bitmap.unaccepted_bytes();
    // SAFETY: the range was just accepted (private, zeroed by the module) and is unused.
    let zeroed = unsafe { core::slice::from_raw_parts(start as *const u64, (TAKE / 8) as usize) }
        .iter()
        .all(|&w| w == 0);
    let states_ok = match platform {
        Platform::Model(module) => {
            module.page_state(start) == tdx_boot::model::PageState::Private
                && module.page_state(start + TAKE) == tdx_boot::model::PageState::Private
                && module.page_state(start + TAKE + (2 << 20))
                    == tdx_boot::model::PageState::Unaccepted
        }
        Platform::Td => true,
    };
    check!(
        "lazy acceptance",
        result.is_ok() && accepted == TAKE + (2 << 20) && zeroed && states_ok && end > start,
        "ensure_accepted({start:#x}..{:#x}) accepted {} MiB (with the 2 MiB guard unit) in {ms} ms, \
         zeroed; {} MiB still unaccepted",
        start + TAKE,
        accepted >> 20,
        lazy.bitmap.unaccepted_bytes() >> 20
    );
}

/// The rest of unaccepted memory, split across every CPU.
pub fn check_parallel<const N: usize>(
    platform: &Platform,
    lazy: &Lazy,
    map: &mut tdx_boot::e820::MemoryMap<N>,
) {
    let before = lazy.bitmap.unaccepted_bytes();
    let accept_calls = |platform: &Platform| match platform {
        Platform::Model(module) => module.tdcall_count(tdx_boot::tdcall::leaf::MEM_PAGE_ACCEPT),
        Platform::Td => 0,
    };
    let calls_before = accept_calls(platform);
    let run = accept_rest_in_parallel(lazy);
    for (cpu, apic_id, share) in &run.shares {
        kprintln!(
            "    CPU {cpu} (APIC ID {apic_id}): {} MiB in {} work items",
            share.bytes >> 20,
            share.items
        );
    }
    let total: u64 = run.shares.iter().map(|(_, _, s)| s.bytes).sum();
    let busy_cpus = run.shares.iter().filter(|(_, _, s)| s.bytes > 0).count();
    for &(start, end) in &lazy.ranges {
        let _ = map.mark_accepted(start, end);
    }
    let none_left = match platform {
        Platform::Model(module) => lazy.ranges.iter().all(|&(s, e)| {
            module
                .page_runs(s, e)
                .iter()
                .all(|r| r.2 == tdx_boot::model::PageState::Private)
        }),
        Platform::Td => true,
    };
    let rate = ((total >> 20) * 1000).checked_div(run.ms).unwrap_or(0);
    check!(
        "parallel acceptance",
        run.result.is_ok()
            && run.first_error.is_none()
            && total == before
            && lazy.bitmap.unaccepted_bytes() == 0
            && none_left
            && busy_cpus == run.shares.len(),
        "{} MiB on {} CPUs in {} ms ({rate} MiB/s, {} ACCEPT calls), every CPU took a share; \
         map now {} MiB unaccepted{}",
        total >> 20,
        run.shares.len(),
        run.ms,
        accept_calls(platform) - calls_before,
        map.unaccepted_bytes() >> 20,
        run.first_error
            .map(|e| alloc::format!(" (error {e:?})"))
            .unwrap_or_default()
    );
}
