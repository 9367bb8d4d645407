//! The memory map: the UEFI map read into tdx-boot's `e820::MemoryMap`.

use crate::firmware::UefiMap;
use alloc::vec::Vec;
use tdx_boot::e820::{self, MemoryMap, RegionKind, UefiMemoryType};

/// Regions the kernel's map can hold (OVMF's map has a few dozen).
pub const MAX_REGIONS: usize = 256;

/// Reads the firmware's UEFI memory map.
pub fn read(uefi: &UefiMap<'_>) -> Result<MemoryMap<MAX_REGIONS>, e820::UefiMapError> {
    let mut map = MemoryMap::new();
    e820::read_uefi_memory_map(
        uefi.bytes,
        uefi.descriptor_size,
        uefi.descriptor_version,
        &mut map,
    )?;
    Ok(map)
}

/// Free conventional memory (EfiConventionalMemory) at or above `floor`, in whole 2 MiB units:
/// what the kernel can declare unaccepted when it plays a TD without TDX (nothing of the
/// kernel lives there).
pub fn conventional_ranges(uefi: &UefiMap<'_>, floor: u64) -> Vec<(u64, u64)> {
    let Ok(map) =
        e820::UefiMemoryMap::new(uefi.bytes, uefi.descriptor_size, uefi.descriptor_version)
    else {
        return Vec::new();
    };
    map.descriptors()
        .filter(|d| d.memory_type == UefiMemoryType::CONVENTIONAL)
        .filter_map(|d| {
            let start = d
                .physical_start
                .max(floor)
                .checked_next_multiple_of(2 << 20)?;
            let end = d.physical_end()? & !((2 << 20) - 1);
            (start < end).then_some((start, end))
        })
        .collect()
}

/// Prints the map, one region per line.
pub fn print<const N: usize>(map: &MemoryMap<N>) {
    for region in map.regions() {
        crate::kprintln!(
            "    {:#014x}-{:#014x} {:>8} KiB {:?}",
            region.start,
            region.end,
            (region.end - region.start) >> 10,
            region.kind
        );
    }
    crate::kprintln!(
        "    usable {} MiB, unaccepted {} MiB, ACPI {} KiB",
        map.usable_bytes() >> 20,
        map.unaccepted_bytes() >> 20,
        (map.total_bytes(RegionKind::AcpiReclaimable) + map.total_bytes(RegionKind::AcpiNvs)) >> 10
    );
}
