//! Sanitizing a hostile 512-entry memory map (overlapping, unsorted, duplicated entries of every
//! kind) into a `MemoryMap<1024>`, in ns per entry, against two baselines measured in the same
//! run: sorting the raw entries with `sort_unstable` (the least any sanitizer must do) and a
//! naive O(n^2) sanitizer (elementary intervals, strongest kind by linear scan).

use std::hint::black_box;
use std::time::{Duration, Instant};

use tdx_boot::e820::{MemoryMap, Region, RegionKind};

const ENTRIES: usize = 512;
const ROUNDS: usize = 15;

#[derive(Clone, Copy)]
struct Raw {
    start: u64,
    end: u64,
    kind: RegionKind,
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn hostile_map() -> Vec<Raw> {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut raw: Vec<Raw> = Vec::with_capacity(ENTRIES);
    while raw.len() < ENTRIES {
        if raw.len() % 8 == 7 {
            let dup = raw[(rng.next() as usize) % raw.len()];
            raw.push(dup);
            continue;
        }
        let start = (rng.next() % (16 << 30)) & !0xfff;
        let len = ((rng.next() % (256 << 20)) & !0xfff) + 0x1000;
        let kind = match rng.next() % 16 {
            0..=6 => RegionKind::Usable,
            7..=9 => RegionKind::Unaccepted,
            k => RegionKind::ALL_BY_PRECEDENCE[(k as usize - 8) % 8],
        };
        raw.push(Raw {
            start,
            end: start + len,
            kind,
        });
    }
    raw
}

fn sanitize(raw: &[Raw], map: &mut MemoryMap<1024>) {
    map.clear();
    for r in raw {
        map.insert(r.start, r.end, r.kind).expect("fits");
    }
}

fn sort_baseline(raw: &[Raw], scratch: &mut Vec<Raw>) {
    scratch.clear();
    scratch.extend_from_slice(raw);
    scratch.sort_unstable_by_key(|r| (r.start, r.end));
}

fn naive(raw: &[Raw], bounds: &mut Vec<u64>, out: &mut Vec<Region>) {
    bounds.clear();
    out.clear();
    bounds.extend(raw.iter().flat_map(|r| [r.start, r.end]));
    bounds.sort_unstable();
    bounds.dedup();
    for w in bounds.windows(2) {
        let (start, end) = (w[0], w[1]);
        let kind = raw
            .iter()
            .filter(|r| r.start <= start && end <= r.end)
            .map(|r| r.kind)
            .reduce(RegionKind::stronger);
        let Some(kind) = kind else { continue };
        match out.last_mut() {
            Some(last) if last.end == start && last.kind == kind => last.end = end,
            _ => out.push(Region::new(start, end, kind)),
        }
    }
}

/// Median time of one call over `ROUNDS` rounds of `iterations` calls.
fn measure(iterations: usize, mut f: impl FnMut()) -> Duration {
    let mut samples: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iterations {
                f();
            }
            t.elapsed() / iterations as u32
        })
        .collect();
    samples.sort();
    samples[ROUNDS / 2]
}

fn per_entry(d: Duration) -> f64 {
    d.as_nanos() as f64 / ENTRIES as f64
}

fn main() {
    let raw = hostile_map();
    let mut sorted_raw = raw.clone();
    sorted_raw.sort_unstable_by_key(|r| r.start);
    let mut map = Box::new(MemoryMap::<1024>::new());
    let mut scratch = Vec::with_capacity(ENTRIES);
    let mut bounds = Vec::with_capacity(2 * ENTRIES);
    let mut reference = Vec::with_capacity(2 * ENTRIES);

    // Correctness first (not timed): the map equals the naive sanitizer's result.
    sanitize(&raw, &mut map);
    naive(&raw, &mut bounds, &mut reference);
    assert_eq!(
        map.regions(),
        reference.as_slice(),
        "sanitizer disagrees with reference"
    );
    let regions = map.len();

    let t_map = measure(40, || sanitize(black_box(&raw), &mut map));
    let t_map_sorted = measure(40, || sanitize(black_box(&sorted_raw), &mut map));
    let t_sort = measure(400, || sort_baseline(black_box(&raw), &mut scratch));
    let t_naive = measure(3, || naive(black_box(&raw), &mut bounds, &mut reference));
    black_box((&map, &scratch, &reference));

    println!("e820_sanitize: {ENTRIES} hostile entries -> {regions} regions (MemoryMap<1024>)");
    println!(
        "  MemoryMap::insert, hostile order : {:8.1} ns/entry ({:7.1} us total)",
        per_entry(t_map),
        t_map.as_nanos() as f64 / 1e3
    );
    println!(
        "  MemoryMap::insert, sorted input  : {:8.1} ns/entry ({:7.1} us total)",
        per_entry(t_map_sorted),
        t_map_sorted.as_nanos() as f64 / 1e3
    );
    println!(
        "  baseline sort_unstable (copy+sort): {:7.1} ns/entry ({:7.1} us total)",
        per_entry(t_sort),
        t_sort.as_nanos() as f64 / 1e3
    );
    println!(
        "  baseline naive O(n^2) sanitizer  : {:8.1} ns/entry ({:7.1} us total)",
        per_entry(t_naive),
        t_naive.as_nanos() as f64 / 1e3
    );
    println!(
        "  ratio: sanitize / sort = {:.1}x, naive / sanitize = {:.1}x (higher is better for the map)",
        t_map.as_secs_f64() / t_sort.as_secs_f64(),
        t_naive.as_secs_f64() / t_map.as_secs_f64()
    );
}
