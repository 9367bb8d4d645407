//! Getting TDVF from the TDX reset state into long mode on an emulated CPU that cannot run it.
//!
//! A TD vCPU starts in 32-bit protected mode with paging off and EFER.LME already set, so
//! TDVF's reset vector never writes EFER: it loads CR3 and CR4 and sets CR0.PG, and is in long
//! mode. QEMU 7.2's TCG ignores nested paging while the guest's CR0.PG is clear on every VMRUN
//! after the first (it fetches at host address = guest address), so tdx-sim starts the guest
//! with paging on, through identity PAE tables of its own at a GPA TDVF never uses, and plays
//! the paging-off state: CR3 writes are held back, CR4 writes applied (PAE kept), and the
//! write that sets CR0.PG switches EFER to LME|LMA, loads the held CR3 and stops intercepting
//! CR writes. TDVF's reset vector tests only CR0.PE, so it cannot tell.

use crate::npt::{Npt, NptError};
use crate::vmcb::{Vmcb, save};

/// Where the identity PAE tables sit in the TD's guest-physical space: below 4 GiB (legacy
/// PAE's CR3 is 32 bits), above any RAM and below the firmware, where TDVF's reset vector and
/// SEC touch nothing.
pub const TABLES_GPA: u64 = 0xffb0_0000;
/// A PDPT and four page directories of 2 MiB pages: [0, 4 GiB).
pub const TABLES_LEN: u64 = 5 * 4096;

/// CR0 with PE, ET, NE and PG.
pub const INITIAL_CR0: u64 = 0x8000_0031;
/// CR4 with PAE and MCE.
pub const INITIAL_CR4: u64 = 0x60;
const CR4_PAE: u64 = 1 << 5;
const CR0_PG: u64 = 1 << 31;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// Writes the identity tables into `host` (the host memory behind [`TABLES_GPA`]).
///
/// # Safety
///
/// `host` is valid for writes of [`TABLES_LEN`] bytes and used for nothing else.
pub unsafe fn write_tables(host: *mut u64) {
    for directory in 0..4u64 {
        // PDPT entries in PAE mode: present only (no RW/US bits there).
        let pd_gpa = TABLES_GPA + (1 + directory) * 4096;
        // SAFETY: entry `directory` of the PDPT, inside the caller's buffer.
        unsafe { host.add(directory as usize).write(pd_gpa | 1) };
        for entry in 0..512u64 {
            let address = (directory << 30) | (entry << 21);
            let index = (512 * (1 + directory) + entry) as usize;
            // SAFETY: inside the caller's buffer (five pages of 512 entries).
            // Present, writable, user, 2 MiB page.
            unsafe { host.add(index).write(address | 0x87) };
        }
    }
}

/// Maps the tables into the TD's nested tables at [`TABLES_GPA`].
pub fn map_tables(npt: &mut Npt, host: u64) -> Result<(), NptError> {
    npt.map_range(TABLES_GPA, host, TABLES_LEN)
}

/// Where a vCPU is on the way to long mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The reset vector believes paging is off; `held_cr3` is the CR3 it last wrote.
    ResetVector {
        /// TDVF's CR3, loaded when it sets CR0.PG.
        held_cr3: Option<u64>,
    },
    /// In TDVF's own page tables: nothing is played any more.
    OwnPaging,
}

/// What a CR write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrWrite {
    /// Handled; go on.
    Done,
    /// CR0.PG was set: the vCPU is on TDVF's page tables now, the CR intercepts can go and
    /// the TLB must be flushed.
    EnteredOwnPaging,
    /// A write tdx-sim does not play (CR0.PG set while no CR3 was ever written).
    Unsupported,
}

