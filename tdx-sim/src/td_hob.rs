//! The TD HOB a VMM writes into TDVF's TD_HOB section, built as QEMU builds it.
//!
//! # What QEMU does (`target/i386/kvm/tdx.c`, `hw/i386/tdvf-hob.c`)
//! 1. `tdx_init_ram_entries`: every E820 RAM entry, in E820 order, becomes a RAM entry marked
//!    unaccepted. Nothing else (MMIO, reserved) is described.
//! 2. `tdx_finalize_vm`, for each TD_HOB and TEMP_MEM section in metadata order,
//!    `tdx_accept_ram_range`: find the first RAM entry overlapping the section; the section
//!    must lie wholly inside it (else QEMU exits); if that entry is already "added" nothing
//!    changes; otherwise the entry is replaced by the section's range, marked added, and the
//!    pieces before and after it are appended as new unaccepted entries. Neighbouring added
//!    ranges are not merged.
//! 3. The entries are sorted by address (`tdx_ram_entry_compare`).
//! 4. `tdvf_hob_create` writes, from the start of the TD_HOB section: the PHIT (version 9, boot
//!    mode 0, the four memory fields zero, `EfiEndOfHobList` the guest-physical address just past
//!    the end-of-list HOB); one resource descriptor per RAM entry (owner GUID zero, attributes
//!    PRESENT|INITIALIZED|TESTED = 0x7, type 7 MEMORY_UNACCEPTED for unaccepted entries and type
//!    0 SYSTEM_MEMORY for added ones); then the end-of-list HOB. Every HOB is a multiple of 8
//!    bytes, so QEMU's 8-byte alignment adds no padding. A HOB larger than the section is fatal
//!    for QEMU; here it is [`HobBuildError::TooSmall`].
//!
//! Note that edk2's own PEI core points `EfiEndOfHobList` *at* the end-of-list HOB; QEMU points
//! 8 bytes further, and TDVF accepts both.

use core::fmt;

use crate::tdvf::{SectionType, TdvfMetadata};

/// `EFI_HOB_HANDOFF_TABLE_VERSION`.
pub const HANDOFF_TABLE_VERSION: u32 = 9;
/// `EFI_RESOURCE_ATTRIBUTE_TDVF_PRIVATE` and `_TDVF_UNACCEPTED` (QEMU): present, initialized,
/// tested.
pub const TDVF_RAM_ATTRIBUTES: u32 = 0x7;
/// `EFI_RESOURCE_SYSTEM_MEMORY`.
pub const RESOURCE_SYSTEM_MEMORY: u32 = 0;
/// `EFI_RESOURCE_MEMORY_UNACCEPTED`.
pub const RESOURCE_MEMORY_UNACCEPTED: u32 = 7;

const HOB_HANDOFF: u16 = 0x0001;
const HOB_RESOURCE_DESCRIPTOR: u16 = 0x0003;
const HOB_END_OF_LIST: u16 = 0xffff;
/// Bytes of the PHIT.
pub const HANDOFF_LEN: usize = 56;
/// Bytes of one resource descriptor HOB.
pub const RESOURCE_DESCRIPTOR_LEN: usize = 48;
/// Bytes of the end-of-list HOB.
pub const END_OF_LIST_LEN: usize = 8;

/// Whether a RAM range was added by the VMM (accepted private memory) or is left for the TD to
/// accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RamState {
    /// Private memory the TD must TDG.MEM.PAGE.ACCEPT before use (QEMU `TDX_RAM_UNACCEPTED`).
    Unaccepted,
    /// Memory the VMM added at build time (QEMU `TDX_RAM_ADDED`).
    Added,
}

/// One RAM range of the TD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RamEntry {
    /// First byte.
    pub start: u64,
    /// Bytes (never zero; `start + length` does not overflow).
    pub length: u64,
    /// Accepted or not.
    pub state: RamState,
}

impl RamEntry {
    /// One past the last byte.
    pub const fn end(&self) -> u64 {
        self.start + self.length
    }
}

