//! The kernel's side of a conversion: the shared bit in its page tables, and TLB flushes.
//!
//! A TD's page-table entries carry the shared bit (GPAW - 1) in their physical address: a
//! mapping with it set reaches the shared (VMM-visible) alias of the page, one without it the
//! private page. `convert` does not own the kernel's page tables, so it asks through
//! [`SharedBitMapper`], which a kernel implements over its own tables (for the `x86_64`
//! crate's `OffsetPageTable`, rewrite each leaf entry's address with the bit set or cleared).

use core::fmt;

/// Why the mappings could not be changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapperError {
    /// Bytes from the start of the request whose entries were changed before the failure.
    pub done: u64,
    /// What the mapper could not do (e.g. "not mapped", "2 MiB page would have to be split").
    pub reason: &'static str,
}

impl fmt::Display for MapperError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "page tables: {} (after {:#x} bytes)",
            self.reason, self.done
        )
    }
}

/// Changes the shared bit of the mappings of a virtual range; implemented by the kernel.
pub trait SharedBitMapper {
    /// Sets (`shared`) or clears the shared bit in every leaf entry mapping `[va, va + len)`
    /// (4 KiB aligned), changing nothing else. On failure the entries of `[va, va + done)` are
    /// changed and the rest are not. Need not flush the TLB ([`Self::flush`] follows).
    ///
    /// # Safety
    ///
    /// The caller guarantees that nothing accesses `[va, va + len)` until the conversion that
    /// asked for the change is complete, and that no live Rust reference points into it.
    unsafe fn set_shared(&mut self, va: u64, len: u64, shared: bool) -> Result<(), MapperError>;

    /// Invalidates stale translations of `[va, va + len)` on every CPU that may hold them (on
    /// one CPU, `invlpg` per page or a CR3 reload; on several, a TLB shootdown).
    fn flush(&mut self, va: u64, len: u64);
}
