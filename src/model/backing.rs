//! Host memory behind guest physical addresses: what ACCEPT zeroes and REPORT writes.
//!
//! The model does not need backing to track page states; tests that check contents (ACCEPT
//! zeroes, TDREPORT lands in the buffer, GetQuote fills shared memory) register host buffers
//! with [`TdxModule::add_backing`](super::TdxModule::add_backing).

use super::TdxModule;
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

impl TdxModule {
    /// Backs guest memory `[gpa, gpa + len)` with the host buffer at `host`: ACCEPT zeroes it,
    /// TDG.MR.REPORT writes into it, RTMR.EXTEND and the VMM (GetQuote, MapGPA) read and write
    /// it. Returns false, registering nothing, if the range is empty, wraps around, or overlaps
    /// an already backed range.
    ///
    /// # Safety
    ///
    /// `host` must be valid for reads and writes of `len` bytes for as long as the model lives,
    /// and while the model lives that memory may be accessed only through the model or through
    /// the guest code under test using it as its memory at `gpa` (never concurrently with a
    /// TDCALL that touches the same bytes, as on hardware).
    pub unsafe fn add_backing(&self, gpa: u64, host: *mut u8, len: u64) -> bool {
        self.backing.lock().add(gpa, host, len)
    }
    /// Zeroes the backed parts of `[gpa, gpa + len)`.
    pub(super) fn zero_backing(&self, gpa: u64, len: u64) {
        let pieces = self.backing.lock().pieces(gpa, len);
        for piece in pieces {
            // SAFETY: `add_backing`'s contract makes the registered memory valid for writes and
            // reserved to the model while a TDCALL touches it; `pieces` stays inside regions.
            unsafe { core::ptr::write_bytes(piece.ptr, 0, piece.len) };
        }
    }
    /// Reads `buf.len()` bytes of guest memory at `gpa` (no shared bit) if one backing region
    /// holds them all.
    pub(super) fn read_guest(&self, gpa: u64, buf: &mut [u8]) -> bool {
        let Some(slice) = self.backing.lock().whole(gpa, buf.len() as u64) else {
            return false;
        };
        // SAFETY: the slice lies inside a registered region (`whole`), valid for reads under
        // `add_backing`'s contract; `buf` is a distinct Rust buffer.
        unsafe { core::ptr::copy_nonoverlapping(slice.ptr, buf.as_mut_ptr(), slice.len) };
        true
    }
    /// Writes `data` to guest memory at `gpa` (no shared bit) if one backing region holds it.
    pub(super) fn write_guest(&self, gpa: u64, data: &[u8]) -> bool {
        let Some(slice) = self.backing.lock().whole(gpa, data.len() as u64) else {
            return false;
        };
        // SAFETY: as in `read_guest`, for writes.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), slice.ptr, slice.len) };
        true
    }
}
