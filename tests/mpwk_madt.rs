//! MADT parsing, the RSDP walker and the mailbox placement check, on realistic and hostile tables.

#[path = "common/acpi.rs"]
mod acpi;

use acpi::*;
use proptest::prelude::*;
use tdx_boot::mpwk::madt::{ENTRY_LOCAL_APIC, ENTRY_LOCAL_X2APIC, ENTRY_MP_WAKEUP};
use tdx_boot::mpwk::{
    Madt, MadtError, MpWakeup, PlacementError, Processor, RsdpError, WakeupUnusable,
    check_mailbox_placement, find_madt, find_table,
};

/// What QEMU + TDVF publish for a 4-vCPU TD: QEMU's MADT (xAPIC entries, IO APIC, overrides,
/// NMI) with TdxDxe's version-0 wakeup entry appended.
fn tdvf_like_madt(mailbox: u64) -> Vec<u8> {
    madt(&[
        local_apic(0, 0, 1),
        local_apic(1, 1, 1),
        local_apic(2, 2, 1),
        local_apic(3, 3, 1),
        io_apic(),
        interrupt_override(0, 2, 0),
        interrupt_override(5, 5, 0xD),
        interrupt_override(9, 9, 0xD),
        interrupt_override(10, 10, 0xD),
        interrupt_override(11, 11, 0xD),
        local_apic_nmi(),
        wakeup(0, 16, mailbox, 0),
    ])
}