/// Applies the reset vector's write of `value` to CR `cr` (0, 3 or 4) in `vmcb`.
pub fn write_cr(phase: &mut Phase, vmcb: &mut Vmcb, cr: u8, value: u64) -> CrWrite {
    let Phase::ResetVector { held_cr3 } = phase else {
        return CrWrite::Unsupported;
    };
    match cr {
        3 => {
            *held_cr3 = Some(value);
            CrWrite::Done
        }
        4 => {
            vmcb.write64(save::CR4, value | CR4_PAE);
            CrWrite::Done
        }
        0 if value & CR0_PG != 0 => {
            let Some(cr3) = *held_cr3 else {
                return CrWrite::Unsupported;
            };
            let efer = vmcb.read64(save::EFER);
            vmcb.write64(save::EFER, efer | EFER_LME | EFER_LMA);
            vmcb.write64(save::CR3, cr3);
            vmcb.write64(save::CR0, value);
            *phase = Phase::OwnPaging;
            CrWrite::EnteredOwnPaging
        }
        0 => {
            // Paging stays on underneath; everything else of the write applies.
            vmcb.write64(save::CR0, value | CR0_PG);
            CrWrite::Done
        }
        _ => CrWrite::Unsupported,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> (Phase, Vmcb) {
        let mut vmcb = Vmcb::zeroed();
        vmcb.write64(save::CR0, INITIAL_CR0);
        vmcb.write64(save::CR3, TABLES_GPA);
        vmcb.write64(save::CR4, INITIAL_CR4);
        vmcb.write64(save::EFER, 1 << 12);
        (Phase::ResetVector { held_cr3: None }, vmcb)
    }

    #[test]
    fn the_tables_identity_map_4_gib_with_2_mib_pages() {
        let mut pages = vec![0u64; 5 * 512];
        // SAFETY: five pages of entries, ours.
        unsafe { write_tables(pages.as_mut_ptr()) };
        assert_eq!(pages[0], (TABLES_GPA + 4096) | 1);
        assert_eq!(pages[3], (TABLES_GPA + 4 * 4096) | 1);
        assert_eq!(pages[512], 0x87);
        assert_eq!(pages[512 + 1], 0x20_0000 | 0x87);
        // The last 2 MiB below 4 GiB: directory 3, entry 511.
        assert_eq!(pages[512 * 4 + 511], 0xffe0_0000 | 0x87);
    }

    #[test]
    fn cr3_is_held_until_paging_is_enabled_then_long_mode_switches_in() {
        let (mut phase, mut vmcb) = fresh();
        assert_eq!(write_cr(&mut phase, &mut vmcb, 3, 0x80_0000), CrWrite::Done);
        assert_eq!(vmcb.read64(save::CR3), TABLES_GPA, "held back");
        assert_eq!(write_cr(&mut phase, &mut vmcb, 4, 0x640), CrWrite::Done);
        assert_eq!(vmcb.read64(save::CR4), 0x640 | 0x20, "PAE stays");
        assert_eq!(
            write_cr(&mut phase, &mut vmcb, 0, INITIAL_CR0),
            CrWrite::EnteredOwnPaging
        );
        assert_eq!(vmcb.read64(save::CR3), 0x80_0000);
        assert_eq!(vmcb.read64(save::EFER), 1 << 12 | 1 << 8 | 1 << 10);
        assert_eq!(phase, Phase::OwnPaging);
        // Nothing is played any more.
        assert_eq!(write_cr(&mut phase, &mut vmcb, 3, 0), CrWrite::Unsupported);
    }

    #[test]
    fn paging_without_a_cr3_and_clearing_pg_are_not_played_as_long_mode() {
        let (mut phase, mut vmcb) = fresh();
        assert_eq!(
            write_cr(&mut phase, &mut vmcb, 0, INITIAL_CR0),
            CrWrite::Unsupported
        );
        // A CR0 write without PG keeps the tables underneath and changes the rest.
        assert_eq!(write_cr(&mut phase, &mut vmcb, 0, 0x33), CrWrite::Done);
        assert_eq!(vmcb.read64(save::CR0), 0x33 | 1 << 31);
        assert_eq!(write_cr(&mut phase, &mut vmcb, 8, 0), CrWrite::Unsupported);
    }
}
