//! The pages TDVF's parked APs run on are held back from the kernel's memory map.

use tdx_boot::e820::{MemoryMap, Region, RegionKind};
use tdx_boot::mpwk::{TDVF_PARKED_AP_PAGE_TABLES, hold_back_parked_ap_memory};

const MIB: u64 = 1 << 20;

/// The low part of the UEFI map Debian's TDVF (edk2 2022.11) hands over: the SEC page tables at
/// 8 MiB lie inside free conventional memory; the mailbox is ACPI NVS further up.
fn debian_tdvf_map() -> MemoryMap<16> {
    let mut map = MemoryMap::new();
    map.insert(0, 0xA_0000, RegionKind::Usable).unwrap();
    map.insert(MIB, 0x7FF7_E000, RegionKind::Usable).unwrap();
    map.insert(0x7FF7_E000, 0x7FF8_0000, RegionKind::AcpiNvs)
        .unwrap();
    map
}

#[test]
fn the_sec_page_tables_leave_the_usable_memory() {
    let mut map = debian_tdvf_map();
    let before = map.usable_bytes();
    hold_back_parked_ap_memory(&mut map).unwrap();
    assert_eq!(TDVF_PARKED_AP_PAGE_TABLES, 0x80_0000..0x80_6000);
    assert_eq!(
        map.region_containing(0x80_0000),
        Some(&Region::new(0x80_0000, 0x80_6000, RegionKind::Reserved))
    );
    assert_eq!(map.usable_bytes(), before - 0x6000);
    // The neighbours are untouched.
    assert_eq!(
        map.region_containing(0x7F_F000).map(|r| r.kind),
        Some(RegionKind::Usable)
    );
    assert_eq!(
        map.region_containing(0x80_6000).map(|r| r.kind),
        Some(RegionKind::Usable)
    );
    assert_eq!(
        map.region_containing(0x7FF7_E000).map(|r| r.kind),
        Some(RegionKind::AcpiNvs)
    );
}

#[test]
fn firmware_reservations_and_gaps_keep_their_kind() {
    // edk2 2024.11 and later reserve the page tables themselves.
    let mut map = debian_tdvf_map();
    map.insert(0x80_0000, 0x80_6000, RegionKind::AcpiNvs)
        .unwrap();
    let before = map.clone();
    hold_back_parked_ap_memory(&mut map).unwrap();
    assert_eq!(map, before);

    // A map with a gap and mixed kinds inside the range: only the RAM becomes reserved.
    let mut map: MemoryMap<16> = MemoryMap::new();
    map.insert(0x7F_0000, 0x80_1000, RegionKind::Usable)
        .unwrap();
    map.insert(0x80_2000, 0x80_3000, RegionKind::AcpiReclaimable)
        .unwrap();
    map.insert(0x80_3000, 0x80_4000, RegionKind::Unaccepted)
        .unwrap();
    map.insert(0x80_5000, 0x90_0000, RegionKind::Usable)
        .unwrap();
    hold_back_parked_ap_memory(&mut map).unwrap();
    let r = Region::new;
    assert_eq!(
        map.regions(),
        &[
            r(0x7F_0000, 0x80_0000, RegionKind::Usable),
            r(0x80_0000, 0x80_1000, RegionKind::Reserved),
            r(0x80_2000, 0x80_3000, RegionKind::AcpiReclaimable),
            r(0x80_3000, 0x80_4000, RegionKind::Reserved),
            r(0x80_5000, 0x80_6000, RegionKind::Reserved),
            r(0x80_6000, 0x90_0000, RegionKind::Usable),
        ]
    );
}

#[test]
fn a_full_map_reports_the_error() {
    let mut map: MemoryMap<3> = MemoryMap::new();
    map.insert(0, 4 * MIB, RegionKind::Usable).unwrap();
    map.insert(5 * MIB, 64 * MIB, RegionKind::Usable).unwrap();
    map.insert(64 * MIB, 65 * MIB, RegionKind::Reserved)
        .unwrap();
    let before = map.clone();
    assert!(hold_back_parked_ap_memory(&mut map).is_err());
    assert_eq!(map, before, "no room: nothing was changed");
}
