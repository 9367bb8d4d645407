#![no_main]
//! UEFI memory map reader: arbitrary buffers, strides and versions never panic, and whatever is
//! accepted yields a sanitized map in which every descriptor is covered by kinds at least as
//! restrictive as its own.

use libfuzzer_sys::fuzz_target;
use tdx_boot::e820::{MemoryMap, UefiMemoryMap};
use tdx_boot_fuzz::{assert_covered, assert_sanitized};

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
