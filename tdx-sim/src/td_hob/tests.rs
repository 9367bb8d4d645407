use proptest::prelude::*;
use std::vec::Vec;

use tdx_boot::e820::{HobList, MemoryMap, Region, RegionKind, read_td_hob};

use super::*;
use crate::tdvf::TdvfMetadata;
use crate::testing::{RawSection, debian_ovmf, tdvf_image};

const GIB: u64 = 1 << 30;
/// A 3 GiB q35 TD: 2 GiB below 4 GiB, 1 GiB above (QEMU's E820 RAM entries).
const E820_RAM: [(u64, u64); 2] = [(0, 2 * GIB), (4 * GIB, GIB)];

/// Debian's TDVF sections (TDVF-FACTS.md), in its metadata order.
const DEBIAN_SECTIONS: [RawSection; 6] = [
    RawSection::new(0x4000, 0x1000, 0xffe2_0000, 0x1000, 0, 1),
    RawSection::new(0, 0x4000, 0xffe0_0000, 0x4000, 1, 0),
    RawSection::new(0, 0, 0x81_0000, 0x1_0000, 3, 0),
    RawSection::new(0, 0, 0x80_b000, 0x2000, 3, 0),
    RawSection::new(0, 0, 0x80_9000, 0x2000, 2, 0),
    RawSection::new(0, 0, 0x80_0000, 0x6000, 3, 0),
];

fn debian_like_ram() -> TdRam<16> {
    let metadata = TdvfMetadata::parse(&tdvf_image(&DEBIAN_SECTIONS).bytes).unwrap();
    TdRam::for_tdvf(E820_RAM, &metadata).unwrap()
}

use RamState::{Added as A, Unaccepted as U};

/// The entries worked out by hand from QEMU's split-and-sort.
const EXPECTED_RAM: [(u64, u64, RamState); 9] = [
    (0, 0x80_0000, U),
    (0x80_0000, 0x6000, A),
    (0x80_6000, 0x3000, U),
    (0x80_9000, 0x2000, A),
    (0x80_b000, 0x2000, A),
    (0x80_d000, 0x3000, U),
    (0x81_0000, 0x1_0000, A),
    (0x82_0000, 2 * GIB - 0x82_0000, U),
    (4 * GIB, GIB, U),
];

#[test]
fn ram_is_split_around_the_accepted_sections_as_qemu_does() {
    let ram = debian_like_ram();
    let got: Vec<_> = ram
        .entries()
        .iter()
        .map(|e| (e.start, e.length, e.state))
        .collect();
    assert_eq!(got, EXPECTED_RAM);
}