#[test]
fn tdvf_layout_yields_enabled_ids_and_mailbox() {
    let bytes = tdvf_like_madt(0x7FF7_E000);
    let madt = Madt::parse(&bytes).expect("valid");
    assert_eq!(madt.apic_ids().collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    assert_eq!(madt.local_apic_address(), 0xFEE0_0000);
    assert_eq!(madt.flags(), 1);
    assert_eq!(
        madt.mailbox(),
        Some(MpWakeup {
            version: 0,
            mailbox_address: 0x7FF7_E000,
            reset_vector: None
        })
    );
    assert_eq!(madt.entries().count(), 12);
}

#[test]
fn version_one_has_reset_vector() {
    let bytes = madt(&[local_apic(0, 0, 1), wakeup(1, 24, 0x1000, 0xDEAD_B000)]);
    let madt = Madt::parse(&bytes).unwrap();
    assert_eq!(
        madt.mailbox(),
        Some(MpWakeup {
            version: 1,
            mailbox_address: 0x1000,
            reset_vector: Some(0xDEAD_B000)
        })
    );
}

/// The wakeup entries real firmware publishes (see the README's table): every one of them has a
/// usable mailbox, and only edk2 2025.08's 24-byte version-1 entry has a reset vector (and TEST).
#[test]
fn every_entry_real_firmware_writes_has_a_usable_mailbox() {
    let cases = [
        // edk2-stable202211..202305 (Debian bookworm's TDVF), td-shim before 2023-09.
        ("edk2 2022.11", 1, 16, None),
        // edk2-stable202311..202505, td-shim since 2023-09.
        ("edk2 2023.11", 0, 16, None),
        // edk2-stable202508 and later.
        ("edk2 2025.08", 1, 24, Some(0x7FF7_D000)),
    ];
    for (firmware, version, length, reset_vector) in cases {
        let bytes = madt(&[
            local_apic(0, 0, 1),
            local_apic(1, 1, 1),
            wakeup(version, length, 0x7FF7_E000, 0x7FF7_D000),
        ]);
        let madt = Madt::parse(&bytes).unwrap();
        let wakeup = madt
            .mailbox()
            .unwrap_or_else(|| panic!("{firmware}: no mailbox"));
        assert_eq!(
            wakeup,
            MpWakeup {
                version,
                mailbox_address: 0x7FF7_E000,
                reset_vector
            },
            "{firmware}"
        );
        assert_eq!(wakeup.supports_test(), reset_vector.is_some(), "{firmware}");
    }
}

/// Linux's rule (`acpi_parse_mp_wake`): the mailbox of any entry of at least 16 bytes, the reset
/// vector only with version >= 1 and length >= 24; a zero reset vector is none.
#[test]
fn the_reset_vector_needs_version_one_and_24_bytes() {
    let cases: [(u16, u8, u64, Option<u64>); 6] = [
        (0, 24, 0x5000, None), // version 0 defines no reset vector, whatever the length
        (1, 16, 0x5000, None),
        (1, 23, 0x5000, None),
        (1, 24, 0x5000, Some(0x5000)),
        (2, 24, 0x5000, Some(0x5000)),
        (1, 24, 0, None),
    ];
    for (version, length, vector, expected) in cases {
        let bytes = madt(&[local_apic(0, 0, 1), wakeup(version, length, 0x2000, vector)]);
        let wakeup = Madt::parse(&bytes).unwrap().mailbox();
        assert_eq!(
            wakeup.map(|w| (w.mailbox_address, w.reset_vector)),
            Some((0x2000, expected)),
            "version {version}, {length} bytes"
        );
        // TEST is edk2 2025.08's command of the version-1 entry; older firmware parks the AP.
        assert_eq!(
            wakeup.is_some_and(|w| w.supports_test()),
            version == 1 && expected.is_some()
        );
    }
}

#[test]
fn unusable_mailboxes() {
    let cases: [(Vec<u8>, WakeupUnusable); 5] = [
        (wakeup(0, 16, 0, 0), WakeupUnusable::NullMailbox),
        (
            wakeup(0, 16, 0x1234, 0),
            WakeupUnusable::MisalignedMailbox(0x1234),
        ),
        (
            wakeup(0, 16, 0x1000_0800, 0),
            WakeupUnusable::MisalignedMailbox(0x1000_0800),
        ),
        (
            wakeup(0, 16, 0xFFFF_FFFF_FFFF_F000, 0),
            WakeupUnusable::MailboxOverflows(0xFFFF_FFFF_FFFF_F000),
        ),
        (wakeup(1, 24, 0, 0x5000), WakeupUnusable::NullMailbox),
    ];
    for (entry, expected) in cases {
        let bytes = madt(&[local_apic(0, 0, 1), entry]);
        let madt = Madt::parse(&bytes).unwrap();
        assert_eq!(madt.wakeup(), Err(expected));
        assert_eq!(madt.mailbox(), None);
    }
    let none = madt(&[local_apic(0, 0, 1)]);
    assert_eq!(
        Madt::parse(&none).unwrap().wakeup(),
        Err(WakeupUnusable::Missing)
    );
    let two = madt(&[wakeup(0, 16, 0x1000, 0), wakeup(0, 16, 0x2000, 0)]);
    assert_eq!(
        Madt::parse(&two).unwrap().wakeup(),
        Err(WakeupUnusable::Duplicate)
    );
}

#[test]
fn longer_wakeup_entries_are_fine() {
    // A future revision may append fields; the length byte says how far to skip.
    let bytes = madt(&[wakeup(1, 32, 0x3000, 0x4000), local_apic(0, 7, 1)]);
    let madt = Madt::parse(&bytes).unwrap();
    assert_eq!(madt.mailbox().unwrap().reset_vector, Some(0x4000));
    assert_eq!(madt.apic_ids().collect::<Vec<_>>(), vec![7]);
}

#[test]
fn x2apic_entries_and_flags() {
    let bytes = madt(&[
        local_apic(0, 0, 1),
        local_apic(1, 1, 0),    // disabled
        local_apic(2, 2, 0b10), // online capable, not enabled
        local_apic(3, 0xFF, 1), // reserved "no processor" ID
        x2apic(300, 1, 4),
        x2apic(301, 0b10, 5),
        x2apic(0xFFFF_FFFF, 1, 6),
        x2apic(0x1_0000, 0b11, 7), // enabled (online-capable bit ignored)
    ]);
    let madt = Madt::parse(&bytes).unwrap();
    assert_eq!(madt.apic_ids().collect::<Vec<_>>(), vec![0, 300, 0x1_0000]);
    let processors: Vec<Processor> = madt.processors().collect();
    assert_eq!(processors.len(), 6);
    assert_eq!(
        processors[2],
        Processor {
            apic_id: 2,
            uid: 2,
            enabled: false,
            online_capable: true,
            x2apic: false
        }
    );
    assert_eq!(
        processors[3],
        Processor {
            apic_id: 300,
            uid: 4,
            enabled: true,
            online_capable: false,
            x2apic: true
        }
    );
    assert!(processors[4].online_capable && !processors[4].enabled);
}

#[test]
fn header_errors() {
    let good = tdvf_like_madt(0x1000);

    let mut bad_sig = good.clone();
    bad_sig[0] = b'X';
    assert_eq!(
        Madt::parse(&bad_sig).unwrap_err(),
        MadtError::BadSignature(*b"XPIC")
    );

    let mut bad_sum = good.clone();
    bad_sum[40] ^= 1;
    assert_eq!(Madt::parse(&bad_sum).unwrap_err(), MadtError::BadChecksum);

    assert!(matches!(
        Madt::parse(&good[..good.len() - 1]),
        Err(MadtError::Truncated { .. })
    ));
    assert!(matches!(
        Madt::parse(&good[..3]),
        Err(MadtError::Truncated { .. })
    ));
    assert!(matches!(Madt::parse(&[]), Err(MadtError::Truncated { .. })));

    let mut short = sdt_header(b"APIC", 3);
    short.extend_from_slice(&[0; 4]);
    let short = finish_table(short);
    assert_eq!(Madt::parse(&short).unwrap_err(), MadtError::BadLength(40));

    // Trailing bytes past the header's length are ignored.
    let mut longer = good.clone();
    longer.extend_from_slice(&[0xAB; 7]);
    assert_eq!(Madt::parse(&longer).unwrap().bytes(), &good[..]);
}

#[test]
fn entry_length_errors() {
    let cases: [(Vec<u8>, u8, u8); 5] = [
        (vec![5, 0], 5, 0),                            // zero length would loop
        (vec![5, 1], 5, 1),                            // below the 2-byte header
        (vec![ENTRY_LOCAL_APIC, 6, 0, 0, 1, 0], 0, 6), // shorter than a local APIC entry
        (vec![ENTRY_LOCAL_X2APIC, 8, 0, 0, 0, 0, 0, 0], 9, 8),
        (
            vec![ENTRY_MP_WAKEUP, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            0x10,
            12,
        ),
    ];
    for (entry, entry_type, length) in cases {
        let bytes = madt(&[local_apic(0, 0, 1), entry]);
        assert_eq!(
            Madt::parse(&bytes).unwrap_err(),
            MadtError::BadEntry {
                offset: 44 + 8,
                entry_type,
                length
            }
        );
    }
    // An entry running past the end of the table.
    let mut overrun = madt(&[local_apic(0, 0, 1), vec![5, 200, 0, 0]]);
    fix_checksum(&mut overrun);
    assert!(matches!(
        Madt::parse(&overrun),
        Err(MadtError::BadEntry {
            offset: 52,
            entry_type: 5,
            length: 200
        })
    ));
    // A lone type byte at the very end (no length byte).
    let lone = madt(&[local_apic(0, 0, 1), vec![5]]);
    assert!(matches!(
        Madt::parse(&lone),
        Err(MadtError::BadEntry {
            offset: 52,
            length: 0,
            ..
        })
    ));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(madt) = Madt::parse(&bytes) {
            let _ = madt.apic_ids().count();
            let _ = madt.mailbox();
        }
    }

    #[test]
    fn arbitrary_entries_in_a_valid_header(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut t = sdt_header(b"APIC", 3);
        t.extend_from_slice(&[0; 8]);
        t.extend_from_slice(&body);
        let t = finish_table(t);
        if let Ok(madt) = Madt::parse(&t) {
            // Every entry lies inside the table and the entries tile it exactly.
            let total: usize = madt.entries().map(|(_, e)| e.len()).sum();
            prop_assert_eq!(total, body.len());
            for processor in madt.processors() {
                prop_assert!(processor.apic_id != 0xFFFF_FFFF);
            }
            if let Some(mailbox) = madt.mailbox() {
                prop_assert!(mailbox.mailbox_address != 0 && mailbox.mailbox_address % 4096 == 0);
                if mailbox.reset_vector.is_some() {
                    prop_assert!(mailbox.version >= 1);
                }
                prop_assert!(!mailbox.supports_test() || mailbox.reset_vector.is_some());
            }
        }
    }
}

// ---- RSDP walker ----

/// Simulated physical memory: (address, bytes) blobs.
struct Memory(Vec<(u64, Vec<u8>)>);

impl Memory {
    fn map(&self, address: u64, length: usize) -> Option<&[u8]> {
        self.0.iter().find_map(|(base, bytes)| {
            let offset = usize::try_from(address.checked_sub(*base)?).ok()?;
            bytes.get(offset..offset.checked_add(length)?)
        })
    }
}

fn rsdp_v2(xsdt: u64, rsdt: u32) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(b"RSD PTR ");
    r.push(0);
    r.extend_from_slice(b"BOCHS ");
    r.push(2);
    r.extend_from_slice(&rsdt.to_le_bytes());
    r.extend_from_slice(&36u32.to_le_bytes());
    r.extend_from_slice(&xsdt.to_le_bytes());
    r.extend_from_slice(&[0; 4]);
    let sum = r[..20].iter().fold(0u8, |s, b| s.wrapping_add(*b));
    r[8] = 0u8.wrapping_sub(sum);
    let sum = r.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    r[32] = 0u8.wrapping_sub(sum);
    r
}

