//! The kernel's own page tables: an identity map it can change, and tdx-boot's
//! `SharedBitMapper` over it.
//!
//! The firmware's tables may be write-protected and are not the kernel's to edit, so the kernel
//! builds its own: 0..4 GiB with 2 MiB pages (splittable to 4 KiB where a page changes sides or
//! maps a device), above that up to the top of RAM with 1 GiB pages, under a PML5 when the
//! firmware runs with 5-level paging. No NX, so the image and the AP trampolines stay executable.
//! Converting a page sets or clears the shared bit (GPAW - 1) in its 4 KiB leaf entry, and a
//! device page is mapped with it: in a TD that entry then reaches the shared alias. (Without TDX
//! the bit is above QEMU's physical address width, so an access through such an entry raises a
//! reserved-bit #PF: the kernel does not touch a converted page while it is shared, and turns
//! the #PF of a device access into the #VE a TD would take, see [`crate::model_ept`].)

use alloc::alloc::{Layout, alloc_zeroed};
use tdx_boot::convert::{MapperError, SharedBitMapper};
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;
use x86_64::{PhysAddr, VirtAddr};

const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const WRITE_THROUGH: u64 = 1 << 3;
const CACHE_DISABLE: u64 = 1 << 4;
const HUGE: u64 = 1 << 7;
/// The address bits of an entry (51..12, so the shared bit is one of them).
const ADDRESS: u64 = 0x000f_ffff_ffff_f000;
const SIZE_2M: u64 = 2 << 20;
const SIZE_1G: u64 = 1 << 30;

/// One 4 KiB table of 512 entries.
type Table = [u64; 512];

/// A zeroed, page-aligned table from the heap (identity-mapped: its address is its GPA).
fn new_table() -> &'static mut Table {
    let layout = Layout::from_size_align(4096, 4096).unwrap_or(Layout::new::<Table>());
    // SAFETY: the layout has a non-zero size.
    let table = unsafe { alloc_zeroed(layout) }.cast::<Table>();
    assert!(!table.is_null(), "heap exhausted building page tables");
    // SAFETY: freshly allocated, zeroed, aligned and never freed.
    unsafe { &mut *table }
}

/// # Safety
///
/// `entry` is a present non-leaf entry of the kernel's tables.
unsafe fn next_table(entry: u64) -> &'static mut Table {
    // SAFETY: the kernel's tables are identity-mapped heap pages.
    unsafe { &mut *((entry & ADDRESS) as *mut Table) }
}

/// Where the host view of physical memory starts: all of it, mapped once more with 1 GiB pages
/// in tables of its own. Without TDX the software TDX module (playing the VMM too) reads and
/// writes guest memory through this view, so the kernel's own mappings can change sides
/// without pulling the ground from under the model, as a real VMM has its own mappings.
pub const HOST_VIEW_BASE: u64 = 0xffff_8000_0000_0000;

/// Whether CR4.LA57 (5-level paging) is on.
fn five_level_paging() -> bool {
    x86_64::registers::control::Cr4::read_raw() & (1 << 12) != 0
}

/// The index of `va` in a table of paging level `level` (1 = page table .. 5 = PML5).
fn index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * (level - 1))) & 0x1ff) as usize
}

/// How far the identity map can reach: the lower half of a 4-level address space (128 TiB). The
/// kernel puts its 4-level tree under the PML5 when the firmware runs with 5-level paging, so
/// RAM above this (possible only with GPAW 52) is refused rather than left unmapped. With GPAW
/// 48 this is the shared bit itself: no identity entry ever has it set.
const IDENTITY_LIMIT: u64 = 1 << 47;

/// Builds the identity map of `[0, ram_top)` (at least 4 GiB; the host view too when
/// `with_host_view`, for the model) and switches this CPU to it; returns the top table's
/// address, or why the map cannot be built.
pub fn init(ram_top: u64, with_host_view: bool) -> Result<u64, &'static str> {
    if ram_top > IDENTITY_LIMIT {
        return Err("RAM above 128 TiB: beyond the kernel's 4-level identity map");
    }
    let pml4 = new_table();
    let identity_top = ram_top.max(4 * SIZE_1G);
    for (slot, entry) in pml4.iter_mut().enumerate() {
        let base = slot as u64 * 512 * SIZE_1G;
        if base >= identity_top {
            break;
        }
        *entry = identity_pdpt(base) | PRESENT | WRITABLE;
    }
    let host_view_entry = with_host_view.then(|| {
        let host_view = new_table();
        for (gib, entry) in host_view.iter_mut().enumerate() {
            *entry = (gib as u64 * SIZE_1G) | PRESENT | WRITABLE | HUGE;
        }
        host_view.as_ptr() as u64 | PRESENT | WRITABLE
    });
    let root = if five_level_paging() {
        // The firmware runs with 5-level paging (TDVF may, for GPAW 52), which the kernel
        // cannot turn off while paging is on: put the 4-level tree under a PML5.
        let pml5 = new_table();
        pml5[0] = pml4.as_ptr() as u64 | PRESENT | WRITABLE;
        if let Some(host_view_entry) = host_view_entry {
            let host_pml4 = new_table();
            host_pml4[index(HOST_VIEW_BASE, 4)] = host_view_entry;
            pml5[index(HOST_VIEW_BASE, 5)] = host_pml4.as_ptr() as u64 | PRESENT | WRITABLE;
        }
        pml5.as_ptr() as u64
    } else {
        if let Some(host_view_entry) = host_view_entry {
            pml4[index(HOST_VIEW_BASE, 4)] = host_view_entry;
        }
        pml4.as_ptr() as u64
    };
    load(root);
    Ok(root)
}

