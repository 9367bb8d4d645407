//! [`SharedBitMapper`] over x86-64 4-level page tables (the `x86_64` crate's [`PageTable`]),
//! for kernels that map physical memory at a fixed offset (as `OffsetPageTable` does).
//!
//! The shared bit lives in the address field of the leaf entry (bit 47 or 51), not in the flags,
//! so `Mapper::update_flags` cannot change it: this walks the tables and rewrites each leaf's
//! address. Huge pages (2 MiB, 1 GiB) are rewritten whole when the range covers them and
//! refused otherwise (splitting a huge page needs a frame allocator: split it first).

use super::mapper::{MapperError, SharedBitMapper};
use x86_64::structures::paging::{PageTable, PageTableFlags, page_table::PageTableEntry};
use x86_64::{PhysAddr, VirtAddr};

const PAGE: u64 = 0x1000;
/// The physical-address bits of an x86-64 page-table entry (12..=51).
const ADDRESS_BITS: u64 = 0x000f_ffff_ffff_f000;

/// Rewrites the shared bit in 4-level page tables reachable at `physical_offset + phys`; the TLB
/// flush is the kernel's (`invlpg`, a CR3 reload or a shootdown), passed in as `flush`.
pub struct PageTableMapper<'t, F: FnMut(u64, u64)> {
    level_4: &'t mut PageTable,
    physical_offset: u64,
    shared_mask: u64,
    flush: F,
}

impl<F: FnMut(u64, u64)> core::fmt::Debug for PageTableMapper<'_, F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PageTableMapper")
            .field("physical_offset", &self.physical_offset)
            .field("shared_mask", &self.shared_mask)
            .finish_non_exhaustive()
    }
}

impl<'t, F: FnMut(u64, u64)> PageTableMapper<'t, F> {
    /// A mapper for the tables under `level_4`; `flush(va, len)` must invalidate the TLB for
    /// the range on every CPU that may use these tables. `shared_mask` is the TD's shared bit
    /// (one bit of 12..=51); with any other value every `set_shared` fails.
    ///
    /// # Safety
    ///
    /// Every page table reachable from `level_4` lies in physical memory that is mapped,
    /// writable, at virtual address `physical_offset + physical address`; the tables are
    /// private memory (their own addresses carry no shared bit) and nothing else reads or
    /// writes them while the mapper lives (no other CPU changes them; the hardware walker may
    /// read them, which is what the flush is for). No table is reachable from itself (no
    /// recursive entry): each is borrowed mutably on its own during a walk.
    pub unsafe fn new(
        level_4: &'t mut PageTable,
        physical_offset: u64,
        shared_mask: u64,
        flush: F,
    ) -> Self {
        Self {
            level_4,
            physical_offset,
            shared_mask,
            flush,
        }
    }

    /// The leaf entry mapping `va` and the size of the page it maps.
    fn leaf(&mut self, va: u64) -> Result<(&mut PageTableEntry, u64), &'static str> {
        let addr = VirtAddr::try_new(va).map_err(|_| "non-canonical address")?;
        let levels = [
            (addr.p4_index(), 0),
            (addr.p3_index(), 1 << 30),
            (addr.p2_index(), 1 << 21),
            (addr.p1_index(), PAGE),
        ];
        let mut table: *mut PageTable = &mut *self.level_4;
        for (index, huge_size) in levels {
            // SAFETY: `table` is the level-4 table or one reached through a present non-leaf
            // entry; `new`'s contract makes it valid, mapped at the offset and exclusively ours
            // for the mapper's lifetime, which the returned borrow does not outlive.
            let entry = unsafe { &mut (&mut *table)[index] };
            let flags = entry.flags();
            if !flags.contains(PageTableFlags::PRESENT) {
                return Err("not mapped");
            }
            if huge_size == PAGE || (huge_size != 0 && flags.contains(PageTableFlags::HUGE_PAGE)) {
                return Ok((entry, huge_size));
            }
            let next = entry.addr().as_u64() & !self.shared_mask;
            let virt = self
                .physical_offset
                .checked_add(next)
                .ok_or("page table outside the physical-memory mapping")?;
            table = virt as *mut PageTable;
        }
        Err("page walk did not end at a leaf")
    }
}

