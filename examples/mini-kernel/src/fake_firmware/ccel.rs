//! The fake firmware's measured boot: in plain QEMU there is no TDVF, so no CCEL table and no
//! firmware measurements. This module plays that part — it is ours, not TDVF's code or data:
//! it extends RTMR[0] and RTMR[1] through TDCALL (the model answers, as the TDX module answers
//! TDVF) and writes each extension into a log area laid out as TDVF's is (TdTcg2Dxe): 64 KiB of
//! ACPI NVS memory filled with 0xFF, a "Spec ID Event03" header with index 1 listing SHA-384
//! only, then TCG_PCR_EVENT2 records. It then publishes a CCEL table pointing at the area,
//! listed by an XSDT of its own under an RSDP of its own, and returns that RSDP: the kernel then
//! finds CCEL exactly as in a TD, through the crate's RSDP walker.
//!
//! The records are encoded here by hand, not with tdx-boot's writer, so that the crate's parser
//! is checked against a second encoding. What is measured is ours as well: the ACPI tables this
//! module publishes, TDVF's separators and its "Calling EFI Application" action.

use alloc::alloc::{Layout, alloc};
use sha2::{Digest, Sha384};
use tdx_boot::attest::algorithm::TPM_ALG_SHA384;
use tdx_boot::attest::event_type::{
    EV_EFI_ACTION, EV_EFI_HANDOFF_TABLES2, EV_NO_ACTION, EV_SEPARATOR,
};
use tdx_boot::e820::{MemoryMap, RegionKind};
use tdx_boot::early::{self, IdentityMapped, MeasureError};
use tdx_boot::tdcall::Hardware;

/// TDVF's log area size (PcdTcgLogAreaMinLen).
const LOG_AREA_LEN: usize = 64 * 1024;
/// Where the tables sit in their page.
const RSDP_AT: usize = 0;
const XSDT_AT: usize = 0x100;
const CCEL_AT: usize = 0x200;

/// What the fake firmware published.
pub struct Published {
    /// The RSDP that lists the CCEL table.
    pub rsdp: u64,
    /// Records written (after the header), EV_NO_ACTION included.
    pub records: usize,
}

fn checksum(bytes: &mut [u8], at: usize) {
    let sum = bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b));
    bytes[at] = bytes[at].wrapping_sub(sum);
}

/// A 36-byte ACPI table header.
fn sdt_header(signature: &[u8; 4], length: u32) -> [u8; 36] {
    let mut h = [0u8; 36];
    h[..4].copy_from_slice(signature);
    h[4..8].copy_from_slice(&length.to_le_bytes());
    h[8] = 1;
    h[10..16].copy_from_slice(b"TDXBT ");
    h[16..24].copy_from_slice(b"FAKEFW  ");
    h[24..28].copy_from_slice(&1u32.to_le_bytes());
    h[28..32].copy_from_slice(b"MINI");
    h[32..36].copy_from_slice(&1u32.to_le_bytes());
    h
}

/// Appends one record to `log` at `*at`, extending RTMR `mr_index - 1` unless EV_NO_ACTION.
fn record(
    log: &mut [u8],
    at: &mut usize,
    mr_index: u32,
    event_type: u32,
    measured: &[u8],
    data: &[u8],
) -> Result<(), MeasureError> {
    let digest: [u8; 48] = if event_type == EV_NO_ACTION {
        [0; 48]
    } else {
        Sha384::digest(measured).into()
    };
    if event_type != EV_NO_ACTION {
        // SAFETY: the kernel runs on its identity map; the digest is staged on its stack.
        let phys = unsafe { IdentityMapped::new() };
        early::extend_rtmr_digest(&Hardware, (mr_index - 1) as u8, &digest, &phys)?;
    }
    let mut put = |bytes: &[u8]| {
        log[*at..*at + bytes.len()].copy_from_slice(bytes);
        *at += bytes.len();
    };
    put(&mr_index.to_le_bytes());
    put(&event_type.to_le_bytes());
    put(&1u32.to_le_bytes());
    put(&TPM_ALG_SHA384.to_le_bytes());
    put(&digest);
    put(&(data.len() as u32).to_le_bytes());
    put(data);
    Ok(())
}

