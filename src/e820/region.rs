//! One contiguous range of the memory map.

use super::RegionKind;

/// A half-open range `[start, end)` of guest-physical addresses and its kind.
///
/// Regions returned by [`MemoryMap::regions`](super::MemoryMap::regions) are never empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Region {
    /// First byte of the range.
    pub start: u64,
    /// One past the last byte of the range.
    pub end: u64,
    /// What the range is.
    pub kind: RegionKind,
}

impl Region {
    /// A region `[start, end)` of `kind` (not checked; see [`MemoryMap::insert`](super::MemoryMap::insert)).
    pub const fn new(start: u64, end: u64, kind: RegionKind) -> Self {
        Region { start, end, kind }
    }

    /// Length in bytes (0 for an inverted range).
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// True when the region covers no byte.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// True when `addr` lies in `[start, end)`.
    pub const fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    /// The range as `start..end`.
    pub const fn range(&self) -> core::ops::Range<u64> {
        self.start..self.end
    }
}
