//! The Linux boot-protocol E820 table (`boot_params.e820_table`), read and written.
//!
//! Each entry is 20 packed bytes: `u64 addr, u64 size, u32 type`. E820 has no standard type for
//! unaccepted memory, so the writer asks the caller how to report it ([`UnacceptedAs`]).

use core::fmt;

use super::{MapError, MemoryMap, Region, RegionKind};
use crate::bytes::{u32_at, u64_at};

/// Size of one packed `boot_e820_entry`.
pub const E820_ENTRY_SIZE: usize = 20;
/// Entries that fit in `boot_params.e820_table` (the zero page).
pub const E820_MAX_ENTRIES_ZEROPAGE: usize = 128;

/// Offset of `boot_params.e820_entries` (u8) in the zero page.
pub const ZERO_PAGE_E820_ENTRIES_OFFSET: usize = 0x1e8;
/// Offset of `boot_params.e820_table` in the zero page.
pub const ZERO_PAGE_E820_TABLE_OFFSET: usize = 0x2d0;

/// E820 type numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct E820Type(pub u32);

#[allow(missing_docs)]
impl E820Type {
    pub const RAM: Self = Self(1);
    pub const RESERVED: Self = Self(2);
    pub const ACPI: Self = Self(3);
    pub const NVS: Self = Self(4);
    pub const UNUSABLE: Self = Self(5);
    pub const PMEM: Self = Self(7);
    /// Legacy persistent memory (`E820_TYPE_PRAM`).
    pub const PRAM: Self = Self(12);
    /// Linux's soft-reserved (EFI specific-purpose) memory.
    pub const SOFT_RESERVED: Self = Self(0xefff_ffff);
}

/// The [`RegionKind`] of an E820 type. Unknown types are `Reserved`, as in Linux.
pub const fn e820_kind(entry_type: E820Type) -> RegionKind {
    match entry_type.0 {
        1 => RegionKind::Usable,
        3 => RegionKind::AcpiReclaimable,
        4 => RegionKind::AcpiNvs,
        5 => RegionKind::Unusable,
        7 | 12 => RegionKind::Persistent,
        _ => RegionKind::Reserved,
    }
}

/// How the writer reports `Unaccepted` memory, which E820 cannot express.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnacceptedAs {
    /// As reserved: a payload that knows nothing of acceptance will never touch it (safe, but
    /// the memory is lost to it).
    Reserved,
    /// As RAM: only for a payload that learns what to accept elsewhere, as Linux does from the
    /// EFI unaccepted-memory table ([`encode_unaccepted_table`](super::encode_unaccepted_table)).
    Ram,
    /// As a private type number agreed with the payload.
    Type(u32),
}

/// One E820 entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    /// First byte.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// Type number.
    pub entry_type: E820Type,
}

impl E820Entry {
    /// Decodes one packed entry from the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        Some(E820Entry {
            addr: u64_at(bytes, 0)?,
            size: u64_at(bytes, 8)?,
            entry_type: E820Type(u32_at(bytes, 16)?),
        })
    }

    /// The packed 20-byte form.
    pub fn encode(&self) -> [u8; E820_ENTRY_SIZE] {
        let mut out = [0; E820_ENTRY_SIZE];
        out[0..8].copy_from_slice(&self.addr.to_le_bytes());
        out[8..16].copy_from_slice(&self.size.to_le_bytes());
        out[16..20].copy_from_slice(&self.entry_type.0.to_le_bytes());
        out
    }
}

/// Why an E820 table could not be read or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum E820Error {
    /// The input is not a whole number of 20-byte entries.
    TrailingBytes {
        /// Input length.
        len: usize,
    },
    /// Entry `index` runs past the end of the 64-bit address space.
    RangeOverflow {
        /// Index of the entry.
        index: usize,
    },
    /// The output buffer holds fewer entries than the map needs.
    OutputTooSmall {
        /// Entries needed.
        needed: usize,
        /// Entries that fit.
        capacity: usize,
    },
    /// The zero page is shorter than the E820 fields, or claims more than 128 entries.
    BadZeroPage,
    /// The map could not hold the result (it holds the entries before the failing one).
    Map(MapError),
}

