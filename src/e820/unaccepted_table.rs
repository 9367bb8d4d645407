//! Linux's EFI unaccepted-memory table (`LINUX_EFI_UNACCEPTED_MEM_TABLE_GUID`): parse and produce.
//!
//! Layout: `{ u32 version = 1; u32 unit_size; u64 phys_base; u64 size; u8 bitmap[size] }`. Bit
//! `i` (byte `i / 8`, bit `i % 8`, least significant first) set means the unit
//! `[phys_base + i * unit_size, phys_base + (i + 1) * unit_size)` still has to be accepted. The
//! EFI stub uses 2 MiB units and places `phys_base` at the first unaccepted unit.
//!
//! The bitmap cannot describe a partial unit, so the producer reports the unaligned head and
//! tail of each unaccepted range (and ranges smaller than a unit) to the caller, who accepts
//! them before handing over, as the EFI stub does.

use core::fmt;
use core::ops::Range;

use super::{Guid, MapError, MemoryMap};
use crate::bytes::{u32_at, u64_at};

/// The EFI configuration table GUID d5d1de3c-105c-44f9-9ea9-bcef98120031.
pub const UNACCEPTED_TABLE_GUID: Guid = Guid::from_fields(
    0xd5d1_de3c,
    0x105c,
    0x44f9,
    [0x9e, 0xa9, 0xbc, 0xef, 0x98, 0x12, 0x00, 0x31],
);
/// The only table version this module reads and writes.
pub const UNACCEPTED_TABLE_VERSION: u32 = 1;
/// Bytes before the bitmap.
pub const UNACCEPTED_TABLE_HEADER_LEN: usize = 24;
/// The unit Linux uses (`PMD_SIZE`, 2 MiB).
pub const UNACCEPTED_UNIT_SIZE: u32 = 2 << 20;

/// Why an unaccepted-memory table could not be parsed or produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnacceptedTableError {
    /// Fewer than 24 bytes.
    Truncated,
    /// `version` is not 1.
    UnsupportedVersion(u32),
    /// `unit_size` is not a power of two of at least 4 KiB.
    BadUnitSize(u32),
    /// `size` exceeds the bytes provided.
    BitmapTruncated {
        /// The header's `size`.
        size: u64,
        /// Bytes available after the header.
        available: usize,
    },
    /// The bitmap would describe memory past the 64-bit address space.
    RangeOverflow,
    /// The output buffer is smaller than [`unaccepted_table_len`].
    OutputTooSmall {
        /// Bytes needed.
        needed: usize,
    },
    /// Marking the map failed.
    Map(MapError),
}

impl fmt::Display for UnacceptedTableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => write!(f, "unaccepted-memory table header truncated"),
            Self::UnsupportedVersion(v) => write!(f, "unaccepted-memory table version {v}"),
            Self::BadUnitSize(u) => write!(f, "bad unaccepted-memory unit size {u:#x}"),
            Self::BitmapTruncated { size, available } => {
                write!(f, "bitmap of {size} bytes, only {available} available")
            }
            Self::RangeOverflow => write!(f, "bitmap covers more than the address space"),
            Self::OutputTooSmall { needed } => write!(f, "need {needed} bytes for the table"),
            Self::Map(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for UnacceptedTableError {}

/// A validated unaccepted-memory table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnacceptedBitmap<'a> {
    unit_size: u64,
    phys_base: u64,
    bitmap: &'a [u8],
}

fn valid_unit(unit_size: u32) -> bool {
    unit_size.is_power_of_two() && unit_size >= 4096
}

