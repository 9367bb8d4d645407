//! The in-place, allocation-free update behind every `MemoryMap` mutation.
//!
//! A mutation "paints" a range `[start, end)`: each region overlapping it gets a new kind from
//! [`Paint::recolor`] and each gap inside it may be filled ([`Paint::gap`]). Only the *window* of
//! regions that overlap or touch the range can change. The window is rewritten in three steps
//! that never need more than the map's own array:
//!
//! 1. **Count** (read only): walk the window's output pieces to learn the final length, and keep
//!    the at most two pieces that are split-off remainders of the first and last region. If the
//!    result does not fit, stop here: the map is untouched. If no piece differs from its input
//!    (a duplicate entry, usable memory inside a reserved range), stop too: nothing to write.
//! 2. **Compact forward**: every output piece that contains a (recolored) existing region is
//!    written left-aligned into the window. Each such piece consumes at least one distinct input
//!    region, so the write index never passes the read index.
//! 3. **Expand backward**: move the tail, then rebuild the window right to left, inserting the
//!    filled gaps and the remainders between the compacted pieces. Every remaining compacted
//!    piece produces at least one output piece, so the write index never falls below the read
//!    index.
//!
//! Each step is linear in the window plus the tail: O(N) per mutation, no allocation, no copy of
//! the array.

use super::{Region, RegionKind};

/// How a range is painted.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Paint {
    /// Fill gaps with the kind; overlapped regions keep the stronger of the two kinds.
    Insert(RegionKind),
    /// Overlapped regions of kind `from` become `to`; gaps stay gaps.
    Relabel { from: RegionKind, to: RegionKind },
}

impl Paint {
    fn gap(self) -> Option<RegionKind> {
        match self {
            Paint::Insert(kind) => Some(kind),
            Paint::Relabel { .. } => None,
        }
    }

    fn recolor(self, old: RegionKind) -> RegionKind {
        match self {
            Paint::Insert(kind) => old.stronger(kind),
            Paint::Relabel { from, to } if old == from => to,
            Paint::Relabel { .. } => old,
        }
    }
}

/// A stretch of the output before merging: a gap, an unchanged region, the painted part of a
/// region, or a split-off remainder.
#[derive(Clone, Copy, Debug)]
struct Atom {
    region: Region,
    /// Set for the one atom per input region that stands for that region (its painted or
    /// unchanged part); clear for gaps and split-off remainders.
    owns_input: bool,
}

const EMPTY_ATOM: Atom = Atom {
    region: Region::new(0, 0, RegionKind::Usable),
    owns_input: false,
};

/// The window's atoms in address order. Reads each input region once, in increasing index
/// order, and copies it out before yielding anything derived from it.
struct Atoms {
    start: u64,
    end: u64,
    paint: Paint,
    next: usize,
    hi: usize,
    cursor: u64,
    buf: [Atom; 4],
    buf_len: usize,
    buf_pos: usize,
    finished: bool,
    /// Set once an atom differs from the input region it came from (a gap, a split or a new
    /// kind): without it, and without merges, the paint is a no-op.
    changed: bool,
}

impl Atoms {
    fn new(start: u64, end: u64, paint: Paint, lo: usize, hi: usize) -> Self {
        Atoms {
            start,
            end,
            paint,
            next: lo,
            hi,
            cursor: start,
            buf: [EMPTY_ATOM; 4],
            buf_len: 0,
            buf_pos: 0,
            finished: false,
            changed: false,
        }
    }

    fn push(&mut self, start: u64, end: u64, kind: RegionKind, owns_input: bool) {
        if let Some(slot) = self.buf.get_mut(self.buf_len) {
            *slot = Atom {
                region: Region::new(start, end, kind),
                owns_input,
            };
            self.buf_len += 1;
        }
    }

    fn push_gap_until(&mut self, until: u64) {
        let gap_start = self.cursor.max(self.start);
        let gap_end = until.min(self.end);
        if gap_start < gap_end
            && let Some(kind) = self.paint.gap()
        {
            self.push(gap_start, gap_end, kind, false);
            self.changed = true;
        }
    }

    fn expand(&mut self, r: Region) {
        self.push_gap_until(r.start);
        let overlaps = r.start < self.end && r.end > self.start;
        let kind = self.paint.recolor(r.kind);
        if !overlaps || kind == r.kind {
            self.push(r.start, r.end, r.kind, true);
        } else {
            self.changed = true;
            if r.start < self.start {
                self.push(r.start, self.start, r.kind, false);
            }
            self.push(r.start.max(self.start), r.end.min(self.end), kind, true);
            if r.end > self.end {
                self.push(self.end, r.end, r.kind, false);
            }
        }
        self.cursor = r.end;
    }

    fn next(&mut self, regions: &[Region]) -> Option<Atom> {
        loop {
            if self.buf_pos < self.buf_len {
                let atom = self.buf.get(self.buf_pos).copied();
                self.buf_pos += 1;
                return atom;
            }
            if self.finished {
                return None;
            }
            self.buf_len = 0;
            self.buf_pos = 0;
            match regions.get(self.next).filter(|_| self.next < self.hi) {
                Some(&r) => {
                    self.next += 1;
                    self.expand(r);
                }
                None => {
                    self.finished = true;
                    self.push_gap_until(self.end);
                }
            }
        }
    }
}

