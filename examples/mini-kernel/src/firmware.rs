//! The UEFI phase, through the `uefi` crate: what the kernel takes from boot services, then
//! ExitBootServices.
//!
//! As a uefi-rs kernel does it: `#[uefi::entry]` records the image handle and system table,
//! `uefi::boot` allocates pages, stalls, reads the memory map and exits boot services,
//! `uefi::system` finds the ACPI RSDP in the configuration table. Two steps, so the kernel can
//! read the memory map and the ACPI tables while boot services still run (as the boot order
//! says): [`prepare`] allocates everything, gives the heap to the kernel and reads the memory
//! map; the kernel then parses what it needs (no boot-service calls, no firmware allocation);
//! [`BootServices::exit`] leaves boot services with a fresh map (uefi-rs retries if the firmware
//! changed it, as Linux does) and hands that map to the kernel.

use crate::{kprintln, tsc};
use core::time::Duration;
use uefi::boot::{self, AllocateType, MemoryType};
use uefi::mem::memory_map::{MemoryMap, MemoryMapOwned};
use uefi::table::cfg::ConfigTableEntry;

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

/// A UEFI memory map exactly as GetMemoryMap wrote it: the uefi-rs map, and its buffer in place.
#[derive(Clone, Copy)]
pub struct UefiMap<'a> {
    /// What tdx-boot's `e820::read_uefi_rs_memory_map` (feature `uefi`) reads.
    pub uefi_rs: &'a MemoryMapOwned,
    pub bytes: &'a [u8],
    pub descriptor_size: usize,
    pub descriptor_version: u32,
}

impl<'a> UefiMap<'a> {
    /// The descriptors uefi-rs holds, not copied.
    fn of(map: &'a MemoryMapOwned) -> Self {
        let meta = map.meta();
        UefiMap {
            uefi_rs: map,
            bytes: map.buffer(),
            descriptor_size: meta.desc_size,
            descriptor_version: meta.desc_version,
        }
    }
}

/// Boot services still running, with everything allocated and the memory map read.
pub struct BootServices {
    map: MemoryMapOwned,
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

/// `pages` 4 KiB pages of `memory_type` below `max_address`, or `what` failed.
fn allocate(
    memory_type: MemoryType,
    pages: usize,
    max_address: u64,
    what: &'static str,
) -> Result<u64, &'static str> {
    boot::allocate_pages(AllocateType::MaxAddress(max_address), memory_type, pages)
        .map(|start| start.as_ptr() as u64)
        .map_err(|_| what)
}

/// The ACPI 2.0+ RSDP from the system table's configuration table.
fn acpi_rsdp() -> Option<u64> {
    uefi::system::with_config_table(|entries| {
        entries
            .iter()
            .find(|entry| entry.guid == ConfigTableEntry::ACPI2_GUID)
            .map(|entry| entry.address as u64)
    })
}

/// Calibrates the TSC, allocates the kernel's memory (and hands the heap over), finds the RSDP
/// and reads the memory map.
///
/// # Safety
///
/// Called once, from the entry point (after `#[uefi::entry]` recorded the system table), while
/// boot services run.
pub unsafe fn prepare() -> Result<BootServices, &'static str> {
    let per_ms = tsc::calibrate(|| boot::stall(Duration::from_millis(10)));
    kprintln!(
        "mini-kernel: TSC runs at {} MHz (calibrated against UEFI Stall)",
        per_ms / 1000
    );
    let heap_start = allocate(
        MemoryType::LOADER_DATA,
        (HEAP_BYTES / 4096) as usize,
        BELOW_4G,
        "AllocatePages (heap) failed",
    )?;
    let fake_firmware = if crate::platform::in_td() {
        None
    } else {
        Some(FakeFirmwarePages {
            low_page: allocate(
                MemoryType::LOADER_CODE,
                1,
                LOW_PAGE_LIMIT,
                "AllocatePages (below 1 MiB) failed",
            )?,
            mailbox_page: allocate(
                MemoryType::ACPI_NON_VOLATILE,
                1,
                BELOW_4G,
                "AllocatePages (mailbox) failed",
            )?,
        })
    };
    // Memory the firmware allocates is accepted private memory (TDVF hands out no unaccepted
    // page), which the heap (stacks, page tables) and the trampoline must be.
    let pages = Pages {
        trampoline_page: allocate(
            MemoryType::LOADER_CODE,
            1,
            BELOW_4G,
            "AllocatePages (trampoline) failed",
        )?,
        fake_firmware,
    };
    // SAFETY: the heap pages were just allocated as loader data; nothing else uses them.
    unsafe { metal::heap::init(heap_start, HEAP_BYTES) };
    let map = boot::memory_map(MemoryType::LOADER_DATA).map_err(|_| "GetMemoryMap failed")?;
    Ok(BootServices {
        map,
        rsdp: acpi_rsdp(),
        pages,
    })
}

impl BootServices {
    /// The memory map read last (valid until [`Self::exit`]).
    pub fn memory_map(&self) -> UefiMap<'_> {
        UefiMap::of(&self.map)
    }

    /// ExitBootServices; returns the memory map that was current when it succeeded, which
    /// differs from [`Self::memory_map`] only if the firmware changed the map meanwhile.
    ///
    /// uefi-rs resets the machine if ExitBootServices fails twice: nothing could run after it.
    pub fn exit(self) -> Result<UefiMap<'static>, &'static str> {
        // Freed to the firmware while it can still take it back.
        drop(self.map);
        // SAFETY: nothing calls boot services afterwards (`self` is consumed and the kernel
        // keeps no uefi-rs object that would), and no #VE can reach the firmware's handler
        // before the kernel's IDT: the kernel installs it next.
        let map = unsafe { boot::exit_boot_services(None) };
        // The map's pool memory is loader data, which the kernel keeps: it lives for good.
        let map: &'static MemoryMapOwned = alloc::boxed::Box::leak(alloc::boxed::Box::new(map));
        Ok(UefiMap::of(map))
    }
}
