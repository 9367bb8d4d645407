//! Property tests: `MemoryMap` against a cell-by-cell reference model under random overlapping
//! inserts, acceptance relabels and capacity pressure.

use proptest::prelude::*;
use tdx_boot::e820::{MapError, MemoryMap, Region, RegionKind};

const CELLS: usize = 48;

#[derive(Clone, Copy, Debug)]
enum Op {
    Insert(usize, usize, RegionKind),
    Accept(usize, usize),
    Unaccept(usize, usize),
    Truncate(usize),
}

fn kind() -> impl Strategy<Value = RegionKind> {
    proptest::sample::select(RegionKind::ALL_BY_PRECEDENCE.to_vec())
}

fn op() -> impl Strategy<Value = Op> {
    let range = (0..=CELLS, 0..=CELLS);
    prop_oneof![
        6 => (range.clone(), kind()).prop_map(|((a, b), k)| Op::Insert(a, b, k)),
        1 => range.clone().prop_map(|(a, b)| Op::Accept(a, b)),
        1 => range.prop_map(|(a, b)| Op::Unaccept(a, b)),
        1 => (0..=CELLS).prop_map(Op::Truncate),
    ]
}

/// One kind (or a hole) per cell; each cell stands for `scale` bytes from `base`.
#[derive(Clone)]
struct Reference {
    cells: [Option<RegionKind>; CELLS],
}

impl Reference {
    fn apply(&mut self, op: Op) {
        match op {
            Op::Insert(a, b, k) => {
                for cell in &mut self.cells[a.min(b)..b.max(a)] {
                    *cell = Some(cell.map_or(k, |old| old.stronger(k)));
                }
            }
            Op::Accept(a, b) => self.relabel(a, b, RegionKind::Unaccepted, RegionKind::Usable),
            Op::Unaccept(a, b) => self.relabel(a, b, RegionKind::Usable, RegionKind::Unaccepted),
            Op::Truncate(c) => self.cells[c..].fill(None),
        }
    }

    fn relabel(&mut self, a: usize, b: usize, from: RegionKind, to: RegionKind) {
        for cell in &mut self.cells[a.min(b)..b.max(a)] {
            if *cell == Some(from) {
                *cell = Some(to);
            }
        }
    }

    fn regions(&self, base: u64, scale: u64) -> Vec<Region> {
        let mut out: Vec<Region> = Vec::new();
        for (i, cell) in self.cells.iter().enumerate() {
            let Some(kind) = *cell else { continue };
            let start = base + i as u64 * scale;
            match out.last_mut() {
                Some(last) if last.kind == kind && last.end == start => last.end = start + scale,
                _ => out.push(Region::new(start, start + scale, kind)),
            }
        }
        out
    }
}

fn assert_invariants(regions: &[Region]) {
    for r in regions {
        assert!(r.start < r.end, "empty region {r:?}");
    }
    for pair in regions.windows(2) {
        assert!(
            pair[0].end <= pair[1].start,
            "unsorted or overlapping {pair:?}"
        );
        assert!(
            pair[0].end < pair[1].start || pair[0].kind != pair[1].kind,
            "unmerged {pair:?}"
        );
    }
}

fn run<const N: usize>(ops: &[Op], base: u64, scale: u64) -> Result<(), TestCaseError> {
    let mut map = MemoryMap::<N>::new();
    let mut reference = Reference {
        cells: [None; CELLS],
    };
    let at = |cell: usize| base + cell as u64 * scale;
    for &op in ops {
        let before = map.clone();
        let result = match op {
            Op::Insert(a, b, k) => map.insert(at(a), at(b), k),
            Op::Accept(a, b) => map.mark_accepted(at(a), at(b)),
            Op::Unaccept(a, b) => map.mark_unaccepted(at(a), at(b)),
            Op::Truncate(c) => {
                map.truncate(at(c));
                Ok(())
            }
        };
        let (a, b) = match op {
            Op::Insert(a, b, _) | Op::Accept(a, b) | Op::Unaccept(a, b) => (a, b),
            Op::Truncate(_) => (0, 1),
        };
        let mut candidate = reference.clone();
        candidate.apply(op);
        let expected = candidate.regions(base, scale);
        match result {
            Ok(()) => {
                prop_assert!(a < b, "accepted a bad range {a}..{b}");
                reference = candidate;
                prop_assert_eq!(map.regions(), expected.as_slice());
            }
            Err(MapError::EmptyRange { .. }) => prop_assert_eq!(a, b),
            Err(MapError::InvertedRange { .. }) => prop_assert!(a > b),
            Err(MapError::CapacityExceeded { needed, capacity }) => {
                prop_assert_eq!(capacity, N);
                prop_assert_eq!(needed, expected.len());
                prop_assert!(needed > N);
            }
            Err(e) => return Err(TestCaseError::fail(format!("unexpected {e:?}"))),
        }
        if result.is_err() {
            prop_assert_eq!(&map, &before);
        }
        assert_invariants(map.regions());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn roomy_map_matches_reference(ops in proptest::collection::vec(op(), 1..40)) {
        run::<64>(&ops, 0, 0x1000)?;
    }

    #[test]
    fn tight_map_matches_reference_or_refuses_unchanged(ops in proptest::collection::vec(op(), 1..40)) {
        run::<5>(&ops, 0x10_0000, 1)?;
    }

    #[test]
    fn top_of_address_space(ops in proptest::collection::vec(op(), 1..30)) {
        run::<16>(&ops, u64::MAX - (CELLS as u64) * 0x100, 0x100)?;
    }

    #[test]
    fn insertion_order_does_not_matter(
        inserts in proptest::collection::vec(((0..=CELLS, 0..=CELLS), kind()), 1..20),
    ) {
        let mut forward = MemoryMap::<64>::new();
        let mut backward = MemoryMap::<64>::new();
        for &((a, b), k) in &inserts {
            let _ = forward.insert(a as u64, b as u64, k);
        }
        for &((a, b), k) in inserts.iter().rev() {
            let _ = backward.insert(a as u64, b as u64, k);
        }
        prop_assert_eq!(forward, backward);
    }
}
