//! End to end: what a TD boot loader hands a Linux-boot-protocol payload (an E820 table plus the
//! EFI unaccepted-memory table) lets the payload rebuild exactly the map the loader had.

use tdx_boot::e820::{
    E820_ENTRY_SIZE, E820_MAX_ENTRIES_ZEROPAGE, E820Type, MemoryMap, Region, RegionKind,
    UNACCEPTED_UNIT_SIZE, UnacceptedAs, UnacceptedBitmap, e820_entries, encode_unaccepted_table,
    read_e820_table, read_uefi_memory_map, unaccepted_table_extent, unaccepted_table_len,
    write_e820_table,
};

const MIB: u64 = 1 << 20;

fn descriptor(out: &mut Vec<u8>, ty: u32, start: u64, bytes: u64) {
    let mut d = [0u8; 48];
    d[0..4].copy_from_slice(&ty.to_le_bytes());
    d[8..16].copy_from_slice(&start.to_le_bytes());
    d[24..32].copy_from_slice(&(bytes / 4096).to_le_bytes());
    d[32..40].copy_from_slice(&0xfu64.to_le_bytes());
    out.extend_from_slice(&d);
}

/// A TDVF-like map: 512 MiB accepted by firmware, the rest unaccepted, one unaccepted range
/// that starts and ends off a 2 MiB boundary, ACPI tables in between.
fn tdvf_map() -> Vec<u8> {
    let mut m = Vec::new();
    descriptor(&mut m, 7, 0x0, 0xa_0000);
    descriptor(&mut m, 4, 0x10_0000, 511 * MIB);
    descriptor(&mut m, 15, 512 * MIB, 1024 * MIB + 0x5000);
    descriptor(&mut m, 9, 1536 * MIB + 0x5000, 0x3000);
    descriptor(&mut m, 15, 1536 * MIB + 0x8000, 500 * MIB - 0x8000);
    descriptor(&mut m, 10, 2036 * MIB, 12 * MIB);
    descriptor(&mut m, 15, 4096 * MIB, 4096 * MIB);
    m
}

#[test]
fn e820_plus_unaccepted_table_rebuild_the_loader_map() {
    let mut map = MemoryMap::<32>::new();
    read_uefi_memory_map(&tdvf_map(), 48, 1, &mut map).unwrap();
    assert_eq!(
        map.unaccepted_bytes(),
        1024 * MIB + 0x5000 + 500 * MIB - 0x8000 + 4096 * MIB
    );

    // Loader: encode the bitmap, accept what it cannot express, record that.
    let len = unaccepted_table_len(&map, UNACCEPTED_UNIT_SIZE).unwrap();
    let mut table = vec![0u8; len];
    let mut eager = Vec::new();
    encode_unaccepted_table(&map, UNACCEPTED_UNIT_SIZE, &mut table, |r| eager.push(r)).unwrap();
    assert_eq!(
        eager,
        [
            1536 * MIB..1536 * MIB + 0x5000,
            1536 * MIB + 0x8000..1538 * MIB,
        ]
    );
    for r in &eager {
        map.mark_accepted(r.start, r.end).unwrap();
    }

    // Loader: the E820 table reports unaccepted memory as RAM, as the EFI stub does.
    let mut zero_page_table = [0u8; E820_MAX_ENTRIES_ZEROPAGE * E820_ENTRY_SIZE];
    let count = write_e820_table(&map, UnacceptedAs::Ram, &mut zero_page_table).unwrap();
    assert!(
        e820_entries(&map, UnacceptedAs::Ram).all(|e| e.entry_type != E820Type::RAM
            || map.region_containing(e.addr).unwrap().kind.is_ram())
    );

    // Payload: E820 first (all RAM usable), then the bitmap narrows it.
    let mut rebuilt = MemoryMap::<32>::new();
    read_e820_table(&zero_page_table[..count * E820_ENTRY_SIZE], &mut rebuilt).unwrap();
    assert_eq!(rebuilt.unaccepted_bytes(), 0);
    UnacceptedBitmap::parse(&table)
        .unwrap()
        .apply_to(&mut rebuilt)
        .unwrap();
    assert_eq!(rebuilt, map);
}

