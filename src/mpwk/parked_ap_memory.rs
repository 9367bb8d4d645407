//! Memory the firmware's parked APs still run on, which the kernel must not hand out.
//!
//! TDVF's APs wait in the mailbox loop with CR3 pointing at the SEC page tables, the first
//! TEMP_MEM section of the TDVF metadata (`PcdOvmfSecPageTablesBase`: 0x80_0000, 24 KiB, in the
//! OvmfPkgX64 and IntelTdx builds; Debian's `ovmf` 2022.11 lists it as TEMP_MEM (0x800000,
//! 0x6000)). Until edk2-stable202411 the UEFI memory map does not reserve those pages: they look
//! like free conventional memory, yet every AP still parked walks them on each TLB miss. A kernel
//! that allocates them before every AP has left the loop overwrites live page tables, and the AP
//! runs off into whatever the new owner wrote there, typically when it is finally woken.
//!
//! The same identity map covers only [0, 4 GiB) with 2 MiB pages, which is why the wakeup vector
//! (the trampoline) must lie below 4 GiB ([`super::TrampolineError::Above4GiB`]).
//!
//! So a kernel reserves [`TDVF_PARKED_AP_PAGE_TABLES`] in its map ([`hold_back_parked_ap_memory`])
//! before its allocator sees the map, and keeps it reserved while any AP may still be in the
//! firmware's loop: an AP that did not answer its wake-up (it may run much later), and, on firmware
//! with a reset vector, any AP sent back there. Firmware since 2024.11 reserves the pages itself,
//! and holding them back again changes nothing.

use core::ops::Range;

use crate::e820::{MapError, MemoryMap, RegionKind};

/// The SEC page tables of TDVF (OvmfPkgX64 and IntelTdx builds of edk2), on which the APs parked
/// in the mailbox loop run: GPA `[0x80_0000, 0x80_6000)`.
pub const TDVF_PARKED_AP_PAGE_TABLES: Range<u64> = 0x80_0000..0x80_6000;

/// Marks the RAM (`Usable` or `Unaccepted`) inside [`TDVF_PARKED_AP_PAGE_TABLES`] reserved in
/// `map`, so that no allocator built from the map hands the pages out while a firmware AP may
/// still use them. Other kinds stay as they are (newer firmware's own reservation keeps its
/// label), and gaps stay gaps.
///
/// Fails only when the map has no room for the extra regions; the range may then be reserved in
/// part, never less restricted than before.
pub fn hold_back_parked_ap_memory<const N: usize>(map: &mut MemoryMap<N>) -> Result<(), MapError> {
    let Range { start, end } = TDVF_PARKED_AP_PAGE_TABLES;
    let mut cursor = start;
    // Each pass reserves one RAM region's overlap and moves past it, so the loop ends after at
    // most as many passes as regions overlap the range.
    while let Some(ram) = map
        .regions()
        .iter()
        .find(|r| {
            r.end > cursor
                && r.start < end
                && matches!(r.kind, RegionKind::Usable | RegionKind::Unaccepted)
        })
        .map(|r| r.start.max(cursor)..r.end.min(end))
    {
        map.insert(ram.start, ram.end, RegionKind::Reserved)?;
        cursor = ram.end;
    }
    Ok(())
}
