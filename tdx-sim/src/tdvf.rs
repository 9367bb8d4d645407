//! The TDVF metadata of an OVMF image: which parts of the file a VMM copies to which guest
//! physical addresses, which memory it adds empty, and what the TDX module measures.
//!
//! # Where the metadata is
//! OVMF ends with a "GUIDed table" (QEMU `hw/i386/pc_sysfw_ovmf.c`): the footer GUID
//! [`OVMF_TABLE_FOOTER_GUID`] sits 0x30 bytes before the end of the file, preceded by a `u16`
//! holding the table's total length (footer included). Entries run backwards from there, each laid
//! out as `{ data.., u16 length, GUID }` where `length` covers the whole entry. The entry
//! [`TDX_METADATA_OFFSET_GUID`] holds a `u32`: the metadata's distance from the end of the file.
//! The TDVF design guide puts [`TDVF_METADATA_GUID`] in the 16 bytes before the descriptor;
//! QEMU does not check it, we do (it tells a TDVF from a file that merely has an offset entry).
//!
//! # The descriptor and its sections
//! `{ "TDVF", u32 length, u32 version, u32 number of sections }` then that many 32-byte entries
//! `{ u32 data offset, u32 raw size, u64 memory address, u64 memory size, u32 type, u32
//! attributes }` (QEMU `hw/i386/tdvf.c`, TDVF design guide). The checks are QEMU's
//! (`tdvf_get_metadata`, `tdvf_parse_and_check_section_entry`): version 1, at least two sections,
//! `length` exactly the descriptor plus its entries, memory address and size 4 KiB-aligned, raw
//! size at most the memory size, BFV and CFV carry data and TD_HOB and TEMP_MEM do not. QEMU
//! trusts the rest; we also check what it would otherwise read out of bounds or build wrongly:
//! the data lies inside the file, the memory ranges neither overflow nor overlap, no section is
//! empty, the attribute bits are known and make sense for the type (td-shim's
//! `validate_sections`: MR.EXTEND on a TD_HOB would measure a HOB the VMM writes later, PAGE.AUG
//! only for memory without content), at most one TD_HOB, and a TD_HOB unless PERM_MEM sections
//! say the TD brings its own memory.
//!
//! QEMU loads only BFV, CFV, TD_HOB and TEMP_MEM; PERM_MEM, PAYLOAD and PAYLOAD_PARAM (td-shim's
//! types) are parsed here and refused by [`TdvfMetadata::require_qemu_types`].

use core::fmt;

use tdx_boot::e820::Guid;

/// The OVMF footer GUID table's own GUID, 0x30 bytes before the end of the image.
pub const OVMF_TABLE_FOOTER_GUID: Guid = Guid::from_fields(
    0x96b5_82de,
    0x1fb2,
    0x45f7,
    [0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d],
);

/// The footer-table entry whose `u32` is the metadata's offset from the end of the image.
pub const TDX_METADATA_OFFSET_GUID: Guid = Guid::from_fields(
    0xe47a_6535,
    0x984a,
    0x4798,
    [0x86, 0x5e, 0x46, 0x85, 0xa7, 0xbf, 0x8e, 0xc2],
);

/// The GUID placed just before the "TDVF" descriptor.
pub const TDVF_METADATA_GUID: Guid = Guid::from_fields(
    0xe9ea_f9f3,
    0x168e,
    0x44d5,
    [0xa8, 0xeb, 0x7f, 0x4d, 0x87, 0x38, 0xf6, 0xae],
);

/// "TDVF" read as a little-endian `u32`.
pub const TDVF_SIGNATURE: u32 = u32::from_le_bytes(*b"TDVF");

/// The only descriptor version defined.
pub const TDVF_VERSION: u32 = 1;

/// Sections kept by [`TdvfMetadata`] (it allocates nothing). TDVF has six, td-shim about ten.
pub const MAX_SECTIONS: usize = 32;

/// Alignment QEMU demands of a section's memory address and size.
pub const SECTION_ALIGNMENT: u64 = 4096;

/// Highest guest-physical address plus one that a section may reach (52-bit MAXPA).
pub const GPA_LIMIT: u64 = 1 << 52;

const FOOTER_GUID_FROM_END: usize = 0x30;
const GUID_LEN: usize = 16;
const ENTRY_TRAILER_LEN: usize = GUID_LEN + 2;
const DESCRIPTOR_LEN: usize = 16;
const SECTION_ENTRY_LEN: usize = 32;
/// QEMU ignores images smaller than a page when it looks for the table.
const MIN_IMAGE_LEN: usize = 4096;