impl<'a> UnacceptedBitmap<'a> {
    /// Validates the header and that `size` bitmap bytes follow it; extra bytes are ignored.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, UnacceptedTableError> {
        let (Some(version), Some(unit_size), Some(phys_base), Some(size)) = (
            u32_at(bytes, 0),
            u32_at(bytes, 4),
            u64_at(bytes, 8),
            u64_at(bytes, 16),
        ) else {
            return Err(UnacceptedTableError::Truncated);
        };
        if version != UNACCEPTED_TABLE_VERSION {
            return Err(UnacceptedTableError::UnsupportedVersion(version));
        }
        if !valid_unit(unit_size) {
            return Err(UnacceptedTableError::BadUnitSize(unit_size));
        }
        let body = bytes.get(UNACCEPTED_TABLE_HEADER_LEN..).unwrap_or(&[]);
        let bitmap = usize::try_from(size)
            .ok()
            .and_then(|len| body.get(..len))
            .ok_or(UnacceptedTableError::BitmapTruncated {
                size,
                available: body.len(),
            })?;
        let table = UnacceptedBitmap {
            unit_size: u64::from(unit_size),
            phys_base,
            bitmap,
        };
        table
            .covered_end()
            .ok_or(UnacceptedTableError::RangeOverflow)?;
        Ok(table)
    }

    /// Bytes per bit.
    pub fn unit_size(&self) -> u64 {
        self.unit_size
    }

    /// Address of the first unit.
    pub fn phys_base(&self) -> u64 {
        self.phys_base
    }

    /// The bitmap bytes.
    pub fn bitmap(&self) -> &'a [u8] {
        self.bitmap
    }

    /// One past the last byte the bitmap can describe.
    pub fn covered_end(&self) -> Option<u64> {
        (self.bitmap.len() as u64)
            .checked_mul(8)?
            .checked_mul(self.unit_size)?
            .checked_add(self.phys_base)
    }

    /// True when the bitmap marks the unit containing `addr` as unaccepted.
    pub fn is_unaccepted(&self, addr: u64) -> bool {
        let Some(offset) = addr.checked_sub(self.phys_base) else {
            return false;
        };
        let bit = offset / self.unit_size;
        let Ok(byte) = usize::try_from(bit / 8) else {
            return false;
        };
        self.bitmap
            .get(byte)
            .is_some_and(|b| b & (1 << (bit % 8)) != 0)
    }

    /// The unaccepted ranges, in address order, runs of set bits merged.
    pub fn ranges(&self) -> impl Iterator<Item = Range<u64>> + 'a {
        let table = *self;
        let total_bits = self.bitmap.len() as u64 * 8;
        let mut bit = 0u64;
        core::iter::from_fn(move || {
            let first = table.next_bit(bit, total_bits, true)?;
            let last = table
                .next_bit(first, total_bits, false)
                .unwrap_or(total_bits);
            bit = last;
            // Cannot overflow: parse checked that the whole bitmap fits the address space.
            let start = table.phys_base + first * table.unit_size;
            let end = table.phys_base + last * table.unit_size;
            Some(start..end)
        })
    }

    /// The first bit at or after `from` whose value is `set`, skipping whole bytes.
    fn next_bit(&self, mut from: u64, total_bits: u64, set: bool) -> Option<u64> {
        let skip = if set { 0x00 } else { 0xff };
        while from < total_bits {
            let byte = *self.bitmap.get(usize::try_from(from / 8).ok()?)?;
            if from.is_multiple_of(8) && byte == skip {
                from += 8;
                continue;
            }
            if (byte >> (from % 8)) & 1 == u8::from(set) {
                return Some(from);
            }
            from += 1;
        }
        None
    }

    /// Marks the `Usable` parts of every unaccepted range in `map` as `Unaccepted`. Ranges over
    /// gaps or other kinds change nothing: the bitmap cannot invent RAM.
    pub fn apply_to<const N: usize>(&self, map: &mut MemoryMap<N>) -> Result<(), MapError> {
        self.ranges()
            .try_for_each(|range| map.mark_unaccepted(range.start, range.end))
    }
}

/// The bitmap's span for `map`: `(phys_base, bits)`, or `None` when nothing is unaccepted.
fn span<const N: usize>(
    map: &MemoryMap<N>,
    unit_size: u32,
) -> Result<Option<(u64, u64)>, UnacceptedTableError> {
    if !valid_unit(unit_size) {
        return Err(UnacceptedTableError::BadUnitSize(unit_size));
    }
    let unit = u64::from(unit_size);
    let mut ranges = map.unaccepted_ranges();
    let Some(first) = ranges.next() else {
        return Ok(None);
    };
    let last_end = ranges.last().map_or(first.end, |r| r.end);
    let base = first.start & !(unit - 1);
    let end = last_end
        .checked_next_multiple_of(unit)
        .ok_or(UnacceptedTableError::RangeOverflow)?;
    Ok(Some((base, (end - base) / unit)))
}

