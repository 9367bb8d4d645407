//! MRTD of a TDVF-shaped image: `measure_tdvf` (metadata walk, record framing, zero padding)
//! against one SHA-384 over a stream of the same length, measured in this run. The ratio is
//! the cost of tdx-sim's bookkeeping over the hashing the TDX module itself must do.
//!
//! Run with `cargo bench -p tdx-sim --bench mrtd`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha384};
use tdx_sim::mrtd::measure_tdvf;
use tdx_sim::tdvf::TdvfMetadata;

/// Debian's OVMF.fd if installed, else `None` (the benchmark then says so and skips).
fn image() -> Option<Vec<u8>> {
    std::fs::read("/usr/share/ovmf/OVMF.fd").ok()
}

fn best_of(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    let Some(image) = image() else {
        println!("mrtd: SKIPPED (/usr/share/ovmf/OVMF.fd not installed)");
        return;
    };
    let metadata = TdvfMetadata::parse(&image).expect("OVMF.fd has TDVF metadata");
    // The stream the module hashes: 128 bytes per added page, 384 per extended chunk.
    let stream_len: u64 = metadata
        .sections()
        .iter()
        .map(|s| {
            let extend = if s.attributes.mr_extend() {
                16 * 384
            } else {
                0
            };
            s.pages() * (128 + extend)
        })
        .sum();
    let stream = vec![0x5au8; stream_len as usize];
    let baseline = best_of(10, || {
        black_box(Sha384::digest(black_box(&stream)));
    });
    let measured = best_of(10, || {
        black_box(measure_tdvf(black_box(&image), &metadata));
    });
    println!(
        "mrtd: measure_tdvf of OVMF.fd ({} KiB hashed) {:.2} ms, {:.3}x one SHA-384 over the same length ({:.2} ms)",
        stream_len / 1024,
        measured.as_secs_f64() * 1e3,
        measured.as_secs_f64() / baseline.as_secs_f64(),
        baseline.as_secs_f64() * 1e3,
    );
}
