//! What the fuzz targets share: the invariants every memory map reader must leave behind, and
//! the input shaping that lets half the inputs get past a parser's header checks.

use std::borrow::Cow;
use tdx_boot::e820::{Region, RegionKind};

/// The `MemoryMap` invariants: regions non-empty, sorted, disjoint, and touching regions of one
/// kind merged.
pub fn assert_sanitized(regions: &[Region]) {
    for r in regions {
        assert!(r.start < r.end, "empty {r:?}");
    }
    for w in regions.windows(2) {
        assert!(w[0].end <= w[1].start, "unsorted/overlapping {w:?}");
        assert!(
            w[0].end < w[1].start || w[0].kind != w[1].kind,
            "unmerged {w:?}"
        );
    }
}

/// Every byte of `[start, end)` lies in `regions`, each overlapping region with a kind at least
/// as restrictive as `kind` (a reader may strengthen what the firmware said, never weaken it).
pub fn assert_covered(regions: &[Region], start: u64, end: u64, kind: RegionKind) {
    let mut covered = 0u64;
    for r in regions.iter().filter(|r| r.start < end && r.end > start) {
        assert!(
            r.kind.precedence() >= kind.precedence(),
            "{r:?} weakened {kind:?}"
        );
        covered += r.end.min(end) - r.start.max(start);
    }
    assert_eq!(covered, end - start, "{start:#x}..{end:#x} not covered");
}

/// Splits off the first byte as a mode: bit 0 clear passes the whole input through as it is;
/// bit 0 set hands the rest of the input to `frame` (with the mode's other bits as a selector),
/// which wraps it in a valid header so the parser's later stages see fuzzed bytes too. `None`
/// for an empty input.
pub fn raw_or_framed(
    data: &[u8],
    frame: impl FnOnce(u8, &[u8]) -> Vec<u8>,
) -> Option<Cow<'_, [u8]>> {
    let (&mode, rest) = data.split_first()?;
    Some(if mode & 1 == 0 {
        Cow::Borrowed(data)
    } else {
        Cow::Owned(frame(mode >> 1, rest))
    })
}
