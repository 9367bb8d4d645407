//! ACPI tables built byte by byte for tests: SDT headers, checksums and MADT entries.
#![allow(dead_code)]

use tdx_boot::mpwk::madt::{ENTRY_LOCAL_APIC, ENTRY_LOCAL_X2APIC, ENTRY_MP_WAKEUP};

/// Fixes the checksum byte (offset 9) of a system description table.
pub fn fix_checksum(table: &mut [u8]) {
    table[9] = 0;
    let sum = table.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    table[9] = 0u8.wrapping_sub(sum);
}

/// A 36-byte SDT header with `signature`, length filled in by `finish_table`.
pub fn sdt_header(signature: &[u8; 4], revision: u8) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(signature);
    t.extend_from_slice(&0u32.to_le_bytes()); // length, patched
    t.push(revision);
    t.push(0); // checksum, patched
    t.extend_from_slice(b"BOCHS ");
    t.extend_from_slice(b"BXPC    ");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(b"BXPC");
    t.extend_from_slice(&1u32.to_le_bytes());
    assert_eq!(t.len(), 36);
    t
}

pub fn finish_table(mut t: Vec<u8>) -> Vec<u8> {
    let len = t.len() as u32;
    t[4..8].copy_from_slice(&len.to_le_bytes());
    fix_checksum(&mut t);
    t
}

pub fn local_apic(uid: u8, apic_id: u8, flags: u32) -> Vec<u8> {
    let mut e = vec![ENTRY_LOCAL_APIC, 8, uid, apic_id];
    e.extend_from_slice(&flags.to_le_bytes());
    e
}

pub fn x2apic(apic_id: u32, flags: u32, uid: u32) -> Vec<u8> {
    let mut e = vec![ENTRY_LOCAL_X2APIC, 16, 0, 0];
    e.extend_from_slice(&apic_id.to_le_bytes());
    e.extend_from_slice(&flags.to_le_bytes());
    e.extend_from_slice(&uid.to_le_bytes());
    e
}

pub fn io_apic() -> Vec<u8> {
    let mut e = vec![1, 12, 0, 0];
    e.extend_from_slice(&0xFEC0_0000u32.to_le_bytes());
    e.extend_from_slice(&0u32.to_le_bytes());
    e
}

pub fn interrupt_override(source: u8, gsi: u32, flags: u16) -> Vec<u8> {
    let mut e = vec![2, 10, 0, source];
    e.extend_from_slice(&gsi.to_le_bytes());
    e.extend_from_slice(&flags.to_le_bytes());
    e
}

pub fn local_apic_nmi() -> Vec<u8> {
    vec![4, 6, 0xFF, 0, 0, 1]
}

pub fn wakeup(version: u16, length: u8, mailbox: u64, reset_vector: u64) -> Vec<u8> {
    let mut e = vec![ENTRY_MP_WAKEUP, length];
    e.extend_from_slice(&version.to_le_bytes());
    e.extend_from_slice(&0u32.to_le_bytes());
    e.extend_from_slice(&mailbox.to_le_bytes());
    if length >= 24 {
        e.extend_from_slice(&reset_vector.to_le_bytes());
    }
    e.resize(usize::from(length).max(16), 0);
    e
}

/// A MADT with the given entries after QEMU's fixed part (LAPIC at 0xFEE00000, PCAT_COMPAT).
pub fn madt(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut t = sdt_header(b"APIC", 3);
    t.extend_from_slice(&0xFEE0_0000u32.to_le_bytes());
    t.extend_from_slice(&1u32.to_le_bytes());
    for e in entries {
        t.extend_from_slice(e);
    }
    finish_table(t)
}