fn rsdp_v1(rsdt: u32) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(b"RSD PTR ");
    r.push(0);
    r.extend_from_slice(b"BOCHS ");
    r.push(0);
    r.extend_from_slice(&rsdt.to_le_bytes());
    let sum = r.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    r[8] = 0u8.wrapping_sub(sum);
    r
}

fn root_table(signature: &[u8; 4], entries: &[u64], wide: bool) -> Vec<u8> {
    let mut t = sdt_header(signature, 1);
    for e in entries {
        if wide {
            t.extend_from_slice(&e.to_le_bytes());
        } else {
            t.extend_from_slice(&(*e as u32).to_le_bytes());
        }
    }
    finish_table(t)
}

fn firmware_memory() -> Memory {
    let facp = finish_table(sdt_header(b"FACP", 6));
    Memory(vec![
        (0xE0000, rsdp_v2(0x10000, 0x20000)),
        (0x10000, root_table(b"XSDT", &[0x30000, 0x40000], true)),
        (0x20000, root_table(b"RSDT", &[0x30000, 0x40000], false)),
        (0x30000, facp),
        (0x40000, tdvf_like_madt(0x7000)),
        (0xF0000, rsdp_v1(0x20000)),
    ])
}

#[test]
fn walker_finds_madt_through_xsdt_and_rsdt() {
    let memory = firmware_memory();
    let madt = find_madt(0xE0000, |a, l| memory.map(a, l)).unwrap();
    assert_eq!(madt.apic_ids().count(), 4);
    assert_eq!(madt.mailbox().unwrap().mailbox_address, 0x7000);
    let madt = find_madt(0xF0000, |a, l| memory.map(a, l)).unwrap();
    assert_eq!(madt.apic_ids().count(), 4);
    let facp = find_table(0xE0000, *b"FACP", |a, l| memory.map(a, l)).unwrap();
    assert_eq!(&facp[..4], b"FACP");
    assert_eq!(
        find_table(0xE0000, *b"HPET", |a, l| memory.map(a, l)),
        Err(RsdpError::NotFound(*b"HPET"))
    );
}