/// What a section holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SectionType {
    /// Boot firmware volume: code, copied from the file (and normally measured).
    Bfv,
    /// Configuration firmware volume: UEFI variables, copied from the file.
    Cfv,
    /// Where the VMM writes the TD HOB.
    TdHob,
    /// Zeroed memory the firmware uses before it has its own (accepted private memory).
    TempMem,
    /// Memory the TD owns for good (td-shim; the TD then ignores the HOB's RAM).
    PermMem,
    /// A payload image (td-shim).
    Payload,
    /// The payload's parameters (td-shim).
    PayloadParam,
}

impl SectionType {
    /// Decodes the metadata's type number.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            0 => Self::Bfv,
            1 => Self::Cfv,
            2 => Self::TdHob,
            3 => Self::TempMem,
            4 => Self::PermMem,
            5 => Self::Payload,
            6 => Self::PayloadParam,
            _ => return None,
        })
    }

    /// The metadata's type number.
    pub const fn raw(self) -> u32 {
        match self {
            Self::Bfv => 0,
            Self::Cfv => 1,
            Self::TdHob => 2,
            Self::TempMem => 3,
            Self::PermMem => 4,
            Self::Payload => 5,
            Self::PayloadParam => 6,
        }
    }
}

/// Section attribute bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SectionAttributes(pub u32);

impl SectionAttributes {
    /// MR.EXTEND: the VMM measures the content into MRTD (TDH.MR.EXTEND).
    pub const MR_EXTEND: u32 = 1 << 0;
    /// PAGE.AUG: the VMM may add the pages after the build (TDH.MEM.PAGE.AUG), unmeasured.
    pub const PAGE_AUG: u32 = 1 << 1;
    const KNOWN: u32 = Self::MR_EXTEND | Self::PAGE_AUG;

    /// Whether the content is measured.
    pub const fn mr_extend(self) -> bool {
        self.0 & Self::MR_EXTEND != 0
    }

    /// Whether the pages are added after the build instead of with TDH.MEM.PAGE.ADD.
    pub const fn page_aug(self) -> bool {
        self.0 & Self::PAGE_AUG != 0
    }
}

/// One validated section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Section {
    /// Offset in the image of the section's data.
    pub data_offset: u32,
    /// Bytes of data in the image (the rest of the memory is zero).
    pub raw_size: u32,
    /// Guest-physical address of the section, 4 KiB-aligned.
    pub gpa: u64,
    /// Bytes of guest memory, 4 KiB-aligned, at least `raw_size`.
    pub memory_size: u64,
    /// What the section holds.
    pub section_type: SectionType,
    /// Attribute bits.
    pub attributes: SectionAttributes,
}

impl Section {
    /// One past the section's last guest-physical byte (cannot overflow once validated).
    pub const fn end(&self) -> u64 {
        self.gpa + self.memory_size
    }

    /// The 4 KiB pages the section occupies.
    pub const fn pages(&self) -> u64 {
        self.memory_size / SECTION_ALIGNMENT
    }

    /// The section's bytes in `image` (empty for sections without data).
    pub fn data<'a>(&self, image: &'a [u8]) -> &'a [u8] {
        let start = self.data_offset as usize;
        image
            .get(start..start.saturating_add(self.raw_size as usize))
            .unwrap_or(&[])
    }

    fn check(&self, image_len: usize) -> Result<(), SectionError> {
        let has_data = self.raw_size != 0;
        if u64::from(self.raw_size) > self.memory_size {
            return Err(SectionError::RawSizeExceedsMemory);
        }
        if !self.gpa.is_multiple_of(SECTION_ALIGNMENT) {
            return Err(SectionError::AddressUnaligned);
        }
        if !self.memory_size.is_multiple_of(SECTION_ALIGNMENT) {
            return Err(SectionError::SizeUnaligned);
        }
        if self.memory_size == 0 {
            return Err(SectionError::Empty);
        }
        match self.gpa.checked_add(self.memory_size) {
            Some(end) if end <= GPA_LIMIT => {}
            _ => return Err(SectionError::AddressOutOfRange),
        }
        let data_end = u64::from(self.data_offset) + u64::from(self.raw_size);
        if has_data && data_end > image_len as u64 {
            return Err(SectionError::DataOutsideImage);
        }
        match self.section_type {
            SectionType::Bfv | SectionType::Cfv if !has_data => return Err(SectionError::NoData),
            SectionType::TdHob | SectionType::TempMem | SectionType::PermMem if has_data => {
                return Err(SectionError::UnexpectedData);
            }
            _ => {}
        }
        let attributes = self.attributes;
        if attributes.0 & !SectionAttributes::KNOWN != 0 {
            return Err(SectionError::UnknownAttributes);
        }
        let aug_allowed = matches!(
            self.section_type,
            SectionType::TempMem | SectionType::PermMem
        );
        if attributes.page_aug() && (!aug_allowed || attributes.mr_extend()) {
            return Err(SectionError::AttributesInvalidForType);
        }
        if attributes.mr_extend() && self.section_type == SectionType::TdHob {
            return Err(SectionError::AttributesInvalidForType);
        }
        Ok(())
    }
}