/// Measures, logs and publishes; marks the pages ACPI NVS in `map`, as TDVF's memory map would.
pub fn publish<const N: usize>(map: &mut MemoryMap<N>) -> Result<Published, MeasureError> {
    let pages = 1 + LOG_AREA_LEN / 4096;
    let layout = Layout::from_size_align(pages * 4096, 4096).unwrap_or(Layout::new::<u8>());
    // SAFETY: non-zero size; the block is leaked: it is firmware memory from now on.
    let block = unsafe { alloc(layout) };
    assert!(!block.is_null(), "heap exhausted");
    // SAFETY: freshly allocated, exclusively ours, `pages` pages long.
    let memory = unsafe { core::slice::from_raw_parts_mut(block, pages * 4096) };
    memory.fill(0);
    let (tables, log) = memory.split_at_mut(4096);
    let base = block as u64;
    let lasa = base + 4096;
    log.fill(0xFF);

    // The tables first: the handoff-tables event measures them.
    let mut ccel = [0u8; 56];
    ccel[..36].copy_from_slice(&sdt_header(b"CCEL", 56));
    ccel[36] = tdx_boot::attest::CC_TYPE_TDX;
    ccel[40..48].copy_from_slice(&(LOG_AREA_LEN as u64).to_le_bytes());
    ccel[48..56].copy_from_slice(&lasa.to_le_bytes());
    checksum(&mut ccel, 9);
    let mut xsdt = [0u8; 44];
    xsdt[..36].copy_from_slice(&sdt_header(b"XSDT", 44));
    xsdt[36..44].copy_from_slice(&(base + CCEL_AT as u64).to_le_bytes());
    checksum(&mut xsdt, 9);
    let mut rsdp = [0u8; 36];
    rsdp[..8].copy_from_slice(b"RSD PTR ");
    rsdp[9..15].copy_from_slice(b"TDXBT ");
    rsdp[15] = 2;
    rsdp[20..24].copy_from_slice(&36u32.to_le_bytes());
    rsdp[24..32].copy_from_slice(&(base + XSDT_AT as u64).to_le_bytes());
    checksum(&mut rsdp[..20], 8);
    checksum(&mut rsdp, 32);
    tables[RSDP_AT..RSDP_AT + 36].copy_from_slice(&rsdp);
    tables[XSDT_AT..XSDT_AT + 44].copy_from_slice(&xsdt);
    tables[CCEL_AT..CCEL_AT + 56].copy_from_slice(&ccel);

    // The header: TCG_PCR_EVENT, index 1 as TDVF writes it, Spec ID Event03 with SHA-384 only.
    let mut at = 0;
    let mut put = |bytes: &[u8], at: &mut usize| {
        log[*at..*at + bytes.len()].copy_from_slice(bytes);
        *at += bytes.len();
    };
    put(&1u32.to_le_bytes(), &mut at);
    put(&EV_NO_ACTION.to_le_bytes(), &mut at);
    put(&[0; 20], &mut at);
    put(&33u32.to_le_bytes(), &mut at);
    put(b"Spec ID Event03\0", &mut at);
    put(&0u32.to_le_bytes(), &mut at); // platform class: client
    put(&[0, 2, 0, 2], &mut at); // spec 2.0 errata 0, UINTN = 2 x 32 bits
    put(&1u32.to_le_bytes(), &mut at);
    put(&TPM_ALG_SHA384.to_le_bytes(), &mut at);
    put(&48u16.to_le_bytes(), &mut at);
    put(&[0], &mut at); // no vendor info

    let mut handoff = alloc::vec::Vec::new();
    handoff.extend_from_slice(&[rsdp.as_slice(), &xsdt, &ccel].concat());
    let action = b"Calling EFI Application from Boot Option";
    let events: [(u32, u32, &[u8], &[u8]); 6] = [
        (
            1,
            EV_NO_ACTION,
            b"",
            b"fake firmware (tdx-boot mini-kernel), not TDVF",
        ),
        (
            1,
            EV_EFI_HANDOFF_TABLES2,
            &handoff,
            b"fake firmware ACPI tables",
        ),
        (1, EV_SEPARATOR, &[0; 4], &[0; 4]),
        (2, EV_SEPARATOR, &[0; 4], &[0; 4]),
        (2, EV_EFI_ACTION, action, action),
        (
            2,
            EV_EFI_ACTION,
            b"Exit Boot Services Invocation",
            b"Exit Boot Services Invocation",
        ),
    ];
    for (mr_index, event_type, measured, data) in events {
        record(log, &mut at, mr_index, event_type, measured, data)?;
    }
    let _ = map.insert(base, base + (pages * 4096) as u64, RegionKind::AcpiNvs);
    Ok(Published {
        rsdp: base + RSDP_AT as u64,
        records: events.len(),
    })
}