/// Why the RAM entries could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RamError {
    /// More entries than the table's capacity.
    Full,
    /// An E820 RAM range that is empty, wraps around, or overlaps an earlier one.
    BadRange {
        /// Its start.
        start: u64,
        /// Its length.
        length: u64,
    },
    /// A range to accept is not inside a single RAM entry (QEMU: "Failed to accept memory for
    /// TDVF section").
    NotInRam {
        /// Its start.
        start: u64,
        /// Its length.
        length: u64,
    },
}

impl fmt::Display for RamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => write!(f, "too many RAM entries"),
            Self::BadRange { start, length } => {
                write!(f, "bad RAM range {start:#x}+{length:#x}")
            }
            Self::NotInRam { start, length } => {
                write!(f, "{start:#x}+{length:#x} is not inside one RAM range")
            }
        }
    }
}

impl core::error::Error for RamError {}

/// The TD's RAM as QEMU's `TdxGuest.ram_entries`, in a fixed-capacity table.
#[derive(Clone, Copy, Debug)]
pub struct TdRam<const N: usize> {
    entries: [RamEntry; N],
    len: usize,
}

impl<const N: usize> TdRam<N> {
    /// All RAM unaccepted: one entry per `(start, length)` E820 RAM range, in the given order.
    pub fn from_e820_ram(ranges: impl IntoIterator<Item = (u64, u64)>) -> Result<Self, RamError> {
        let mut ram = TdRam {
            entries: [RamEntry {
                start: 0,
                length: 0,
                state: RamState::Unaccepted,
            }; N],
            len: 0,
        };
        for (start, length) in ranges {
            let bad = RamError::BadRange { start, length };
            let end = start.checked_add(length).ok_or(bad)?;
            if length == 0
                || ram
                    .entries()
                    .iter()
                    .any(|e| start < e.end() && e.start < end)
            {
                return Err(bad);
            }
            ram.push(start, length, RamState::Unaccepted)?;
        }
        Ok(ram)
    }

    /// The RAM of a TD built from `metadata`: [`from_e820_ram`](Self::from_e820_ram), then every
    /// TD_HOB and TEMP_MEM section accepted in metadata order, then sorted, as QEMU's
    /// `tdx_finalize_vm` does.
    pub fn for_tdvf(
        e820_ram: impl IntoIterator<Item = (u64, u64)>,
        metadata: &TdvfMetadata,
    ) -> Result<Self, RamError> {
        let mut ram = Self::from_e820_ram(e820_ram)?;
        for section in metadata.sections() {
            if matches!(
                section.section_type,
                SectionType::TdHob | SectionType::TempMem
            ) {
                ram.accept(section.gpa, section.memory_size)?;
            }
        }
        ram.sort();
        Ok(ram)
    }

    /// Marks `[start, start + length)` added, as QEMU's `tdx_accept_ram_range`: the range must
    /// lie inside the first entry it overlaps; that entry is split into the range and its
    /// unaccepted head and tail (appended at the end, so call [`sort`](Self::sort) after).
    pub fn accept(&mut self, start: u64, length: u64) -> Result<(), RamError> {
        let not_in_ram = RamError::NotInRam { start, length };
        let end = start.checked_add(length).ok_or(not_in_ram)?;
        let index = self
            .entries()
            .iter()
            .position(|e| end > e.start && start < e.end())
            .ok_or(not_in_ram)?;
        let entry = self.entries[index];
        if entry.start > start || entry.end() < end {
            return Err(not_in_ram);
        }
        if entry.state == RamState::Added {
            return Ok(());
        }
        let pieces = usize::from(start > entry.start) + usize::from(end < entry.end());
        if self.len + pieces > N {
            return Err(RamError::Full);
        }
        self.entries[index] = RamEntry {
            start,
            length,
            state: RamState::Added,
        };
        if start > entry.start {
            self.push(entry.start, start - entry.start, RamState::Unaccepted)?;
        }
        if end < entry.end() {
            self.push(end, entry.end() - end, RamState::Unaccepted)?;
        }
        Ok(())
    }

    /// Sorts the entries by address (they never overlap).
    pub fn sort(&mut self) {
        // Insertion sort, not `core`'s: the precompiled `core` sort uses the red zone, which a
        // bare-metal image taking interrupts on the same stack must not run. N is tiny.
        let entries = &mut self.entries[..self.len];
        for i in 1..entries.len() {
            let mut j = i;
            while j > 0 && entries[j - 1].start > entries[j].start {
                entries.swap(j - 1, j);
                j -= 1;
            }
        }
    }

