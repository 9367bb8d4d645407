//! A fixed-capacity pool of shared pages for drivers: DMA and virtio bounce buffers.
//!
//! Converting costs a MapGPA exit (and an ACCEPT of every page on the way back), and splits the
//! host's 2 MiB mappings, so drivers should not convert per request. The pool converts one
//! region once and hands out runs of pages from it with a lock-free bitmap (one bit per page,
//! in storage the caller supplies): `alloc` is a compare-and-swap, `free` a `fetch_and`.

use super::{ConvertError, ConvertRange, MapGpaStats, SharedBitMapper, make_shared};
use crate::tdcall::TdCall;
use core::sync::atomic::{AtomicU64, Ordering};

const PAGE: u64 = 0x1000;

/// A run of shared pages taken from a [`SharedPool`]; give it back with [`SharedPool::free`].
///
/// Not `Clone`: holding the value is owning the pages.
#[derive(Debug, PartialEq, Eq)]
pub struct SharedBuffer {
    va: u64,
    device_gpa: u64,
    pages: u32,
}

impl SharedBuffer {
    /// The buffer's virtual address (mapped shared).
    pub const fn va(&self) -> u64 {
        self.va
    }

    /// The address the VMM and devices use: the GPA with the shared bit set.
    pub const fn device_gpa(&self) -> u64 {
        self.device_gpa
    }

    /// Length in bytes.
    pub const fn len(&self) -> u64 {
        self.pages as u64 * PAGE
    }

    /// Whether the buffer is empty (never: a buffer has at least one page).
    pub const fn is_empty(&self) -> bool {
        self.pages == 0
    }
}

/// Shared pages handed out to drivers; `Sync`, usable from any CPU.
#[derive(Debug)]
pub struct SharedPool<'a> {
    va: u64,
    device_gpa: u64,
    pages: u64,
    in_use: &'a [AtomicU64],
}

impl<'a> SharedPool<'a> {
    /// The largest run one [`Self::alloc`] hands out, in pages (256 KiB).
    pub const MAX_RUN: u32 = 64;

    /// Storage words needed for a pool of `pages` pages.
    pub const fn words_needed(pages: u64) -> usize {
        pages.div_ceil(64) as usize
    }

    /// Converts `range` to shared ([`make_shared`]) and builds a pool of its pages over
    /// `in_use` (at least [`Self::words_needed`] words, cleared here).
    ///
    /// # Safety
    ///
    /// As for [`make_shared`], and the pool owns the range from now on: nothing else may use it
    /// while the pool or any of its buffers lives.
    pub unsafe fn new(
        tdx: &impl TdCall,
        mapper: &mut impl SharedBitMapper,
        shared_mask: u64,
        range: ConvertRange,
        in_use: &'a [AtomicU64],
    ) -> Result<(Self, MapGpaStats), ConvertError> {
        let pages = range.len / PAGE;
        if in_use.len() < Self::words_needed(pages) {
            return Err(ConvertError {
                state: super::RangeState::Unchanged,
                cause: super::ConvertCause::PoolStorageTooSmall,
            });
        }
        // SAFETY: forwarded; the caller upholds `make_shared`'s contract.
        let stats = unsafe { make_shared(tdx, mapper, shared_mask, range) }?;
        for (i, word) in in_use.iter().enumerate() {
            // Bits past the last page are permanently "in use".
            let first_page = i as u64 * 64;
            let valid = pages.saturating_sub(first_page).min(64);
            let unusable = if valid == 64 { 0 } else { !0u64 << valid };
            // Relaxed: the pool reaches other CPUs only through however the caller shares it.
            word.store(unusable, Ordering::Relaxed);
        }
        Ok((
            Self {
                va: range.va,
                device_gpa: range.gpa | shared_mask,
                pages,
                in_use,
            },
            stats,
        ))
    }