/// The page-directory-pointer table identity-mapping the 512 GiB from `base`: 2 MiB pages
/// below 4 GiB (where the kernel's memory and the devices are, and pages get split), 1 GiB
/// pages above.
fn identity_pdpt(base: u64) -> u64 {
    let pdpt = new_table();
    for (gib, entry) in pdpt.iter_mut().enumerate() {
        let start = base + gib as u64 * SIZE_1G;
        *entry = if start < 4 * SIZE_1G {
            let pd = new_table();
            for (i, e) in pd.iter_mut().enumerate() {
                *e = (start + i as u64 * SIZE_2M) | PRESENT | WRITABLE | HUGE;
            }
            pd.as_ptr() as u64 | PRESENT | WRITABLE
        } else {
            start | PRESENT | WRITABLE | HUGE
        };
    }
    pdpt.as_ptr() as u64
}

/// Loads `root` into CR3 on this CPU.
pub fn load(root: u64) {
    let frame = PhysFrame::containing_address(PhysAddr::new(root));
    // SAFETY: `root` is the kernel's identity map, which maps everything the kernel touches
    // (image, stacks, heap, ACPI, MMIO below 4 GiB) at the same addresses as before.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };
}

/// The 4 KiB leaf entry for `va`, splitting a 2 MiB or 1 GiB page on the way if needed.
fn leaf_entry(va: u64) -> Option<&'static mut u64> {
    let (root, _) = Cr3::read_raw();
    // SAFETY: CR3 holds the kernel's identity map (installed by `init`).
    let mut table = unsafe { &mut *(root.start_address().as_u64() as *mut Table) };
    let levels: &[u32] = if five_level_paging() {
        &[5, 4, 3, 2]
    } else {
        &[4, 3, 2]
    };
    for &level in levels {
        let entry = table.get_mut(index(va, level))?;
        if *entry & PRESENT == 0 {
            return None;
        }
        if *entry & HUGE != 0 {
            // Split: 512 entries of the next size covering the same range, same flags.
            let child_size = 1u64 << (12 + 9 * (level - 2));
            let flags = *entry & !ADDRESS & !HUGE;
            let base = *entry & ADDRESS & !(child_size * 512 - 1);
            let child = new_table();
            for (i, e) in child.iter_mut().enumerate() {
                let leaf_flag = if level > 2 { HUGE } else { 0 };
                *e = (base + i as u64 * child_size) | flags | leaf_flag;
            }
            *entry = child.as_ptr() as u64 | (flags & (PRESENT | WRITABLE));
        }
        // SAFETY: the entry is present and not a leaf (split above if it was).
        table = unsafe { next_table(*entry) };
    }
    table.get_mut(index(va, 1))
}

/// The physical address (shared bit included) `va` translates to, without changing the tables.
pub fn physical_address(va: u64) -> Option<u64> {
    let (root, _) = Cr3::read_raw();
    // SAFETY: CR3 holds the kernel's identity map (installed by `init`).
    let mut table: &Table = unsafe { &*(root.start_address().as_u64() as *const Table) };
    let top = if five_level_paging() { 5 } else { 4 };
    for level in (1..=top).rev() {
        let entry = *table.get(index(va, level))?;
        if entry & PRESENT == 0 {
            return None;
        }
        if level == 1 || entry & HUGE != 0 {
            let page_size = 1u64 << (12 + 9 * (level - 1));
            return Some((entry & ADDRESS & !(page_size - 1)) | (va & (page_size - 1)));
        }
        // SAFETY: the entry is present and not a leaf.
        table = unsafe { next_table(entry) };
    }
    None
}

/// Maps the 4 KiB device page at `gpa` at the same virtual address, shared (`shared_mask` set
/// in the entry: in a TD the access then leaves the TD as an EPT-violation #VE instead of
/// touching private memory) and uncached (PCD and PWT select PAT entry 3, UC: every access
/// reaches the device, none is combined or read ahead). Returns the register block's address.
pub fn map_device_shared(gpa: u64, shared_mask: u64) -> Result<*mut u8, MapperError> {
    let Some(entry) = leaf_entry(gpa) else {
        return Err(MapperError {
            done: 0,
            reason: "device page not in the identity map",
        });
    };
    *entry = (gpa & ADDRESS) | shared_mask | PRESENT | WRITABLE | WRITE_THROUGH | CACHE_DISABLE;
    Mapper { shared_mask }.flush(gpa, 4096);
    Ok(gpa as *mut u8)
}

/// tdx-boot's view of the kernel's mappings: the shared bit in 4 KiB leaf entries.
pub struct Mapper {
    /// The TD's shared bit (GPAW - 1).
    pub shared_mask: u64,
}

impl SharedBitMapper for Mapper {
    unsafe fn set_shared(&mut self, va: u64, len: u64, shared: bool) -> Result<(), MapperError> {
        let mut done = 0;
        while done < len {
            let Some(entry) = leaf_entry(va + done) else {
                return Err(MapperError {
                    done,
                    reason: "not mapped",
                });
            };
            if shared {
                *entry |= self.shared_mask;
            } else {
                *entry &= !self.shared_mask;
            }
            done += 4096;
        }
        Ok(())
    }

    fn flush(&mut self, va: u64, len: u64) {
        for page in (va..va.saturating_add(len)).step_by(4096) {
            x86_64::instructions::tlb::flush(VirtAddr::new(page));
        }
        // The APs may hold the translation too: every CPU reloads CR3 (a TLB shootdown).
        crate::smp::run_on_all(&|_| x86_64::instructions::tlb::flush_all());
    }
}

/// Whether the leaf entry of `va` has the shared bit (for the log and the checks).
pub fn is_mapped_shared(va: u64, shared_mask: u64) -> bool {
    leaf_entry(va).is_some_and(|e| *e & shared_mask != 0)
}
