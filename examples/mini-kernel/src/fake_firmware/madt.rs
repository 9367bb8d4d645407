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

/// The MADT's bytes (header, local APIC address, flags, entries), checksum included; the wakeup
/// entry is version 1 with 24 bytes and `reset_vector`, as edk2 2025.08 writes it.
pub fn build(
    apic_ids: &[u32],
    local_apic_address: u32,
    mailbox: u64,
    reset_vector: u64,
) -> Vec<u8> {
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
    // Mailbox version 1: type, length 24, version, reserved, mailbox address, reset vector.
    table.extend_from_slice(&[MP_WAKEUP, 24]);
    table.extend_from_slice(&1u16.to_le_bytes());
    table.extend_from_slice(&0u32.to_le_bytes());
    table.extend_from_slice(&mailbox.to_le_bytes());
    table.extend_from_slice(&reset_vector.to_le_bytes());
    let length = table.len() as u32;
    table[4..8].copy_from_slice(&length.to_le_bytes());
    let sum = table.iter().fold(0u8, |sum, b| sum.wrapping_add(*b));
    table[9] = 0u8.wrapping_sub(sum);
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use tdx_boot::mpwk::Madt;

    #[test]
    fn built_table_parses_with_its_processors_and_mailbox() {
        let table = build(&[0, 1, 7, 300], 0xfee0_0000, 0x1234_5000, 0x9000);
        let madt = Madt::parse(&table).expect("the built MADT parses");
        assert_eq!(madt.apic_ids().collect::<Vec<_>>(), vec![0, 1, 7, 300]);
        let wakeup = madt.mailbox().expect("a usable wakeup entry");
        assert_eq!(
            (wakeup.version, wakeup.mailbox_address, wakeup.reset_vector),
            (1, 0x1234_5000, Some(0x9000))
        );
        assert!(wakeup.supports_test());
        assert_eq!(madt.local_apic_address(), 0xfee0_0000);
    }

    #[test]
    fn corrupting_a_byte_breaks_the_checksum() {
        let mut table = build(&[0, 1], 0xfee0_0000, 0x5000, 0x9000);
        let last = table.len() - 1;
        table[last] ^= 1;
        assert!(Madt::parse(&table).is_err());
    }
}