#[test]
fn walker_rejects_bad_structures() {
    let mut memory = firmware_memory();
    // RSDP checksum.
    memory.0[0].1[9] ^= 1;
    assert_eq!(
        find_madt(0xE0000, |a, l| memory.map(a, l)).unwrap_err(),
        RsdpError::BadRsdpChecksum
    );
    let mut memory = firmware_memory();
    // Extended checksum only (byte 33 is reserved, not covered by the first checksum).
    memory.0[0].1[33] ^= 1;
    assert_eq!(
        find_madt(0xE0000, |a, l| memory.map(a, l)).unwrap_err(),
        RsdpError::BadRsdpChecksum
    );
    let memory = firmware_memory();
    assert_eq!(
        find_madt(0x10000, |a, l| memory.map(a, l)).unwrap_err(),
        RsdpError::BadRsdpSignature
    );
    assert_eq!(
        find_madt(0x9_0000, |a, l| memory.map(a, l)).unwrap_err(),
        RsdpError::Unmapped {
            address: 0x9_0000,
            length: 20
        }
    );
    // XSDT that is really an RSDT.
    let mut memory = firmware_memory();
    memory.0[1].1 = root_table(b"RSDT", &[0x40000], true);
    assert_eq!(
        find_madt(0xE0000, |a, l| memory.map(a, l)).unwrap_err(),
        RsdpError::BadRootSignature(*b"RSDT")
    );
    // MADT with a broken checksum is an error, not skipped.
    let mut memory = firmware_memory();
    memory.0[4].1[50] ^= 0x40;
    assert_eq!(
        find_madt(0xE0000, |a, l| memory.map(a, l)).unwrap_err(),
        RsdpError::BadTableChecksum { address: 0x40000 }
    );
    // A table whose length is larger than what is mapped.
    let mut memory = firmware_memory();
    let madt = &mut memory.0[4].1;
    madt[4..8].copy_from_slice(&0x10_0000u32.to_le_bytes());
    assert_eq!(
        find_madt(0xE0000, |a, l| memory.map(a, l)).unwrap_err(),
        RsdpError::Unmapped {
            address: 0x40000,
            length: 0x10_0000
        }
    );
    // A table length below the header size.
    let mut memory = firmware_memory();
    memory.0[1].1[4..8].copy_from_slice(&10u32.to_le_bytes());
    assert_eq!(
        find_madt(0xE0000, |a, l| memory.map(a, l)).unwrap_err(),
        RsdpError::BadTableLength {
            address: 0x10000,
            length: 10
        }
    );
    // An "APIC" table that checksums but is not a valid MADT.
    let mut memory = firmware_memory();
    let mut bogus = madt_with_zero_length_entry();
    fix_checksum(&mut bogus);
    memory.0[4].1 = bogus;
    assert!(matches!(
        find_madt(0xE0000, |a, l| memory.map(a, l)),
        Err(RsdpError::Madt(MadtError::BadEntry { .. }))
    ));
}