/// The window's output pieces: atoms merged when they touch and share a kind.
struct Pieces {
    atoms: Atoms,
    pending: Option<Atom>,
}

impl Pieces {
    fn new(start: u64, end: u64, paint: Paint, lo: usize, hi: usize) -> Self {
        Pieces {
            atoms: Atoms::new(start, end, paint, lo, hi),
            pending: None,
        }
    }

    fn next(&mut self, regions: &[Region]) -> Option<Atom> {
        loop {
            let Some(atom) = self.atoms.next(regions) else {
                return self.pending.take();
            };
            match &mut self.pending {
                Some(piece)
                    if piece.region.kind == atom.region.kind
                        && piece.region.end == atom.region.start =>
                {
                    piece.region.end = atom.region.end;
                    piece.owns_input |= atom.owns_input;
                    self.atoms.changed = true;
                }
                pending => {
                    if let Some(done) = pending.replace(atom) {
                        return Some(done);
                    }
                }
            }
        }
    }
}

/// The read-only result of step 1.
struct Plan {
    lo: usize,
    hi: usize,
    pieces: usize,
    owning: usize,
    left_rest: Option<Region>,
    right_rest: Option<Region>,
    changed: bool,
}

/// Paints `[start, end)` onto `regions[..*len]` (sorted, disjoint, merged), keeping those
/// invariants. Returns the new length needed if it exceeds `regions.len()`, leaving everything
/// unchanged. `start < end` is the caller's job.
pub(crate) fn paint(
    regions: &mut [Region],
    len: &mut usize,
    start: u64,
    end: u64,
    paint: Paint,
) -> Result<(), usize> {
    let plan = plan(regions.get(..*len).unwrap_or(&[]), start, end, paint);
    if !plan.changed {
        // Already painted (a duplicate entry, or usable memory inside a reserved range).
        return Ok(());
    }
    let window = plan.hi - plan.lo;
    let new_len = *len - window + plan.pieces;
    if new_len > regions.len() {
        return Err(new_len);
    }
    compact(regions, *len, start, end, paint, &plan);
    if plan.pieces > window {
        regions.copy_within(plan.hi..*len, plan.lo + plan.pieces);
    }
    expand(regions, start, end, paint, &plan);
    if plan.pieces < window {
        regions.copy_within(plan.hi..*len, plan.lo + plan.pieces);
    }
    *len = new_len;
    Ok(())
}

fn plan(regions: &[Region], start: u64, end: u64, paint: Paint) -> Plan {
    let lo = regions.partition_point(|r| r.end < start);
    let hi = regions.partition_point(|r| r.start <= end);
    let mut plan = Plan {
        lo,
        hi,
        pieces: 0,
        owning: 0,
        left_rest: None,
        right_rest: None,
        changed: false,
    };
    let mut pieces = Pieces::new(start, end, paint, lo, hi);
    while let Some(piece) = pieces.next(regions) {
        plan.pieces += 1;
        if piece.owns_input {
            plan.owning += 1;
        } else if piece.region.end <= start {
            plan.left_rest = Some(piece.region);
        } else if piece.region.start >= end {
            plan.right_rest = Some(piece.region);
        }
    }
    plan.changed = pieces.atoms.changed;
    plan
}

fn compact(regions: &mut [Region], len: usize, start: u64, end: u64, paint: Paint, plan: &Plan) {
    let mut pieces = Pieces::new(start, end, paint, plan.lo, plan.hi);
    let mut write = plan.lo;
    while let Some(piece) = pieces.next(regions.get(..len).unwrap_or(&[])) {
        if piece.owns_input {
            if let Some(slot) = regions.get_mut(write) {
                *slot = piece.region;
            }
            write += 1;
        }
    }
    debug_assert_eq!(write, plan.lo + plan.owning);
}

fn expand(regions: &mut [Region], start: u64, end: u64, paint: Paint, plan: &Plan) {
    let mut write = plan.lo + plan.pieces;
    let mut emit = |regions: &mut [Region], region: Region| {
        write -= 1;
        if let Some(slot) = regions.get_mut(write) {
            *slot = region;
        }
    };
    if let Some(rest) = plan.right_rest {
        emit(regions, rest);
    }
    let mut hole_end = end;
    for read in (plan.lo..plan.lo + plan.owning).rev() {
        let Some(&piece) = regions.get(read) else {
            break;
        };
        if let Some(kind) = paint.gap() {
            let gap_start = piece.end.max(start);
            if gap_start < hole_end {
                emit(regions, Region::new(gap_start, hole_end, kind));
            }
        }
        emit(regions, piece);
        hole_end = hole_end.min(piece.start);
    }
    if let Some(kind) = paint.gap()
        && start < hole_end
    {
        emit(regions, Region::new(start, hole_end, kind));
    }
    if let Some(rest) = plan.left_rest {
        emit(regions, rest);
    }
    debug_assert_eq!(write, plan.lo);
}
