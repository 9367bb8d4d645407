//! The UEFI phase: what the kernel takes from boot services, then ExitBootServices.
//!
//! Two steps, so the kernel can read the memory map and the ACPI tables while boot services
//! still run (as the boot order says) without invalidating the map key: [`prepare`] allocates
//! everything, gives the heap to the kernel and reads the memory map; the kernel then parses
//! what it needs (no boot-service calls, no firmware allocation); [`BootServices::exit`] exits
//! with that map's key, re-reading the map if the firmware changed it in between.

use crate::{kprintln, tsc, uefi};

/// Pages the kernel keeps after ExitBootServices.
#[derive(Clone, Copy)]
pub struct Pages {
    /// A page below 4 GiB for tdx-boot's AP trampoline (the wakeup vector).
    pub trampoline_page: u64,
    /// Only without TDX: the pages the kernel needs to play TDVF.
    pub fake_firmware: Option<FakeFirmwarePages>,
}

/// The pages of the fake firmware (see [`crate::fake_firmware`]), allocated only without TDX: a
/// TD needs neither, and an allocation below 1 MiB that TDVF cannot satisfy must not stop it.
#[derive(Clone, Copy)]
pub struct FakeFirmwarePages {
    /// A page below 1 MiB, for the real-mode AP start-up code.
    pub low_page: u64,
    /// A page of ACPI NVS memory, for the wakeup mailbox (where TDVF puts it).
    pub mailbox_page: u64,
}

/// A UEFI memory map exactly as GetMemoryMap wrote it.
#[derive(Clone, Copy)]
pub struct UefiMap<'a> {
    pub bytes: &'a [u8],
    pub descriptor_size: usize,
    pub descriptor_version: u32,
}

/// Boot services still running, with everything allocated and the memory map read.
pub struct BootServices {
    services: uefi::BootServicesRef,
    map_buffer: &'static mut [u8],
    map: uefi::MapInfo,
    /// The ACPI 2.0 RSDP, if the firmware published one.
    pub rsdp: Option<u64>,
    pub pages: Pages,
}

/// Heap size: per-CPU stacks, page tables, the model's tables, buffers. Below 4 GiB, because the
/// page tables live there and an AP in real mode loads CR3 with 32 bits.
const HEAP_BYTES: u64 = 64 << 20;
/// The SIPI vector is a page number below 1 MiB; keep the page in conventional memory.
const LOW_PAGE_LIMIT: u64 = 0x9_f000;
const BELOW_4G: u64 = 0xffff_ffff;
const MAP_BUFFER_PAGES: usize = 16;

/// Calibrates the TSC, allocates the kernel's memory (and hands the heap over), finds the RSDP
/// and reads the memory map.
///
/// # Safety
///
/// Called once, from `efi_main`, with the firmware's image handle and system table.
pub unsafe fn prepare(
    image: uefi::Handle,
    system_table: &uefi::SystemTable,
) -> Result<BootServices, &'static str> {
    // SAFETY: boot services are live (the caller's contract).
    let services = unsafe { uefi::BootServicesRef::new(image, system_table) };
    let per_ms = tsc::calibrate(|| services.stall(10_000));
    kprintln!(
        "mini-kernel: TSC runs at {} MHz (calibrated against UEFI Stall)",
        per_ms / 1000
    );
    let allocate = |memory_type, pages, max, what| {
        services
            .allocate_pages(memory_type, pages, max)
            .map_err(|_| what)
    };
    let heap_start = allocate(
        uefi::LOADER_DATA,
        (HEAP_BYTES / 4096) as usize,
        Some(BELOW_4G),
        "AllocatePages (heap) failed",
    )?;
    let fake_firmware = if crate::platform::in_td() {
        None
    } else {
        Some(FakeFirmwarePages {
            low_page: allocate(
                uefi::LOADER_CODE,
                1,
                Some(LOW_PAGE_LIMIT),
                "AllocatePages (below 1 MiB) failed",
            )?,
            mailbox_page: allocate(
                uefi::ACPI_MEMORY_NVS,
                1,
                Some(BELOW_4G),
                "AllocatePages (mailbox) failed",
            )?,
        })
    };
    // Memory the firmware allocates is accepted private memory (TDVF hands out no unaccepted
    // page), which the heap (stacks, page tables) and the trampoline must be.
    let pages = Pages {
        trampoline_page: allocate(
            uefi::LOADER_CODE,
            1,
            Some(BELOW_4G),
            "AllocatePages (trampoline) failed",
        )?,
        fake_firmware,
    };
    let map_buffer = allocate(
        uefi::LOADER_DATA,
        MAP_BUFFER_PAGES,
        None,
        "AllocatePages (memory map) failed",
    )?;
    // SAFETY: the heap pages were just allocated as loader data; nothing else uses them.
    unsafe { metal::heap::init(heap_start, HEAP_BYTES) };
    // SAFETY: the pages were just allocated as loader data and belong to the kernel.
    let map_buffer =
        unsafe { core::slice::from_raw_parts_mut(map_buffer as *mut u8, MAP_BUFFER_PAGES * 4096) };
    let map = services
        .memory_map(map_buffer)
        .map_err(|_| "GetMemoryMap failed")?;
    Ok(BootServices {
        rsdp: uefi::acpi_rsdp(system_table),
        services,
        map_buffer,
        map,
        pages,
    })
}

impl BootServices {
    /// The memory map read last (valid until [`Self::exit`]).
    pub fn memory_map(&self) -> UefiMap<'_> {
        UefiMap {
            bytes: self.map_buffer.get(..self.map.size).unwrap_or_default(),
            descriptor_size: self.map.descriptor_size,
            descriptor_version: self.map.version,
        }
    }

    /// ExitBootServices; returns the memory map that was current when it succeeded, which
    /// differs from [`Self::memory_map`] only if the firmware changed the map meanwhile.
    pub fn exit(self) -> Result<UefiMap<'static>, &'static str> {
        let Self {
            mut services,
            map_buffer,
            mut map,
            ..
        } = self;
        let mut attempts = 0;
        loop {
            match services.exit_boot_services(map.key) {
                Ok(()) => break,
                Err((again, _)) if attempts < 8 => services = again,
                Err(_) => return Err("ExitBootServices kept failing"),
            }
            attempts += 1;
            map = services
                .memory_map(map_buffer)
                .map_err(|_| "GetMemoryMap failed")?;
        }
        let bytes: &'static [u8] = map_buffer;
        Ok(UefiMap {
            bytes: bytes.get(..map.size).unwrap_or_default(),
            descriptor_size: map.descriptor_size,
            descriptor_version: map.version,
        })
    }
}