fn madt_with_zero_length_entry() -> Vec<u8> {
    madt(&[vec![7, 0]])
}

proptest! {
    #[test]
    fn walker_over_arbitrary_memory_never_panics(
        memory in proptest::collection::vec(any::<u8>(), 0..512),
        rsdp in 0u64..600,
    ) {
        let map = |address: u64, length: usize| -> Option<&[u8]> {
            let start = usize::try_from(address).ok()?;
            memory.get(start..start.checked_add(length)?)
        };
        let _ = find_madt(rsdp, map);
    }
}

// ---- placement ----

#[test]
fn placement_accepts_reserved_and_acpi_nvs() {
    let map = [
        (0, 0x8_0000, false),
        (0x8_0000, 0x10_0000, true),
        (0x10_0000, 0x7FF0_0000, false),
        (0x7FF0_0000, 0x7FF7_F000, true),
        (0x7FF7_F000, 0x8000_0000, true),
    ];
    assert_eq!(check_mailbox_placement(0x9_F000, map), Ok(()));
    // Spans two adjacent firmware regions, given out of order.
    let mut reversed = map;
    reversed.reverse();
    assert_eq!(check_mailbox_placement(0x7FF7_E800, reversed), Ok(()));
}

#[test]
fn placement_rejects_ram_gaps_and_overlaps() {
    let map = [
        (0, 0x8_0000, false),
        (0x8_0000, 0x9_0000, true),
        (0x9_1000, 0xA_0000, true),
    ];
    assert_eq!(
        check_mailbox_placement(0x1000, map),
        Err(PlacementError::OverlapsOtherRegion {
            start: 0,
            end: 0x8_0000
        })
    );
    assert_eq!(
        check_mailbox_placement(0x7_F800, map),
        Err(PlacementError::OverlapsOtherRegion {
            start: 0,
            end: 0x8_0000
        })
    );
    assert_eq!(
        check_mailbox_placement(0x9_0000, map),
        Err(PlacementError::NotCovered(0x9_0000))
    );
    assert_eq!(
        check_mailbox_placement(0x8_F800, map),
        Err(PlacementError::NotCovered(0x9_0000))
    );
    assert_eq!(
        check_mailbox_placement(0x100_0000, map),
        Err(PlacementError::NotCovered(0x100_0000))
    );
    assert_eq!(
        check_mailbox_placement(u64::MAX - 100, map),
        Err(PlacementError::Overflow(u64::MAX - 100))
    );
    // A RAM region declared on top of a reserved one (unsanitized map) wins: reject.
    let overlapping = [(0x8_0000, 0xA_0000, true), (0x8_8000, 0x8_9000, false)];
    assert_eq!(
        check_mailbox_placement(0x8_8000, overlapping),
        Err(PlacementError::OverlapsOtherRegion {
            start: 0x8_8000,
            end: 0x8_9000
        })
    );
    assert_eq!(check_mailbox_placement(0x8_9000, overlapping), Ok(()));
}

