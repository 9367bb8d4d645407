//! Is the mailbox where firmware says firmware memory is?
//!
//! ACPI requires the mailbox in ACPI NVS memory; TDVF reserves it. A VMM-supplied MADT could
//! instead point into RAM the kernel will allocate (or into MMIO): the kernel would then hand out
//! a page that other CPUs write. So the whole mailbox page must be covered by regions the memory
//! map marks reserved or ACPI NVS, and no other region may overlap it.
//!
//! The memory map is given as `(start, end_exclusive, is_reserved_or_acpi_nvs)` triples, so any map
//! representation fits (e.g. `e820::MemoryMap::regions()` mapped through its kinds). Regions may
//! be unsorted and may overlap (an unsanitized map); the check stays conservative either way.

use super::mailbox::MAILBOX_SIZE;
use crate::e820::{MemoryMap, RegionKind};

/// Why the mailbox page is not acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlacementError {
    /// The page wraps around the address space.
    Overflow(u64),
    /// Part of the page (starting at this address) is in no reserved/ACPI NVS region.
    NotCovered(u64),
    /// The address has the TD's shared bit (GPAW - 1) or a bit above the GPA width set: the mailbox
    /// must be private memory, which the VMM can neither read nor write.
    NotPrivate(u64),
    /// A region of another kind (RAM, MMIO, ...) overlaps the page.
    OverlapsOtherRegion {
        /// Start of the overlapping region.
        start: u64,
        /// End (exclusive) of the overlapping region.
        end: u64,
    },
}

/// Checks that `[mailbox_address, mailbox_address + 4096)` is covered by firmware-reserved or ACPI
/// NVS regions and overlapped by no other region. `regions` is iterated more than once.
pub fn check_mailbox_placement<I>(mailbox_address: u64, regions: I) -> Result<(), PlacementError>
where
    I: IntoIterator<Item = (u64, u64, bool)> + Clone,
{
    let page_end = mailbox_address
        .checked_add(MAILBOX_SIZE as u64)
        .ok_or(PlacementError::Overflow(mailbox_address))?;
    for (start, end, firmware) in regions.clone() {
        if !firmware && start < page_end && mailbox_address < end {
            return Err(PlacementError::OverlapsOtherRegion { start, end });
        }
    }
    // Advance a cursor through reserved regions. Each pass that makes progress moves the cursor
    // to a region's end, and a region can only advance it once, so the number of passes is
    // bounded by the number of regions; a pass without progress means a gap.
    let mut cursor = mailbox_address;
    while cursor < page_end {
        let next = regions
            .clone()
            .into_iter()
            .filter(|&(start, end, firmware)| firmware && start <= cursor && cursor < end)
            .map(|(_, end, _)| end)
            .max();
        match next {
            Some(end) if end > cursor => cursor = end,
            _ => return Err(PlacementError::NotCovered(cursor)),
        }
    }
    Ok(())
}

/// [`check_mailbox_placement`] over a sanitized [`MemoryMap`]: the page must lie in regions of
/// kind [`RegionKind::Reserved`] or [`RegionKind::AcpiNvs`] and overlap no other region.
pub fn check_mailbox_in_memory_map<const N: usize>(
    mailbox_address: u64,
    map: &MemoryMap<N>,
) -> Result<(), PlacementError> {
    let firmware = |kind| matches!(kind, RegionKind::Reserved | RegionKind::AcpiNvs);
    check_mailbox_placement(
        mailbox_address,
        map.regions()
            .iter()
            .map(|r| (r.start, r.end, firmware(r.kind))),
    )
}

/// Checks that the mailbox page is a private GPA of a TD with guest physical address width
/// `gpaw` (from TDG.VP.INFO): below the shared bit `1 << (gpaw - 1)`. A MADT naming a shared
/// mailbox would let the VMM see and rewrite every wake-up (APIC ID and vector).
pub fn check_mailbox_private(mailbox_address: u64, gpaw: u8) -> Result<(), PlacementError> {
    let shared_bit = u32::from(gpaw).saturating_sub(1).min(63);
    let page_end = mailbox_address
        .checked_add(MAILBOX_SIZE as u64)
        .ok_or(PlacementError::Overflow(mailbox_address))?;
    if page_end > 1u64 << shared_bit {
        return Err(PlacementError::NotPrivate(mailbox_address));
    }
    Ok(())
}

impl core::fmt::Display for PlacementError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Overflow(a) => write!(f, "mailbox page at {a:#x} wraps the address space"),
            Self::NotCovered(a) => {
                write!(
                    f,
                    "mailbox memory at {a:#x} is not in a reserved or ACPI NVS region"
                )
            }
            Self::NotPrivate(a) => write!(f, "mailbox {a:#x} is not a private GPA of this TD"),
            Self::OverlapsOtherRegion { start, end } => {
                write!(
                    f,
                    "mailbox page overlaps the non-reserved region {start:#x}..{end:#x}"
                )
            }
        }
    }
}

impl core::error::Error for PlacementError {}
