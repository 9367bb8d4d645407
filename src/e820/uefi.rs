//! The UEFI memory map, as returned by `GetMemoryMap()`.
//!
//! # Type mapping (after `ExitBootServices()`)
//!
//! | UEFI type | | [`RegionKind`] |
//! |---|---|---|
//! | 1, 2 | LoaderCode, LoaderData | `Usable` (the kernel must reserve its own image, stack and tables) |
//! | 3, 4 | BootServicesCode, BootServicesData | `Usable` |
//! | 7 | ConventionalMemory | `Usable` |
//! | 15 | UnacceptedMemoryType | `Unaccepted` |
//! | 0 | ReservedMemoryType | `Reserved` |
//! | 5, 6 | RuntimeServicesCode, RuntimeServicesData | `Reserved` (firmware keeps using it) |
//! | 8 | UnusableMemory | `Unusable` |
//! | 9 | ACPIReclaimMemory | `AcpiReclaimable` |
//! | 10 | ACPIMemoryNVS | `AcpiNvs` |
//! | 11, 12 | MemoryMappedIO, MemoryMappedIOPortSpace | `Mmio` |
//! | 13 | PalCode | `Reserved` |
//! | 14 | PersistentMemory | `Persistent` |
//! | anything else (incl. OEM and OS-loader ranges) | | `Reserved` |
//!
//! A descriptor that would map to `Usable` or `Unaccepted` but carries `EFI_MEMORY_RUNTIME`
//! (firmware needs it after `ExitBootServices`) or `EFI_MEMORY_SP` (specific-purpose memory,
//! which Linux also keeps away from the general allocator) becomes `Reserved`.

use core::fmt;

use super::{MapError, MemoryMap, RegionKind};
use crate::bytes::{u32_at, u64_at};

/// `EFI_MEMORY_DESCRIPTOR_VERSION`, the only layout this reader understands.
pub const MEMORY_DESCRIPTOR_VERSION: u32 = 1;
/// Size of the version-1 `EFI_MEMORY_DESCRIPTOR` fields; firmware may report a larger stride.
pub const MEMORY_DESCRIPTOR_MIN_SIZE: usize = 40;
/// UEFI pages are always 4 KiB.
pub const UEFI_PAGE_SIZE: u64 = 4096;
/// `EFI_MEMORY_RUNTIME`: the range is used by runtime services.
pub const MEMORY_RUNTIME: u64 = 1 << 63;
/// `EFI_MEMORY_SP`: specific-purpose memory, not for the general allocator.
pub const MEMORY_SPECIFIC_PURPOSE: u64 = 0x4_0000;

/// UEFI memory type numbers (`EFI_MEMORY_TYPE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UefiMemoryType(pub u32);

#[allow(missing_docs)]
impl UefiMemoryType {
    pub const RESERVED: Self = Self(0);
    pub const LOADER_CODE: Self = Self(1);
    pub const LOADER_DATA: Self = Self(2);
    pub const BOOT_SERVICES_CODE: Self = Self(3);
    pub const BOOT_SERVICES_DATA: Self = Self(4);
    pub const RUNTIME_SERVICES_CODE: Self = Self(5);
    pub const RUNTIME_SERVICES_DATA: Self = Self(6);
    pub const CONVENTIONAL: Self = Self(7);
    pub const UNUSABLE: Self = Self(8);
    pub const ACPI_RECLAIM: Self = Self(9);
    pub const ACPI_NVS: Self = Self(10);
    pub const MMIO: Self = Self(11);
    pub const MMIO_PORT_SPACE: Self = Self(12);
    pub const PAL_CODE: Self = Self(13);
    pub const PERSISTENT: Self = Self(14);
    pub const UNACCEPTED: Self = Self(15);
}

/// The [`RegionKind`] of a UEFI memory type with its attribute bits (see the module table).
pub const fn uefi_kind(memory_type: UefiMemoryType, attribute: u64) -> RegionKind {
    let kind = match memory_type.0 {
        1..=4 | 7 => RegionKind::Usable,
        15 => RegionKind::Unaccepted,
        8 => RegionKind::Unusable,
        9 => RegionKind::AcpiReclaimable,
        10 => RegionKind::AcpiNvs,
        11 | 12 => RegionKind::Mmio,
        14 => RegionKind::Persistent,
        _ => RegionKind::Reserved,
    };
    if kind.is_ram() && attribute & (MEMORY_RUNTIME | MEMORY_SPECIFIC_PURPOSE) != 0 {
        RegionKind::Reserved
    } else {
        kind
    }
}

/// One `EFI_MEMORY_DESCRIPTOR`, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryDescriptor {
    /// `Type`.
    pub memory_type: UefiMemoryType,
    /// `PhysicalStart` (4 KiB aligned in a valid map).
    pub physical_start: u64,
    /// `VirtualStart`.
    pub virtual_start: u64,
    /// `NumberOfPages` (4 KiB pages).
    pub number_of_pages: u64,
    /// `Attribute`.
    pub attribute: u64,
}