/// Why one section entry was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionError {
    /// The type number is none of the seven defined.
    UnknownType(u32),
    /// Raw size larger than memory size.
    RawSizeExceedsMemory,
    /// Memory address not 4 KiB-aligned.
    AddressUnaligned,
    /// Memory size not 4 KiB-aligned.
    SizeUnaligned,
    /// Memory size zero.
    Empty,
    /// The memory range wraps or ends above [`GPA_LIMIT`].
    AddressOutOfRange,
    /// The data runs past the end of the image.
    DataOutsideImage,
    /// A BFV or CFV without data.
    NoData,
    /// A TD_HOB, TEMP_MEM or PERM_MEM with data.
    UnexpectedData,
    /// Attribute bits beyond MR.EXTEND and PAGE.AUG.
    UnknownAttributes,
    /// PAGE.AUG on a section with content or with MR.EXTEND, or MR.EXTEND on the TD_HOB.
    AttributesInvalidForType,
}

/// Why an image's TDVF metadata was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TdvfError {
    /// The image is smaller than a page: QEMU does not look for a table in it.
    ImageTooSmall,
    /// No footer GUID 0x30 bytes before the end: not OVMF.
    NoFooterTable,
    /// The footer's table length is below its own size or runs past the start of the image.
    BadTableLength(u16),
    /// An entry of the table has a length below 18 or beyond the rest of the table.
    BadEntryLength {
        /// Offset in the image of the entry's GUID.
        offset: usize,
        /// Its length field.
        length: u16,
    },
    /// The table has no [`TDX_METADATA_OFFSET_GUID`] entry: not a TDVF.
    NoMetadataOffset,
    /// The offset entry holds fewer than four bytes.
    ShortMetadataOffset,
    /// The offset points before the start of the image or leaves no room for the descriptor.
    MetadataOutsideImage(u32),
    /// The 16 bytes before the descriptor are not [`TDVF_METADATA_GUID`].
    NoMetadataGuid,
    /// The descriptor does not start with "TDVF".
    BadSignature(u32),
    /// The descriptor's version is not 1.
    BadVersion(u32),
    /// Fewer than two sections (QEMU's minimum).
    TooFewSections(u32),
    /// More sections than [`MAX_SECTIONS`].
    TooManySections(u32),
    /// The descriptor's length is not the descriptor plus its entries, or runs past the image.
    BadLength {
        /// The length field.
        length: u32,
        /// What the section count implies.
        expected: u64,
    },
    /// Section `index` is invalid.
    Section {
        /// Index in the metadata.
        index: usize,
        /// What is wrong.
        error: SectionError,
    },
    /// Sections `first` and `second` share guest-physical memory.
    Overlap {
        /// Index of the earlier section in the metadata.
        first: usize,
        /// Index of the later one.
        second: usize,
    },
    /// No BFV: nothing to run.
    NoBfv,
    /// More than one TD_HOB section.
    SeveralTdHobs,
    /// No TD_HOB although no PERM_MEM section replaces the HOB's memory information.
    NoTdHob,
    /// A section type QEMU does not load (PERM_MEM, PAYLOAD, PAYLOAD_PARAM).
    UnsupportedByQemu {
        /// Index of the section.
        index: usize,
        /// Its type.
        section_type: SectionType,
    },
}