#[test]
fn mailbox_must_be_private() {
    use tdx_boot::mpwk::check_mailbox_private;
    assert_eq!(check_mailbox_private(0x7FF7_E000, 48), Ok(()));
    // The last private page below the shared bit (47 for GPAW 48).
    assert_eq!(check_mailbox_private((1 << 47) - 0x1000, 48), Ok(()));
    assert_eq!(
        check_mailbox_private(1 << 47, 48),
        Err(PlacementError::NotPrivate(1 << 47))
    );
    assert_eq!(
        check_mailbox_private((1 << 47) | 0x7FF7_E000, 48),
        Err(PlacementError::NotPrivate((1 << 47) | 0x7FF7_E000))
    );
    assert_eq!(check_mailbox_private(1 << 47, 52), Ok(()));
    assert_eq!(
        check_mailbox_private(1 << 51, 52),
        Err(PlacementError::NotPrivate(1 << 51))
    );
    assert_eq!(
        check_mailbox_private(u64::MAX - 0xFFF, 52),
        Err(PlacementError::Overflow(u64::MAX - 0xFFF))
    );
    // A nonsensical width never lets anything through.
    assert_eq!(
        check_mailbox_private(0x1000, 0),
        Err(PlacementError::NotPrivate(0x1000))
    );
}

#[test]
fn placement_in_a_sanitized_memory_map() {
    use tdx_boot::e820::{MemoryMap, RegionKind};
    use tdx_boot::mpwk::check_mailbox_in_memory_map;
    let mut map = MemoryMap::<8>::new();
    map.insert(0, 0x7F00_0000, RegionKind::Usable).unwrap();
    map.insert(0x7F00_0000, 0x7F00_1000, RegionKind::AcpiNvs)
        .unwrap();
    map.insert(0x7F00_1000, 0x7F00_3000, RegionKind::Reserved)
        .unwrap();
    map.insert(0x7F00_3000, 0x8000_0000, RegionKind::AcpiReclaimable)
        .unwrap();
    // ACPI NVS and reserved pages, alone or straddling both kinds: firmware memory.
    assert_eq!(check_mailbox_in_memory_map(0x7F00_0000, &map), Ok(()));
    assert_eq!(check_mailbox_in_memory_map(0x7F00_0800, &map), Ok(()));
    assert_eq!(check_mailbox_in_memory_map(0x7F00_2000, &map), Ok(()));
    // RAM, reclaimable ACPI memory (the kernel may reuse it) and holes are refused.
    assert_eq!(
        check_mailbox_in_memory_map(0x7EFF_F000, &map),
        Err(PlacementError::OverlapsOtherRegion {
            start: 0,
            end: 0x7F00_0000
        })
    );
    assert_eq!(
        check_mailbox_in_memory_map(0x7F00_3000, &map),
        Err(PlacementError::OverlapsOtherRegion {
            start: 0x7F00_3000,
            end: 0x8000_0000
        })
    );
    assert_eq!(
        check_mailbox_in_memory_map(0x9000_0000, &map),
        Err(PlacementError::NotCovered(0x9000_0000))
    );
}
