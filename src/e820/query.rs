//! Questions a kernel asks its memory map at boot.

use core::ops::Range;

use super::{MemoryMap, Region, RegionKind};

impl<const N: usize> MemoryMap<N> {
    /// Total bytes of `kind`.
    pub fn total_bytes(&self, kind: RegionKind) -> u64 {
        self.regions_of(kind)
            .fold(0u64, |sum, r| sum.saturating_add(r.len()))
    }

    /// Total bytes of accepted, usable RAM.
    pub fn usable_bytes(&self) -> u64 {
        self.total_bytes(RegionKind::Usable)
    }

    /// Total bytes of RAM still waiting for acceptance.
    pub fn unaccepted_bytes(&self) -> u64 {
        self.total_bytes(RegionKind::Unaccepted)
    }

    /// The regions of one kind, in address order.
    pub fn regions_of(&self, kind: RegionKind) -> impl Iterator<Item = &Region> + '_ {
        self.regions().iter().filter(move |r| r.kind == kind)
    }

    /// The ranges that must be accepted before use, in address order (already merged).
    pub fn unaccepted_ranges(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        self.regions_of(RegionKind::Unaccepted).map(Region::range)
    }

    /// The regions of `kind` shrunk inward to `align` boundaries (e.g. whole 4 KiB pages for a
    /// frame allocator, or 2 MiB pages), skipping those left empty. Shrinking inward never
    /// hands out a partial page that another kind, or a hole, shares. `None` unless `align` is
    /// a power of two.
    pub fn aligned_ranges(
        &self,
        kind: RegionKind,
        align: u64,
    ) -> Option<impl Iterator<Item = Range<u64>> + '_> {
        if !align.is_power_of_two() {
            return None;
        }
        let mask = align - 1;
        Some(self.regions_of(kind).filter_map(move |r| {
            let start = r.start.checked_add(mask)? & !mask;
            let end = r.end & !mask;
            (start < end).then_some(start..end)
        }))
    }

    /// The region containing `addr`, if any (binary search).
    pub fn region_containing(&self, addr: u64) -> Option<&Region> {
        let regions = self.regions();
        let index = regions.partition_point(|r| r.end <= addr);
        regions.get(index).filter(|r| r.contains(addr))
    }

    /// The lowest `align`-aligned address of `size` free (`Usable`) bytes ending at or below
    /// `limit`; see [`find_free_in`](Self::find_free_in).
    pub fn find_free(&self, size: u64, align: u64, limit: u64) -> Option<u64> {
        self.find_free_in(RegionKind::Usable, size, align, limit)
    }

    /// First fit: the lowest `align`-aligned start of `size` bytes inside one region of `kind`,
    /// with the whole range below `limit` (exclusive end `<= limit`), e.g. a real-mode
    /// trampoline below 1 MiB or a bitmap below 4 GiB.
    ///
    /// Returns `None` when nothing fits, when `size` is 0 or when `align` is not a power of two.
    /// The range is not reserved: insert it as `Reserved` (or your own kind) once used.
    pub fn find_free_in(&self, kind: RegionKind, size: u64, align: u64, limit: u64) -> Option<u64> {
        if size == 0 || !align.is_power_of_two() {
            return None;
        }
        let mask = align - 1;
        self.regions_of(kind)
            .take_while(|r| r.start < limit)
            .find_map(|r| {
                let start = r.start.checked_add(mask)? & !mask;
                let end = start.checked_add(size)?;
                (end <= r.end && end <= limit).then_some(start)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RegionKind::*;
    use std::vec;
    use std::vec::Vec;

    fn sample() -> MemoryMap<16> {
        let mut map = MemoryMap::new();
        map.insert(0x0, 0x9_f000, Usable).unwrap();
        map.insert(0x9_f000, 0x10_0000, Reserved).unwrap();
        map.insert(0x10_0000, 0x8000_0000, Usable).unwrap();
        map.insert(0x2000_0000, 0x8000_0000, Unaccepted).unwrap();
        map.insert(0x1_0000_0000, 0x2_8000_0000, Unaccepted)
            .unwrap();
        map
    }

    #[test]
    fn totals_per_kind() {
        let map = sample();
        assert_eq!(map.usable_bytes(), 0x9_f000 + 0x1ff0_0000);
        assert_eq!(map.unaccepted_bytes(), 0x6000_0000 + 0x1_8000_0000);
        assert_eq!(map.total_bytes(Reserved), 0x6_1000);
        assert_eq!(map.total_bytes(Mmio), 0);
    }

    #[test]
    fn unaccepted_ranges_in_order() {
        let map = sample();
        let mut ranges = map.unaccepted_ranges();
        assert_eq!(ranges.next(), Some(0x2000_0000..0x8000_0000));
        assert_eq!(ranges.next(), Some(0x1_0000_0000..0x2_8000_0000));
        assert_eq!(ranges.next(), None);
    }

    #[test]
    fn containing_region_and_holes() {
        let map = sample();
        assert_eq!(
            map.region_containing(0x9_f000).map(|r| r.kind),
            Some(Reserved)
        );
        assert_eq!(
            map.region_containing(0x9_efff).map(|r| r.kind),
            Some(Usable)
        );
        assert_eq!(map.region_containing(0x8000_0000), None);
        assert_eq!(
            map.region_containing(0x2_7fff_ffff).map(|r| r.kind),
            Some(Unaccepted)
        );
        assert_eq!(map.region_containing(u64::MAX), None);
    }

    #[test]
    fn aligned_ranges_shrink_inward() {
        let mut map = MemoryMap::<8>::new();
        map.insert(0x800, 0x5800, Usable).unwrap();
        map.insert(0x6000, 0x6800, Usable).unwrap();
        map.insert(0x1_0000, 0x3_0000, Usable).unwrap();
        let pages: Vec<_> = map.aligned_ranges(Usable, 0x1000).unwrap().collect();
        assert_eq!(pages, [0x1000..0x5000, 0x1_0000..0x3_0000]);
        map.insert(0x4_0000, 0x8_1000, Usable).unwrap();
        let big: Vec<_> = map.aligned_ranges(Usable, 0x2_0000).unwrap().collect();
        // 0x1_0000..0x3_0000 holds no aligned 128 KiB block.
        assert_eq!(big, vec![0x4_0000..0x8_0000]);
        assert!(map.aligned_ranges(Usable, 0x3000).is_none());
        let mut top = MemoryMap::<2>::new();
        top.insert(u64::MAX - 0x800, u64::MAX, Usable).unwrap();
        assert_eq!(top.aligned_ranges(Usable, 0x1000).unwrap().count(), 0);
    }

    #[test]
    fn first_fit_respects_alignment_limit_and_kind() {
        let map = sample();
        assert_eq!(map.find_free(0x1000, 0x1000, 0x10_0000), Some(0));
        assert_eq!(
            map.find_free(0x10_0000, 0x20_0000, u64::MAX),
            Some(0x20_0000)
        );
        // 0x9f000 bytes below 1 MiB are free; one byte more does not fit there.
        assert_eq!(map.find_free(0x9_f001, 1, 0x10_0000), None);
        assert_eq!(map.find_free(0x9_f000, 1, 0x10_0000), Some(0));
        assert_eq!(map.find_free(0x1000, 3, u64::MAX), None);
        assert_eq!(map.find_free(0, 1, u64::MAX), None);
        assert_eq!(
            map.find_free_in(Unaccepted, 0x1000, 0x4000_0000, u64::MAX),
            Some(0x4000_0000)
        );
        assert_eq!(map.find_free(u64::MAX, 1, u64::MAX), None);
    }
}
