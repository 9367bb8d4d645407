//! The UEFI phase: everything the kernel takes from boot services before it exits them.

use crate::{kprintln, tsc, uefi};

/// What the firmware handed over, kept after ExitBootServices.
pub struct Handoff {
    /// The UEFI memory map as the firmware wrote it, and its descriptor stride.
    pub memory_map: &'static [u8],
    pub descriptor_size: usize,
    /// The ACPI 2.0 RSDP, if the firmware published one.
    pub rsdp: Option<u64>,
    /// Loader-data pages for the kernel heap.
    pub heap: (u64, u64),
    /// A page below 1 MiB (for the APs' real-mode start-up code).
    pub low_page: u64,
}

/// Heap size: per-CPU stacks, the model's page tables and bitmaps, buffers.
const HEAP_BYTES: u64 = 64 << 20;
/// The SIPI vector is a page number below 1 MiB; keep the page in conventional memory.
const LOW_PAGE_LIMIT: u64 = 0x9_f000;
const MAP_BUFFER: usize = 64 * 1024;

/// Collects the hand-off and exits boot services.
///
/// # Safety
///
/// Called once, from `efi_main`, with the firmware's image handle and system table.
pub unsafe fn collect(
    image: uefi::Handle,
    system_table: &uefi::SystemTable,
) -> Result<Handoff, &'static str> {
    // SAFETY: boot services are live (the caller's contract).
    let mut boot_services = unsafe { uefi::BootServicesRef::new(image, system_table) };
    let per_ms = tsc::calibrate(|| boot_services.stall(10_000));
    kprintln!(
        "mini-kernel: TSC runs at {} MHz (calibrated against UEFI Stall)",
        per_ms / 1000
    );
    let heap_start = boot_services
        .allocate_pages((HEAP_BYTES / 4096) as usize, None)
        .map_err(|_| "AllocatePages (heap) failed")?;
    let low_page = boot_services
        .allocate_pages(1, Some(LOW_PAGE_LIMIT))
        .map_err(|_| "AllocatePages (page below 1 MiB) failed")?;
    let map_buffer = boot_services
        .allocate_pages(MAP_BUFFER / 4096, None)
        .map_err(|_| "AllocatePages (memory map) failed")?;
    let rsdp = uefi::acpi_rsdp(system_table);
    // SAFETY: the pages were just allocated as loader data and belong to the kernel.
    let map = unsafe { core::slice::from_raw_parts_mut(map_buffer as *mut u8, MAP_BUFFER) };
    // GetMemoryMap and ExitBootServices must agree on the map key; retry if the map changed.
    for _ in 0..8 {
        let (size, key, descriptor_size) = boot_services
            .memory_map(map)
            .map_err(|_| "GetMemoryMap failed")?;
        match boot_services.exit_boot_services(key) {
            Ok(()) => {
                return Ok(Handoff {
                    memory_map: map.get(..size).ok_or("memory map larger than its buffer")?,
                    descriptor_size,
                    rsdp,
                    heap: (heap_start, HEAP_BYTES),
                    low_page,
                });
            }
            Err((again, _)) => boot_services = again,
        }
    }
    Err("ExitBootServices kept failing")
}
