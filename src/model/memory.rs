//! The TD's memory as the module and the host see it: page states, the host's mapping size
//! per 2 MiB block, and the ACCEPTs in flight.

use super::TdxModule;
use super::page_map::RangeMap;
use super::{HostPageSize, PageState};
use alloc::vec::Vec;

/// 4 KiB.
pub(crate) const PAGE_4K: u64 = 0x1000;
/// 2 MiB.
pub(crate) const PAGE_2M: u64 = 0x20_0000;

/// Page states and host mappings, guarded by one lock in [`super::TdxModule`].
#[derive(Debug)]
pub(crate) struct Memory {
    /// The state of every page that exists; absent pages have no entry.
    pub(crate) states: RangeMap<PageState>,
    /// Per-2 MiB-block overrides of the host mapping size (set by the test, or by the host
    /// splitting a block when a 4 KiB page inside it is accepted).
    host_size: RangeMap<HostPageSize>,
    /// The host mapping size of blocks without an override.
    default_host_size: HostPageSize,
    /// `[start, end)` ranges an ACCEPT is zeroing right now: another ACCEPT touching them gets
    /// `TDX_OPERAND_BUSY`, as the Secure-EPT entry is locked.
    pub(crate) in_flight: Vec<(u64, u64)>,
    /// Guest RAM the VMM adds (as pending pages) when an ACCEPT first reaches it.
    on_demand: RangeMap<()>,
    /// Bytes added that way.
    pub(crate) added_on_demand: u64,
}

impl Memory {
    pub(crate) fn new(default_host_size: HostPageSize) -> Self {
        Self {
            states: RangeMap::new(),
            host_size: RangeMap::new(),
            default_host_size,
            in_flight: Vec::new(),
            on_demand: RangeMap::new(),
            added_on_demand: 0,
        }
    }

    /// Adds, as pending (`Unaccepted`) pages, the on-demand RAM in `[start, end)` that has no
    /// page yet, as KVM does on the EPT violation of an ACCEPT there; other pages stay as they
    /// are. Returns whether anything was added.
    pub(crate) fn add_on_demand(&mut self, start: u64, end: u64) -> bool {
        let holes = self.on_demand_holes(start, end);
        for &(hole_start, hole_end) in &holes {
            self.states
                .set(hole_start, hole_end, Some(PageState::Unaccepted));
            self.added_on_demand += hole_end - hole_start;
        }
        !holes.is_empty()
    }

    /// The runs of on-demand RAM in `[start, end)` that have no page yet.
    pub(crate) fn on_demand_holes(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut holes = Vec::new();
        for (ram_start, ram_end, ()) in self.on_demand.runs(start, end) {
            let mut cursor = ram_start;
            while cursor < ram_end {
                cursor = match self.states.run_at(cursor) {
                    Some((_, run_end, _)) => run_end.min(ram_end),
                    None => {
                        let hole_end = self
                            .states
                            .runs(cursor, ram_end)
                            .next()
                            .map_or(ram_end, |(s, _, _)| s);
                        holes.push((cursor, hole_end));
                        hole_end
                    }
                };
            }
        }
        holes
    }

    /// The first page of `[start, end)` that is not guest RAM, with what it is: an emulated
    /// device ([`PageState::Mmio`]), or no memory at all ([`PageState::Absent`], a hole that
    /// is not on-demand RAM either). RAM is every page with a private or shared state, and
    /// on-demand RAM not added yet.
    pub(crate) fn first_not_ram(&self, start: u64, end: u64) -> Option<(u64, PageState)> {
        let mut cursor = start;
        let mut runs = self.states.runs(start, end);
        loop {
            let run = runs.next();
            let gap_end = run.map_or(end, |(run_start, _, _)| run_start);
            let mut covered = cursor;
            for (ram_start, ram_end, ()) in self.on_demand.runs(cursor, gap_end) {
                if ram_start != covered {
                    break;
                }
                covered = ram_end;
            }
            if covered < gap_end {
                return Some((covered, PageState::Absent));
            }
            match run {
                None => return None,
                Some((run_start, _, PageState::Mmio)) => return Some((run_start, PageState::Mmio)),
                Some((_, run_end, _)) => cursor = run_end,
            }
        }
    }

    /// The state of the page holding `gpa` (no shared bit).
    pub(crate) fn state(&self, gpa: u64) -> PageState {
        self.states.get(gpa).unwrap_or(PageState::Absent)
    }

    /// Sets `[start, end)` to `state`; `Absent` removes the pages.
    pub(crate) fn set_state(&mut self, start: u64, end: u64, state: PageState) {
        let value = (state != PageState::Absent).then_some(state);
        self.states.set(start, end, value);
    }

