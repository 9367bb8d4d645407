//! Unaccepted memory: lazy acceptance on first use, then the rest in parallel on every CPU.
//!
//! The unaccepted regions of the memory map go into tdx-boot's `UnacceptedBitmap` (2 MiB
//! units). The kernel first takes a buffer out of unaccepted memory the way an allocator would
//! (`ensure_accepted`, which also accepts the guard unit after it), then runs one `AcceptJob`
//! over the bitmap on the BSP and every woken AP, each taking work items from the job's cursor.

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
pub fn bitmap<const N: usize>(
    map: &MemoryMap<N>,
) -> Option<Result<Lazy, tdx_boot::accept::BitmapError>> {
    let ranges: Vec<(u64, u64)> = map.unaccepted_ranges().map(|r| (r.start, r.end)).collect();
    let base = ranges.first()?.0 & !(DEFAULT_UNIT_SIZE - 1);
    let end = ranges.last()?.1;
    let words = UnacceptedBitmap::words_needed(base, end, DEFAULT_UNIT_SIZE);
    let storage: &'static [AtomicU64] = (0..words)
        .map(|_| AtomicU64::new(0))
        .collect::<Vec<_>>()
        .leak();
    Some(
        UnacceptedBitmap::from_ranges(
            &Hardware,
            storage,
            base,
            DEFAULT_UNIT_SIZE,
            ranges.iter().copied(),
        )
        .map(|bitmap| Lazy {
            bitmap: alloc::boxed::Box::leak(alloc::boxed::Box::new(bitmap)),
            ranges,
        }),
    )
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
