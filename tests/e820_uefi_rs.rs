//! The `uefi` feature: e820 reads the memory map in the form uefi-rs hands a kernel, in place.
//!
//! The map is OVMF-shaped (48-byte stride, unsorted, runtime ranges, unaccepted memory); uefi-rs's
//! own view of it (`MemoryMap::entries`, the `uefi_raw` descriptors) is the independent reader
//! tdx-boot must agree with.
#![cfg(feature = "uefi")]

use tdx_boot::e820::{
    self, MEMORY_RUNTIME, MemoryMap, Region, RegionKind, UefiMapError, UefiMemoryMap,
    UefiMemoryType,
};
use uefi::mem::memory_map::{MemoryMap as _, MemoryMapKey, MemoryMapMeta, MemoryMapRef};

const STRIDE: usize = 48;

/// An 8-byte aligned buffer (uefi-rs insists, as firmware's pool allocations are).
struct Buffer(Vec<u64>);

impl Buffer {
    fn bytes(&self) -> &[u8] {
        // SAFETY: a `u64` slice viewed as its bytes.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast(), self.0.len() * 8) }
    }
}

fn descriptors(entries: &[(u32, u64, u64, u64)], trailing_garbage: usize) -> Buffer {
    let mut words = Vec::new();
    for &(memory_type, start, pages, attribute) in entries {
        words.extend([
            u64::from(memory_type),
            start,
            0,
            pages,
            attribute,
            0xdead_beef_dead_beef, // the padding past the v1 fields must be ignored
        ]);
    }
    words.extend(std::iter::repeat_n(
        0x0707_0707_0707_0707,
        trailing_garbage / 8,
    ));
    Buffer(words)
}

const WB: u64 = 0xf;

fn ovmf_like() -> Vec<(u32, u64, u64, u64)> {
    vec![
        (3, 0x0, 1, WB),
        (7, 0x1000, 0x9f, WB),
        (7, 0x10_0000, 0x700, WB),
        (10, 0x80_0000, 0x8, WB),
        (2, 0x90_0000, 0x1000, WB),
        (1, 0x190_0000, 0x400, WB),
        (7, 0x1d0_0000, 0x1_e330, WB),
        (15, 0x2000_0000, 0x5_f8ee, WB),
        (9, 0x7f8e_e000, 0x10, WB),
        (10, 0x7f8f_e000, 0x80, WB),
        (6, 0x7f97_e000, 0x100, WB | MEMORY_RUNTIME),
        (11, 0xffc0_0000, 0x400, 1 | MEMORY_RUNTIME),
    ]
}

fn meta(entries: usize, desc_version: u32) -> MemoryMapMeta {
    MemoryMapMeta {
        map_size: entries * STRIDE,
        desc_size: STRIDE,
        map_key: MemoryMapKey::default(),
        desc_version,
    }
}

/// uefi-rs's reading of the same map, through tdx-boot's type table only.
fn as_uefi_rs_reads(uefi_map: &MemoryMapRef<'_>) -> Vec<Region> {
    let mut map = MemoryMap::<64>::new();
    for d in uefi_map.entries() {
        let kind = e820::uefi_kind(UefiMemoryType(d.ty.0), d.att.bits());
        map.insert(d.phys_start, d.phys_start + d.page_count * 4096, kind)
            .expect("fits");
    }
    map.regions().to_vec()
}

#[test]
fn a_uefi_rs_map_is_read_in_place_as_uefi_rs_itself_reads_it() {
    let entries = ovmf_like();
    // A MemoryMapRef in a buffer larger than the map: only `map_size` bytes are descriptors.
    let buffer = descriptors(&entries, 4 * STRIDE);
    let uefi_map = MemoryMapRef::new(buffer.bytes(), meta(entries.len(), 1)).expect("valid meta");

    let view = UefiMemoryMap::from_uefi_rs(&uefi_map).expect("valid");
    assert_eq!(view.len(), entries.len());
    let ours: Vec<_> = view.descriptors().collect();
    for (ours, theirs) in ours.iter().zip(uefi_map.entries()) {
        assert_eq!(ours.memory_type.0, theirs.ty.0);
        assert_eq!(ours.physical_start, theirs.phys_start);
        assert_eq!(ours.number_of_pages, theirs.page_count);
        assert_eq!(ours.attribute, theirs.att.bits());
    }

    let mut map = MemoryMap::<64>::new();
    e820::read_uefi_rs_memory_map(&uefi_map, &mut map).expect("valid");
    assert_eq!(map.regions(), as_uefi_rs_reads(&uefi_map));
    // The same bytes through the plain reader give the same map.
    let mut plain = MemoryMap::<64>::new();
    e820::read_uefi_memory_map(
        &buffer.bytes()[..entries.len() * STRIDE],
        STRIDE,
        1,
        &mut plain,
    )
    .expect("valid");
    assert_eq!(map.regions(), plain.regions());
    assert_eq!(map.unaccepted_bytes(), 0x5_f8ee * 4096);
    assert!(
        map.regions()
            .iter()
            .any(|r| r.start == 0x7f97_e000 && r.kind == RegionKind::Reserved),
        "runtime data stays reserved"
    );
}

#[test]
fn what_uefi_rs_does_not_check_is_refused() {
    // uefi-rs accepts any descriptor version and any start; tdx-boot does not.
    let entries = ovmf_like();
    let buffer = descriptors(&entries, 0);
    let v2 = MemoryMapRef::new(buffer.bytes(), meta(entries.len(), 2)).expect("uefi-rs takes it");
    assert_eq!(
        UefiMemoryMap::from_uefi_rs(&v2).unwrap_err(),
        UefiMapError::UnsupportedVersion(2)
    );

    let mut hostile = ovmf_like();
    hostile[3].1 = 0x80_0800; // not page aligned
    hostile.push((7, u64::MAX - 0xfff, 2, WB)); // wraps
    let buffer = descriptors(&hostile, 0);
    let uefi_map =
        MemoryMapRef::new(buffer.bytes(), meta(hostile.len(), 1)).expect("uefi-rs takes it");
    let mut map = MemoryMap::<64>::new();
    assert_eq!(
        e820::read_uefi_rs_memory_map(&uefi_map, &mut map).unwrap_err(),
        UefiMapError::MisalignedStart { index: 3 }
    );
    assert!(
        map.regions().is_empty(),
        "nothing inserted on a format error"
    );

    hostile[3].1 = 0x80_0000;
    let buffer = descriptors(&hostile, 0);
    let uefi_map =
        MemoryMapRef::new(buffer.bytes(), meta(hostile.len(), 1)).expect("uefi-rs takes it");
    assert_eq!(
        UefiMemoryMap::from_uefi_rs(&uefi_map).unwrap_err(),
        UefiMapError::RangeOverflow {
            index: hostile.len() - 1
        }
    );
}
