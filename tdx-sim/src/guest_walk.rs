//! Reading the guest's memory by virtual address, for the instruction bytes at its RIP: the
//! emulated CPU has no decode assists and no next-RIP, so tdx-sim decodes what it intercepts
//! itself. The guest's page tables are walked as the CPU would (paging off, PAE, 4- or 5-level)
//! and each guest-physical address goes through the nested tables.

use crate::npt::Npt;

const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;
const PRESENT: u64 = 1;
const LARGE: u64 = 1 << 7;
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The guest's paging registers.
#[derive(Clone, Copy, Debug)]
pub struct Paging {
    /// CR0.
    pub cr0: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER.
    pub efer: u64,
}

/// Reads the u64 at guest-physical `gpa` through the nested tables.
fn read_gpa_u64(npt: &mut Npt, gpa: u64) -> Option<u64> {
    let hpa = npt.lookup(gpa)?;
    // SAFETY: the nested tables map only host memory that holds guest RAM or firmware, all
    // identity-mapped in the host; an aligned u64 never crosses the page.
    Some(unsafe { (hpa as *const u64).read_volatile() })
}

/// The guest-physical address of `gva`, or None where the guest's tables do not map it.
pub fn translate(npt: &mut Npt, paging: Paging, gva: u64) -> Option<u64> {
    if paging.cr0 & CR0_PG == 0 {
        return Some(gva & 0xffff_ffff);
    }
    if paging.efer & EFER_LMA == 0 {
        // Legacy PAE: a 4-entry PDPT at CR3[31:5], then directories and tables.
        if paging.cr4 & CR4_PAE == 0 {
            return None; // 32-bit non-PAE paging: TDVF never uses it
        }
        let gva = gva & 0xffff_ffff;
        let pdpte = read_gpa_u64(npt, (paging.cr3 & 0xffff_ffe0) + ((gva >> 30) & 3) * 8)?;
        return walk_from(npt, pdpte, gva, &[21, 12]);
    }
    let levels: &[u32] = if paging.cr4 & CR4_LA57 != 0 {
        &[48, 39, 30, 21, 12]
    } else {
        &[39, 30, 21, 12]
    };
    walk_from(npt, (paging.cr3 & ADDRESS_MASK) | PRESENT, gva, levels)
}

/// Walks from `entry` (a present entry pointing at the first table) through the levels whose
/// index starts at each shift.
fn walk_from(npt: &mut Npt, mut entry: u64, gva: u64, shifts: &[u32]) -> Option<u64> {
    for (i, &shift) in shifts.iter().enumerate() {
        if entry & PRESENT == 0 {
            return None;
        }
        let table = entry & ADDRESS_MASK;
        entry = read_gpa_u64(npt, table + ((gva >> shift) & 0x1ff) * 8)?;
        if entry & PRESENT == 0 {
            return None;
        }
        let last = i + 1 == shifts.len();
        if last || (entry & LARGE != 0 && shift <= 30) {
            let page_mask = (1u64 << shift) - 1;
            return Some((entry & ADDRESS_MASK & !page_mask) | (gva & page_mask));
        }
    }
    None
}

/// Copies guest memory at virtual `gva` into `out`; false if any byte is unmapped.
pub fn read(npt: &mut Npt, paging: Paging, gva: u64, out: &mut [u8]) -> bool {
    for (i, byte) in out.iter_mut().enumerate() {
        let Some(gpa) = translate(npt, paging, gva.wrapping_add(i as u64)) else {
            return false;
        };
        let Some(hpa) = npt.lookup(gpa) else {
            return false;
        };
        // SAFETY: as in `read_gpa_u64`: mapped guest memory is identity-mapped host memory.
        *byte = unsafe { (hpa as *const u8).read_volatile() };
    }
    true
}
