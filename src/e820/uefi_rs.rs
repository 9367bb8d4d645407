//! The memory map as uefi-rs hands it to a kernel (feature `uefi`).
//!
//! A kernel built on the `uefi` crate leaves boot services with `uefi::boot::exit_boot_services`
//! and holds a `MemoryMapOwned`; before that, `uefi::boot::memory_map` gives the same type, and
//! a map it stored itself is a `MemoryMapRef`. All of them implement
//! `uefi::mem::memory_map::MemoryMap`, whose buffer and `MemoryMapMeta` (size, descriptor
//! stride, descriptor version) are exactly what `GetMemoryMap()` returned. The readers here
//! validate that buffer in place, as [`UefiMemoryMap::new`] validates any other: no descriptor is
//! copied, and the firmware's stride is used, never `size_of::<MemoryDescriptor>()`.
//!
//! The `uefi` crate needs Rust 1.91 (tdx-boot without this feature: 1.88).
//!
//! ```no_run
//! use tdx_boot::e820::{self, MemoryMap};
//!
//! # fn kernel() -> Result<(), e820::UefiMapError> {
//! // SAFETY: nothing uses boot services afterwards.
//! let uefi_map = unsafe { uefi::boot::exit_boot_services(None) };
//! let mut map = MemoryMap::<256>::new();
//! e820::read_uefi_rs_memory_map(&uefi_map, &mut map)?;
//! # Ok(())
//! # }
//! ```

use uefi::mem::memory_map::MemoryMap as UefiRsMemoryMap;

use super::{MemoryMap, UefiMapError, UefiMemoryMap};

impl<'a> UefiMemoryMap<'a> {
    /// Validates the map a uefi-rs `MemoryMap` (`MemoryMapOwned`, `MemoryMapRef`, ..) holds,
    /// borrowing its buffer.
    ///
    /// Only the first `map_size` bytes count: a `MemoryMapRef` may sit in a larger buffer.
    pub fn from_uefi_rs<M: UefiRsMemoryMap + ?Sized>(map: &'a M) -> Result<Self, UefiMapError> {
        let meta = map.meta();
        let buffer = map.buffer();
        let descriptors = buffer.get(..meta.map_size).unwrap_or(buffer);
        UefiMemoryMap::new(descriptors, meta.desc_size, meta.desc_version)
    }
}

/// Validates a uefi-rs memory map and inserts it into `map` (see [`super::read_uefi_memory_map`]
/// for what happens on each error).
pub fn read_uefi_rs_memory_map<M: UefiRsMemoryMap + ?Sized, const N: usize>(
    uefi_map: &M,
    map: &mut MemoryMap<N>,
) -> Result<(), UefiMapError> {
    UefiMemoryMap::from_uefi_rs(uefi_map)?.read_into(map)
}