    /// Takes `pages` (1..=[`Self::MAX_RUN`]) contiguous shared pages, or `None` if no run that
    /// long is free. The contents are whatever the last user or the VMM left: clear them if
    /// that matters.
    ///
    /// Safe: the pool hands out addresses and never dereferences them; the pages were made
    /// shared once, under [`Self::new`]'s contract, and a run is given to one owner at a time
    /// (the value is not `Clone`). The VMM can change a buffer's contents at any moment, so a
    /// driver reading it needs `unsafe` of its own and must treat what it reads as untrusted.
    pub fn alloc(&self, pages: u32) -> Option<SharedBuffer> {
        if pages == 0 || pages > Self::MAX_RUN {
            return None;
        }
        for (index, word) in self.in_use.iter().enumerate() {
            // Relaxed: a stale value only fails the compare-and-swap. Its success is an acquire,
            // pairing with `free`'s release: the previous owner's accesses come first.
            let mut current = word.load(Ordering::Relaxed);
            while let Some(bit) = free_run(current, pages) {
                let mask = run_mask(bit, pages);
                match word.compare_exchange_weak(
                    current,
                    current | mask,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        let page = index as u64 * 64 + u64::from(bit);
                        return Some(SharedBuffer {
                            va: self.va + page * PAGE,
                            device_gpa: self.device_gpa + page * PAGE,
                            pages,
                        });
                    }
                    Err(seen) => current = seen,
                }
            }
        }
        None
    }

    /// Gives `buffer` back. `Err(buffer)` if it does not come from this pool.
    ///
    /// Safe for the reasons [`Self::alloc`] is: bookkeeping over pages that stay shared.
    pub fn free(&self, buffer: SharedBuffer) -> Result<(), SharedBuffer> {
        let Some(offset) = buffer.va.checked_sub(self.va) else {
            return Err(buffer);
        };
        let page = offset / PAGE;
        let bit = (page % 64) as u32;
        let word = self.in_use.get((page / 64) as usize);
        let fits = offset % PAGE == 0
            && page < self.pages
            && buffer.pages >= 1
            && bit + buffer.pages <= 64
            && buffer.device_gpa == self.device_gpa + offset;
        match word {
            Some(word) if fits => {
                // Release: the driver's last writes happen-before the next owner's reads.
                word.fetch_and(!run_mask(bit, buffer.pages), Ordering::Release);
                Ok(())
            }
            _ => Err(buffer),
        }
    }

    /// Pages not handed out.
    pub fn free_pages(&self) -> u64 {
        let in_use: u64 = self
            .in_use
            .iter()
            // Relaxed: a figure; nothing is handed out on the strength of it.
            .map(|w| u64::from(w.load(Ordering::Relaxed).count_ones()))
            .sum();
        (self.in_use.len() as u64 * 64).saturating_sub(in_use)
    }

    /// Pages in the pool.
    pub const fn capacity(&self) -> u64 {
        self.pages
    }
}

/// `pages` set bits from `bit` (`bit + pages <= 64`).
fn run_mask(bit: u32, pages: u32) -> u64 {
    let ones = if pages >= 64 { !0 } else { (1u64 << pages) - 1 };
    ones << bit
}

/// The lowest bit starting `pages` clear bits in `word`.
fn free_run(word: u64, pages: u32) -> Option<u32> {
    let free = !word;
    let mut starts = free;
    for shift in 1..pages {
        // Bit i survives if bits i..=i+shift are all free; shifted-in zeros end runs at bit 63.
        starts &= free >> shift;
    }
    (starts != 0).then(|| starts.trailing_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_runs_respect_length_and_word_end() {
        assert_eq!(free_run(0, 64), Some(0));
        assert_eq!(free_run(0b1011, 1), Some(2));
        assert_eq!(free_run(0b1011, 2), Some(4));
        assert_eq!(free_run(!0u64 >> 1, 1), Some(63));
        assert_eq!(free_run(!0u64 >> 1, 2), None);
        assert_eq!(run_mask(4, 3), 0b111_0000);
        assert_eq!(run_mask(0, 64), !0);
    }
}
