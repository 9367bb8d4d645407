//! The nested page tables: the TD's guest-physical address space as the emulated CPU walks it.
//!
//! Four levels of 4 KiB pages only, so that every private page can be mapped and unmapped on
//! its own (ACCEPT, MapGPA). A GPA with no entry makes the guest exit with a nested page fault,
//! which is how an access to an unaccepted page, to a shared GPA the TD has not converted, or
//! to MMIO reaches tdx-sim. Table pages come from the heap, which is identity-mapped memory
//! (its addresses are physical addresses).

use alloc::alloc::{Layout, alloc_zeroed};

/// Present, writable, user: nested walks are user accesses, so U/S must be set at every level.
const TABLE_FLAGS: u64 = 0x7;
/// A leaf: present, writable, user, write-back (PAT index 0), executable.
const LEAF_FLAGS: u64 = 0x7;
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Why a mapping could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NptError {
    /// The heap has no page left for a table.
    OutOfMemory,
}

/// A nested page table hierarchy.
pub struct Npt {
    root: *mut u64,
}

// SAFETY: the tables are reached only through `&mut Npt`, one CPU at a time.
unsafe impl Send for Npt {}

fn new_table() -> Result<*mut u64, NptError> {
    let layout = Layout::from_size_align(4096, 4096).map_err(|_| NptError::OutOfMemory)?;
    // SAFETY: the layout has a non-zero size.
    let page = unsafe { alloc_zeroed(layout) }.cast::<u64>();
    if page.is_null() {
        Err(NptError::OutOfMemory)
    } else {
        Ok(page)
    }
}

impl Npt {
    /// An empty address space.
    pub fn new() -> Result<Self, NptError> {
        Ok(Self { root: new_table()? })
    }

    /// The root's physical address, for the VMCB's nested CR3.
    pub fn root(&self) -> u64 {
        self.root as u64
    }

    /// The leaf entry for `gpa`, creating tables on the way when `create`.
    fn leaf(&mut self, gpa: u64, create: bool) -> Result<Option<*mut u64>, NptError> {
        let mut table = self.root;
        for level in [3u32, 2, 1] {
            let index = ((gpa >> (12 + 9 * level)) & 0x1ff) as usize;
            // SAFETY: `table` is a table page of this hierarchy and `index < 512`.
            let entry = unsafe { table.add(index) };
            // SAFETY: as above.
            let value = unsafe { entry.read() };
            table = if value & 1 != 0 {
                (value & ADDRESS_MASK) as *mut u64
            } else if create {
                let next = new_table()?;
                // SAFETY: as above; the new table is zeroed and ours.
                unsafe { entry.write(next as u64 | TABLE_FLAGS) };
                next
            } else {
                return Ok(None);
            };
        }
        let index = ((gpa >> 12) & 0x1ff) as usize;
        // SAFETY: `table` is a last-level table and `index < 512`.
        Ok(Some(unsafe { table.add(index) }))
    }

    /// Maps the 4 KiB page at `gpa` to host physical `hpa`.
    pub fn map(&mut self, gpa: u64, hpa: u64) -> Result<(), NptError> {
        if let Some(entry) = self.leaf(gpa, true)? {
            // SAFETY: `leaf` returns an entry of this hierarchy.
            unsafe { entry.write((hpa & ADDRESS_MASK) | LEAF_FLAGS) };
        }
        Ok(())
    }

    /// Maps `[gpa, gpa + len)` to `[hpa, hpa + len)`, page by page.
    pub fn map_range(&mut self, gpa: u64, hpa: u64, len: u64) -> Result<(), NptError> {
        for offset in (0..len).step_by(4096) {
            self.map(gpa + offset, hpa + offset)?;
        }
        Ok(())
    }

    /// Removes the mapping of the page at `gpa`, if any.
    pub fn unmap(&mut self, gpa: u64) {
        if let Ok(Some(entry)) = self.leaf(gpa, false) {
            // SAFETY: `leaf` returns an entry of this hierarchy.
            unsafe { entry.write(0) };
        }
    }

    /// The host physical address `gpa`'s page is mapped to.
    pub fn lookup(&mut self, gpa: u64) -> Option<u64> {
        let entry = self.leaf(gpa, false).ok()??;
        // SAFETY: `leaf` returns an entry of this hierarchy.
        let value = unsafe { entry.read() };
        (value & 1 != 0).then_some((value & ADDRESS_MASK) | (gpa & 0xfff))
    }
}
