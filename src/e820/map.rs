//! `MemoryMap`: a fixed-capacity, always-sanitized map of guest-physical memory.

use core::fmt;
use core::mem::MaybeUninit;
use core::ptr::addr_of_mut;

use super::paint::{Paint, paint};
use super::{Region, RegionKind};

/// Why a [`MemoryMap`] mutation was refused. The map is unchanged whenever one is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// `start == end`: the range covers no byte.
    EmptyRange {
        /// The rejected start.
        start: u64,
    },
    /// `start > end`.
    InvertedRange {
        /// The rejected start.
        start: u64,
        /// The rejected end.
        end: u64,
    },
    /// `start + length` does not fit in 64 bits.
    AddressOverflow {
        /// The rejected start.
        start: u64,
        /// The rejected length.
        length: u64,
    },
    /// The result would need more regions than the map can hold.
    CapacityExceeded {
        /// Regions the result would need.
        needed: usize,
        /// The map's capacity `N`.
        capacity: usize,
    },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MapError::EmptyRange { start } => write!(f, "empty range at {start:#x}"),
            MapError::InvertedRange { start, end } => {
                write!(f, "inverted range {start:#x}..{end:#x}")
            }
            MapError::AddressOverflow { start, length } => {
                write!(f, "range {start:#x} + {length:#x} overflows 64 bits")
            }
            MapError::CapacityExceeded { needed, capacity } => {
                write!(
                    f,
                    "memory map needs {needed} regions, capacity is {capacity}"
                )
            }
        }
    }
}

impl core::error::Error for MapError {}

/// A sanitized memory map of at most `N` regions, stored inline (no allocation).
///
/// Invariants, true after every call: regions are sorted by address, pairwise disjoint and
/// non-empty, and two regions that touch never share a kind (they are merged). Overlapping
/// inserts resolve to the more restrictive kind ([`RegionKind`] documents the order), so the
/// order in which sources are inserted does not matter.
///
/// Every mutation is O(N) in the worst case, works in place, needs a few hundred bytes of stack
/// whatever `N` is, and leaves the map unchanged when it returns an error.
///
/// The map itself is `N * 24 + 8` bytes (24 KiB for `N = 1024`). On a small kernel stack do
/// not build a large one by value: put it in a `static` (`new` is `const`), or initialize it
/// where it will live with [`new_in`](Self::new_in).
/// Addresses are byte-granular; the last byte of the 64-bit space cannot be described because
/// `end` is exclusive.
#[derive(Clone)]
pub struct MemoryMap<const N: usize> {
    regions: [Region; N],
    len: usize,
}

const FILLER: Region = Region::new(0, 0, RegionKind::Usable);

impl<const N: usize> MemoryMap<N> {
    /// An empty map.
    pub const fn new() -> Self {
        MemoryMap {
            regions: [FILLER; N],
            len: 0,
        }
    }

    /// Initializes an empty map in caller-provided memory (a static, a boot-time page, a
    /// `Box::new_uninit()`), writing it element by element so that no `N`-sized temporary ever
    /// exists on the stack.
    pub fn new_in(slot: &mut MaybeUninit<Self>) -> &mut Self {
        let map = slot.as_mut_ptr();
        // SAFETY: `map` comes from an exclusive reference, so it is valid for writes and
        // aligned. Every field is written through raw pointers (no reference to uninitialized
        // memory is created): each of the `N` array elements, then `len`. After that the whole
        // value is initialized, which is what `assume_init_mut` requires.
        unsafe {
            let regions = addr_of_mut!((*map).regions).cast::<Region>();
            for index in 0..N {
                regions.add(index).write(FILLER);
            }
            addr_of_mut!((*map).len).write(0);
            slot.assume_init_mut()
        }
    }

    /// The regions, sorted by address, disjoint, non-empty, touching regions of one kind merged.
    pub fn regions(&self) -> &[Region] {
        self.regions.get(..self.len).unwrap_or(&[])
    }

