//! Hostile input for every reader, on stable (the fuzz targets go deeper): arbitrary bytes,
//! and well-formed structures with arbitrary field values, never panic and never produce an
//! unsanitized map; every accepted range is covered by a kind at least as restrictive.

use proptest::prelude::*;
use tdx_boot::e820::{
    E820_ENTRY_SIZE, E820Entry, E820Type, HobList, MemoryMap, Region, RegionKind, UefiMemoryMap,
    UnacceptedBitmap, e820_kind, read_e820_table, read_td_hob, read_uefi_memory_map,
};

fn assert_sanitized(regions: &[Region]) -> Result<(), TestCaseError> {
    for r in regions {
        prop_assert!(r.start < r.end, "empty {:?}", r);
    }
    for w in regions.windows(2) {
        prop_assert!(w[0].end <= w[1].start, "unsorted/overlapping {:?}", w);
        prop_assert!(
            w[0].end < w[1].start || w[0].kind != w[1].kind,
            "unmerged {:?}",
            w
        );
    }
    Ok(())
}

fn assert_covered(
    regions: &[Region],
    start: u64,
    end: u64,
    kind: RegionKind,
) -> Result<(), TestCaseError> {
    let mut covered = 0u64;
    for r in regions.iter().filter(|r| r.start < end && r.end > start) {
        prop_assert!(
            r.kind.precedence() >= kind.precedence(),
            "{:?} weakened {:?}",
            r,
            kind
        );
        covered += r.end.min(end) - r.start.max(start);
    }
    prop_assert_eq!(covered, end - start);
    Ok(())
}

/// Addresses that mix small, page-aligned, and near-the-top values.
fn address() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..0x10_0000,
        (0u64..0x4_0000).prop_map(|p| p << 12),
        (0u64..0x1000).prop_map(|x| u64::MAX - x),
        any::<u64>(),
    ]
}

fn uefi_descriptor() -> impl Strategy<Value = [u8; 48]> {
    (
        0u32..20,
        address(),
        prop_oneof![0u64..0x1000, any::<u64>()],
        any::<u64>(),
    )
        .prop_map(|(ty, start, pages, attribute)| {
            let mut d = [0u8; 48];
            d[0..4].copy_from_slice(&ty.to_le_bytes());
            d[8..16].copy_from_slice(&(start & !0xfff).to_le_bytes());
            d[24..32].copy_from_slice(&pages.to_le_bytes());
            d[32..40].copy_from_slice(&attribute.to_le_bytes());
            d
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn uefi_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600), size in 0usize..100) {
        let mut map = MemoryMap::<16>::new();
        let _ = read_uefi_memory_map(&bytes, size, 1, &mut map);
        assert_sanitized(map.regions())?;
    }

    #[test]
    fn uefi_structured(descriptors in proptest::collection::vec(uefi_descriptor(), 0..40)) {
        let bytes: Vec<u8> = descriptors.concat();
        let mut map = MemoryMap::<128>::new();
        let result = read_uefi_memory_map(&bytes, 48, 1, &mut map);
        assert_sanitized(map.regions())?;
        if result.is_ok() {
            for d in UefiMemoryMap::new(&bytes, 48, 1).unwrap().descriptors() {
                let end = d.physical_end().unwrap();
                if end > d.physical_start {
                    assert_covered(map.regions(), d.physical_start, end, d.kind())?;
                }
            }
        } else {
            // Overflowing descriptors are refused before anything is inserted.
            prop_assert!(map.is_empty());
        }
    }

    #[test]
    fn e820_structured(entries in proptest::collection::vec((address(), address(), 0u32..14), 0..40)) {
        let bytes: Vec<u8> = entries
            .iter()
            .flat_map(|&(addr, size, t)| E820Entry { addr, size: size >> (addr % 64), entry_type: E820Type(t) }.encode())
            .collect();
        let mut map = MemoryMap::<128>::new();
        if read_e820_table(&bytes, &mut map).is_ok() {
            for e in bytes.chunks_exact(E820_ENTRY_SIZE).filter_map(E820Entry::decode) {
                if e.size != 0 {
                    assert_covered(map.regions(), e.addr, e.addr + e.size, e820_kind(e.entry_type))?;
                }
            }
        } else {
            prop_assert!(map.is_empty());
        }
        assert_sanitized(map.regions())?;
    }

    #[test]
    fn hob_arbitrary_after_a_valid_handoff(tail in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut bytes = vec![0u8; 56];
        bytes[0] = 1;
        bytes[2] = 56;
        bytes.extend_from_slice(&tail);
        let mut map = MemoryMap::<16>::new();
        if let Ok(list) = read_td_hob(&bytes, &mut map) {
            prop_assert!(list.as_bytes().len() <= bytes.len());
            let _ = list.iter().count();
        }
        assert_sanitized(map.regions())?;
    }

    #[test]
    fn hob_structured(resources in proptest::collection::vec((0u32..10, address(), address()), 0..30)) {
        let mut bytes = vec![0u8; 56];
        bytes[0] = 1;
        bytes[2] = 56;
        for &(ty, start, length) in &resources {
            bytes.extend_from_slice(&3u16.to_le_bytes());
            bytes.extend_from_slice(&48u16.to_le_bytes());
            bytes.extend_from_slice(&[0; 20]);
            bytes.extend_from_slice(&ty.to_le_bytes());
            bytes.extend_from_slice(&0u32.to_le_bytes());
            bytes.extend_from_slice(&start.to_le_bytes());
            bytes.extend_from_slice(&(length >> (start % 64)).to_le_bytes());
        }
        bytes.extend_from_slice(&[0xff, 0xff, 8, 0, 0, 0, 0, 0]);
        let mut map = MemoryMap::<128>::new();
        match read_td_hob(&bytes, &mut map) {
            Ok(list) => {
                for r in list.resource_descriptors() {
                    if let (Some(kind), true) = (r.kind(), r.length != 0) {
                        assert_covered(map.regions(), r.start, r.start + r.length, kind)?;
                    }
                }
                prop_assert_eq!(list.resource_descriptors().count(), resources.len());
            }
            Err(_) => prop_assert!(map.is_empty()),
        }
        assert_sanitized(map.regions())?;
        prop_assert!(HobList::parse(&bytes[..bytes.len() - 8]).is_err());
    }

    #[test]
    fn unaccepted_bitmap_arbitrary(bytes in proptest::collection::vec(any::<u8>(), 0..200), unit_shift in 12u32..32, base in address()) {
        let mut table = Vec::new();
        table.extend_from_slice(&1u32.to_le_bytes());
        table.extend_from_slice(&(1u32 << unit_shift).to_le_bytes());
        table.extend_from_slice(&base.to_le_bytes());
        table.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        table.extend_from_slice(&bytes);
        let _ = UnacceptedBitmap::parse(&bytes);
        if let Ok(parsed) = UnacceptedBitmap::parse(&table) {
            let set_bits: u64 = bytes.iter().map(|b| u64::from(b.count_ones())).sum();
            let covered: u64 = parsed.ranges().map(|r| r.end - r.start).sum();
            prop_assert_eq!(covered, set_bits << unit_shift);
            let mut map = Box::new(MemoryMap::<2048>::new()); // up to 1600 runs plus gaps
            map.insert(0, u64::MAX, RegionKind::Usable).unwrap();
            parsed.apply_to(&mut map).unwrap();
            assert_sanitized(map.regions())?;
            prop_assert_eq!(map.unaccepted_bytes(), covered);
        }
    }
}
