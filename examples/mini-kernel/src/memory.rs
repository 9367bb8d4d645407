//! The memory map: the UEFI map read into tdx-boot's `e820::MemoryMap`.

use crate::firmware::UefiMap;
use alloc::vec::Vec;
use tdx_boot::e820::{self, MemoryMap, RegionKind, UefiMemoryType};

/// Regions the kernel's map can hold (OVMF's map has a few dozen).
pub const MAX_REGIONS: usize = 256;

/// Reads the firmware's UEFI memory map (the uefi-rs map as it is, validated by tdx-boot),
/// with the page tables of TDVF's parked APs held back.
///
/// Debian's TDVF (edk2 2022.11) reports its SEC page tables at 8 MiB as free memory although
/// the APs waiting in its mailbox loop run on them; the kernel keeps them reserved for good, as
/// an AP that misses its wake-up may still be in that loop at any later time.
pub fn read(uefi: &UefiMap<'_>) -> Result<MemoryMap<MAX_REGIONS>, e820::UefiMapError> {
    let mut map = MemoryMap::new();
    e820::read_uefi_rs_memory_map(uefi.uefi_rs, &mut map)?;
    tdx_boot::mpwk::hold_back_parked_ap_memory(&mut map).map_err(e820::UefiMapError::Map)?;
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

/// The `length` bytes of an ACPI table at `address`, if the map says they are ACPI memory.
///
/// The table pointers (RSDP, XSDT, its entries) are the firmware's, but a table read elsewhere
/// would in a TD touch memory that is unaccepted or MMIO, which SEPT_VE_DISABLE makes fatal
/// rather than a #VE; ACPI tables belong in ACPI reclaimable or NVS memory, which the firmware
/// accepted. One region must hold the whole range.
pub fn acpi_table_bytes<const N: usize>(
    map: &MemoryMap<N>,
    address: u64,
    length: usize,
) -> Option<&'static [u8]> {
    firmware_bytes(
        map,
        address,
        length,
        &[RegionKind::AcpiReclaimable, RegionKind::AcpiNvs],
    )
}

/// The `length` bytes at `address`, if one region of the map whose kind is in `kinds` (firmware
/// memory: ACPI or reserved) holds them all.
pub fn firmware_bytes<const N: usize>(
    map: &MemoryMap<N>,
    address: u64,
    length: usize,
    kinds: &[RegionKind],
) -> Option<&'static [u8]> {
    debug_assert!(!kinds.contains(&RegionKind::Usable), "not firmware memory");
    let end = address.checked_add(u64::try_from(length).ok()?)?;
    let region = map.region_containing(address)?;
    (kinds.contains(&region.kind) && end <= region.end).then(|| {
        // SAFETY: the range lies in one firmware region of the map (ACPI or reserved): memory
        // the firmware accepted, identity-mapped by the firmware's and the kernel's tables
        // alike, and never reused by the kernel, so it stays valid and unchanged for the rest
        // of the run.
        unsafe { core::slice::from_raw_parts(address as *const u8, length) }
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acpi_tables_are_read_only_inside_one_acpi_region() {
        let table = vec![0x5au8; 256];
        let base = table.as_ptr() as u64;
        let mut map: MemoryMap<8> = MemoryMap::new();
        map.insert(base, base + 128, RegionKind::AcpiReclaimable)
            .unwrap();
        map.insert(base + 128, base + 192, RegionKind::Unaccepted)
            .unwrap();
        map.insert(base + 192, base + 256, RegionKind::Mmio)
            .unwrap();

        let bytes = acpi_table_bytes(&map, base + 16, 64).expect("inside the ACPI region");
        assert_eq!(bytes.as_ptr() as u64, base + 16);
        assert!(bytes.iter().all(|&b| b == 0x5a));
        assert!(
            acpi_table_bytes(&map, base + 64, 128).is_none(),
            "runs into unaccepted memory"
        );
        assert!(
            acpi_table_bytes(&map, base + 130, 8).is_none(),
            "unaccepted memory"
        );
        assert!(acpi_table_bytes(&map, base + 200, 8).is_none(), "MMIO");
        assert!(acpi_table_bytes(&map, u64::MAX - 4, 8).is_none(), "wraps");
        drop(table);
    }
}