    /// Number of regions.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// True when the map describes no memory.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most regions the map can hold (`N`).
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Forgets every region.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Forgets everything at or above `limit`, clipping a region that straddles it.
    ///
    /// For a TD, call it with the shared bit (`1 << (gpaw - 1)`): a GPA with that bit set is
    /// never private memory, whatever a firmware table claims. Never fails, O(log N).
    pub fn truncate(&mut self, limit: u64) {
        let keep = self.regions().partition_point(|r| r.start < limit);
        if let Some(last) = keep.checked_sub(1).and_then(|i| self.regions.get_mut(i)) {
            last.end = last.end.min(limit);
        }
        self.len = keep;
    }

    /// Adds `[start, end)` as `kind`. Where the range overlaps existing regions the more
    /// restrictive kind wins; gaps inside the range become `kind`.
    ///
    /// Fails, leaving the map unchanged, on an empty or inverted range or when the result would
    /// need more than `N` regions.
    pub fn insert(&mut self, start: u64, end: u64, kind: RegionKind) -> Result<(), MapError> {
        self.apply(start, end, Paint::Insert(kind))
    }

    /// [`insert`](Self::insert) for `length` bytes from `start`; fails with
    /// [`MapError::AddressOverflow`] when `start + length` does not fit in 64 bits.
    pub fn insert_len(
        &mut self,
        start: u64,
        length: u64,
        kind: RegionKind,
    ) -> Result<(), MapError> {
        let end = start
            .checked_add(length)
            .ok_or(MapError::AddressOverflow { start, length })?;
        self.insert(start, end, kind)
    }

    /// Records that `[start, end)` has been accepted: `Unaccepted` parts become `Usable`.
    ///
    /// This is the one mutation that weakens a kind, so it only touches `Unaccepted` memory;
    /// other kinds and gaps are left as they are.
    pub fn mark_accepted(&mut self, start: u64, end: u64) -> Result<(), MapError> {
        self.apply(
            start,
            end,
            Paint::Relabel {
                from: RegionKind::Unaccepted,
                to: RegionKind::Usable,
            },
        )
    }

    /// Records that the `Usable` parts of `[start, end)` still need acceptance (for example
    /// from Linux's unaccepted-memory bitmap). Gaps and other kinds are left as they are, so a
    /// bitmap cannot invent RAM.
    pub fn mark_unaccepted(&mut self, start: u64, end: u64) -> Result<(), MapError> {
        self.apply(
            start,
            end,
            Paint::Relabel {
                from: RegionKind::Usable,
                to: RegionKind::Unaccepted,
            },
        )
    }

    fn apply(&mut self, start: u64, end: u64, how: Paint) -> Result<(), MapError> {
        if start == end {
            return Err(MapError::EmptyRange { start });
        }
        if start > end {
            return Err(MapError::InvertedRange { start, end });
        }
        paint(&mut self.regions, &mut self.len, start, end, how).map_err(|needed| {
            MapError::CapacityExceeded {
                needed,
                capacity: N,
            }
        })
    }
}

impl<const N: usize> Default for MemoryMap<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Debug for MemoryMap<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.regions()).finish()
    }
}

impl<const N: usize> PartialEq for MemoryMap<N> {
    fn eq(&self, other: &Self) -> bool {
        self.regions() == other.regions()
    }
}

impl<const N: usize> Eq for MemoryMap<N> {}

#[cfg(test)]
mod tests {
    use super::*;
    use RegionKind::*;

    fn r(start: u64, end: u64, kind: RegionKind) -> Region {
        Region::new(start, end, kind)
    }

    #[test]
    fn disjoint_inserts_stay_sorted() {
        let mut map = MemoryMap::<8>::new();
        map.insert(0x3000, 0x4000, Reserved).unwrap();
        map.insert(0x1000, 0x2000, Usable).unwrap();
        assert_eq!(
            map.regions(),
            &[r(0x1000, 0x2000, Usable), r(0x3000, 0x4000, Reserved)]
        );
    }