impl fmt::Display for TdvfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ImageTooSmall => write!(f, "image smaller than 4 KiB"),
            Self::NoFooterTable => write!(f, "no OVMF footer GUID table"),
            Self::BadTableLength(l) => write!(f, "OVMF table has invalid length {l}"),
            Self::BadEntryLength { offset, length } => {
                write!(
                    f,
                    "OVMF table entry at {offset:#x} has invalid length {length}"
                )
            }
            Self::NoMetadataOffset => write!(f, "no TDX metadata offset entry: not a TDVF"),
            Self::ShortMetadataOffset => write!(f, "TDX metadata offset entry too short"),
            Self::MetadataOutsideImage(o) => write!(f, "TDX metadata offset {o:#x} out of image"),
            Self::NoMetadataGuid => write!(f, "TDVF metadata GUID missing"),
            Self::BadSignature(s) => write!(f, "invalid TDVF signature {s:#x}"),
            Self::BadVersion(v) => write!(f, "unsupported TDVF metadata version {v}"),
            Self::TooFewSections(n) => write!(f, "invalid number of sections ({n})"),
            Self::TooManySections(n) => write!(f, "too many sections ({n})"),
            Self::BadLength { length, expected } => {
                write!(f, "metadata length {length:#x}, expected {expected:#x}")
            }
            Self::Section { index, error } => write!(f, "section {index}: {error:?}"),
            Self::Overlap { first, second } => write!(f, "sections {first} and {second} overlap"),
            Self::NoBfv => write!(f, "no BFV section"),
            Self::SeveralTdHobs => write!(f, "more than one TD_HOB section"),
            Self::NoTdHob => write!(f, "no TD_HOB section"),
            Self::UnsupportedByQemu {
                index,
                section_type,
            } => write!(f, "section {index}: {section_type:?} is not loaded by QEMU"),
        }
    }
}

impl core::error::Error for TdvfError {}

/// The validated TDVF metadata of an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TdvfMetadata {
    /// Offset in the image of the "TDVF" descriptor.
    pub descriptor_offset: usize,
    sections: [Section; MAX_SECTIONS],
    count: usize,
}

impl TdvfMetadata {
    /// Finds, decodes and validates the metadata of `image` (see the module documentation).
    pub fn parse(image: &[u8]) -> Result<Self, TdvfError> {
        let offset_entry = footer_table_find(image, &TDX_METADATA_OFFSET_GUID)?
            .ok_or(TdvfError::NoMetadataOffset)?;
        let from_end = u32_at(offset_entry, 0).ok_or(TdvfError::ShortMetadataOffset)?;
        let descriptor_offset = image
            .len()
            .checked_sub(from_end as usize)
            .filter(|&o| o >= GUID_LEN && o + DESCRIPTOR_LEN <= image.len())
            .ok_or(TdvfError::MetadataOutsideImage(from_end))?;
        if image[descriptor_offset - GUID_LEN..descriptor_offset] != TDVF_METADATA_GUID.0 {
            return Err(TdvfError::NoMetadataGuid);
        }
        let descriptor = &image[descriptor_offset..];
        let field = |i: usize| u32_at(descriptor, i * 4).unwrap_or(0);
        let (signature, length, version, count) = (field(0), field(1), field(2), field(3));
        if signature != TDVF_SIGNATURE {
            return Err(TdvfError::BadSignature(signature));
        }
        if version != TDVF_VERSION {
            return Err(TdvfError::BadVersion(version));
        }
        if count < 2 {
            return Err(TdvfError::TooFewSections(count));
        }
        let expected = DESCRIPTOR_LEN as u64 + u64::from(count) * SECTION_ENTRY_LEN as u64;
        if u64::from(length) != expected || length as usize > descriptor.len() {
            return Err(TdvfError::BadLength { length, expected });
        }
        if count as usize > MAX_SECTIONS {
            return Err(TdvfError::TooManySections(count));
        }
        let mut metadata = TdvfMetadata {
            descriptor_offset,
            sections: [PLACEHOLDER; MAX_SECTIONS],
            count: 0,
        };
        let entries = &descriptor[DESCRIPTOR_LEN..length as usize];
        for (index, entry) in entries.chunks_exact(SECTION_ENTRY_LEN).enumerate() {
            let section = decode_section(entry, image.len())
                .map_err(|error| TdvfError::Section { index, error })?;
            metadata.sections[index] = section;
            metadata.count = index + 1;
        }
        metadata.check_whole()?;
        Ok(metadata)
    }

    /// The sections in metadata order (the order a VMM adds them in).
    pub fn sections(&self) -> &[Section] {
        &self.sections[..self.count]
    }

