//! Acceptance benchmarks; every figure is a ratio against a baseline measured in this run.
//!
//! 1. ACCEPT calls for random memory maps versus the optimum (one call per 2 MiB block, one per
//!    4 KiB page elsewhere): 2 MiB hosts, 4 KiB hosts, mixed.
//! 2. Parallel acceptance throughput with the model zeroing real host memory: all cores versus
//!    one core, versus `memset` bandwidth; the tail imbalance of the job's work items.
//! 3. `ensure_accepted` on memory that needs nothing, versus one relaxed atomic load: with the
//!    whole bitmap accepted (target 1.2x at most) and with a partly accepted bitmap (2x).
//! 4. MapGPA calls versus ceil(size / chunk) for chunking VMMs.
//!
//! Run with `cargo bench --features model --bench accept` (`-- fast_path` for section 3 alone).

use std::hint::black_box;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tdx_boot::accept::{
    AcceptJob, HostMappingGuess, ItemSizing, UnacceptedBitmap, accept_range_with,
};
use tdx_boot::convert::map_gpa_range;
use tdx_boot::model::{HostPageSize, ModelConfig, PageState, TdxModule};
use tdx_boot::tdcall::leaf;

const K4: u64 = 0x1000;
const M2: u64 = 0x20_0000;
const MIB: u64 = 1 << 20;

#[path = "../tests/common/rng.rs"]
mod rng;
use rng::Rng;

fn optimum(start: u64, end: u64, block_at_2m: impl Fn(u64) -> bool) -> u64 {
    let mut calls = 0;
    let mut gpa = start;
    while gpa < end {
        if gpa.is_multiple_of(M2) && end - gpa >= M2 {
            calls += if block_at_2m(gpa) { 1 } else { 512 };
            gpa += M2;
        } else {
            calls += 1;
            gpa += K4;
        }
    }
    calls
}

/// Random maps of unaccepted ranges; returns (calls made, optimum).
fn calls_versus_optimum(host: &str, rng: &mut Rng, maps: u32) -> (u64, u64) {
    let (mut made, mut best) = (0, 0);
    for _ in 0..maps {
        let tdx = TdxModule::new(ModelConfig::default());
        let span = 1 << 30;
        tdx.add_memory(0, span, PageState::Unaccepted);
        let mut blocks_4k = Vec::new();
        match host {
            "4k" => tdx.set_host_page_size(0, span, HostPageSize::Size4K),
            "mixed" => {
                // Runs of 4K-mapped blocks covering about a quarter of the TD.
                for _ in 0..8 {
                    let first = rng.below(span / M2);
                    let len = rng.below(32) + 1;
                    tdx.set_host_page_size(first * M2, (first + len) * M2, HostPageSize::Size4K);
                }
                blocks_4k = (0..span / M2)
                    .filter(|b| tdx.host_maps_4k(b * M2))
                    .collect();
            }
            _ => {}
        }
        let guess = HostMappingGuess::new();
        for _ in 0..16 {
            let start = rng.below(span / K4) * K4;
            let len = rng.below(64 * MIB / K4).max(1) * K4;
            let end = (start + len).min(span);
            // Accept only what is still unaccepted: the optimum assumes pending memory.
            let runs = tdx.page_runs(start, end);
            for (s, e, state) in runs {
                if state != PageState::Unaccepted {
                    continue;
                }
                let before = tdx.tdcall_count(leaf::MEM_PAGE_ACCEPT);
                // SAFETY: unaccepted model memory that nothing uses.
                unsafe { accept_range_with(&tdx.vcpu(0), s, e, &guess) }.expect("accept");
                made += tdx.tdcall_count(leaf::MEM_PAGE_ACCEPT) - before;
                best += optimum(s, e, |b| match host {
                    "4k" => false,
                    "mixed" => blocks_4k.binary_search(&(b / M2)).is_err(),
                    _ => true,
                });
            }
        }
    }
    (made, best)
}

/// CPU time of the calling thread (Linux schedstat), so scaling can be judged on a machine
/// shared with other work: wall time there measures the neighbours too.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// One thread's part of a parallel run.
#[derive(Clone, Copy, Debug)]
struct ThreadRun {
    bytes: u64,
    finished: Duration,
    cpu: Option<Duration>,
}