    /// Overrides the host mapping size of every 2 MiB block touching `[start, end)`.
    pub(crate) fn set_host_size(&mut self, start: u64, end: u64, size: HostPageSize) {
        if start >= end {
            return;
        }
        let block_start = start & !(PAGE_2M - 1);
        let block_end = end
            .checked_add(PAGE_2M - 1)
            .map_or(!(PAGE_2M - 1), |e| e & !(PAGE_2M - 1));
        self.host_size.set(block_start, block_end, Some(size));
    }

    /// Whether the host maps the 2 MiB block at `block` with 4 KiB pages: by configuration,
    /// because it split it, or because the block mixes states (a 2 MiB mapping needs one state).
    pub(crate) fn host_maps_4k(&self, block: u64) -> bool {
        let size = self.host_size.get(block).unwrap_or(self.default_host_size);
        size == HostPageSize::Size4K
            || self
                .states
                .uniform(block, block.saturating_add(PAGE_2M))
                .is_none()
    }

    /// Whether `[start, end)` overlaps an ACCEPT in flight.
    pub(crate) fn busy(&self, start: u64, end: u64) -> bool {
        self.in_flight.iter().any(|&(s, e)| start < e && s < end)
    }

    /// Ends the in-flight ACCEPT of `[start, end)`.
    pub(crate) fn finish_in_flight(&mut self, start: u64, end: u64) {
        if let Some(at) = self.in_flight.iter().position(|&r| r == (start, end)) {
            self.in_flight.swap_remove(at);
        }
    }

    /// The number of range-map entries: a measure of the model's memory use.
    pub(crate) fn entry_count(&self) -> usize {
        self.states.len() + self.host_size.len()
    }
}

impl TdxModule {
    /// Sets the pages of `[start, end)` to `state` (page-granular: `start` is rounded down and
    /// `end` up to 4 KiB). `Unaccepted` is memory the host added for the guest to accept;
    /// `Private` is memory already accepted (by the firmware); `Absent` removes memory.
    pub fn add_memory(&self, start: u64, end: u64, state: PageState) {
        let start = start & !0xfff;
        let end = end.checked_add(0xfff).map_or(!0xfff, |e| e & !0xfff);
        self.memory.lock().set_state(start, end, state);
    }
    /// Declares `[start, end)` (page-granular, as [`TdxModule::add_memory`]) guest RAM that the
    /// VMM has not added yet and adds when the guest first ACCEPTs it, as KVM adds a page on the
    /// EPT violation such an ACCEPT causes and re-runs the TDCALL: seen from the guest the ACCEPT
    /// simply succeeds. Until then [`TdxModule::page_state`] reports [`PageState::Absent`].
    /// An ACCEPT of a GPA without memory that is not such RAM ends the TD
    /// ([`TdxModule::td_killed`]).
    pub fn add_ram_on_demand(&self, start: u64, end: u64) {
        let start = start & !0xfff;
        let end = end.checked_add(0xfff).map_or(!0xfff, |e| e & !0xfff);
        self.memory.lock().on_demand.set(start, end, Some(()));
    }
    /// Bytes of on-demand RAM the VMM has added so far (see [`TdxModule::add_ram_on_demand`]).
    pub fn ram_added_on_demand(&self) -> u64 {
        self.memory.lock().added_on_demand
    }
    /// The state of the page holding `gpa` (the shared bit is ignored).
    pub fn page_state(&self, gpa: u64) -> PageState {
        self.memory.lock().state(gpa & !self.shared_bit())
    }
    /// The maximal runs of equal page state overlapping `[start, end)`, clipped to it; absent
    /// gaps are left out.
    pub fn page_runs(&self, start: u64, end: u64) -> Vec<(u64, u64, PageState)> {
        self.memory.lock().states.runs(start, end).collect()
    }
    /// How many entries the page-state bookkeeping holds: the model's memory cost, which grows
    /// with the number of distinct runs, not with the size of the TD.
    pub fn page_map_entries(&self) -> usize {
        self.memory.lock().entry_count()
    }
    /// Makes the host map every 2 MiB block touching `[start, end)` with `size` pages,
    /// overriding [`ModelConfig::host_page_size`](super::ModelConfig::host_page_size) there.
    pub fn set_host_page_size(&self, start: u64, end: u64, size: HostPageSize) {
        self.memory.lock().set_host_size(start, end, size);
    }
    /// Whether the host maps the 2 MiB block holding `gpa` with 4 KiB pages (configured, split
    /// after a 4 KiB accept, or forced by mixed page states in the block).
    pub fn host_maps_4k(&self, gpa: u64) -> bool {
        self.memory.lock().host_maps_4k(gpa & !(PAGE_2M - 1))
    }
}