    /// The TD_HOB section, if any (at most one after validation).
    pub fn td_hob(&self) -> Option<&Section> {
        self.sections()
            .iter()
            .find(|s| s.section_type == SectionType::TdHob)
    }

    /// Refuses what QEMU's `tdx_finalize_vm` refuses: section types other than BFV, CFV, TD_HOB
    /// and TEMP_MEM, and metadata without a TD_HOB.
    pub fn require_qemu_types(&self) -> Result<(), TdvfError> {
        for (index, section) in self.sections().iter().enumerate() {
            if !matches!(
                section.section_type,
                SectionType::Bfv | SectionType::Cfv | SectionType::TdHob | SectionType::TempMem
            ) {
                return Err(TdvfError::UnsupportedByQemu {
                    index,
                    section_type: section.section_type,
                });
            }
        }
        self.td_hob().map(|_| ()).ok_or(TdvfError::NoTdHob)
    }

    fn check_whole(&self) -> Result<(), TdvfError> {
        let sections = self.sections();
        for (second, b) in sections.iter().enumerate() {
            for (first, a) in sections[..second].iter().enumerate() {
                if a.gpa < b.end() && b.gpa < a.end() {
                    return Err(TdvfError::Overlap { first, second });
                }
            }
        }
        let count = |t: SectionType| sections.iter().filter(|s| s.section_type == t).count();
        if count(SectionType::Bfv) == 0 {
            return Err(TdvfError::NoBfv);
        }
        match count(SectionType::TdHob) {
            0 if count(SectionType::PermMem) == 0 => Err(TdvfError::NoTdHob),
            0 | 1 => Ok(()),
            _ => Err(TdvfError::SeveralTdHobs),
        }
    }
}

const PLACEHOLDER: Section = Section {
    data_offset: 0,
    raw_size: 0,
    gpa: 0,
    memory_size: 0,
    section_type: SectionType::TempMem,
    attributes: SectionAttributes(0),
};

fn decode_section(entry: &[u8], image_len: usize) -> Result<Section, SectionError> {
    let u32_field = |o| u32_at(entry, o).unwrap_or(0);
    let u64_field = |o| u64_at(entry, o).unwrap_or(0);
    let raw_type = u32_field(24);
    let section = Section {
        data_offset: u32_field(0),
        raw_size: u32_field(4),
        gpa: u64_field(8),
        memory_size: u64_field(16),
        section_type: SectionType::from_raw(raw_type).ok_or(SectionError::UnknownType(raw_type))?,
        attributes: SectionAttributes(u32_field(28)),
    };
    section.check(image_len)?;
    Ok(section)
}

/// The data of the OVMF footer-table entry named `guid`, `Ok(None)` if the table lacks it.
/// Walks the table as QEMU's `pc_system_ovmf_table_find` does, with every length checked.
pub fn footer_table_find<'a>(image: &'a [u8], guid: &Guid) -> Result<Option<&'a [u8]>, TdvfError> {
    if image.len() < MIN_IMAGE_LEN {
        return Err(TdvfError::ImageTooSmall);
    }
    let footer = image.len() - FOOTER_GUID_FROM_END;
    if image[footer..footer + GUID_LEN] != OVMF_TABLE_FOOTER_GUID.0 {
        return Err(TdvfError::NoFooterTable);
    }
    // The table's bytes end just before the footer's own length field.
    let table_end = footer - 2;
    let total = u16_at(image, table_end).unwrap_or(0);
    let entries_len = usize::from(total)
        .checked_sub(ENTRY_TRAILER_LEN)
        .filter(|&l| l <= table_end)
        .ok_or(TdvfError::BadTableLength(total))?;
    let table = &image[table_end - entries_len..table_end];
    let mut end = table.len();
    while end >= ENTRY_TRAILER_LEN {
        let entry_guid = &table[end - GUID_LEN..end];
        let length = u16_at(table, end - ENTRY_TRAILER_LEN).unwrap_or(0);
        let len = usize::from(length);
        if len < ENTRY_TRAILER_LEN || len > end {
            return Err(TdvfError::BadEntryLength {
                offset: table_end - entries_len + end - GUID_LEN,
                length,
            });
        }
        let start = end - len;
        if entry_guid == guid.0 {
            return Ok(Some(&table[start..end - ENTRY_TRAILER_LEN]));
        }
        end = start;
    }
    Ok(None)
}

fn u16_at(bytes: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        bytes.get(offset..offset.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(offset..offset.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        bytes.get(offset..offset.checked_add(8)?)?.try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests;
