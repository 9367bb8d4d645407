#![no_main]
//! UEFI memory map reader: arbitrary buffers, strides and versions never panic, and whatever is
//! accepted yields a sanitized map in which every descriptor is covered by kinds at least as
//! restrictive as its own.

use libfuzzer_sys::fuzz_target;
use tdx_boot::e820::{MemoryMap, Region, RegionKind, UefiMemoryMap};

fn assert_sanitized(regions: &[Region]) {
    for r in regions {
        assert!(r.start < r.end, "empty {r:?}");
    }
    for w in regions.windows(2) {
        assert!(w[0].end <= w[1].start, "unsorted/overlapping {w:?}");
        assert!(
            w[0].end < w[1].start || w[0].kind != w[1].kind,
            "unmerged {w:?}"
        );
    }
}

fn assert_covered(regions: &[Region], start: u64, end: u64, kind: RegionKind) {
    let mut covered = 0u64;
    for r in regions.iter().filter(|r| r.start < end && r.end > start) {
        assert!(
            r.kind.precedence() >= kind.precedence(),
            "{r:?} weakened {kind:?}"
        );
        covered += r.end.min(end) - r.start.max(start);
    }
    assert_eq!(covered, end - start, "{start:#x}..{end:#x} not covered");
}

fuzz_target!(|data: &[u8]| {
    let [size_sel, version_sel, buffer @ ..] = data else {
        return;
    };
    let descriptor_size = if size_sel & 0x80 != 0 {
        usize::from(*size_sel & 0x7f)
    } else {
        40 + 8 * usize::from(size_sel % 4)
    };
    let version = if *version_sel < 0xf0 {
        1
    } else {
        u32::from(*version_sel)
    };
    // Half the inputs get 4 KiB-aligned starts so they reach the map instead of the checks.
    let mut owned = buffer.to_vec();
    if version_sel & 1 == 1 && descriptor_size >= 40 {
        for descriptor in owned.chunks_exact_mut(descriptor_size) {
            descriptor[8] = 0;
            descriptor[9] &= 0xf0;
        }
    }
    let Ok(uefi) = UefiMemoryMap::new(&owned, descriptor_size, version) else {
        return;
    };
    let mut map = MemoryMap::<32>::new();
    let result = uefi.read_into(&mut map);
    assert_sanitized(map.regions());
    if result.is_ok() {
        for d in uefi.descriptors() {
            let end = d.physical_end().expect("validated");
            if end > d.physical_start {
                assert_covered(map.regions(), d.physical_start, end, d.kind());
            }
        }
    }
});
