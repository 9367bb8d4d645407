//! Host memory behind guest physical addresses: what ACCEPT zeroes and REPORT writes.
//!
//! The model does not need backing to track page states; tests that check contents (ACCEPT
//! zeroes, TDREPORT lands in the buffer, GetQuote fills shared memory) register host buffers
//! with [`TdxModule::add_backing`](super::TdxModule::add_backing).

use alloc::vec::Vec;

/// One host buffer standing for guest memory `[gpa, gpa + len)`.
#[derive(Clone, Copy, Debug)]
struct Region {
    gpa: u64,
    len: u64,
    /// The host address, kept as an integer so the model stays `Send` and `Sync`; it is only
    /// turned back into a pointer under the contract of `add_backing`.
    host: usize,
}

/// The registered buffers, sorted by GPA and disjoint.
#[derive(Debug, Default)]
pub(crate) struct Backing {
    regions: Vec<Region>,
}

/// A piece of host memory for a piece of a GPA range.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HostSlice {
    /// The host address.
    pub(crate) ptr: *mut u8,
    /// Its length in bytes.
    pub(crate) len: usize,
}

impl Backing {
    /// Registers `[gpa, gpa + len)` at `host`. Returns false (and registers nothing) if the
    /// range is empty, wraps, or overlaps a registered one.
    ///
    /// A range whose host address is 0 is registered from its second page on: Rust cannot
    /// address the null page (an identity-mapping kernel backing guest page 0 loses just that).
    pub(crate) fn add(&mut self, gpa: u64, host: *mut u8, len: u64) -> bool {
        let (gpa, host, len) = if host.is_null() {
            const SKIP: u64 = 0x1000;
            match (gpa.checked_add(SKIP), len.checked_sub(SKIP)) {
                (Some(gpa), Some(len)) => (gpa, host.wrapping_add(SKIP as usize), len),
                _ => return false,
            }
        } else {
            (gpa, host, len)
        };
        let Some(end) = gpa.checked_add(len) else {
            return false;
        };
        if len == 0
            || usize::try_from(len).is_err()
            || (host as usize).checked_add(len as usize).is_none()
        {
            return false;
        }
        if self
            .regions
            .iter()
            .any(|r| gpa < r.gpa.saturating_add(r.len) && r.gpa < end)
        {
            return false;
        }
        let at = self.regions.partition_point(|r| r.gpa < gpa);
        self.regions.insert(
            at,
            Region {
                gpa,
                len,
                host: host as usize,
            },
        );
        true
    }

    /// The host memory of `[gpa, gpa + len)` if one region covers all of it.
    pub(crate) fn whole(&self, gpa: u64, len: u64) -> Option<HostSlice> {
        let end = gpa.checked_add(len)?;
        let at = self.regions.partition_point(|r| r.gpa <= gpa);
        let region = self.regions.get(at.checked_sub(1)?)?;
        if end > region.gpa.checked_add(region.len)? {
            return None;
        }
        let offset = usize::try_from(gpa - region.gpa).ok()?;
        Some(HostSlice {
            ptr: region.host.checked_add(offset)? as *mut u8,
            len: usize::try_from(len).ok()?,
        })
    }

    /// The backed pieces of `[gpa, gpa + len)` (unbacked gaps are skipped).
    pub(crate) fn pieces(&self, gpa: u64, len: u64) -> Vec<HostSlice> {
        let end = gpa.saturating_add(len);
        self.regions
            .iter()
            .filter_map(|r| {
                let r_end = r.gpa.saturating_add(r.len);
                let start = gpa.max(r.gpa);
                let stop = end.min(r_end);
                (start < stop).then(|| HostSlice {
                    ptr: (r.host + (start - r.gpa) as usize) as *mut u8,
                    len: (stop - start) as usize,
                })
            })
            .collect()
    }
}
