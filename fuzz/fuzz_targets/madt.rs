#![no_main]
//! MADT parsing and the RSDP walker on arbitrary bytes: no input may panic, hang or read out of
//! bounds, and whatever is reported usable must obey the documented rules.

use libfuzzer_sys::fuzz_target;
use tdx_boot::mpwk::{Madt, check_mailbox_placement, find_madt};

fn check(madt: &Madt<'_>) {
    let entries: usize = madt.entries().map(|(_, entry)| entry.len()).sum();
    assert_eq!(entries + 44, madt.bytes().len());
    for apic_id in madt.apic_ids() {
        assert_ne!(apic_id, u32::MAX);
    }
    let _ = madt.processors().count();
    if let Some(wakeup) = madt.mailbox() {
        assert!(wakeup.mailbox_address != 0 && wakeup.mailbox_address % 4096 == 0);
        // Linux's rule: a reset vector only from version >= 1 with 24 bytes, never zero.
        if let Some(vector) = wakeup.reset_vector {
            assert!(wakeup.version >= 1 && vector != 0);
        }
        assert!(!wakeup.supports_test() || wakeup.reset_vector.is_some());
    }
}

fuzz_target!(|data: &[u8]| {
    // The bytes as a MADT.
    if let Ok(madt) = Madt::parse(data) {
        check(&madt);
    }
    // The bytes as physical memory starting at 0, with the RSDP at an offset from the first byte.
    let rsdp = u64::from(data.first().copied().unwrap_or(0));
    let map = |address: u64, length: usize| -> Option<&[u8]> {
        let start = usize::try_from(address).ok()?;
        data.get(start..start.checked_add(length)?)
    };
    if let Ok(madt) = find_madt(rsdp, map) {
        check(&madt);
    }
    // The bytes as a memory map of 17-byte (start, end, firmware) records, the mailbox at the
    // first record's start: the placement check terminates, and accepts only a covered page.
    let regions: Vec<(u64, u64, bool)> = data
        .chunks_exact(17)
        .map(|r| {
            let start = u64::from_le_bytes(r[0..8].try_into().unwrap());
            let end = u64::from_le_bytes(r[8..16].try_into().unwrap());
            (start, end, r[16] & 1 == 1)
        })
        .collect();
    if let Some(&(mailbox, _, _)) = regions.first() {
        let mailbox = mailbox & !0xFFF;
        if check_mailbox_placement(mailbox, regions.iter().copied()).is_ok() {
            for offset in (0..4096).step_by(512) {
                let address = mailbox + offset;
                assert!(
                    regions
                        .iter()
                        .any(|&(s, e, f)| f && s <= address && address < e)
                );
                assert!(
                    !regions
                        .iter()
                        .any(|&(s, e, f)| !f && s <= address && address < e)
                );
            }
        }
    }
});
