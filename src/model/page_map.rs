//! A sparse map from address ranges to values: the per-page state of a TD of any size.
//!
//! A 1 TiB TD has 2^28 pages; storing a state per page would cost gigabytes. Instead every
//! maximal run of pages with the same value is one entry, so memory grows with the number of
//! distinct runs (a few per scattered ACCEPT), not with the size of the TD.

use alloc::collections::BTreeMap;

/// Ranges `[start, end)` with a value each; absent ranges have no value. Touching ranges with
/// equal values are always merged, so the representation of a given content is unique.
#[derive(Clone, Debug, Default)]
pub(crate) struct RangeMap<V> {
    /// start -> (end, value), ranges disjoint and non-empty.
    entries: BTreeMap<u64, (u64, V)>,
}

impl<V: Copy + Eq> RangeMap<V> {
    /// An empty map.
    pub(crate) const fn new() -> Self {
        Self {
            entries: BTreeMap::new(),
        }
    }

    /// The number of entries (maximal runs).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The value at `addr`, if any.
    pub(crate) fn get(&self, addr: u64) -> Option<V> {
        let (_, &(end, value)) = self.entries.range(..=addr).next_back()?;
        (addr < end).then_some(value)
    }

    /// The run containing `addr`: `(start, end, value)`.
    pub(crate) fn run_at(&self, addr: u64) -> Option<(u64, u64, V)> {
        let (&start, &(end, value)) = self.entries.range(..=addr).next_back()?;
        (addr < end).then_some((start, end, value))
    }

    /// Sets `[start, end)` to `value` (`None` removes it). An empty range does nothing.
    pub(crate) fn set(&mut self, start: u64, end: u64, value: Option<V>) {
        if start >= end {
            return;
        }
        self.split_at(start);
        self.split_at(end);
        while let Some((&key, _)) = self.entries.range(start..end).next() {
            self.entries.remove(&key);
        }
        let Some(value) = value else { return };
        let mut new_start = start;
        let mut new_end = end;
        if let Some((&prev_start, &(prev_end, prev_value))) =
            self.entries.range(..start).next_back()
            && prev_end == start
            && prev_value == value
        {
            self.entries.remove(&prev_start);
            new_start = prev_start;
        }
        if let Some(&(next_end, next_value)) = self.entries.get(&end)
            && next_value == value
        {
            self.entries.remove(&end);
            new_end = next_end;
        }
        self.entries.insert(new_start, (new_end, value));
    }

    /// The runs overlapping `[start, end)`, clipped to it, in address order.
    pub(crate) fn runs(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, u64, V)> + '_ {
        let first = self
            .entries
            .range(..=start)
            .next_back()
            .filter(|(_, (e, _))| *e > start)
            .map(|(&s, &(e, v))| (s, e, v));
        // `range` panics on a reversed range; an empty one is fine.
        let low = start.saturating_add(1);
        let rest = self
            .entries
            .range(low..end.max(low))
            .map(|(&s, &(e, v))| (s, e, v));
        first
            .into_iter()
            .chain(rest)
            .filter(move |_| start < end)
            .map(move |(s, e, v)| (s.max(start), e.min(end), v))
    }

    /// The single value covering all of `[start, end)`, or `None` if the range is not covered
    /// by one run (partly absent, or several values).
    pub(crate) fn uniform(&self, start: u64, end: u64) -> Option<V> {
        let (run_start, run_end, value) = self.run_at(start)?;
        (run_start <= start && run_end >= end).then_some(value)
    }

    /// Splits the run containing `at` (if it starts before `at`) into two runs at `at`.
    fn split_at(&mut self, at: u64) {
        if let Some((&start, &(end, value))) = self.entries.range(..at).next_back()
            && end > at
        {
            self.entries.insert(start, (at, value));
            self.entries.insert(at, (end, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RangeMap;
    use alloc::vec::Vec;

    #[test]
    fn neighbours_with_equal_values_merge() {
        let mut map = RangeMap::new();
        map.set(0, 10, Some(1));
        map.set(20, 30, Some(1));
        assert_eq!(map.len(), 2);
        map.set(10, 20, Some(1));
        assert_eq!(map.len(), 1);
        assert_eq!(map.run_at(15), Some((0, 30, 1)));
    }

    #[test]
    fn overwriting_the_middle_splits_and_restoring_merges() {
        let mut map = RangeMap::new();
        map.set(0, 100, Some('a'));
        map.set(40, 50, Some('b'));
        assert_eq!(
            map.runs(0, 100).collect::<Vec<_>>(),
            [(0, 40, 'a'), (40, 50, 'b'), (50, 100, 'a')]
        );
        map.set(40, 50, Some('a'));
        assert_eq!(map.len(), 1);
        map.set(40, 50, None);
        assert_eq!(map.get(45), None);
        assert_eq!(map.get(39), Some('a'));
        assert_eq!(map.get(50), Some('a'));
    }

    #[test]
    fn runs_are_clipped_and_uniform_needs_full_cover() {
        let mut map = RangeMap::new();
        map.set(10, 20, Some(1));
        map.set(20, 30, Some(2));
        assert_eq!(
            map.runs(15, 25).collect::<Vec<_>>(),
            [(15, 20, 1), (20, 25, 2)]
        );
        assert_eq!(map.runs(30, 40).count(), 0);
        assert_eq!(map.runs(5, 5).count(), 0);
        assert_eq!(map.uniform(12, 18), Some(1));
        assert_eq!(map.uniform(12, 22), None);
        assert_eq!(map.uniform(5, 15), None);
    }

    proptest::proptest! {
        /// Against a page-by-page reference: same contents, and runs always maximal (no two
        /// touching runs with equal values), so the entry count is the minimum possible.
        #[test]
        fn matches_a_per_page_reference(ops in proptest::collection::vec(
            (0u64..64, 0u64..64, proptest::option::of(0u8..3)), 1..60)
        ) {
            let mut map = RangeMap::new();
            let mut reference: [Option<u8>; 64] = [None; 64];
            for (a, b, value) in ops {
                let (start, end) = (a.min(b), a.max(b));
                map.set(start, end, value);
                for slot in reference.iter_mut().take(end as usize).skip(start as usize) {
                    *slot = value;
                }
                for (page, expected) in reference.iter().enumerate() {
                    proptest::prop_assert_eq!(map.get(page as u64), *expected);
                }
                let runs: Vec<_> = map.runs(0, 64).collect();
                for pair in runs.windows(2) {
                    proptest::prop_assert!(pair[0].1 < pair[1].0 || pair[0].2 != pair[1].2);
                }
                let mut distinct = 0;
                for page in 0..64 {
                    let here = reference[page];
                    if here.is_some() && (page == 0 || reference[page - 1] != here) {
                        distinct += 1;
                    }
                }
                proptest::prop_assert_eq!(map.len(), distinct);
            }
        }
    }

    #[test]
    fn the_top_of_the_address_space_is_usable() {
        let mut map = RangeMap::new();
        map.set(u64::MAX - 10, u64::MAX, Some(7));
        assert_eq!(map.get(u64::MAX - 1), Some(7));
        assert_eq!(map.get(u64::MAX), None);
    }
}
