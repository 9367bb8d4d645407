//! The image's heap: a bump allocator over pages the firmware gave it before ExitBootServices.
//!
//! The images allocate once and keep (per-CPU structures, stacks, the software TDX module's
//! tables); a bump allocator that can only take back the most recent allocation is enough and
//! has nothing to go wrong. No interrupt handler may allocate while the main flow holds the
//! lock: in both images interrupts are off whenever the heap is used and the exceptions they
//! take synchronously (TDCALL, `int 20`, VM exits) never come from inside the allocator.

use core::alloc::{GlobalAlloc, Layout};
use spin::Mutex;

struct Bump {
    next: usize,
    end: usize,
    /// Start of the most recent allocation, which `dealloc` can return.
    last: usize,
}

/// The global allocator.
pub struct Heap(Mutex<Bump>);

impl Heap {
    const fn empty() -> Self {
        Self(Mutex::new(Bump {
            next: 0,
            end: 0,
            last: 0,
        }))
    }

    /// Bytes still free.
    pub fn free(&self) -> usize {
        let bump = self.0.lock();
        bump.end - bump.next
    }
}

/// The global allocator of an image (`--cfg bare_metal_image`).
#[cfg_attr(bare_metal_image, global_allocator)]
pub static HEAP: Heap = Heap::empty();

/// Hands `[start, start + size)` to the heap.
///
/// # Safety
///
/// The range is memory the image owns, used for nothing else, for the rest of the run.
pub unsafe fn init(start: u64, size: u64) {
    // SAFETY: forwarded.
    unsafe { HEAP.give(start as usize, size as usize) };
}

impl Heap {
    /// # Safety
    ///
    /// As for [`init`].
    unsafe fn give(&self, start: usize, size: usize) {
        let mut bump = self.0.lock();
        bump.next = start;
        bump.last = start;
        bump.end = start.saturating_add(size);
    }
}

// SAFETY: every allocation is a distinct, suitably aligned range inside the heap, handed out
// under the lock; only the latest allocation is ever reused.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut bump = self.0.lock();
        let Some(start) = bump.next.checked_next_multiple_of(layout.align()) else {
            return core::ptr::null_mut();
        };
        match start.checked_add(layout.size()) {
            Some(end) if end <= bump.end => {
                bump.next = end;
                bump.last = start;
                start as *mut u8
            }
            _ => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let mut bump = self.0.lock();
        if ptr as usize == bump.last && bump.last + layout.size() == bump.next {
            bump.next = bump.last;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_aligned_disjoint_bounded_and_the_last_one_comes_back() {
        let memory = vec![0u64; 64]; // 512 bytes, 8-aligned
        let heap = Heap::empty();
        // SAFETY: the vector outlives the heap and is used for nothing else.
        unsafe { heap.give(memory.as_ptr() as usize, 512) };
        let layout = |size, align| Layout::from_size_align(size, align).unwrap();
        // SAFETY: allocating from a heap over valid memory.
        let (a, b) = unsafe { (heap.alloc(layout(24, 8)), heap.alloc(layout(64, 64))) };
        assert!(!a.is_null() && !b.is_null());
        assert_eq!(b as usize % 64, 0);
        assert!(b as usize >= a as usize + 24, "allocations overlap");
        let free = heap.free();
        // SAFETY: `b` was the most recent allocation, with this layout.
        unsafe { heap.dealloc(b, layout(64, 64)) };
        assert_eq!(heap.free(), free + 64, "the latest allocation is returned");
        // SAFETY: `a` is not the latest allocation: nothing is returned.
        unsafe { heap.dealloc(a, layout(24, 8)) };
        assert_eq!(heap.free(), free + 64);
        // SAFETY: as above.
        assert!(
            unsafe { heap.alloc(layout(1024, 8)) }.is_null(),
            "beyond the end fails"
        );
    }
}