impl MemoryDescriptor {
    /// One past the last byte, or `None` if the range does not fit in 64 bits.
    pub fn physical_end(&self) -> Option<u64> {
        self.number_of_pages
            .checked_mul(UEFI_PAGE_SIZE)?
            .checked_add(self.physical_start)
    }

    /// The descriptor's kind (see the module's type table).
    pub const fn kind(&self) -> RegionKind {
        uefi_kind(self.memory_type, self.attribute)
    }

    /// Decodes the version-1 fields from the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        Some(MemoryDescriptor {
            memory_type: UefiMemoryType(u32_at(bytes, 0)?),
            physical_start: u64_at(bytes, 8)?,
            virtual_start: u64_at(bytes, 16)?,
            number_of_pages: u64_at(bytes, 24)?,
            attribute: u64_at(bytes, 32)?,
        })
    }
}

/// Why a UEFI memory map was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UefiMapError {
    /// `DescriptorVersion` is not 1.
    UnsupportedVersion(u32),
    /// `DescriptorSize` is below 40 bytes or not a multiple of 8.
    BadDescriptorSize(usize),
    /// The buffer length is not a whole number of descriptors.
    TrailingBytes {
        /// Buffer length.
        len: usize,
        /// Descriptor stride.
        descriptor_size: usize,
    },
    /// Descriptor `index` does not start on a 4 KiB boundary.
    MisalignedStart {
        /// Index of the descriptor.
        index: usize,
    },
    /// Descriptor `index` runs past the end of the 64-bit address space.
    RangeOverflow {
        /// Index of the descriptor.
        index: usize,
    },
    /// The map could not hold the result (it holds the descriptors before the failing one).
    Map(MapError),
}

impl fmt::Display for UefiMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedVersion(v) => write!(f, "unsupported descriptor version {v}"),
            Self::BadDescriptorSize(s) => write!(f, "bad descriptor size {s}"),
            Self::TrailingBytes {
                len,
                descriptor_size,
            } => write!(f, "{len} bytes is not a multiple of {descriptor_size}"),
            Self::MisalignedStart { index } => write!(f, "descriptor {index} is not 4K aligned"),
            Self::RangeOverflow { index } => write!(f, "descriptor {index} overflows"),
            Self::Map(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for UefiMapError {}

/// A validated view of a `GetMemoryMap()` buffer.
#[derive(Clone, Copy, Debug)]
pub struct UefiMemoryMap<'a> {
    buffer: &'a [u8],
    descriptor_size: usize,
}

impl<'a> UefiMemoryMap<'a> {
    /// Validates `buffer` (exactly `MemoryMapSize` bytes), `descriptor_size` and
    /// `descriptor_version` as `GetMemoryMap()` returned them, and every descriptor's range.
    ///
    /// The stride is `descriptor_size`, never `size_of::<EFI_MEMORY_DESCRIPTOR>()`: firmware
    /// pads descriptors (OVMF uses 48 bytes) so that the layout can grow.
    pub fn new(
        buffer: &'a [u8],
        descriptor_size: usize,
        descriptor_version: u32,
    ) -> Result<Self, UefiMapError> {
        if descriptor_version != MEMORY_DESCRIPTOR_VERSION {
            return Err(UefiMapError::UnsupportedVersion(descriptor_version));
        }
        if descriptor_size < MEMORY_DESCRIPTOR_MIN_SIZE || !descriptor_size.is_multiple_of(8) {
            return Err(UefiMapError::BadDescriptorSize(descriptor_size));
        }
        if !buffer.len().is_multiple_of(descriptor_size) {
            return Err(UefiMapError::TrailingBytes {
                len: buffer.len(),
                descriptor_size,
            });
        }
        let map = UefiMemoryMap {
            buffer,
            descriptor_size,
        };
        for (index, d) in map.descriptors().enumerate() {
            if d.physical_start % UEFI_PAGE_SIZE != 0 {
                return Err(UefiMapError::MisalignedStart { index });
            }
            if d.physical_end().is_none() {
                return Err(UefiMapError::RangeOverflow { index });
            }
        }
        Ok(map)
    }

    /// The descriptors in buffer order.
    pub fn descriptors(&self) -> impl Iterator<Item = MemoryDescriptor> + 'a {
        self.buffer
            .chunks_exact(self.descriptor_size)
            .filter_map(MemoryDescriptor::decode)
    }

    /// Number of descriptors.
    pub fn len(&self) -> usize {
        self.buffer.len() / self.descriptor_size
    }

    /// True when the map has no descriptor.
    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }

    /// Inserts every non-empty descriptor into `map` with its [`uefi_kind`].
    pub fn read_into<const N: usize>(&self, map: &mut MemoryMap<N>) -> Result<(), UefiMapError> {
        for d in self.descriptors() {
            let Some(end) = d.physical_end() else {
                continue;
            };
            if end > d.physical_start {
                map.insert(d.physical_start, end, d.kind())
                    .map_err(UefiMapError::Map)?;
            }
        }
        Ok(())
    }
}