#[test]
fn the_real_debian_tdvf_gives_the_same_ram_entries() {
    let Some(image) = debian_ovmf() else { return };
    let metadata = TdvfMetadata::parse(&image).unwrap();
    let ram = TdRam::<16>::for_tdvf(E820_RAM, &metadata).unwrap();
    let got: Vec<_> = ram
        .entries()
        .iter()
        .map(|e| (e.start, e.length, e.state))
        .collect();
    assert_eq!(got, EXPECTED_RAM);
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

#[test]
fn hob_bytes_follow_qemus_layout() {
    let ram = debian_like_ram();
    let mut buf = [0xccu8; 0x2000];
    let len = build_td_hob(&mut buf, 0x80_9000, ram.entries()).unwrap();
    assert_eq!(len, 56 + 9 * 48 + 8);
    // PHIT.
    assert_eq!(
        (u16_at(&buf, 0), u16_at(&buf, 2), u32_at(&buf, 4)),
        (1, 56, 0)
    );
    assert_eq!((u32_at(&buf, 8), u32_at(&buf, 12)), (9, 0));
    for field in 0..4 {
        assert_eq!(u64_at(&buf, 16 + 8 * field), 0, "PHIT memory field {field}");
    }
    assert_eq!(
        u64_at(&buf, 48),
        0x80_9000 + len as u64,
        "EfiEndOfHobList just past the end"
    );
    // Resource descriptors.
    for (i, (start, length, state)) in EXPECTED_RAM.iter().enumerate() {
        let d = &buf[56 + 48 * i..56 + 48 * (i + 1)];
        assert_eq!((u16_at(d, 0), u16_at(d, 2), u32_at(d, 4)), (3, 48, 0));
        assert_eq!(&d[8..24], &[0; 16], "owner GUID zero");
        let resource_type = if *state == A { 0 } else { 7 };
        assert_eq!((u32_at(d, 24), u32_at(d, 28)), (resource_type, 0x7));
        assert_eq!((u64_at(d, 32), u64_at(d, 40)), (*start, *length));
    }
    // End of list, then the buffer untouched.
    assert_eq!(&buf[len - 8..len], &[0xff, 0xff, 8, 0, 0, 0, 0, 0]);
    assert!(buf[len..].iter().all(|&b| b == 0xcc));
}

#[test]
fn hob_parses_with_tdx_boots_reader_into_the_expected_map() {
    let ram = debian_like_ram();
    let mut buf = [0u8; 0x2000];
    let len = build_td_hob(&mut buf, 0x80_9000, ram.entries()).unwrap();
    let mut map = MemoryMap::<16>::new();
    let list = read_td_hob(&buf[..len], &mut map).unwrap();
    assert_eq!(list.as_bytes().len(), len);
    assert_eq!(list.resource_descriptors().count(), 9);
    use RegionKind::{Unaccepted, Usable};
    let r = Region::new;
    assert_eq!(
        map.regions(),
        &[
            r(0, 0x80_0000, Unaccepted),
            r(0x80_0000, 0x80_6000, Usable),
            r(0x80_6000, 0x80_9000, Unaccepted),
            r(0x80_9000, 0x80_d000, Usable),
            r(0x80_d000, 0x81_0000, Unaccepted),
            r(0x81_0000, 0x82_0000, Usable),
            r(0x82_0000, 2 * GIB, Unaccepted),
            r(4 * GIB, 5 * GIB, Unaccepted),
        ]
    );
}

#[test]
fn a_section_too_small_for_the_hob_is_an_error_and_nothing_is_written() {
    let ram = debian_like_ram();
    let needed = td_hob_len(ram.entries().len());
    let mut buf = std::vec![0u8; needed];
    for available in [0, 8, 56, needed - 8, needed - 1] {
        assert_eq!(
            build_td_hob(&mut buf[..available], 0x80_9000, ram.entries()),
            Err(HobBuildError::TooSmall { needed, available })
        );
        assert!(buf.iter().all(|&b| b == 0));
    }
    assert_eq!(build_td_hob(&mut buf, 0x80_9000, ram.entries()), Ok(needed));
    assert_eq!(
        build_td_hob(&mut buf, u64::MAX - 16, ram.entries()),
        Err(HobBuildError::AddressOverflow)
    );
}

#[test]
fn accepting_outside_a_single_ram_entry_fails_as_in_qemu() {
    let mut ram = TdRam::<8>::from_e820_ram(E820_RAM).unwrap();
    // Straddling the end of low RAM, wholly in the hole, wrapping.
    for (start, length) in [
        (2 * GIB - 0x1000, 0x2000),
        (3 * GIB, 0x1000),
        (u64::MAX - 0xfff, 0x2000),
    ] {
        assert_eq!(
            ram.accept(start, length),
            Err(RamError::NotInRam { start, length })
        );
    }
    // Accepting inside an already added range changes nothing.
    ram.accept(0x10_0000, 0x4000).unwrap();
    let before: Vec<RamEntry> = ram.entries().to_vec();
    ram.accept(0x10_1000, 0x1000).unwrap();
    assert_eq!(ram.entries(), &before[..]);
    // Capacity is checked before anything changes.
    let mut tiny = TdRam::<2>::from_e820_ram([(0, GIB)]).unwrap();
    assert_eq!(tiny.accept(0x1000, 0x1000), Err(RamError::Full));
    assert_eq!(
        tiny.entries(),
        &[RamEntry {
            start: 0,
            length: GIB,
            state: U
        }]
    );
}

#[test]
fn bad_e820_ranges_are_refused() {
    for ranges in [
        std::vec![(0, 0)],
        std::vec![(u64::MAX, 2)],
        std::vec![(0, GIB), (GIB / 2, GIB)],
    ] {
        let (start, length) = *ranges.last().unwrap();
        assert_eq!(
            TdRam::<8>::from_e820_ram(ranges).unwrap_err(),
            RamError::BadRange { start, length }
        );
    }
    assert_eq!(
        TdRam::<1>::from_e820_ram(E820_RAM).unwrap_err(),
        RamError::Full
    );
}

proptest! {
    /// Any RAM and any accepted ranges give a HOB tdx-boot parses, covering exactly the RAM,
    /// with exactly the accepted bytes usable.
    #[test]
    fn built_hobs_always_parse_and_preserve_ram(
        low_pages in 1u64..0x800,
        high_pages in 0u64..0x800,
        accepts in proptest::collection::vec((0u64..0x1000, 1u64..8), 0..6),
    ) {
        let mut e820 = std::vec![(0, low_pages * 0x1000)];
        if high_pages > 0 {
            e820.push((0x100_0000, high_pages * 0x1000));
        }
        let mut ram = TdRam::<32>::from_e820_ram(e820.iter().copied()).unwrap();
        let mut accepted = std::collections::BTreeSet::new();
        for (page, pages) in accepts {
            let start = if page % 2 == 0 { page * 0x1000 } else { 0x100_0000 + page * 0x1000 };
            let ok = ram.accept(start, pages * 0x1000).is_ok();
            let inside = e820.iter().any(|&(s, l)| start >= s && start + pages * 0x1000 <= s + l);
            prop_assert!(!ok || inside, "accepted {start:#x}+{pages} pages outside RAM");
        }
        ram.sort();
        for e in ram.entries() {
            if e.state == A {
                for p in 0..e.length / 0x1000 {
                    accepted.insert(e.start + p * 0x1000);
                }
            }
        }
        let mut buf = std::vec![0u8; td_hob_len(ram.entries().len())];
        let len = build_td_hob(&mut buf, 0x80_9000, ram.entries()).unwrap();
        let list = HobList::parse(&buf[..len]).unwrap();
        prop_assert_eq!(list.handoff().end_of_hob_list, 0x80_9000 + len as u64);
        let mut map = MemoryMap::<64>::new();
        list.read_into(&mut map).unwrap();
        let total: u64 = map.regions().iter().map(|r| r.end - r.start).sum();
        prop_assert_eq!(total, e820.iter().map(|&(_, l)| l).sum::<u64>());
        let usable: u64 = map
            .regions()
            .iter()
            .filter(|r| r.kind == RegionKind::Usable)
            .map(|r| r.end - r.start)
            .sum();
        prop_assert_eq!(usable, accepted.len() as u64 * 0x1000);
    }
}
