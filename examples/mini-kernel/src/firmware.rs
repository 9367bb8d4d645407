//! The UEFI phase: everything the kernel takes from boot services before it exits them.

use crate::{kprintln, tsc, uefi};

/// What the firmware handed over, kept after ExitBootServices.
pub struct Handoff {
    /// The UEFI memory map exactly as GetMemoryMap wrote it.
    pub memory_map: &'static [u8],
    pub descriptor_size: usize,
    pub descriptor_version: u32,
    /// The ACPI 2.0 RSDP, if the firmware published one.
    pub rsdp: Option<u64>,
    /// Loader-data pages for the kernel heap: (start, bytes).
    pub heap: (u64, u64),
    /// A page below 1 MiB, for the fake firmware's real-mode AP start-up code.
    pub low_page: u64,
    /// A page of ACPI NVS memory, for the fake firmware's wakeup mailbox (where TDVF puts it).
    pub mailbox_page: u64,
    /// A page below 4 GiB for tdx-boot's AP trampoline (the wakeup vector).
    pub trampoline_page: u64,
}

/// Heap size: per-CPU stacks, the model's tables, buffers.
const HEAP_BYTES: u64 = 64 << 20;
/// The SIPI vector is a page number below 1 MiB; keep the page in conventional memory.
const LOW_PAGE_LIMIT: u64 = 0x9_f000;
const BELOW_4G: u64 = 0xffff_ffff;
const MAP_BUFFER_PAGES: usize = 16;

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
    let allocate = |memory_type, pages, max, what| {
        boot_services
            .allocate_pages(memory_type, pages, max)
            .map_err(|_| what)
    };
    let heap = allocate(
        uefi::LOADER_DATA,
        (HEAP_BYTES / 4096) as usize,
        None,
        "AllocatePages (heap) failed",
    )?;
    let low_page = allocate(
        uefi::LOADER_CODE,
        1,
        Some(LOW_PAGE_LIMIT),
        "AllocatePages (below 1 MiB) failed",
    )?;
    let mailbox_page = allocate(
        uefi::ACPI_MEMORY_NVS,
        1,
        Some(BELOW_4G),
        "AllocatePages (mailbox) failed",
    )?;
    let trampoline_page = allocate(
        uefi::LOADER_CODE,
        1,
        Some(BELOW_4G),
        "AllocatePages (trampoline) failed",
    )?;
    let map_buffer = allocate(
        uefi::LOADER_DATA,
        MAP_BUFFER_PAGES,
        None,
        "AllocatePages (memory map) failed",
    )?;
    let rsdp = uefi::acpi_rsdp(system_table);
    // SAFETY: the pages were just allocated as loader data and belong to the kernel.
    let map =
        unsafe { core::slice::from_raw_parts_mut(map_buffer as *mut u8, MAP_BUFFER_PAGES * 4096) };
    // GetMemoryMap and ExitBootServices must agree on the map key; retry if the map changed.
    for _ in 0..8 {
        let info = boot_services
            .memory_map(map)
            .map_err(|_| "GetMemoryMap failed")?;
        match boot_services.exit_boot_services(info.key) {
            Ok(()) => {
                return Ok(Handoff {
                    memory_map: map
                        .get(..info.size)
                        .ok_or("memory map larger than its buffer")?,
                    descriptor_size: info.descriptor_size,
                    descriptor_version: info.version,
                    rsdp,
                    heap: (heap, HEAP_BYTES),
                    low_page,
                    mailbox_page,
                    trampoline_page,
                });
            }
            Err((again, _)) => boot_services = again,
        }
    }
    Err("ExitBootServices kept failing")
}