#[test]
fn a_payload_that_cannot_accept_never_sees_unaccepted_memory_as_ram() {
    let mut map = MemoryMap::<32>::new();
    read_uefi_memory_map(&tdvf_map(), 48, 1, &mut map).unwrap();
    let mut out = [0u8; 32 * E820_ENTRY_SIZE];
    let count = write_e820_table(&map, UnacceptedAs::Reserved, &mut out).unwrap();
    let mut payload = MemoryMap::<32>::new();
    read_e820_table(&out[..count * E820_ENTRY_SIZE], &mut payload).unwrap();
    for range in map.unaccepted_ranges() {
        let r: &Region = payload.region_containing(range.start).unwrap();
        assert_eq!(r.kind, RegionKind::Reserved);
        assert!(r.end >= range.end);
    }
    assert_eq!(payload.usable_bytes(), map.usable_bytes());
}

/// The table Linux's EFI stub builds for `-m 67000M` on q35 (2 GiB below 4 GiB, the rest above,
/// all of it above 4 GiB unaccepted): 32476 units of 2 MiB, so a bitmap of 4060 bytes, which is
/// not a multiple of 8, and a 4084-byte table that an 8-byte aligned pool allocation puts across
/// a page boundary (the real report behind Linux's fix for reserving such a table).
#[test]
fn linux_table_for_67000m_crosses_a_page_and_has_an_odd_size() {
    const TOP: u64 = 4096 * MIB + (67000 - 2048) * MIB;
    let mut uefi = Vec::new();
    descriptor(&mut uefi, 7, 0x0, 0xa_0000);
    descriptor(&mut uefi, 7, 0x10_0000, 2047 * MIB);
    descriptor(&mut uefi, 15, 4096 * MIB, TOP - 4096 * MIB);
    let mut map = MemoryMap::<8>::new();
    read_uefi_memory_map(&uefi, 48, 1, &mut map).unwrap();

    let len = unaccepted_table_len(&map, UNACCEPTED_UNIT_SIZE).unwrap();
    assert_eq!(len, 24 + 4060);
    assert_ne!((len - 24) % 8, 0);
    // The pool allocation: 0x18 bytes into a page, as after EFI's pool header.
    let offset = 4096 - 0x18 - 8;
    let mut pages = vec![0u8; 3 * 4096];
    let at = pages.as_ptr().align_offset(4096) + offset;
    encode_unaccepted_table(&map, UNACCEPTED_UNIT_SIZE, &mut pages[at..], |_| {
        panic!("everything is 2 MiB aligned")
    })
    .unwrap();
    let physical = 0x7F00_0000 + offset as u64;
    let extent = unaccepted_table_extent(physical, &pages[at..at + 24]).unwrap();
    assert_eq!(
        extent,
        0x7F00_0000..0x7F00_2000,
        "two pages to reserve and map"
    );
    let bytes = &pages[at..at + len];
    let table = UnacceptedBitmap::parse(bytes).unwrap();
    assert_eq!(table.bitmap().len(), 4060);
    assert_eq!(table.ranges().collect::<Vec<_>>(), vec![4096 * MIB..TOP]);
    // The last byte holds the last 4 units only.
    assert_eq!(table.bitmap()[4059], 0x0f);
    assert!(table.is_unaccepted(TOP - 1));
    assert!(!table.is_unaccepted(TOP));
    let mut rebuilt = MemoryMap::<8>::new();
    read_uefi_memory_map(&uefi, 48, 1, &mut rebuilt).unwrap();
    rebuilt.mark_accepted(0, u64::MAX).unwrap();
    table.apply_to(&mut rebuilt).unwrap();
    assert_eq!(rebuilt, map);
}