impl fmt::Display for E820Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TrailingBytes { len } => write!(f, "{len} bytes is not a multiple of 20"),
            Self::RangeOverflow { index } => write!(f, "E820 entry {index} overflows"),
            Self::OutputTooSmall { needed, capacity } => {
                write!(f, "E820 table needs {needed} entries, room for {capacity}")
            }
            Self::BadZeroPage => write!(f, "zero page E820 fields out of range"),
            Self::Map(e) => write!(f, "{e}"),
        }
    }
}

/// Inserts a packed E820 table (`count * 20` bytes, any order, overlaps allowed) into `map`.
///
/// Zero-sized entries are skipped. On a format error nothing is inserted.
pub fn read_e820_table<const N: usize>(
    bytes: &[u8],
    map: &mut MemoryMap<N>,
) -> Result<(), E820Error> {
    if !bytes.len().is_multiple_of(E820_ENTRY_SIZE) {
        return Err(E820Error::TrailingBytes { len: bytes.len() });
    }
    let entries = || {
        bytes
            .chunks_exact(E820_ENTRY_SIZE)
            .filter_map(E820Entry::decode)
    };
    for (index, entry) in entries().enumerate() {
        if entry.addr.checked_add(entry.size).is_none() {
            return Err(E820Error::RangeOverflow { index });
        }
    }
    for entry in entries().filter(|e| e.size != 0) {
        map.insert_len(entry.addr, entry.size, e820_kind(entry.entry_type))
            .map_err(E820Error::Map)?;
    }
    Ok(())
}

/// The E820 type the writer uses for `kind`. `Mmio` becomes reserved (E820 has no MMIO type).
pub const fn e820_type(kind: RegionKind, unaccepted: UnacceptedAs) -> E820Type {
    match kind {
        RegionKind::Usable => E820Type::RAM,
        RegionKind::Unaccepted => match unaccepted {
            UnacceptedAs::Reserved => E820Type::RESERVED,
            UnacceptedAs::Ram => E820Type::RAM,
            UnacceptedAs::Type(t) => E820Type(t),
        },
        RegionKind::AcpiReclaimable => E820Type::ACPI,
        RegionKind::AcpiNvs => E820Type::NVS,
        RegionKind::Unusable => E820Type::UNUSABLE,
        RegionKind::Persistent => E820Type::PMEM,
        RegionKind::Reserved | RegionKind::Mmio => E820Type::RESERVED,
    }
}

/// The map as E820 entries, sorted; touching regions that end up with one type are merged.
pub fn e820_entries<const N: usize>(
    map: &MemoryMap<N>,
    unaccepted: UnacceptedAs,
) -> impl Iterator<Item = E820Entry> + '_ {
    let mut regions = map.regions().iter().copied().peekable();
    core::iter::from_fn(move || {
        let first: Region = regions.next()?;
        let entry_type = e820_type(first.kind, unaccepted);
        let mut end = first.end;
        while let Some(next) =
            regions.next_if(|r| r.start == end && e820_type(r.kind, unaccepted) == entry_type)
        {
            end = next.end;
        }
        Some(E820Entry {
            addr: first.start,
            size: end - first.start,
            entry_type,
        })
    })
}

/// Writes the map as a packed E820 table into `out` and returns the number of entries.
///
/// Fails without writing when `out` is too small; for the zero page pass the 128-entry
/// `e820_table` (2560 bytes) and store the count in `e820_entries`.
pub fn write_e820_table<const N: usize>(
    map: &MemoryMap<N>,
    unaccepted: UnacceptedAs,
    out: &mut [u8],
) -> Result<usize, E820Error> {
    let needed = e820_entries(map, unaccepted).count();
    let capacity = out.len() / E820_ENTRY_SIZE;
    if needed > capacity {
        return Err(E820Error::OutputTooSmall { needed, capacity });
    }
    for (slot, entry) in out
        .chunks_exact_mut(E820_ENTRY_SIZE)
        .zip(e820_entries(map, unaccepted))
    {
        slot.copy_from_slice(&entry.encode());
    }
    Ok(needed)
}

fn zero_page_table_range(count: usize) -> Option<core::ops::Range<usize>> {
    (count <= E820_MAX_ENTRIES_ZEROPAGE).then_some(())?;
    let start = ZERO_PAGE_E820_TABLE_OFFSET;
    Some(start..start + count * E820_ENTRY_SIZE)
}

