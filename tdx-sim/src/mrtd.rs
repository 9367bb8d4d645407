//! MRTD, the TD's build-time measurement, as the TDX module accumulates it.
//!
//! # What the TDX module does (Intel TDX module source `tdh_mem_page_add.c`, `tdh_mr_extend.c`,
//! `tdh_mr_finalize.c`; ABI spec "TDH.MEM.PAGE.ADD", "TDH.MR.EXTEND")
//! TDH.MNG.INIT starts a SHA-384 stream. Every TDH.MEM.PAGE.ADD feeds it one 128-byte block:
//! the ASCII name `MEM.PAGE.ADD` zero-padded to 16 bytes, the page's GPA as a little-endian
//! `u64` at byte 16, zeros to the end; the page's content is copied but not hashed. Every
//! TDH.MR.EXTEND (a 256-byte-aligned chunk of an added page) feeds three blocks: the same header
//! with the name `MR.EXTEND`, then the chunk's 256 bytes. TDH.MR.FINALIZE closes the stream;
//! MRTD is its digest. Misaligned GPAs are refused by the module (`TDX_OPERAND_INVALID`), and
//! so here ([`MrtdError`]).
//!
//! # What QEMU and KVM add, in which order (QEMU `tdx_init_fw_mem_region`, KVM
//! `tdx_gmem_post_populate`)
//! QEMU hands every TDVF section, in metadata order, to `KVM_TDX_INIT_MEM_REGION`, with the
//! MEASURE flag when the section has MR.EXTEND. KVM walks the region page by page: PAGE.ADD of
//! the page, then, if measured, MR.EXTEND of its sixteen 256-byte chunks, before the next page.
//! So TD_HOB and TEMP_MEM pages are PAGE.ADDed too (their GPAs enter MRTD; their content, the
//! HOB and zeros, does not), and a BFV contributes its GPAs and its bytes. Data past a section's
//! raw size is zero (TDVF design guide; QEMU would copy further bytes of the file, which no
//! edk2 TDVF exercises). Sections with PAGE.AUG are not PAGE.ADDed (TDVF design guide, the
//! public MRTD calculators; QEMU has no PAGE.AUG path and edk2's TDVF uses none). Some older
//! QEMU/KVM trees added all pages first and extended afterwards, which gives another MRTD; the
//! upstream order is the one here.

use core::fmt;

use sha2::{Digest, Sha384};

use crate::tdvf::{SECTION_ALIGNMENT, TdvfMetadata};

/// Bytes measured per TDH.MR.EXTEND.
pub const MR_EXTEND_CHUNK: usize = 256;
/// Bytes of a page added by TDH.MEM.PAGE.ADD.
pub const PAGE_SIZE: u64 = SECTION_ALIGNMENT;

const BLOCK: usize = 128;

/// Why the module refused an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MrtdError {
    /// TDH.MEM.PAGE.ADD of a GPA not 4 KiB-aligned.
    PageMisaligned(u64),
    /// TDH.MR.EXTEND of a GPA not 256-byte-aligned.
    ChunkMisaligned(u64),
}

impl fmt::Display for MrtdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PageMisaligned(gpa) => write!(f, "PAGE.ADD GPA {gpa:#x} not page-aligned"),
            Self::ChunkMisaligned(gpa) => write!(f, "MR.EXTEND GPA {gpa:#x} not 256-byte aligned"),
        }
    }
}

impl core::error::Error for MrtdError {}

/// The MRTD of a TD under construction.
#[derive(Clone, Debug, Default)]
pub struct Mrtd {
    hasher: Sha384,
}

impl Mrtd {
    /// An empty measurement, as after TDH.MNG.INIT.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records TDH.MEM.PAGE.ADD of the page at `gpa`.
    pub fn page_add(&mut self, gpa: u64) -> Result<(), MrtdError> {
        if !gpa.is_multiple_of(PAGE_SIZE) {
            return Err(MrtdError::PageMisaligned(gpa));
        }
        self.hasher.update(operation_block(b"MEM.PAGE.ADD", gpa));
        Ok(())
    }

    /// Records TDH.MR.EXTEND of the 256 bytes `chunk` at `gpa`.
    pub fn mr_extend(&mut self, gpa: u64, chunk: &[u8; MR_EXTEND_CHUNK]) -> Result<(), MrtdError> {
        if !gpa.is_multiple_of(MR_EXTEND_CHUNK as u64) {
            return Err(MrtdError::ChunkMisaligned(gpa));
        }
        self.hasher.update(operation_block(b"MR.EXTEND", gpa));
        self.hasher.update(chunk);
        Ok(())
    }

    /// MRTD, as TDH.MR.FINALIZE fixes it.
    pub fn finish(self) -> [u8; 48] {
        self.hasher.finalize().into()
    }
}

/// The 128-byte block the module hashes for one operation.
fn operation_block(name: &[u8], gpa: u64) -> [u8; BLOCK] {
    let mut block = [0u8; BLOCK];
    block[..name.len()].copy_from_slice(name);
    block[16..24].copy_from_slice(&gpa.to_le_bytes());
    block
}

/// The MRTD of a TD built from `image` by QEMU and KVM (see the module documentation).
pub fn measure_tdvf(image: &[u8], metadata: &TdvfMetadata) -> [u8; 48] {
    let mut mrtd = Mrtd::new();
    for section in metadata.sections() {
        if section.attributes.page_aug() {
            continue;
        }
        let data = section.data(image);
        for page in 0..section.pages() {
            let page_gpa = section.gpa + page * PAGE_SIZE;
            // Validated metadata: page-aligned, and the chunks below 256-aligned.
            let _ = mrtd.page_add(page_gpa);
            if !section.attributes.mr_extend() {
                continue;
            }
            for chunk_index in 0..PAGE_SIZE / MR_EXTEND_CHUNK as u64 {
                let offset = page * PAGE_SIZE + chunk_index * MR_EXTEND_CHUNK as u64;
                let _ = mrtd.mr_extend(page_gpa + chunk_index * 256, &chunk_at(data, offset));
            }
        }
    }
    mrtd.finish()
}

/// The 256 bytes of `data` at `offset`, zero past its end.
fn chunk_at(data: &[u8], offset: u64) -> [u8; MR_EXTEND_CHUNK] {
    let mut chunk = [0u8; MR_EXTEND_CHUNK];
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(data.len());
    let available = &data[start..];
    let n = available.len().min(MR_EXTEND_CHUNK);
    chunk[..n].copy_from_slice(&available[..n]);
    chunk
}

#[cfg(test)]
mod tests;
