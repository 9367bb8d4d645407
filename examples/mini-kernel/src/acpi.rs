//! Finding ACPI tables from the RSDP: the XSDT and the tables it lists (by signature).
//!
//! The tables come from the VMM: every length is bounded, every checksum verified, and a bad
//! table is skipped rather than trusted.

/// A validated ACPI table in memory.
pub struct Table {
    pub address: u64,
    pub bytes: &'static [u8],
}

const RSDP_SIGNATURE: &[u8; 8] = b"RSD PTR ";
/// Tables larger than this are rejected (the MADT of a large machine is a few KiB).
const MAX_TABLE: usize = 1 << 20;

fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)) == 0
}

/// The table at `address`, if its header and checksum are sound.
///
/// # Safety
///
/// `address` is identity-mapped readable memory for the table's stated length (firmware ACPI
/// memory, which stays mapped and unchanged).
unsafe fn table_at(address: u64) -> Option<Table> {
    if address == 0 {
        return None;
    }
    // SAFETY: the caller guarantees the header is readable.
    let header = unsafe { core::slice::from_raw_parts(address as *const u8, 36) };
    let length = u32::from_le_bytes(header.get(4..8)?.try_into().ok()?) as usize;
    if !(36..=MAX_TABLE).contains(&length) {
        return None;
    }
    // SAFETY: the caller guarantees the table's stated length is readable.
    let bytes = unsafe { core::slice::from_raw_parts(address as *const u8, length) };
    checksum_ok(bytes).then_some(Table { address, bytes })
}

/// The table with `signature` listed in the XSDT that `rsdp` points to.
///
/// # Safety
///
/// `rsdp` is the firmware's ACPI 2.0 RSDP, and ACPI memory is identity-mapped.
pub unsafe fn find(rsdp: u64, signature: &[u8; 4]) -> Option<Table> {
    // SAFETY: the caller guarantees the RSDP (36 bytes in revision 2) is readable.
    let rsdp = unsafe { core::slice::from_raw_parts(rsdp as *const u8, 36) };
    if rsdp.get(..8)? != RSDP_SIGNATURE || !checksum_ok(rsdp) || rsdp.get(15) < Some(&2) {
        return None;
    }
    let xsdt = u64::from_le_bytes(rsdp.get(24..32)?.try_into().ok()?);
    // SAFETY: the XSDT address comes from the RSDP, in firmware ACPI memory.
    let xsdt = unsafe { table_at(xsdt) }?;
    if xsdt.bytes.get(..4)? != b"XSDT" {
        return None;
    }
    xsdt.bytes.get(36..)?.chunks_exact(8).find_map(|entry| {
        let address = u64::from_le_bytes(entry.try_into().ok()?);
        // SAFETY: entries of a valid XSDT point at tables in firmware ACPI memory.
        let table = unsafe { table_at(address) }?;
        (table.bytes.get(..4)? == signature).then_some(table)
    })
}