/// Validates a `GetMemoryMap()` result and inserts it into `map`.
///
/// On a format error nothing is inserted; on [`UefiMapError::Map`] the descriptors before the
/// failing one are in the map.
pub fn read_uefi_memory_map<const N: usize>(
    buffer: &[u8],
    descriptor_size: usize,
    descriptor_version: u32,
    map: &mut MemoryMap<N>,
) -> Result<(), UefiMapError> {
    UefiMemoryMap::new(buffer, descriptor_size, descriptor_version)?.read_into(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e820::Region;
    use RegionKind::*;
    use std::vec::Vec;

    const STRIDE: usize = 48;

    fn descriptor(out: &mut Vec<u8>, ty: u32, start: u64, pages: u64, attribute: u64) {
        let mut d = [0u8; STRIDE];
        d[0..4].copy_from_slice(&ty.to_le_bytes());
        d[8..16].copy_from_slice(&start.to_le_bytes());
        d[24..32].copy_from_slice(&pages.to_le_bytes());
        d[32..40].copy_from_slice(&attribute.to_le_bytes());
        d[40..48].copy_from_slice(&0xdead_beef_u64.to_le_bytes()); // padding must be ignored
        out.extend_from_slice(&d);
    }

    /// Shaped after what OVMF/TDVF reports for a 10 GiB TD (unsorted, padded 48-byte stride,
    /// runtime attributes, flash MMIO, unaccepted memory above the accepted prefix).
    fn ovmf_like() -> Vec<u8> {
        const WB: u64 = 0xf;
        let rt = MEMORY_RUNTIME;
        let mut m = Vec::new();
        descriptor(&mut m, 3, 0x0, 1, WB);
        descriptor(&mut m, 7, 0x1000, 0x9f, WB);
        descriptor(&mut m, 7, 0x10_0000, 0x700, WB);
        descriptor(&mut m, 10, 0x80_0000, 0x8, WB);
        descriptor(&mut m, 7, 0x80_8000, 0x3, WB);
        descriptor(&mut m, 10, 0x80_b000, 0x1, WB);
        descriptor(&mut m, 4, 0x80_c000, 0x4, WB);
        descriptor(&mut m, 10, 0x81_0000, 0xf0, WB);
        descriptor(&mut m, 2, 0x90_0000, 0x1000, WB);
        descriptor(&mut m, 1, 0x190_0000, 0x400, WB);
        descriptor(&mut m, 7, 0x1d0_0000, 0x1_e330, WB);
        descriptor(&mut m, 4, 0x2000_0000, 0x5_f8ee, WB);
        descriptor(&mut m, 9, 0x7f8e_e000, 0x10, WB);
        descriptor(&mut m, 10, 0x7f8f_e000, 0x80, WB);
        descriptor(&mut m, 6, 0x7f97_e000, 0x100, WB | rt);
        descriptor(&mut m, 5, 0x7fa7_e000, 0x80, WB | rt);
        descriptor(&mut m, 4, 0x7faf_e000, 0x502, WB);
        descriptor(&mut m, 0, 0x7ff0_0000, 0x100, WB);
        descriptor(&mut m, 0, 0xb000_0000, 0x1_0000, 0);
        descriptor(&mut m, 11, 0xffc0_0000, 0x400, rt | 1);
        descriptor(&mut m, 15, 0x1_0000_0000, 0x18_0000, WB);
        descriptor(&mut m, 7, 0x4000, 0, WB); // empty: skipped
        m
    }

    #[test]
    fn ovmf_like_map_is_sanitized() {
        let buffer = ovmf_like();
        let mut map = MemoryMap::<32>::new();
        read_uefi_memory_map(&buffer, STRIDE, 1, &mut map).unwrap();
        let r = Region::new;
        assert_eq!(
            map.regions(),
            &[
                r(0x0, 0xa_0000, Usable),
                r(0x10_0000, 0x80_0000, Usable),
                r(0x80_0000, 0x80_8000, AcpiNvs),
                r(0x80_8000, 0x80_b000, Usable),
                r(0x80_b000, 0x80_c000, AcpiNvs),
                r(0x80_c000, 0x81_0000, Usable),
                r(0x81_0000, 0x90_0000, AcpiNvs),
                r(0x90_0000, 0x7f8e_e000, Usable),
                r(0x7f8e_e000, 0x7f8f_e000, AcpiReclaimable),
                r(0x7f8f_e000, 0x7f97_e000, AcpiNvs),
                r(0x7f97_e000, 0x7faf_e000, Reserved),
                r(0x7faf_e000, 0x7ff0_0000, Usable),
                r(0x7ff0_0000, 0x8000_0000, Reserved),
                r(0xb000_0000, 0xc000_0000, Reserved),
                r(0xffc0_0000, 0x1_0000_0000, Mmio),
                r(0x1_0000_0000, 0x2_8000_0000, Unaccepted),
            ]
        );
        assert_eq!(map.unaccepted_bytes(), 6 << 30);
    }

    #[test]
    fn runtime_and_specific_purpose_ram_is_reserved() {
        assert_eq!(uefi_kind(UefiMemoryType::CONVENTIONAL, 0), Usable);
        assert_eq!(
            uefi_kind(UefiMemoryType::CONVENTIONAL, MEMORY_RUNTIME),
            Reserved
        );
        assert_eq!(
            uefi_kind(UefiMemoryType::BOOT_SERVICES_DATA, MEMORY_SPECIFIC_PURPOSE),
            Reserved
        );
        assert_eq!(
            uefi_kind(UefiMemoryType::UNACCEPTED, MEMORY_RUNTIME),
            Reserved
        );
        assert_eq!(uefi_kind(UefiMemoryType::ACPI_NVS, MEMORY_RUNTIME), AcpiNvs);
        assert_eq!(uefi_kind(UefiMemoryType(16), 0), Reserved);
        assert_eq!(uefi_kind(UefiMemoryType(0x8000_0001), 0), Reserved);
        assert_eq!(uefi_kind(UefiMemoryType::MMIO_PORT_SPACE, 0), Mmio);
        assert_eq!(uefi_kind(UefiMemoryType::PERSISTENT, 0), Persistent);
        assert_eq!(uefi_kind(UefiMemoryType::UNUSABLE, 0), Unusable);
    }

    #[test]
    fn malformed_maps_are_rejected_without_touching_the_map() {
        let buffer = ovmf_like();
        let mut map = MemoryMap::<32>::new();
        let err = |buf: &[u8], size, version, map: &mut MemoryMap<32>| {
            read_uefi_memory_map(buf, size, version, map).unwrap_err()
        };
        assert_eq!(
            err(&buffer, STRIDE, 2, &mut map),
            UefiMapError::UnsupportedVersion(2)
        );
        assert_eq!(
            err(&buffer, 32, 1, &mut map),
            UefiMapError::BadDescriptorSize(32)
        );
        assert_eq!(
            err(&buffer, 44, 1, &mut map),
            UefiMapError::BadDescriptorSize(44)
        );
        assert_eq!(
            err(&buffer, 0, 1, &mut map),
            UefiMapError::BadDescriptorSize(0)
        );
        assert!(matches!(
            err(&buffer[..buffer.len() - 1], STRIDE, 1, &mut map),
            UefiMapError::TrailingBytes { .. }
        ));
        // 40 is a valid stride, but then the 48-byte records no longer line up.
        assert!(matches!(
            err(&buffer, 40, 1, &mut map),
            UefiMapError::TrailingBytes { .. } | UefiMapError::MisalignedStart { .. }
        ));

        let mut bad = buffer.clone();
        bad[STRIDE * 2 + 8] = 0x10; // start 0x100010
        assert_eq!(
            err(&bad, STRIDE, 1, &mut map),
            UefiMapError::MisalignedStart { index: 2 }
        );

        let mut huge = Vec::new();
        descriptor(&mut huge, 7, 0x1000, 0x1000, 0);
        descriptor(&mut huge, 7, 0xffff_ffff_ffff_f000, 1, 0);
        assert_eq!(
            err(&huge, STRIDE, 1, &mut map),
            UefiMapError::RangeOverflow { index: 1 }
        );
        let mut pages = Vec::new();
        descriptor(&mut pages, 7, 0, u64::MAX / 4096 + 1, 0);
        assert_eq!(
            err(&pages, STRIDE, 1, &mut map),
            UefiMapError::RangeOverflow { index: 0 }
        );

        assert!(map.is_empty());
    }

    #[test]
    fn capacity_errors_are_reported() {
        let buffer = ovmf_like();
        let mut map = MemoryMap::<4>::new();
        assert!(matches!(
            read_uefi_memory_map(&buffer, STRIDE, 1, &mut map),
            Err(UefiMapError::Map(MapError::CapacityExceeded {
                capacity: 4,
                ..
            }))
        ));
    }

    #[test]
    fn empty_buffer_is_an_empty_map() {
        let mut map = MemoryMap::<4>::new();
        read_uefi_memory_map(&[], STRIDE, 1, &mut map).unwrap();
        assert!(map.is_empty());
    }
}