/// Bytes needed to encode `map`'s unaccepted memory with `unit_size` (header included).
pub fn unaccepted_table_len<const N: usize>(
    map: &MemoryMap<N>,
    unit_size: u32,
) -> Result<usize, UnacceptedTableError> {
    let bits = span(map, unit_size)?.map_or(0, |(_, bits)| bits);
    usize::try_from(bits.div_ceil(8))
        .ok()
        .and_then(|bytes| bytes.checked_add(UNACCEPTED_TABLE_HEADER_LEN))
        .ok_or(UnacceptedTableError::RangeOverflow)
}

/// Writes the unaccepted-memory table for `map` into `out` and returns its length.
///
/// Every whole unit inside an `Unaccepted` region gets its bit. The parts the bitmap cannot
/// express (an unaligned head or tail, or a range inside a single unit) are passed to
/// `accept_now`, in address order, before this returns: accept them and then call
/// [`MemoryMap::mark_accepted`]. Nothing is written or reported if `out` is too small. With no
/// unaccepted memory the table has an empty bitmap.
pub fn encode_unaccepted_table<const N: usize>(
    map: &MemoryMap<N>,
    unit_size: u32,
    out: &mut [u8],
    mut accept_now: impl FnMut(Range<u64>),
) -> Result<usize, UnacceptedTableError> {
    let needed = unaccepted_table_len(map, unit_size)?;
    let out = out
        .get_mut(..needed)
        .ok_or(UnacceptedTableError::OutputTooSmall { needed })?;
    let (base, _) = span(map, unit_size)?.unwrap_or((0, 0));
    let unit = u64::from(unit_size);
    let (header, bitmap) = out.split_at_mut(UNACCEPTED_TABLE_HEADER_LEN);
    header[0..4].copy_from_slice(&UNACCEPTED_TABLE_VERSION.to_le_bytes());
    header[4..8].copy_from_slice(&unit_size.to_le_bytes());
    header[8..16].copy_from_slice(&base.to_le_bytes());
    header[16..24].copy_from_slice(&(bitmap.len() as u64).to_le_bytes());
    bitmap.fill(0);
    for range in map.unaccepted_ranges() {
        // span() proved the rounded-up end of every range fits.
        let first = range.start.next_multiple_of(unit);
        let last = range.end & !(unit - 1);
        if first >= last {
            accept_now(range);
            continue;
        }
        if range.start < first {
            accept_now(range.start..first);
        }
        set_bits(bitmap, (first - base) / unit, (last - base) / unit);
        if last < range.end {
            accept_now(last..range.end);
        }
    }
    Ok(needed)
}

fn set_bits(bitmap: &mut [u8], mut from: u64, to: u64) {
    while from < to {
        let Some(byte) = usize::try_from(from / 8)
            .ok()
            .and_then(|i| bitmap.get_mut(i))
        else {
            return;
        };
        if from.is_multiple_of(8) && to - from >= 8 {
            *byte = 0xff;
            from += 8;
        } else {
            *byte |= 1 << (from % 8);
            from += 1;
        }
    }
}

/// The page-aligned physical range that holds the whole table whose first 24 bytes (`header`)
/// lie at `address`: what a kernel maps to read it and keeps reserved while it uses it.
///
/// The EFI stub allocates the table from pool memory, so it starts anywhere in a page, and its
/// `size` (bitmap bytes) need not be a multiple of 8: with `-m 67000M` the 4084-byte table
/// crosses a page boundary. Rounding only the length up to a page (instead of the table's end)
/// misses the second page; this is the range from `address` rounded down to the table's end
/// rounded up. Checks the header as [`UnacceptedBitmap::parse`] does, except that the bitmap
/// need not be present yet.
pub fn unaccepted_table_extent(
    address: u64,
    header: &[u8],
) -> Result<Range<u64>, UnacceptedTableError> {
    const PAGE: u64 = 4096;
    let (Some(version), Some(unit_size), Some(size)) =
        (u32_at(header, 0), u32_at(header, 4), u64_at(header, 16))
    else {
        return Err(UnacceptedTableError::Truncated);
    };
    if version != UNACCEPTED_TABLE_VERSION {
        return Err(UnacceptedTableError::UnsupportedVersion(version));
    }
    if !valid_unit(unit_size) {
        return Err(UnacceptedTableError::BadUnitSize(unit_size));
    }
    let end = size
        .checked_add(UNACCEPTED_TABLE_HEADER_LEN as u64)
        .and_then(|len| address.checked_add(len))
        .and_then(|end| end.checked_next_multiple_of(PAGE))
        .ok_or(UnacceptedTableError::RangeOverflow)?;
    Ok(address & !(PAGE - 1)..end)
}