impl<F: FnMut(u64, u64)> SharedBitMapper for PageTableMapper<'_, F> {
    unsafe fn set_shared(&mut self, va: u64, len: u64, shared: bool) -> Result<(), MapperError> {
        let mask = self.shared_mask;
        // Any other mask would change nothing (and report success), set a flag bit, or trip
        // `set_addr`'s alignment assertion.
        if !mask.is_power_of_two() || mask & ADDRESS_BITS == 0 {
            return Err(MapperError {
                done: 0,
                reason: "the shared mask is not one physical-address bit",
            });
        }
        let mut done = 0;
        while done < len {
            let page = va.checked_add(done).ok_or(MapperError {
                done,
                reason: "address overflow",
            })?;
            let (entry, size) = self
                .leaf(page)
                .map_err(|reason| MapperError { done, reason })?;
            if page % size != 0 || len - done < size {
                return Err(MapperError {
                    done,
                    reason: "a huge page would have to be split",
                });
            }
            let address = entry.addr().as_u64();
            let address = if shared {
                address | mask
            } else {
                address & !mask
            };
            let flags = entry.flags();
            entry.set_addr(PhysAddr::new_truncate(address), flags);
            done += size;
        }
        Ok(())
    }

    fn flush(&mut self, va: u64, len: u64) {
        (self.flush)(va, len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;
    use std::vec::Vec;

    const SHARED: u64 = 1 << 47;
    const VA: u64 = 0xffff_8000_4000_0000;

    /// Tables in host memory with "physical" = host address (offset 0): 4 KiB pages for
    /// VA..VA+16 pages (frames from 0x10_0000), a 2 MiB page at VA + 2 MiB (frame 0x40_0000).
    struct Tables {
        tables: Vec<Box<PageTable>>,
    }

    fn link(entry: &mut PageTableEntry, table: &PageTable) {
        let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE;
        entry.set_addr(PhysAddr::new(table as *const PageTable as u64), flags);
    }

    fn build() -> Tables {
        let mut l4 = Box::new(PageTable::new());
        let mut l3 = Box::new(PageTable::new());
        let mut l2 = Box::new(PageTable::new());
        let mut l1 = Box::new(PageTable::new());
        let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
        let addr = VirtAddr::new(VA);
        for i in 0..16u64 {
            let entry = &mut l1[usize::from(addr.p1_index()) + i as usize];
            entry.set_addr(PhysAddr::new(0x10_0000 + i * PAGE), flags);
        }
        let huge = &mut l2[usize::from(addr.p2_index()) + 1];
        huge.set_addr(PhysAddr::new(0x40_0000), flags | PageTableFlags::HUGE_PAGE);
        link(&mut l2[addr.p2_index()], &l1);
        link(&mut l3[addr.p3_index()], &l2);
        link(&mut l4[addr.p4_index()], &l3);
        Tables {
            tables: std::vec![l4, l3, l2, l1],
        }
    }

    fn leaf_addr(tables: &Tables, level: usize, index: usize) -> u64 {
        tables.tables[level][index].addr().as_u64()
    }

    #[test]
    fn rewrites_4k_and_whole_huge_leaves_and_keeps_flags() {
        let mut tables = build();
        let p1 = usize::from(VirtAddr::new(VA).p1_index());
        let p2 = usize::from(VirtAddr::new(VA).p2_index());
        let flags_before = tables.tables[3][p1].flags();
        let mut flushed = Vec::new();
        {
            let (l4, _) = tables.tables.split_first_mut().unwrap();
            // SAFETY: the tables are host boxes at their own addresses, used only here.
            let mut mapper =
                unsafe { PageTableMapper::new(l4, 0, SHARED, |va, len| flushed.push((va, len))) };
            // SAFETY: nothing uses the (fictitious) mapped memory.
            unsafe { mapper.set_shared(VA + PAGE, 3 * PAGE, true) }.unwrap();
            // SAFETY: as above.
            unsafe { mapper.set_shared(VA + 0x20_0000, 0x20_0000, true) }.unwrap();
            mapper.flush(VA, PAGE);
        }
        assert_eq!(flushed, [(VA, PAGE)]);
        assert_eq!(leaf_addr(&tables, 3, p1), 0x10_0000);
        assert_eq!(leaf_addr(&tables, 3, p1 + 1), 0x10_1000 | SHARED);
        assert_eq!(leaf_addr(&tables, 3, p1 + 3), 0x10_3000 | SHARED);
        assert_eq!(leaf_addr(&tables, 3, p1 + 4), 0x10_4000);
        assert_eq!(tables.tables[3][p1 + 1].flags(), flags_before);
        assert_eq!(leaf_addr(&tables, 2, p2 + 1), 0x40_0000 | SHARED);
        assert!(
            tables.tables[2][p2 + 1]
                .flags()
                .contains(PageTableFlags::HUGE_PAGE)
        );

        let (l4, _) = tables.tables.split_first_mut().unwrap();
        // SAFETY: as above.
        let mut mapper = unsafe { PageTableMapper::new(l4, 0, SHARED, |_, _| {}) };
        // SAFETY: as above.
        unsafe { mapper.set_shared(VA + PAGE, 3 * PAGE, false) }.unwrap();
        // Half a huge page, an unmapped page, a non-canonical address: refused with progress.
        // SAFETY: as above.
        let err = unsafe { mapper.set_shared(VA + 0x20_0000, PAGE, false) }.unwrap_err();
        assert_eq!(err.done, 0);
        // SAFETY: as above.
        let err = unsafe { mapper.set_shared(VA + 14 * PAGE, 4 * PAGE, true) }.unwrap_err();
        assert_eq!((err.done, err.reason), (2 * PAGE, "not mapped"));
        // SAFETY: as above.
        let err = unsafe { mapper.set_shared(0x0000_9000_0000_0000, PAGE, true) }.unwrap_err();
        assert_eq!(err.reason, "non-canonical address");
        assert_eq!(leaf_addr(&tables, 3, p1 + 1), 0x10_1000);
        assert_eq!(leaf_addr(&tables, 3, p1 + 14), 0x10_e000 | SHARED);
    }

    #[test]
    fn a_mask_that_is_not_one_address_bit_is_refused_not_a_panic() {
        let mut tables = build();
        let p1 = usize::from(VirtAddr::new(VA).p1_index());
        for mask in [0, 1 << 5, SHARED | (1 << 40), 1 << 52, 1 << 63] {
            let (l4, _) = tables.tables.split_first_mut().unwrap();
            // SAFETY: the tables are host boxes at their own addresses, used only here.
            let mut mapper = unsafe { PageTableMapper::new(l4, 0, mask, |_, _| {}) };
            // SAFETY: nothing uses the (fictitious) mapped memory.
            let err = unsafe { mapper.set_shared(VA, PAGE, true) }.unwrap_err();
            assert_eq!(err.done, 0, "{mask:#x}");
            assert_eq!(leaf_addr(&tables, 3, p1), 0x10_0000, "{mask:#x}");
        }
    }
}
