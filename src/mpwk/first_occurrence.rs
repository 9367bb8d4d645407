//! Which MADT processor entries carry an APIC ID for the first time, without an allocator.
//!
//! A hostile table may repeat IDs, and [`super::MpWaker::wake_all`] must wake each ID once.
//! With no memory of its own the only answer is to rescan the entries before each one (n^2 / 2
//! entry reads). Given `k` words of caller memory, the entries are taken in blocks of `k`: a
//! block's keys (APIC ID, entry index) are sorted, the entries before the block mark the IDs
//! they already carry (a binary search each), and an entry is then first when its ID's smallest
//! key in the block is its own and unmarked. That costs O(n log k) per block, O(n log n) in all
//! when `k` covers every entry, and never more reads than the rescan.

use super::madt::Madt;

/// The low half of a key: the entry index, or this value once an earlier block has the ID.
const SEEN_BEFORE_BLOCK: u64 = 0xffff_ffff;

/// Answers [`FirstOccurrence::is_first`] for one MADT's enabled processors, in table order.
pub(super) struct FirstOccurrence<'s> {
    /// `keys[..len]`: `apic_id << 32 | index` of entries `start..start + len`, sorted.
    keys: &'s mut [u64],
    start: usize,
    len: usize,
}

impl<'s> FirstOccurrence<'s> {
    /// Uses `scratch` (any length; empty means rescanning) for the keys.
    pub(super) fn new(scratch: &'s mut [u64]) -> Self {
        Self {
            keys: scratch,
            start: 0,
            len: 0,
        }
    }

    /// Whether entry `index` of `madt.apic_ids()`, whose ID is `apic_id`, is the first entry with
    /// that ID. Calls must come in increasing `index` order (gaps allowed).
    pub(super) fn is_first(&mut self, madt: &Madt<'_>, index: usize, apic_id: u32) -> bool {
        // An index that does not fit a key cannot occur (a MADT is shorter than 4 GiB and an
        // entry longer than one byte); it would still get the right answer, slowly.
        if self.keys.is_empty() || key(apic_id, index).is_none() {
            return !madt.apic_ids().take(index).any(|seen| seen == apic_id);
        }
        if index < self.start || index >= self.start + self.len {
            self.load_block(madt, index);
        }
        let block = &self.keys[..self.len];
        let group = block.partition_point(|&k| k >> 32 < u64::from(apic_id));
        block
            .get(group)
            .is_some_and(|&k| Some(k) == key(apic_id, index))
    }

    /// Loads the keys of the entries from `start` on (as many as fit), sorts them and marks the
    /// IDs that entries before `start` carry.
    fn load_block(&mut self, madt: &Madt<'_>, start: usize) {
        let mut len = 0;
        let entries = madt.apic_ids().enumerate().skip(start);
        for (slot, (index, apic_id)) in self.keys.iter_mut().zip(entries) {
            let Some(k) = key(apic_id, index) else { break };
            *slot = k;
            len += 1;
        }
        let block = &mut self.keys[..len];
        block.sort_unstable();
        for earlier in madt.apic_ids().take(start) {
            let group = block.partition_point(|&k| k >> 32 < u64::from(earlier));
            // The group's first key is the one `is_first` compares; marking it answers "not
            // first" for every entry of the group, and the order by ID stays intact.
            if let Some(k) = block.get_mut(group)
                && *k >> 32 == u64::from(earlier)
            {
                *k |= SEEN_BEFORE_BLOCK;
            }
        }
        self.start = start;
        self.len = len;
    }
}

/// `apic_id << 32 | index`, if `index` fits below the marker.
fn key(apic_id: u32, index: usize) -> Option<u64> {
    let index = u64::try_from(index)
        .ok()
        .filter(|&i| i < SEEN_BEFORE_BLOCK)?;
    Some(u64::from(apic_id) << 32 | index)
}
