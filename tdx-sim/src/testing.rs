//! Synthetic firmware images for the unit tests: an OVMF footer table, the TDVF metadata GUID and
//! descriptor, and section data, each placed where a test can find and corrupt it.

use std::vec::Vec;

use crate::tdvf::{OVMF_TABLE_FOOTER_GUID, TDVF_METADATA_GUID, TDX_METADATA_OFFSET_GUID};

/// The Debian OVMF.fd, if installed.
pub(crate) const DEBIAN_OVMF: &str = "/usr/share/ovmf/OVMF.fd";

/// Reads the Debian OVMF.fd, or says why the test is skipped.
pub(crate) fn debian_ovmf() -> Option<Vec<u8>> {
    match std::fs::read(DEBIAN_OVMF) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            std::eprintln!("SKIPPED: {DEBIAN_OVMF} not readable ({e}); install Debian's `ovmf`");
            None
        }
    }
}

/// A section entry as raw fields (anything, valid or not).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawSection {
    pub data_offset: u32,
    pub raw_size: u32,
    pub gpa: u64,
    pub memory_size: u64,
    pub section_type: u32,
    pub attributes: u32,
}

impl RawSection {
    pub(crate) const fn new(
        data_offset: u32,
        raw_size: u32,
        gpa: u64,
        memory_size: u64,
        section_type: u32,
        attributes: u32,
    ) -> Self {
        RawSection {
            data_offset,
            raw_size,
            gpa,
            memory_size,
            section_type,
            attributes,
        }
    }

    fn encode(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[0..4].copy_from_slice(&self.data_offset.to_le_bytes());
        out[4..8].copy_from_slice(&self.raw_size.to_le_bytes());
        out[8..16].copy_from_slice(&self.gpa.to_le_bytes());
        out[16..24].copy_from_slice(&self.memory_size.to_le_bytes());
        out[24..28].copy_from_slice(&self.section_type.to_le_bytes());
        out[28..32].copy_from_slice(&self.attributes.to_le_bytes());
        out
    }
}

/// Size of the synthetic images.
pub(crate) const IMAGE_LEN: usize = 0x10000;

/// A small TDVF in the shape of Debian's: CFV then BFV in the file, a TD_HOB and TEMP_MEM.
pub(crate) const SMALL_TDVF: [RawSection; 5] = [
    RawSection::new(0x4000, 0xa000, 0xfffe_4000, 0xa000, 0, 1),
    RawSection::new(0, 0x4000, 0xfffe_0000, 0x4000, 1, 0),
    RawSection::new(0, 0, 0x80_0000, 0x6000, 3, 0),
    RawSection::new(0, 0, 0x80_9000, 0x2000, 2, 0),
    RawSection::new(0, 0, 0x81_0000, 0x1_0000, 3, 0),
];

/// A synthetic image and where its parts are.
pub(crate) struct TestImage {
    pub bytes: Vec<u8>,
    /// Offset of the "TDVF" descriptor.
    pub descriptor: usize,
    /// Offset of the `u32` in the metadata-offset entry.
    pub offset_entry: usize,
}

/// Builds an image of [`IMAGE_LEN`] bytes with a patterned body, `sections` in its metadata, an
/// unrelated footer-table entry before the offset entry (so the walk must skip one).
pub(crate) fn tdvf_image(sections: &[RawSection]) -> TestImage {
    let len = IMAGE_LEN;
    let mut bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    let descriptor = len - 0x1000;
    bytes[descriptor - 16..descriptor].copy_from_slice(&TDVF_METADATA_GUID.0);
    let length = 16 + 32 * sections.len() as u32;
    bytes[descriptor..descriptor + 4].copy_from_slice(b"TDVF");
    bytes[descriptor + 4..descriptor + 8].copy_from_slice(&length.to_le_bytes());
    bytes[descriptor + 8..descriptor + 12].copy_from_slice(&1u32.to_le_bytes());
    bytes[descriptor + 12..descriptor + 16].copy_from_slice(&(sections.len() as u32).to_le_bytes());
    for (i, s) in sections.iter().enumerate() {
        let at = descriptor + 16 + 32 * i;
        bytes[at..at + 32].copy_from_slice(&s.encode());
    }
    // Footer: GUID at len-0x30, table length just before, entries before that.
    let footer = len - 0x30;
    bytes[footer..footer + 16].copy_from_slice(&OVMF_TABLE_FOOTER_GUID.0);
    let offset_entry_end = footer - 2;
    bytes[offset_entry_end - 16..offset_entry_end].copy_from_slice(&TDX_METADATA_OFFSET_GUID.0);
    bytes[offset_entry_end - 18..offset_entry_end - 16].copy_from_slice(&22u16.to_le_bytes());
    let offset_entry = offset_entry_end - 22;
    bytes[offset_entry..offset_entry + 4]
        .copy_from_slice(&((len - descriptor) as u32).to_le_bytes());
    // An unrelated entry (a made-up GUID with 6 bytes of data) before the offset entry.
    let other_end = offset_entry;
    bytes[other_end - 16..other_end].copy_from_slice(&[0x5a; 16]);
    bytes[other_end - 18..other_end - 16].copy_from_slice(&24u16.to_le_bytes());
    let total: u16 = 18 + 22 + 24;
    bytes[footer - 2..footer].copy_from_slice(&total.to_le_bytes());
    TestImage {
        bytes,
        descriptor,
        offset_entry,
    }
}