/// [`encode_unaccepted_table`]'s counterpart for a caller that has a map and a bitmap: marks the
/// bitmap's ranges in `map` (see [`UnacceptedBitmap::apply_to`]).
pub fn read_unaccepted_table<const N: usize>(
    bytes: &[u8],
    map: &mut MemoryMap<N>,
) -> Result<(), UnacceptedTableError> {
    UnacceptedBitmap::parse(bytes)?
        .apply_to(map)
        .map_err(UnacceptedTableError::Map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e820::{Region, RegionKind};
    use RegionKind::*;
    use std::vec;
    use std::vec::Vec;

    const MIB: u64 = 1 << 20;

    fn header(version: u32, unit: u32, base: u64, size: u64) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&version.to_le_bytes());
        v.extend_from_slice(&unit.to_le_bytes());
        v.extend_from_slice(&base.to_le_bytes());
        v.extend_from_slice(&size.to_le_bytes());
        v
    }

    #[test]
    fn parse_runs_and_point_queries() {
        let mut bytes = header(1, UNACCEPTED_UNIT_SIZE, 512 * MIB, 3);
        bytes.extend_from_slice(&[0b1111_0000, 0xff, 0b0000_0101, 0xee]); // last byte is not bitmap
        let table = UnacceptedBitmap::parse(&bytes).unwrap();
        let ranges: Vec<_> = table.ranges().collect();
        assert_eq!(
            ranges,
            [
                512 * MIB + 8 * MIB..512 * MIB + 34 * MIB,
                512 * MIB + 36 * MIB..512 * MIB + 38 * MIB,
            ]
        );
        assert!(!table.is_unaccepted(512 * MIB));
        assert!(table.is_unaccepted(512 * MIB + 8 * MIB));
        assert!(table.is_unaccepted(512 * MIB + 34 * MIB - 1));
        assert!(!table.is_unaccepted(512 * MIB + 34 * MIB));
        assert!(!table.is_unaccepted(0));
        assert!(!table.is_unaccepted(u64::MAX));
        assert_eq!(table.covered_end(), Some(512 * MIB + 48 * MIB));
    }

    #[test]
    fn malformed_tables_are_rejected() {
        use UnacceptedTableError::*;
        let parse = |b: &[u8]| UnacceptedBitmap::parse(b).unwrap_err();
        assert_eq!(parse(&header(1, 1 << 21, 0, 0)[..23]), Truncated);
        assert_eq!(parse(&header(2, 1 << 21, 0, 0)), UnsupportedVersion(2));
        assert_eq!(parse(&header(1, 0, 0, 0)), BadUnitSize(0));
        assert_eq!(parse(&header(1, 3 << 20, 0, 0)), BadUnitSize(3 << 20));
        assert_eq!(parse(&header(1, 2048, 0, 0)), BadUnitSize(2048));
        assert_eq!(
            parse(&header(1, 1 << 21, 0, u64::MAX)),
            BitmapTruncated {
                size: u64::MAX,
                available: 0
            }
        );
        let mut near_top = header(1, 1 << 21, u64::MAX - (8 << 21) + 1, 1);
        near_top.push(0x80);
        assert_eq!(parse(&near_top), RangeOverflow);
    }

    #[test]
    fn encode_marks_whole_units_and_reports_the_rest() {
        let mut map = MemoryMap::<16>::new();
        map.insert(0, 4096 * MIB, Usable).unwrap();
        map.insert(513 * MIB, 520 * MIB + 4096, Unaccepted).unwrap(); // unaligned both ends
        map.insert(530 * MIB, 531 * MIB, Unaccepted).unwrap(); // inside one unit
        map.insert(1024 * MIB, 4096 * MIB, Unaccepted).unwrap();
        let len = unaccepted_table_len(&map, UNACCEPTED_UNIT_SIZE).unwrap();
        // phys_base 512 MiB, end 4096 MiB: 1792 units = 224 bytes.
        assert_eq!(len, 24 + 224);
        let mut out = vec![0xcc; len + 10];
        let mut eager = Vec::new();
        let written =
            encode_unaccepted_table(&map, UNACCEPTED_UNIT_SIZE, &mut out, |r| eager.push(r))
                .unwrap();
        assert_eq!(written, len);
        assert_eq!(
            eager,
            [
                513 * MIB..514 * MIB,
                520 * MIB..520 * MIB + 4096,
                530 * MIB..531 * MIB
            ]
        );
        let table = UnacceptedBitmap::parse(&out[..written]).unwrap();
        assert_eq!(table.phys_base(), 512 * MIB);
        let ranges: Vec<_> = table.ranges().collect();
        assert_eq!(ranges, [514 * MIB..520 * MIB, 1024 * MIB..4096 * MIB]);

        // Round trip: a map with only the eager parts accepted reads back identical.
        let mut accepted = map.clone();
        for r in &eager {
            accepted.mark_accepted(r.start, r.end).unwrap();
        }
        let mut rebuilt = accepted.clone();
        rebuilt.mark_accepted(0, u64::MAX).unwrap();
        table.apply_to(&mut rebuilt).unwrap();
        assert_eq!(rebuilt, accepted);
    }

    #[test]
    fn encode_refuses_small_buffers_and_bad_units() {
        let mut map = MemoryMap::<4>::new();
        map.insert(0, 64 * MIB, Unaccepted).unwrap();
        let mut small = [0u8; 24];
        assert_eq!(
            encode_unaccepted_table(&map, UNACCEPTED_UNIT_SIZE, &mut small, |_| {}),
            Err(UnacceptedTableError::OutputTooSmall { needed: 28 })
        );
        assert_eq!(small, [0; 24]);
        assert_eq!(
            unaccepted_table_len(&map, 5000),
            Err(UnacceptedTableError::BadUnitSize(5000))
        );
        map.insert(u64::MAX - 4096, u64::MAX, Unaccepted).unwrap();
        assert_eq!(
            unaccepted_table_len(&map, UNACCEPTED_UNIT_SIZE),
            Err(UnacceptedTableError::RangeOverflow)
        );
    }

    #[test]
    fn empty_map_gives_an_empty_bitmap() {
        let map = MemoryMap::<4>::new();
        let mut out = [0xffu8; 24];
        assert_eq!(
            encode_unaccepted_table(&map, UNACCEPTED_UNIT_SIZE, &mut out, |_| panic!()),
            Ok(24)
        );
        assert_eq!(UnacceptedBitmap::parse(&out).unwrap().ranges().count(), 0);
    }

    #[test]
    fn extent_covers_every_page_of_the_table() {
        use UnacceptedTableError::*;
        let h = |size| header(1, UNACCEPTED_UNIT_SIZE, 0, size);
        assert_eq!(unaccepted_table_extent(0x1000, &h(0)), Ok(0x1000..0x2000));
        assert_eq!(
            unaccepted_table_extent(0x1000, &h(4096 - 24)),
            Ok(0x1000..0x2000)
        );
        assert_eq!(
            unaccepted_table_extent(0x1000, &h(4096 - 23)),
            Ok(0x1000..0x3000)
        );
        assert_eq!(unaccepted_table_extent(0x1ff8, &h(1)), Ok(0x1000..0x3000));
        assert_eq!(unaccepted_table_extent(0, &h(0)[..23]), Err(Truncated));
        assert_eq!(
            unaccepted_table_extent(0, &header(2, UNACCEPTED_UNIT_SIZE, 0, 0)),
            Err(UnsupportedVersion(2))
        );
        assert_eq!(
            unaccepted_table_extent(0, &header(1, 12, 0, 0)),
            Err(BadUnitSize(12))
        );
        assert_eq!(
            unaccepted_table_extent(u64::MAX - 100, &h(0)),
            Err(RangeOverflow)
        );
        assert_eq!(unaccepted_table_extent(0, &h(u64::MAX)), Err(RangeOverflow));
    }

    #[test]
    fn bitmap_cannot_invent_ram() {
        let mut map = MemoryMap::<8>::new();
        map.insert(0, 8 * MIB, Usable).unwrap();
        map.insert(2 * MIB, 4 * MIB, Reserved).unwrap();
        let mut bytes = header(1, UNACCEPTED_UNIT_SIZE, 0, 1);
        bytes.push(0xff); // claims 0..16 MiB
        read_unaccepted_table(&bytes, &mut map).unwrap();
        assert_eq!(
            map.regions(),
            &[
                Region::new(0, 2 * MIB, Unaccepted),
                Region::new(2 * MIB, 4 * MIB, Reserved),
                Region::new(4 * MIB, 8 * MIB, Unaccepted),
            ]
        );
    }
}