/// Inserts the E820 table of a Linux boot-protocol zero page (`boot_params`, 4 KiB) into `map`:
/// `e820_entries` entries of `e820_table`.
pub fn read_zero_page_e820<const N: usize>(
    zero_page: &[u8],
    map: &mut MemoryMap<N>,
) -> Result<(), E820Error> {
    let count = usize::from(
        *zero_page
            .get(ZERO_PAGE_E820_ENTRIES_OFFSET)
            .ok_or(E820Error::BadZeroPage)?,
    );
    let table = zero_page_table_range(count)
        .and_then(|range| zero_page.get(range))
        .ok_or(E820Error::BadZeroPage)?;
    read_e820_table(table, map)
}

/// Writes the map into a zero page's `e820_table` and sets `e820_entries`; returns the count.
/// Fails without writing when the zero page is short or the map needs more than 128 entries.
pub fn write_zero_page_e820<const N: usize>(
    map: &MemoryMap<N>,
    unaccepted: UnacceptedAs,
    zero_page: &mut [u8],
) -> Result<usize, E820Error> {
    let full = zero_page_table_range(E820_MAX_ENTRIES_ZEROPAGE).ok_or(E820Error::BadZeroPage)?;
    if zero_page.len() < full.end {
        return Err(E820Error::BadZeroPage);
    }
    let table = zero_page.get_mut(full).ok_or(E820Error::BadZeroPage)?;
    let count = write_e820_table(map, unaccepted, table)?;
    let entries = zero_page
        .get_mut(ZERO_PAGE_E820_ENTRIES_OFFSET)
        .ok_or(E820Error::BadZeroPage)?;
    // count <= 128: write_e820_table checked it against the 128-entry table.
    *entries = count as u8;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use RegionKind::*;
    use std::vec::Vec;

    fn table(entries: &[(u64, u64, u32)]) -> Vec<u8> {
        entries
            .iter()
            .flat_map(|&(addr, size, t)| {
                E820Entry {
                    addr,
                    size,
                    entry_type: E820Type(t),
                }
                .encode()
            })
            .collect()
    }

    /// A QEMU/SeaBIOS-like table, delivered unsorted and with an overlapping duplicate.
    fn qemu_like() -> Vec<u8> {
        table(&[
            (0x10_0000, 0x7fee_0000, 1),
            (0x0, 0x9_fc00, 1),
            (0x9_fc00, 0x400, 2),
            (0xf_0000, 0x1_0000, 2),
            (0x7ffe_0000, 0x2_0000, 2),
            (0xfeff_c000, 0x4000, 2),
            (0x1_0000_0000, 0x8000_0000, 1),
            (0xfd00_0000, 0x100_0000, 0xdead), // unknown type: reserved
            (0x7ffd_f000, 0x2000, 3),          // ACPI overlapping RAM and reserved
            (0x1_0000_0000, 0x1000, 1),        // duplicate
            (0x2_0000_0000, 0, 1),             // empty
        ])
    }

    #[test]
    fn qemu_like_table_is_sanitized() {
        let mut map = MemoryMap::<16>::new();
        read_e820_table(&qemu_like(), &mut map).unwrap();
        let r = Region::new;
        assert_eq!(
            map.regions(),
            &[
                r(0x0, 0x9_fc00, Usable),
                r(0x9_fc00, 0xa_0000, Reserved),
                r(0xf_0000, 0x10_0000, Reserved),
                r(0x10_0000, 0x7ffd_f000, Usable),
                r(0x7ffd_f000, 0x7ffe_0000, AcpiReclaimable),
                r(0x7ffe_0000, 0x8000_0000, Reserved),
                r(0xfd00_0000, 0xfe00_0000, Reserved),
                r(0xfeff_c000, 0xff00_0000, Reserved),
                r(0x1_0000_0000, 0x1_8000_0000, Usable),
            ]
        );
    }

    #[test]
    fn malformed_tables_are_rejected() {
        let mut map = MemoryMap::<16>::new();
        let good = qemu_like();
        assert_eq!(
            read_e820_table(&good[..good.len() - 3], &mut map),
            Err(E820Error::TrailingBytes {
                len: good.len() - 3
            })
        );
        let overflow = table(&[(0, 0x1000, 1), (u64::MAX - 0xfff, 0x1000, 1)]);
        assert_eq!(
            read_e820_table(&overflow, &mut map),
            Err(E820Error::RangeOverflow { index: 1 })
        );
        assert!(map.is_empty());
    }

    #[test]
    fn writer_reports_unaccepted_as_the_caller_chooses_and_merges() {
        let mut map = MemoryMap::<16>::new();
        map.insert(0, 0x8000_0000, Usable).unwrap();
        map.insert(0x2000_0000, 0x8000_0000, Unaccepted).unwrap();
        map.insert(0xfec0_0000, 0xfec0_1000, Mmio).unwrap();
        map.insert(0xfec0_1000, 0xfec0_2000, Reserved).unwrap();

        let entries: Vec<_> = e820_entries(&map, UnacceptedAs::Ram).collect();
        let e = |addr, size, t| E820Entry {
            addr,
            size,
            entry_type: t,
        };
        assert_eq!(
            entries,
            [
                e(0, 0x8000_0000, E820Type::RAM),
                e(0xfec0_0000, 0x2000, E820Type::RESERVED)
            ]
        );
        let entries: Vec<_> = e820_entries(&map, UnacceptedAs::Type(0x1000)).collect();
        assert_eq!(entries[1], e(0x2000_0000, 0x6000_0000, E820Type(0x1000)));
        let entries: Vec<_> = e820_entries(&map, UnacceptedAs::Reserved).collect();
        assert_eq!(entries[1], e(0x2000_0000, 0x6000_0000, E820Type::RESERVED));
        assert_eq!(entries.len(), 3); // the reserved-reported unaccepted range stays separate from MMIO (not touching)
    }

    #[test]
    fn zero_page_round_trip_and_bounds() {
        let mut map = MemoryMap::<16>::new();
        read_e820_table(&qemu_like(), &mut map).unwrap();
        let mut zero_page = [0u8; 4096];
        let count = write_zero_page_e820(&map, UnacceptedAs::Reserved, &mut zero_page).unwrap();
        assert_eq!(usize::from(zero_page[ZERO_PAGE_E820_ENTRIES_OFFSET]), count);
        let mut again = MemoryMap::<16>::new();
        read_zero_page_e820(&zero_page, &mut again).unwrap();
        assert_eq!(again, map);

        zero_page[ZERO_PAGE_E820_ENTRIES_OFFSET] = 129;
        assert_eq!(
            read_zero_page_e820(&zero_page, &mut again),
            Err(E820Error::BadZeroPage)
        );
        assert_eq!(
            read_zero_page_e820(&zero_page[..0x1e8], &mut again),
            Err(E820Error::BadZeroPage)
        );
        zero_page[ZERO_PAGE_E820_ENTRIES_OFFSET] = 128;
        assert_eq!(
            read_zero_page_e820(&zero_page[..0xcd0 - 1], &mut again),
            Err(E820Error::BadZeroPage)
        );
        assert_eq!(
            write_zero_page_e820(&map, UnacceptedAs::Reserved, &mut zero_page[..0xcd0 - 1]),
            Err(E820Error::BadZeroPage)
        );

        let mut crowded = MemoryMap::<256>::new();
        for i in 0..129u64 {
            crowded
                .insert(i * 0x2000, i * 0x2000 + 0x1000, Usable)
                .unwrap();
        }
        let mut zero_page = [0u8; 4096];
        assert_eq!(
            write_zero_page_e820(&crowded, UnacceptedAs::Reserved, &mut zero_page),
            Err(E820Error::OutputTooSmall {
                needed: 129,
                capacity: 128
            })
        );
        assert_eq!(zero_page, [0u8; 4096]);
    }

    #[test]
    fn write_then_read_round_trips() {
        let mut map = MemoryMap::<16>::new();
        read_e820_table(&qemu_like(), &mut map).unwrap();
        let mut out = [0u8; E820_MAX_ENTRIES_ZEROPAGE * E820_ENTRY_SIZE];
        let count = write_e820_table(&map, UnacceptedAs::Reserved, &mut out).unwrap();
        assert_eq!(count, map.len());
        let mut again = MemoryMap::<16>::new();
        read_e820_table(&out[..count * E820_ENTRY_SIZE], &mut again).unwrap();
        assert_eq!(again, map);

        let mut small = [0u8; 3 * E820_ENTRY_SIZE + 19];
        assert_eq!(
            write_e820_table(&map, UnacceptedAs::Reserved, &mut small),
            Err(E820Error::OutputTooSmall {
                needed: map.len(),
                capacity: 3
            })
        );
        assert!(small.iter().all(|&b| b == 0));
    }
}