    /// The entries.
    pub fn entries(&self) -> &[RamEntry] {
        &self.entries[..self.len]
    }

    fn push(&mut self, start: u64, length: u64, state: RamState) -> Result<(), RamError> {
        let slot = self.entries.get_mut(self.len).ok_or(RamError::Full)?;
        *slot = RamEntry {
            start,
            length,
            state,
        };
        self.len += 1;
        Ok(())
    }
}

/// Why the HOB could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HobBuildError {
    /// The buffer (the TD_HOB section) is smaller than the HOB.
    TooSmall {
        /// Bytes the HOB needs.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The HOB's guest-physical end does not fit in 64 bits.
    AddressOverflow,
}

impl fmt::Display for HobBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooSmall { needed, available } => {
                write!(
                    f,
                    "TD_HOB overrun: {needed} bytes needed, {available} available"
                )
            }
            Self::AddressOverflow => write!(f, "TD HOB address overflows"),
        }
    }
}

impl core::error::Error for HobBuildError {}

/// Bytes of the HOB for `ram_entries` RAM entries.
pub const fn td_hob_len(ram_entries: usize) -> usize {
    HANDOFF_LEN + RESOURCE_DESCRIPTOR_LEN * ram_entries + END_OF_LIST_LEN
}

/// Writes the TD HOB for `ram` into `buf`, which the TD sees at guest-physical `hob_gpa` (the
/// TD_HOB section's address), and returns its length. Bytes after the HOB are left as they are
/// (QEMU's section memory is fresh, zeroed memory). Nothing is written on error.
pub fn build_td_hob(
    buf: &mut [u8],
    hob_gpa: u64,
    ram: &[RamEntry],
) -> Result<usize, HobBuildError> {
    let needed = ram
        .len()
        .checked_mul(RESOURCE_DESCRIPTOR_LEN)
        .and_then(|r| r.checked_add(HANDOFF_LEN + END_OF_LIST_LEN))
        .ok_or(HobBuildError::TooSmall {
            needed: usize::MAX,
            available: buf.len(),
        })?;
    if needed > buf.len() {
        return Err(HobBuildError::TooSmall {
            needed,
            available: buf.len(),
        });
    }
    let end_of_list = hob_gpa
        .checked_add(needed as u64)
        .ok_or(HobBuildError::AddressOverflow)?;
    let mut writer = Writer { buf, at: 0 };

    writer.header(HOB_HANDOFF, HANDOFF_LEN);
    writer.u32(HANDOFF_TABLE_VERSION);
    writer.u32(0); // BootMode: BOOT_WITH_FULL_CONFIGURATION
    for _ in 0..4 {
        writer.u64(0); // EfiMemoryTop/Bottom, EfiFreeMemoryTop/Bottom: unused by TDVF
    }
    writer.u64(end_of_list);

    for entry in ram {
        writer.header(HOB_RESOURCE_DESCRIPTOR, RESOURCE_DESCRIPTOR_LEN);
        writer.bytes(&[0; 16]); // Owner: EFI_HOB_OWNER_ZERO
        writer.u32(match entry.state {
            RamState::Unaccepted => RESOURCE_MEMORY_UNACCEPTED,
            RamState::Added => RESOURCE_SYSTEM_MEMORY,
        });
        writer.u32(TDVF_RAM_ATTRIBUTES);
        writer.u64(entry.start);
        writer.u64(entry.length);
    }

    writer.header(HOB_END_OF_LIST, END_OF_LIST_LEN);
    debug_assert_eq!(writer.at, needed);
    Ok(needed)
}

/// Sequential little-endian writes into a buffer already checked to be large enough.
struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, bytes: &[u8]) {
        if let Some(dst) = self.buf.get_mut(self.at..self.at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        self.at += bytes.len();
    }
    fn header(&mut self, hob_type: u16, len: usize) {
        self.bytes(&hob_type.to_le_bytes());
        self.bytes(&(len as u16).to_le_bytes());
        self.bytes(&[0; 4]);
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests;
