//! Building the MADT the fake firmware publishes: the processors' local APICs and the
//! multiprocessor wakeup structure that names the mailbox.

use alloc::vec::Vec;

/// MADT entry type: processor local APIC.
const LOCAL_APIC: u8 = 0;
/// MADT entry type: processor local x2APIC (for APIC IDs above 254).
const LOCAL_X2APIC: u8 = 9;
/// MADT entry type: multiprocessor wakeup.
const MP_WAKEUP: u8 = 0x10;
/// Local APIC flags: enabled.
const ENABLED: u32 = 1;

/// The MADT's bytes (header, local APIC address, flags, entries), checksum included.
pub fn build(apic_ids: &[u32], local_apic_address: u32, mailbox: u64) -> Vec<u8> {
    let mut table = Vec::new();
    table.extend_from_slice(b"APIC");
    table.extend_from_slice(&0u32.to_le_bytes()); // length, patched below
    table.push(5); // revision
    table.push(0); // checksum, patched below
    table.extend_from_slice(b"TDXBT ");
    table.extend_from_slice(b"MINIKERN");
    table.extend_from_slice(&1u32.to_le_bytes()); // OEM revision
    table.extend_from_slice(b"MINI");
    table.extend_from_slice(&1u32.to_le_bytes()); // creator revision
    table.extend_from_slice(&local_apic_address.to_le_bytes());
    table.extend_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT
    for (uid, &apic_id) in apic_ids.iter().enumerate() {
        match u8::try_from(apic_id) {
            Ok(id) if id != 0xff => {
                table.extend_from_slice(&[LOCAL_APIC, 8, uid as u8, id]);
                table.extend_from_slice(&ENABLED.to_le_bytes());
            }
            _ => {
                table.extend_from_slice(&[LOCAL_X2APIC, 16, 0, 0]);
                table.extend_from_slice(&apic_id.to_le_bytes());
                table.extend_from_slice(&ENABLED.to_le_bytes());
                table.extend_from_slice(&(uid as u32).to_le_bytes());
            }
        }
    }
    // Mailbox version 0: type, length 16, version, reserved, mailbox address.
    table.extend_from_slice(&[MP_WAKEUP, 16]);
    table.extend_from_slice(&0u16.to_le_bytes());
    table.extend_from_slice(&0u32.to_le_bytes());
    table.extend_from_slice(&mailbox.to_le_bytes());
    let length = table.len() as u32;
    table[4..8].copy_from_slice(&length.to_le_bytes());
    let sum = table.iter().fold(0u8, |sum, b| sum.wrapping_add(*b));
    table[9] = 0u8.wrapping_sub(sum);
    table
}

/// The enabled processors' APIC IDs in the platform's MADT (types 0 and 9), for starting them.
pub fn platform_apic_ids(madt: &[u8]) -> Vec<u32> {
    let mut ids = Vec::new();
    let mut rest = madt.get(44..).unwrap_or_default();
    while let [kind, length, ..] = *rest {
        let length = usize::from(length);
        let Some(entry) = rest.get(..length).filter(|_| length >= 2) else {
            break;
        };
        let field = |range: core::ops::Range<usize>| {
            entry
                .get(range)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes)
        };
        match kind {
            LOCAL_APIC if length >= 8 => {
                if field(4..8).is_some_and(|f| f & ENABLED != 0) {
                    ids.extend(entry.get(3).map(|&id| u32::from(id)));
                }
            }
            LOCAL_X2APIC if length >= 16 => {
                if field(8..12).is_some_and(|f| f & ENABLED != 0) {
                    ids.extend(field(4..8));
                }
            }
            _ => {}
        }
        rest = rest.get(length..).unwrap_or_default();
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_table_lists_processors_and_checksums_to_zero() {
        let table = build(&[0, 1, 7, 300], 0xfee0_0000, 0x1234_5000);
        assert_eq!(table.iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
        assert_eq!(
            u32::from_le_bytes(table[4..8].try_into().unwrap()) as usize,
            table.len()
        );
        assert_eq!(platform_apic_ids(&table), vec![0, 1, 7, 300]);
        let wakeup = &table[table.len() - 16..];
        assert_eq!(wakeup[0], MP_WAKEUP);
        assert_eq!(
            u64::from_le_bytes(wakeup[8..16].try_into().unwrap()),
            0x1234_5000
        );
    }

    #[test]
    fn platform_parse_stops_at_a_zero_length_entry() {
        let mut table = build(&[0, 1], 0xfee0_0000, 0x5000);
        table.truncate(44);
        table.extend_from_slice(&[0, 0, 0, 0]);
        assert!(platform_apic_ids(&table).is_empty());
    }
}
