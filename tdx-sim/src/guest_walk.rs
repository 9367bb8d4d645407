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

#[cfg(test)]
mod tests {
    use super::*;

    /// A page of guest memory (nested tables map whole, aligned pages).
    #[repr(C, align(4096))]
    struct Page([u64; 512]);

    /// Guest memory for the tests: `pages` 4 KiB pages of host memory at GPA 0.
    struct Guest {
        memory: Vec<Page>,
        npt: Npt,
    }

    impl Guest {
        fn new(pages: usize) -> Self {
            let memory: Vec<Page> = (0..pages).map(|_| Page([0; 512])).collect();
            let mut npt = Npt::new().unwrap();
            npt.map_range(0, memory.as_ptr() as u64, pages as u64 * 4096)
                .unwrap();
            Guest { memory, npt }
        }
        fn word(&mut self, gpa: u64) -> &mut u64 {
            &mut self.memory[gpa as usize / 4096].0[(gpa as usize % 4096) / 8]
        }
        fn set(&mut self, gpa: u64, value: u64) {
            *self.word(gpa) = value;
        }
        fn set_byte(&mut self, gpa: u64, byte: u8) {
            let word = self.word(gpa);
            let shift = (gpa % 8) * 8;
            *word = (*word & !(0xff << shift)) | u64::from(byte) << shift;
        }
    }

    const LONG: Paging = Paging {
        cr0: CR0_PG,
        cr3: 0x1000,
        cr4: CR4_PAE,
        efer: EFER_LMA,
    };

    #[test]
    fn a_four_level_walk_finds_4k_and_2m_pages_and_the_bytes_behind_them() {
        let mut g = Guest::new(16);
        // PML4 at 0x1000, PDPT at 0x2000, PD at 0x3000, PT at 0x4000.
        g.set(0x1000, 0x2000 | 3);
        g.set(0x2000, 0x3000 | 3);
        g.set(0x3000, 0x4000 | 3);
        g.set(0x4000 + 5 * 8, 0x8000 | 3); // GVA 0x5000 -> GPA 0x8000
        g.set(0x3000 + 8, 0x83); // GVA 2 MiB -> GPA 0 (a 2 MiB page)
        assert_eq!(translate(&mut g.npt, LONG, 0x5123), Some(0x8123));
        assert_eq!(translate(&mut g.npt, LONG, 0x20_0042), Some(0x42));
        assert_eq!(translate(&mut g.npt, LONG, 0x6000), None, "no PTE");
        for (i, byte) in [0x66u8, 0x0f, 0x01, 0xcc].into_iter().enumerate() {
            g.set_byte(0x8ffc + i as u64, byte);
        }
        let mut out = [0u8; 4];
        assert!(read(&mut g.npt, LONG, 0x5ffc, &mut out));
        assert_eq!(out, [0x66, 0x0f, 0x01, 0xcc]);
        // 0x5ffe..0x6002 runs into the unmapped page at GVA 0x6000: refused.
        assert!(!read(&mut g.npt, LONG, 0x5ffe, &mut out));
    }

    #[test]
    fn tables_outside_guest_memory_and_paging_off_and_pae() {
        let mut g = Guest::new(16);
        // A PML4 entry pointing at a table the nested tables do not map.
        g.set(0x1000, 0x40_0000 | 3);
        assert_eq!(translate(&mut g.npt, LONG, 0x1234), None);
        let off = Paging { cr0: 0, ..LONG };
        assert_eq!(translate(&mut g.npt, off, 0x1_2345_6789), Some(0x2345_6789));
        // Legacy PAE: PDPT at CR3 (32-byte aligned), then a 2 MiB page.
        g.set(0x2000, 0x3000 | 1);
        g.set(0x3000 + 8, 0x83);
        let pae = Paging {
            cr0: CR0_PG,
            cr3: 0x2000,
            cr4: CR4_PAE,
            efer: 0,
        };
        assert_eq!(translate(&mut g.npt, pae, 0x20_0010), Some(0x10));
        let non_pae = Paging { cr4: 0, ..pae };
        assert_eq!(translate(&mut g.npt, non_pae, 0x20_0010), None);
    }
}