    #[test]
    fn touching_regions_of_one_kind_merge_across_a_filled_gap() {
        let mut map = MemoryMap::<8>::new();
        map.insert(0, 10, Usable).unwrap();
        map.insert(20, 30, Usable).unwrap();
        map.insert(10, 20, Usable).unwrap();
        assert_eq!(map.regions(), &[r(0, 30, Usable)]);
    }

    #[test]
    fn reserved_splits_usable_and_usable_cannot_overwrite_reserved() {
        let mut map = MemoryMap::<8>::new();
        map.insert(0, 100, Usable).unwrap();
        map.insert(40, 60, Reserved).unwrap();
        map.insert(0, 100, Usable).unwrap();
        assert_eq!(
            map.regions(),
            &[r(0, 40, Usable), r(40, 60, Reserved), r(60, 100, Usable)]
        );
    }

    #[test]
    fn unaccepted_beats_usable_in_both_orders() {
        let mut a = MemoryMap::<8>::new();
        a.insert(0, 100, Usable).unwrap();
        a.insert(50, 150, Unaccepted).unwrap();
        let mut b = MemoryMap::<8>::new();
        b.insert(50, 150, Unaccepted).unwrap();
        b.insert(0, 100, Usable).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.regions(), &[r(0, 50, Usable), r(50, 150, Unaccepted)]);
    }

    #[test]
    fn gaps_between_stronger_regions_are_filled_individually() {
        let mut map = MemoryMap::<8>::new();
        map.insert(0, 1, Reserved).unwrap();
        map.insert(2, 3, Mmio).unwrap();
        map.insert(4, 5, Reserved).unwrap();
        map.insert(0, 5, Usable).unwrap();
        assert_eq!(
            map.regions(),
            &[
                r(0, 1, Reserved),
                r(1, 2, Usable),
                r(2, 3, Mmio),
                r(3, 4, Usable),
                r(4, 5, Reserved)
            ]
        );
    }

    #[test]
    fn a_strong_insert_swallows_many_regions() {
        let mut map = MemoryMap::<8>::new();
        for i in 0..4 {
            map.insert(i * 10, i * 10 + 5, Usable).unwrap();
        }
        map.insert(2, 33, Reserved).unwrap();
        assert_eq!(
            map.regions(),
            &[r(0, 2, Usable), r(2, 33, Reserved), r(33, 35, Usable)]
        );
    }

    #[test]
    fn growth_and_shrink_in_one_window() {
        // Left half gains pieces (gaps filled between reserved regions), right half loses them
        // (gaps merge usable regions into one unaccepted piece).
        let mut map = MemoryMap::<12>::new();
        for (s, e, k) in [
            (0, 1, Reserved),
            (2, 3, Reserved),
            (4, 5, Reserved),
            (6, 7, Usable),
            (8, 9, Usable),
            (10, 11, Usable),
        ] {
            map.insert(s, e, k).unwrap();
        }
        map.insert(0, 11, Unaccepted).unwrap();
        assert_eq!(
            map.regions(),
            &[
                r(0, 1, Reserved),
                r(1, 2, Unaccepted),
                r(2, 3, Reserved),
                r(3, 4, Unaccepted),
                r(4, 5, Reserved),
                r(5, 11, Unaccepted)
            ]
        );
    }

    #[test]
    fn full_map_accepts_an_insert_that_shrinks_it() {
        let mut map = MemoryMap::<3>::new();
        map.insert(0, 10, Usable).unwrap();
        map.insert(10, 20, Reserved).unwrap();
        map.insert(20, 30, Usable).unwrap();
        map.insert(5, 25, Reserved).unwrap();
        assert_eq!(
            map.regions(),
            &[r(0, 5, Usable), r(5, 25, Reserved), r(25, 30, Usable)]
        );
    }

    #[test]
    fn errors_leave_the_map_unchanged() {
        let mut map = MemoryMap::<3>::new();
        map.insert(0, 10, Usable).unwrap();
        map.insert(20, 30, Usable).unwrap();
        let before = map.clone();
        assert_eq!(
            map.insert(5, 5, Reserved),
            Err(MapError::EmptyRange { start: 5 })
        );
        assert_eq!(
            map.insert(6, 5, Reserved),
            Err(MapError::InvertedRange { start: 6, end: 5 })
        );
        assert_eq!(
            map.insert_len(u64::MAX - 1, 2, Reserved),
            Err(MapError::AddressOverflow {
                start: u64::MAX - 1,
                length: 2
            })
        );
        assert_eq!(
            map.insert(2, 4, Reserved),
            Err(MapError::CapacityExceeded {
                needed: 4,
                capacity: 3
            })
        );
        assert_eq!(map, before);
    }

    #[test]
    fn accepting_and_unaccepting_relabel_only_ram() {
        let mut map = MemoryMap::<8>::new();
        map.insert(0, 100, Unaccepted).unwrap();
        map.insert(40, 50, Reserved).unwrap();
        map.mark_accepted(20, 200).unwrap();
        assert_eq!(
            map.regions(),
            &[
                r(0, 20, Unaccepted),
                r(20, 40, Usable),
                r(40, 50, Reserved),
                r(50, 100, Usable)
            ]
        );
        map.mark_unaccepted(0, 30).unwrap();
        assert_eq!(
            map.regions(),
            &[
                r(0, 30, Unaccepted),
                r(30, 40, Usable),
                r(40, 50, Reserved),
                r(50, 100, Usable)
            ]
        );
    }

    #[test]
    fn truncate_clips_at_the_shared_bit() {
        let mut map = MemoryMap::<8>::new();
        map.insert(0, 0x1000, Usable).unwrap();
        map.insert(0x7000_0000_0000, 0x9000_0000_0000, Unaccepted)
            .unwrap();
        map.insert(0xa000_0000_0000, 0xb000_0000_0000, Mmio)
            .unwrap();
        let mut clipped = map.clone();
        clipped.truncate(1 << 47);
        assert_eq!(
            clipped.regions(),
            &[
                r(0, 0x1000, Usable),
                r(0x7000_0000_0000, 0x8000_0000_0000, Unaccepted)
            ]
        );
        clipped.truncate(0x1000);
        assert_eq!(clipped.regions(), &[r(0, 0x1000, Usable)]);
        clipped.truncate(0);
        assert!(clipped.is_empty());
        map.truncate(u64::MAX);
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn new_in_initializes_in_place() {
        let mut slot = std::boxed::Box::new(MaybeUninit::<MemoryMap<4096>>::uninit());
        let map = MemoryMap::new_in(&mut slot);
        assert!(map.is_empty());
        assert_eq!(map.capacity(), 4096);
        for i in 0..4096u64 {
            map.insert(i * 2, i * 2 + 1, Reserved).unwrap();
        }
        assert_eq!(map.len(), 4096);
        assert_eq!(map.regions()[4095], r(8190, 8191, Reserved));
    }

    #[test]
    fn capacity_1024_fits_on_a_test_stack_and_fills_up() {
        let mut map = MemoryMap::<1024>::new();
        for i in 0..1024u64 {
            map.insert(i * 2, i * 2 + 1, Usable).unwrap();
        }
        assert_eq!(map.len(), 1024);
        assert!(matches!(
            map.insert(5000, 5001, Usable),
            Err(MapError::CapacityExceeded { needed: 1025, .. })
        ));
        map.insert(0, 2048, Reserved).unwrap();
        assert_eq!(map.regions(), &[r(0, 2048, Reserved)]);
    }
}