/// Accepts `bytes` backed by real host memory on `cpus` threads; returns the wall time and each
/// thread's share, finish time and CPU time.
fn parallel_accept(memory: &mut [u8], cpus: u32, sizing: ItemSizing) -> (Duration, Vec<ThreadRun>) {
    let bytes = memory.len() as u64;
    let tdx = TdxModule::new(ModelConfig {
        num_vcpus: cpus,
        ..Default::default()
    });
    // SAFETY: `memory` outlives the model (dropped at the end of this function) and is not
    // touched by anything else meanwhile.
    assert!(unsafe { tdx.add_backing(0, memory.as_mut_ptr(), bytes) });
    tdx.add_memory(0, bytes, PageState::Unaccepted);
    let ranges = [Range {
        start: 0,
        end: bytes,
    }];
    // SAFETY: unaccepted model memory that nothing else touches until the job is done.
    let job = unsafe { AcceptJob::new(&ranges, sizing) }.expect("job");
    let start = Instant::now();
    let shares = std::thread::scope(|s| {
        let handles: Vec<_> = (0..cpus)
            .map(|cpu| {
                let (tdx, job) = (&tdx, &job);
                s.spawn(move || {
                    let cpu_before = thread_cpu_time();
                    let share = job.run(&tdx.vcpu(cpu)).expect("run");
                    ThreadRun {
                        bytes: share.bytes,
                        finished: start.elapsed(),
                        cpu: thread_cpu_time().zip(cpu_before).map(|(a, b)| a - b),
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect::<Vec<_>>()
    });
    let wall = start.elapsed();
    assert_eq!(tdx.accept_stats().accepted_bytes(), bytes);
    (wall, shares)
}

/// Runs a job on `cpus` simulated CPUs, one item at a time on whichever CPU is free first, with
/// time = bytes accepted x the CPU's slowness (1.0 to 1.3: interrupts, SMT siblings, a busy
/// host). Deterministic, so the imbalance the item sizes leave is measured without the noise of
/// a shared machine. Returns (efficiency = ideal makespan / makespan, tail = (makespan - first
/// CPU idle) / makespan, items).
fn simulated_balance(total: u64, cpus: u32, sizing: ItemSizing) -> (f64, f64, u64) {
    let tdx = TdxModule::new(ModelConfig::default());
    tdx.add_memory(0, total, PageState::Unaccepted);
    let ranges = [Range {
        start: 0,
        end: total,
    }];
    // SAFETY: unaccepted model memory that nothing else touches until the job is done.
    let job = unsafe { AcceptJob::new(&ranges, sizing) }.expect("job");
    let slowness: Vec<f64> = (0..cpus)
        .map(|c| 1.0 + 0.3 * f64::from((c * 7919 + 13) % 97) / 96.0)
        .collect();
    let mut free_at = vec![0f64; cpus as usize];
    let mut finished = vec![None::<f64>; cpus as usize];
    let mut items = 0;
    while let Some((cpu, now)) = free_at
        .iter()
        .enumerate()
        .filter(|(c, _)| finished[*c].is_none())
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map(|(c, t)| (c, *t))
    {
        let mut share = tdx_boot::accept::CpuShare::default();
        job.run_for(&tdx.vcpu(0), 1, &mut share).expect("run");
        if share.items == 0 {
            finished[cpu] = Some(now);
        } else {
            items += 1;
            free_at[cpu] = now + share.bytes as f64 * slowness[cpu];
        }
    }
    let makespan = finished.iter().flatten().copied().fold(0.0, f64::max);
    let first_idle = finished.iter().flatten().copied().fold(f64::MAX, f64::min);
    // Every CPU busy to the end: total work spread in proportion to speed.
    let ideal = total as f64 / slowness.iter().map(|s| 1.0 / s).sum::<f64>();
    (ideal / makespan, (makespan - first_idle) / makespan, items)
}

fn best_of<T>(runs: u32, mut f: impl FnMut() -> (Duration, T)) -> (Duration, T) {
    let mut best = f();
    for _ in 1..runs {
        let next = f();
        if next.0 < best.0 {
            best = next;
        }
    }
    best
}

/// The address of query `i` in the fast-path loops: 12 KiB somewhere in units 0..=30 of one of
/// `words` 64 MiB words (so never in unit 31, nor its guard unit).
#[inline(always)]
fn query(i: u64, words: u64) -> u64 {
    let word = (i * 7919) % words;
    word * 64 * MIB + (i * 0x5_3000) % (60 * MIB)
}

/// Nanoseconds per iteration of `body` over `iterations` queries, best of `runs`.
fn per_call(runs: u32, iterations: u64, mut body: impl FnMut(u64)) -> f64 {
    let (best, ()) = best_of(runs, || {
        let t = Instant::now();
        for i in 0..iterations {
            body(i);
        }
        (t.elapsed(), ())
    });
    best.as_nanos() as f64 / iterations as f64
}

/// Section 3: `ensure_accepted` when nothing needs accepting, against one relaxed load of an
/// atomic, each loop computing the same addresses. The three loops take turns, best of many
/// short runs, so that load from other work on the machine hits them alike.
fn fast_path() {
    println!("\n== ensure_accepted on accepted memory, versus one relaxed atomic load ==");
    const WORDS: u64 = 1024; // 64 GiB of 2 MiB units
    let tdx = TdxModule::new(ModelConfig::default());
    let cpu = tdx.vcpu(0);
    let storage = |_| AtomicU64::new(0);
    let mut all_words: Vec<AtomicU64> = (0..WORDS).map(storage).collect();
    let all_accepted = UnacceptedBitmap::new(&mut all_words, 0, M2).expect("bitmap");
    // Unit 31 of every word still unaccepted: every word the queries read is non-zero.
    let mut part_words: Vec<AtomicU64> = (0..WORDS).map(storage).collect();
    let partly = UnacceptedBitmap::new(&mut part_words, 0, M2).expect("bitmap");
    for word in 0..WORDS {
        let unit = word * 64 * MIB + 62 * MIB;
        // SAFETY: unbacked model memory that nothing uses; whole units, so no ACCEPT now.
        unsafe { partly.mark_unaccepted(&cpu, unit, unit + M2) }.expect("mark");
    }
    assert_eq!(partly.unaccepted_bytes(), WORDS * M2);
    let flag = AtomicU64::new(0);

    let iterations = 1_000_000u64;
    let mut best = [f64::MAX; 3];
    for _ in 0..15 {
        // The baseline: one relaxed load of one atomic, and a test.
        best[0] = best[0].min(per_call(1, iterations, |i| {
            let start = black_box(query(i, WORDS));
            black_box(flag.load(Ordering::Relaxed) == 0 && start != u64::MAX);
        }));
        best[1] = best[1].min(per_call(1, iterations, |i| {
            let start = black_box(query(i, WORDS));
            let accepted = all_accepted.ensure_accepted(&cpu, start, start + 0x3000);
            black_box(accepted.is_ok());
        }));
        best[2] = best[2].min(per_call(1, iterations, |i| {
            let start = black_box(query(i, WORDS));
            black_box(partly.ensure_accepted(&cpu, start, start + 0x3000).is_ok());
        }));
    }
    let [load, all, part] = best;
    assert_eq!(
        tdx.tdcall_count(leaf::MEM_PAGE_ACCEPT),
        0,
        "accepted memory was accepted"
    );
    assert_eq!(partly.unaccepted_bytes(), WORDS * M2);
    println!("baseline: one relaxed atomic load + test: {load:.2} ns/call");
    println!(
        "ensure_accepted 12 KiB, everything accepted: {all:.2} ns/call: ratio {:.2} (target <= 1.2)",
        all / load
    );
    println!(
        "ensure_accepted 12 KiB, partly accepted bitmap (every word non-zero): {part:.2} ns/call: \
         ratio {:.2} (target <= 2.0)",
        part / load
    );
}

fn gib_per_s(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / time.as_secs_f64() / (1u64 << 30) as f64
}

fn main() {
    // `cargo bench --features model --bench accept -- fast_path` runs section 3 alone.
    if std::env::args().skip(1).any(|a| a == "fast_path") {
        return fast_path();
    }
    println!("== ACCEPT calls versus the optimum (16 random ranges in 1 GiB per map) ==");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for host in ["2m", "4k", "mixed"] {
        let (made, best) = calls_versus_optimum(host, &mut rng, 4);
        println!(
            "host maps {host:>5}: {made:>8} calls, optimum {best:>8}: ratio {:.3}",
            made as f64 / best as f64
        );
    }

    println!("\n== Parallel acceptance, the model zeroing real memory ==");
    let bytes = 512 * MIB;
    let mut memory = vec![1u8; bytes as usize];
    // Baseline: memset bandwidth of one core on the same (already faulted-in) buffer.
    let (memset, ()) = best_of(3, || {
        let t = Instant::now();
        // SAFETY: writes exactly the buffer's bytes.
        unsafe { std::ptr::write_bytes(black_box(memory.as_mut_ptr()), 0, memory.len()) };
        black_box(&memory);
        (t.elapsed(), ())
    });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let (one, one_runs) = best_of(3, || {
        parallel_accept(&mut memory, 1, ItemSizing::Guided { cpus: 1 })
    });
    let (all, shares) = best_of(3, || {
        parallel_accept(&mut memory, cores, ItemSizing::Guided { cpus: cores })
    });
    println!(
        "memset, 1 core      : {:>6.2} GiB/s (baseline)",
        gib_per_s(bytes, memset)
    );
    println!(
        "accept, 1 core      : {:>6.2} GiB/s = {:.3} x memset",
        gib_per_s(bytes, one),
        memset.as_secs_f64() / one.as_secs_f64()
    );
    println!(
        "accept, {cores} cores     : {:>6.2} GiB/s = {:.3} x one core, {:.3} x memset",
        gib_per_s(bytes, all),
        one.as_secs_f64() / all.as_secs_f64(),
        memset.as_secs_f64() / all.as_secs_f64()
    );
    for (cpu, run) in shares.iter().enumerate() {
        println!(
            "  cpu {cpu}: {:>4} MiB ({:.1} %), done at {:.1} % of the run",
            run.bytes / MIB,
            100.0 * run.bytes as f64 / bytes as f64,
            100.0 * run.finished.as_secs_f64() / all.as_secs_f64()
        );
    }
    let cpu_time = |runs: &[ThreadRun]| runs.iter().map(|r| r.cpu).sum::<Option<Duration>>();
    if let (Some(one_cpu), Some(all_cpu)) = (cpu_time(&one_runs), cpu_time(&shares)) {
        println!(
            "CPU time per byte, {cores} cores / 1 core: {:.3} (1.000 = no parallel overhead); \
             CPU the threads got: {:.0} % of {cores} cores",
            all_cpu.as_secs_f64() / one_cpu.as_secs_f64(),
            100.0 * all_cpu.as_secs_f64() / (all.as_secs_f64() * f64::from(cores))
        );
    }
    let imbalance = |runs: &[ThreadRun], wall: Duration| {
        let first = runs.iter().map(|r| r.finished).min().unwrap_or_default();
        (wall - first).as_secs_f64() / wall.as_secs_f64()
    };
    let (fixed_wall, fixed_shares) = best_of(3, || {
        parallel_accept(&mut memory, cores, ItemSizing::Fixed(64 * MIB))
    });
    println!(
        "tail idle (first CPU done -> job done) / run: guided {:.3}, fixed 64 MiB items {:.3}",
        imbalance(&shares, all),
        imbalance(&fixed_shares, fixed_wall)
    );
    drop(memory);
    println!("simulated 64 GiB job on CPUs of unequal speed (efficiency = ideal / makespan):");
    for cpus in [2u32, 8, 32, 128] {
        let total = 64 << 30;
        let sizings = [
            ("guided", ItemSizing::Guided { cpus }),
            ("fixed 64 MiB", ItemSizing::Fixed(64 * MIB)),
            ("fixed 2 MiB", ItemSizing::Fixed(2 * MIB)),
        ];
        let line: Vec<String> = sizings
            .iter()
            .map(|(name, sizing)| {
                let (efficiency, tail, items) = simulated_balance(total, cpus, *sizing);
                format!("{name}: {efficiency:.4} ({items} items, tail {tail:.4})")
            })
            .collect();
        println!("  {cpus:>3} cpus: {}", line.join("; "));
    }

    fast_path();

    println!("\n== MapGPA calls versus ceil(size / chunk) ==");
    for (chunk, size) in [
        (2 * MIB, 256 * MIB + 4 * K4),
        (64 * MIB, 1 << 30),
        (0, 1 << 30),
    ] {
        let tdx = TdxModule::new(ModelConfig {
            map_gpa_chunk: chunk,
            ..Default::default()
        });
        tdx.add_memory(0, size, PageState::Private);
        let shared = tdx.shared_bit();
        // SAFETY: the model's memory is unbacked and unused.
        unsafe { map_gpa_range(&tdx.vcpu(0), 0, size, true, shared) }.expect("map");
        let calls = tdx.vmcall_count(tdx_boot::tdcall::vmcall::function::MAP_GPA);
        let ideal = if chunk == 0 { 1 } else { size.div_ceil(chunk) };
        println!(
            "chunk {:>3} MiB, {:>5} MiB: {calls:>4} calls, ceil(size/chunk) {ideal:>4}: ratio {:.3}",
            chunk / MIB,
            size / MIB,
            calls as f64 / ideal as f64
        );
    }
}
