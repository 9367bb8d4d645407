//! The TD HOB list that TDVF and TD-shim hand to their payload (PI spec HOBs).
//!
//! Layout: a sequence of HOBs, each starting with `{ u16 type, u16 length, u32 reserved }` and
//! `length` bytes long (a multiple of 8), beginning with the PHIT (type 1) and ending with the
//! end-of-list HOB (type `0xFFFF`). Resource descriptors (type 3) describe memory, including
//! unaccepted memory (resource type 7); GUID extension HOBs (type 4) carry data the caller
//! interprets (exposed by [`HobList::guid_extensions`]).
//!
//! # Resource types
//!
//! | resource type | | [`RegionKind`] |
//! |---|---|---|
//! | 0 | SYSTEM_MEMORY | `Usable`, or `Persistent` with `EFI_RESOURCE_ATTRIBUTE_PERSISTENT` |
//! | 7 | MEMORY_UNACCEPTED | `Unaccepted` |
//! | 1, 4 | MEMORY_MAPPED_IO, MEMORY_MAPPED_IO_PORT | `Mmio` |
//! | 3, 5 | FIRMWARE_DEVICE, MEMORY_RESERVED | `Reserved` |
//! | 2, 6 | IO, IO_RESERVED | not memory (I/O port numbers): ignored |
//! | other | | `Reserved` |
//!
//! Memory allocation HOBs (type 2) are applied with the [UEFI mapping](super::uefi_kind) when
//! that yields anything stricter than `Usable`, so firmware allocations such as ACPI NVS are
//! protected; allocations of usable types add nothing.

use core::fmt;

use super::{Guid, MapError, MemoryMap, RegionKind, UefiMemoryType, uefi_kind};
use crate::bytes::{array_at, u16_at, u32_at, u64_at};

/// `EFI_HOB_TYPE_HANDOFF` (PHIT).
pub const HOB_TYPE_HANDOFF: u16 = 0x0001;
/// `EFI_HOB_TYPE_MEMORY_ALLOCATION`.
pub const HOB_TYPE_MEMORY_ALLOCATION: u16 = 0x0002;
/// `EFI_HOB_TYPE_RESOURCE_DESCRIPTOR`.
pub const HOB_TYPE_RESOURCE_DESCRIPTOR: u16 = 0x0003;
/// `EFI_HOB_TYPE_GUID_EXTENSION`.
pub const HOB_TYPE_GUID_EXTENSION: u16 = 0x0004;
/// `EFI_HOB_TYPE_UNUSED`.
pub const HOB_TYPE_UNUSED: u16 = 0xfffe;
/// `EFI_HOB_TYPE_END_OF_HOB_LIST`.
pub const HOB_TYPE_END_OF_LIST: u16 = 0xffff;

const HEADER_LEN: usize = 8;
const HANDOFF_LEN: usize = 56;
const MEMORY_ALLOCATION_LEN: usize = 48;
const RESOURCE_DESCRIPTOR_LEN: usize = 48;
const GUID_EXTENSION_LEN: usize = 24;

/// Resource types of a resource descriptor HOB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ResourceType(pub u32);

#[allow(missing_docs)]
impl ResourceType {
    pub const SYSTEM_MEMORY: Self = Self(0);
    pub const MEMORY_MAPPED_IO: Self = Self(1);
    pub const IO: Self = Self(2);
    pub const FIRMWARE_DEVICE: Self = Self(3);
    pub const MEMORY_MAPPED_IO_PORT: Self = Self(4);
    pub const MEMORY_RESERVED: Self = Self(5);
    pub const IO_RESERVED: Self = Self(6);
    /// `EFI_RESOURCE_MEMORY_UNACCEPTED` (PI 1.8).
    pub const MEMORY_UNACCEPTED: Self = Self(7);
}

/// `EFI_RESOURCE_ATTRIBUTE_PRESENT`.
pub const RESOURCE_ATTRIBUTE_PRESENT: u32 = 0x1;
/// `EFI_RESOURCE_ATTRIBUTE_INITIALIZED`.
pub const RESOURCE_ATTRIBUTE_INITIALIZED: u32 = 0x2;
/// `EFI_RESOURCE_ATTRIBUTE_TESTED`.
pub const RESOURCE_ATTRIBUTE_TESTED: u32 = 0x4;
/// `EFI_RESOURCE_ATTRIBUTE_PERSISTENT`.
pub const RESOURCE_ATTRIBUTE_PERSISTENT: u32 = 0x80_0000;

/// The PHIT (`EFI_HOB_HANDOFF_INFO_TABLE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handoff {
    /// `Version`.
    pub version: u32,
    /// `BootMode`.
    pub boot_mode: u32,
    /// `EfiMemoryTop`.
    pub memory_top: u64,
    /// `EfiMemoryBottom`.
    pub memory_bottom: u64,
    /// `EfiFreeMemoryTop`.
    pub free_memory_top: u64,
    /// `EfiFreeMemoryBottom`.
    pub free_memory_bottom: u64,
    /// `EfiEndOfHobList`, in one of two conventions: edk2's PEI core points it at the end-of-list
    /// HOB, QEMU (`tdvf_hob_create`) and td-shim just past it. [`Handoff::list_len`] tells which.
    pub end_of_hob_list: u64,
}

impl Handoff {
    /// Decodes the PHIT from the start of a HOB list (to size the list before parsing it).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if u16_at(bytes, 0)? != HOB_TYPE_HANDOFF || usize::from(u16_at(bytes, 2)?) < HANDOFF_LEN {
            return None;
        }
        Some(Handoff {
            version: u32_at(bytes, 8)?,
            boot_mode: u32_at(bytes, 12)?,
            memory_top: u64_at(bytes, 16)?,
            memory_bottom: u64_at(bytes, 24)?,
            free_memory_top: u64_at(bytes, 32)?,
            free_memory_bottom: u64_at(bytes, 40)?,
            end_of_hob_list: u64_at(bytes, 48)?,
        })
    }

    /// The list's exact length in bytes, up to and including the end-of-list HOB, for a list at
    /// `list_address`; `read_header(address)` returns the 8 bytes at `address` and is called once.
    ///
    /// `EfiEndOfHobList` has two conventions: the address *of* the end-of-list HOB (edk2's PEI
    /// core) or the address just *past* it (QEMU's `tdvf_hob_create` for TDVF, and td-shim). The 8
    /// bytes before `EfiEndOfHobList` lie inside the list either way, so they are read: an
    /// end-of-list header there (type `0xFFFF`, length 8) means the second convention and the list
    /// ends at `EfiEndOfHobList`; anything else means the first, and the list ends 8 bytes later.
    /// Assuming the first convention would read 8 bytes past a QEMU list, which may be past the
    /// memory the TD_HOB section covers.
    ///
    /// In an edk2-style list whose previous HOB happens to end in the bytes of an end-of-list
    /// header, the length comes out 8 bytes short; [`HobList::parse`] then fails with
    /// [`HobError::MissingEnd`] rather than misreading anything.
    ///
    /// `None` when `EfiEndOfHobList` lies before the end of the PHIT, is not 8-byte aligned
    /// relative to the list, or `read_header` fails. Firmware-provided: cap the length to the
    /// memory you are willing to map, then let [`HobList::parse`] check the list.
    pub fn list_len(
        &self,
        list_address: u64,
        read_header: impl FnOnce(u64) -> Option<[u8; HEADER_LEN]>,
    ) -> Option<usize> {
        let to_marker = self.end_of_hob_list.checked_sub(list_address)?;
        if to_marker < HANDOFF_LEN as u64 || to_marker % 8 != 0 {
            return None;
        }
        let header = read_header(self.end_of_hob_list - HEADER_LEN as u64)?;
        let past_end_marker = u16_at(&header, 0) == Some(HOB_TYPE_END_OF_LIST)
            && u16_at(&header, 2) == Some(HEADER_LEN as u16)
            && to_marker > HANDOFF_LEN as u64;
        let len = if past_end_marker {
            to_marker
        } else {
            to_marker.checked_add(HEADER_LEN as u64)?
        };
        usize::try_from(len).ok()
    }
}

/// A resource descriptor HOB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceDescriptor {
    /// `Owner`.
    pub owner: Guid,
    /// `ResourceType`.
    pub resource_type: ResourceType,
    /// `ResourceAttribute`.
    pub attributes: u32,
    /// `PhysicalStart`.
    pub start: u64,
    /// `ResourceLength`.
    pub length: u64,
}

impl ResourceDescriptor {
    /// The memory kind, or `None` for I/O port resources (see the module table).
    pub const fn kind(&self) -> Option<RegionKind> {
        Some(match self.resource_type.0 {
            0 if self.attributes & RESOURCE_ATTRIBUTE_PERSISTENT != 0 => RegionKind::Persistent,
            0 => RegionKind::Usable,
            7 => RegionKind::Unaccepted,
            1 | 4 => RegionKind::Mmio,
            2 | 6 => return None,
            _ => RegionKind::Reserved,
        })
    }
}

/// A memory allocation HOB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryAllocation {
    /// `Name` (zero unless the allocation is a known kind such as a stack or module).
    pub name: Guid,
    /// `MemoryBaseAddress`.
    pub base: u64,
    /// `MemoryLength`.
    pub length: u64,
    /// `MemoryType`.
    pub memory_type: UefiMemoryType,
}

/// One HOB of a validated list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hob<'a> {
    /// The PHIT.
    Handoff(Handoff),
    /// A memory allocation.
    MemoryAllocation(MemoryAllocation),
    /// A resource descriptor.
    ResourceDescriptor(ResourceDescriptor),
    /// A GUID extension: `data` follows the name, up to the HOB's length (may include padding).
    GuidExtension {
        /// The GUID naming the data's format.
        name: Guid,
        /// The bytes after the name.
        data: &'a [u8],
    },
    /// Any other HOB type (FV, CPU, pool, capsule, unused...).
    Other {
        /// The HOB type.
        hob_type: u16,
        /// The bytes after the generic header.
        body: &'a [u8],
    },
}

/// Why a HOB list was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HobError {
    /// The first HOB is not a complete PHIT.
    MissingHandoff,
    /// The HOB at `offset` does not fit in the buffer (header or body).
    Truncated {
        /// Byte offset of the HOB.
        offset: usize,
    },
    /// The HOB at `offset` has a length below its type's size or not a multiple of 8.
    BadLength {
        /// Byte offset of the HOB.
        offset: usize,
        /// Its type.
        hob_type: u16,
        /// Its length field.
        length: u16,
    },
    /// The buffer ended without an end-of-list HOB.
    MissingEnd,
    /// The memory range of the HOB at `offset` runs past the 64-bit address space.
    RangeOverflow {
        /// Byte offset of the HOB.
        offset: usize,
    },
    /// The map could not hold the result (it holds the HOBs before the failing one).
    Map(MapError),
}

impl fmt::Display for HobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingHandoff => write!(f, "HOB list does not start with a PHIT"),
            Self::Truncated { offset } => write!(f, "HOB at {offset:#x} is truncated"),
            Self::BadLength {
                offset,
                hob_type,
                length,
            } => write!(
                f,
                "HOB at {offset:#x} (type {hob_type:#x}) has bad length {length}"
            ),
            Self::MissingEnd => write!(f, "HOB list has no end marker"),
            Self::RangeOverflow { offset } => write!(f, "HOB at {offset:#x} overflows"),
            Self::Map(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for HobError {}

/// A validated HOB list.
#[derive(Clone, Copy, Debug)]
pub struct HobList<'a> {
    /// From the PHIT up to and including the end-of-list HOB.
    bytes: &'a [u8],
    handoff: Handoff,
}

impl<'a> HobList<'a> {
    /// Validates every HOB from the PHIT to the end-of-list HOB; bytes after it are ignored.
    ///
    /// Checked: the PHIT comes first; every length is at least its type's size, a multiple of 8
    /// and inside the buffer; the end marker exists; memory ranges fit in 64 bits. Each HOB
    /// advances by at least 8 bytes, so parsing ends after at most `bytes.len() / 8` steps.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, HobError> {
        let handoff = Handoff::decode(bytes).ok_or(HobError::MissingHandoff)?;
        let mut offset = 0usize;
        loop {
            let header = bytes.get(offset..).unwrap_or(&[]);
            let (Some(hob_type), Some(length)) = (u16_at(header, 0), u16_at(header, 2)) else {
                return Err(if offset == bytes.len() {
                    HobError::MissingEnd
                } else {
                    HobError::Truncated { offset }
                });
            };
            let len = usize::from(length);
            let minimum = match hob_type {
                HOB_TYPE_HANDOFF => HANDOFF_LEN,
                HOB_TYPE_MEMORY_ALLOCATION => MEMORY_ALLOCATION_LEN,
                HOB_TYPE_RESOURCE_DESCRIPTOR => RESOURCE_DESCRIPTOR_LEN,
                HOB_TYPE_GUID_EXTENSION => GUID_EXTENSION_LEN,
                _ => HEADER_LEN,
            };
            if len < minimum || len % 8 != 0 {
                return Err(HobError::BadLength {
                    offset,
                    hob_type,
                    length,
                });
            }
            let end = offset
                .checked_add(len)
                .ok_or(HobError::Truncated { offset })?;
            let hob = bytes
                .get(offset..end)
                .ok_or(HobError::Truncated { offset })?;
            if decode(hob).is_none() {
                return Err(HobError::RangeOverflow { offset });
            }
            if hob_type == HOB_TYPE_END_OF_LIST {
                return Ok(HobList {
                    bytes: bytes.get(..end).unwrap_or(&[]),
                    handoff,
                });
            }
            offset = end;
        }
    }

    /// The PHIT.
    pub fn handoff(&self) -> &Handoff {
        &self.handoff
    }

    /// The list's bytes, from the PHIT through the end-of-list HOB.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Every HOB in order, the PHIT first; the end-of-list HOB is not yielded.
    pub fn iter(&self) -> impl Iterator<Item = Hob<'a>> + 'a {
        let bytes = self.bytes;
        let mut offset = 0usize;
        core::iter::from_fn(move || {
            let rest = bytes.get(offset..)?;
            let len = usize::from(u16_at(rest, 2)?);
            if u16_at(rest, 0)? == HOB_TYPE_END_OF_LIST || len == 0 {
                return None;
            }
            let hob = decode(rest.get(..len)?)?;
            offset = offset.checked_add(len)?;
            Some(hob)
        })
    }

    /// The resource descriptors in order.
    pub fn resource_descriptors(&self) -> impl Iterator<Item = ResourceDescriptor> + 'a {
        self.iter().filter_map(|hob| match hob {
            Hob::ResourceDescriptor(r) => Some(r),
            _ => None,
        })
    }

    /// The GUID extension HOBs in order, as `(name, data)`.
    pub fn guid_extensions(&self) -> impl Iterator<Item = (Guid, &'a [u8])> + 'a {
        self.iter().filter_map(|hob| match hob {
            Hob::GuidExtension { name, data } => Some((name, data)),
            _ => None,
        })
    }

    /// The data of the first GUID extension HOB named `name`.
    pub fn find_guid_extension(&self, name: &Guid) -> Option<&'a [u8]> {
        self.guid_extensions()
            .find(|(n, _)| n == name)
            .map(|(_, data)| data)
    }

    /// Inserts the resource descriptors and the restrictive memory allocations into `map`
    /// (see the module's tables).
    pub fn read_into<const N: usize>(&self, map: &mut MemoryMap<N>) -> Result<(), MapError> {
        for hob in self.iter() {
            let (start, length, kind) = match hob {
                Hob::ResourceDescriptor(r) => match r.kind() {
                    Some(kind) => (r.start, r.length, kind),
                    None => continue,
                },
                Hob::MemoryAllocation(a) => match uefi_kind(a.memory_type, 0) {
                    RegionKind::Usable => continue,
                    kind => (a.base, a.length, kind),
                },
                _ => continue,
            };
            if length != 0 {
                map.insert_len(start, length, kind)?;
            }
        }
        Ok(())
    }
}

/// Decodes one HOB whose header and length were checked; `None` if a memory range overflows or
/// the body is short.
fn decode(hob: &[u8]) -> Option<Hob<'_>> {
    let hob_type = u16_at(hob, 0)?;
    let guid = |offset| array_at(hob, offset).map(Guid);
    let fits = |start: u64, length: u64| start.checked_add(length).is_some();
    Some(match hob_type {
        HOB_TYPE_HANDOFF => Hob::Handoff(Handoff::decode(hob)?),
        HOB_TYPE_MEMORY_ALLOCATION => {
            let a = MemoryAllocation {
                name: guid(8)?,
                base: u64_at(hob, 24)?,
                length: u64_at(hob, 32)?,
                memory_type: UefiMemoryType(u32_at(hob, 40)?),
            };
            if !fits(a.base, a.length) {
                return None;
            }
            Hob::MemoryAllocation(a)
        }
        HOB_TYPE_RESOURCE_DESCRIPTOR => {
            let r = ResourceDescriptor {
                owner: guid(8)?,
                resource_type: ResourceType(u32_at(hob, 24)?),
                attributes: u32_at(hob, 28)?,
                start: u64_at(hob, 32)?,
                length: u64_at(hob, 40)?,
            };
            if !fits(r.start, r.length) {
                return None;
            }
            Hob::ResourceDescriptor(r)
        }
        HOB_TYPE_GUID_EXTENSION => Hob::GuidExtension {
            name: guid(8)?,
            data: hob.get(GUID_EXTENSION_LEN..)?,
        },
        _ => Hob::Other {
            hob_type,
            body: hob.get(HEADER_LEN..)?,
        },
    })
}

/// Validates a TD HOB list and inserts its memory description into `map`; returns the list for
/// further questions (GUID extensions, PHIT).
///
/// On a format error nothing is inserted.
pub fn read_td_hob<'a, const N: usize>(
    bytes: &'a [u8],
    map: &mut MemoryMap<N>,
) -> Result<HobList<'a>, HobError> {
    let list = HobList::parse(bytes)?;
    list.read_into(map).map_err(HobError::Map)?;
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e820::Region;
    use RegionKind::*;
    use std::vec::Vec;

    const PRIVATE: u32 =
        RESOURCE_ATTRIBUTE_PRESENT | RESOURCE_ATTRIBUTE_INITIALIZED | RESOURCE_ATTRIBUTE_TESTED;
    const TEST_GUID: Guid =
        Guid::from_fields(0x1234_5678, 0x9abc, 0xdef0, [1, 2, 3, 4, 5, 6, 7, 8]);

    struct Builder(Vec<u8>);

    impl Builder {
        fn header(&mut self, hob_type: u16, len: u16) {
            self.0.extend_from_slice(&hob_type.to_le_bytes());
            self.0.extend_from_slice(&len.to_le_bytes());
            self.0.extend_from_slice(&[0; 4]);
        }
        fn u32(&mut self, v: u32) {
            self.0.extend_from_slice(&v.to_le_bytes());
        }
        fn u64(&mut self, v: u64) {
            self.0.extend_from_slice(&v.to_le_bytes());
        }
        fn handoff() -> Self {
            let mut b = Builder(Vec::new());
            b.header(HOB_TYPE_HANDOFF, 56);
            b.u32(9);
            b.u32(0);
            for v in [0x80_0000, 0x0, 0x80_0000, 0x0, 0x0] {
                b.u64(v);
            }
            b
        }
        fn resource(&mut self, ty: u32, attributes: u32, start: u64, length: u64) {
            self.header(HOB_TYPE_RESOURCE_DESCRIPTOR, 48);
            self.0.extend_from_slice(&[0; 16]);
            self.u32(ty);
            self.u32(attributes);
            self.u64(start);
            self.u64(length);
        }
        fn allocation(&mut self, memory_type: u32, base: u64, length: u64) {
            self.header(HOB_TYPE_MEMORY_ALLOCATION, 48);
            self.0.extend_from_slice(&[0; 16]);
            self.u64(base);
            self.u64(length);
            self.u32(memory_type);
            self.u32(0);
        }
        fn guid(&mut self, name: Guid, data: &[u8]) {
            let len = (24 + data.len()).next_multiple_of(8);
            self.header(HOB_TYPE_GUID_EXTENSION, len as u16);
            self.0.extend_from_slice(&name.0);
            self.0.extend_from_slice(data);
            self.0.resize(self.0.len() + len - 24 - data.len(), 0);
        }
        /// Ends the list as edk2's PEI core does: `EfiEndOfHobList` is the end-of-list HOB.
        fn end(mut self) -> Vec<u8> {
            let end_offset = self.0.len() as u64;
            self.0[48..56].copy_from_slice(&(0x80_9000 + end_offset).to_le_bytes());
            self.header(HOB_TYPE_END_OF_LIST, 8);
            self.0
        }
        /// Ends the list as QEMU's `tdvf_hob_create` and td-shim do: `EfiEndOfHobList` is the
        /// first byte after the end-of-list HOB.
        fn end_past(mut self) -> Vec<u8> {
            self.header(HOB_TYPE_END_OF_LIST, 8);
            let end_offset = self.0.len() as u64;
            self.0[48..56].copy_from_slice(&(0x80_9000 + end_offset).to_le_bytes());
            self.0
        }
    }

    /// The TD HOB QEMU (`hw/i386/tdvf-hob.c`) builds for Debian's TDVF (edk2 2022.11) with
    /// `-m 2G`: a PHIT with only the version and `EfiEndOfHobList` set (just past the end HOB),
    /// then one resource descriptor per RAM entry, sorted: everything unaccepted (type 7) except
    /// the TEMP_MEM and TD_HOB sections of the TDVF metadata, which QEMU added (type 0); all with
    /// attributes PRESENT | INITIALIZED | TESTED; no MMIO, no allocations.
    fn qemu_td_hob() -> Vec<u8> {
        let mut b = Builder(Vec::new());
        b.header(HOB_TYPE_HANDOFF, 56);
        b.u32(9);
        b.u32(0);
        for _ in 0..5 {
            b.u64(0);
        }
        for (ty, start, end) in [
            (7, 0x0, 0x80_0000),
            (0, 0x80_0000, 0x80_6000), // TEMP_MEM: the SEC page tables
            (7, 0x80_6000, 0x80_9000),
            (0, 0x80_9000, 0x80_b000), // TD_HOB: this list
            (0, 0x80_b000, 0x80_d000), // TEMP_MEM
            (7, 0x80_d000, 0x81_0000),
            (0, 0x81_0000, 0x82_0000), // TEMP_MEM: SEC's stack and heap
            (7, 0x82_0000, 0x8000_0000),
        ] {
            b.resource(ty, PRIVATE, start, end - start);
        }
        b.end_past()
    }

    #[test]
    fn qemu_td_hob_becomes_a_map_of_its_exact_length() {
        let bytes = qemu_td_hob();
        assert_eq!(bytes.len(), 56 + 8 * 48 + 8);
        let mut map = MemoryMap::<16>::new();
        let list = read_td_hob(&bytes, &mut map).unwrap();
        let r = Region::new;
        assert_eq!(
            map.regions(),
            &[
                r(0x0, 0x80_0000, Unaccepted),
                r(0x80_0000, 0x80_6000, Usable),
                r(0x80_6000, 0x80_9000, Unaccepted),
                r(0x80_9000, 0x80_d000, Usable),
                r(0x80_d000, 0x81_0000, Unaccepted),
                r(0x81_0000, 0x82_0000, Usable),
                r(0x82_0000, 0x8000_0000, Unaccepted),
            ]
        );
        assert_eq!(list.resource_descriptors().count(), 8);
        assert_eq!(list.as_bytes().len(), bytes.len());
        assert_eq!(list_len(&bytes, 0x80_9000), Some(bytes.len()));
    }

    /// [`Handoff::list_len`] for `bytes` placed at `address`, reading only inside `bytes`.
    fn list_len(bytes: &[u8], address: u64) -> Option<usize> {
        let handoff = Handoff::decode(bytes)?;
        handoff.list_len(address, |at| {
            let offset = usize::try_from(at.checked_sub(address)?).ok()?;
            bytes.get(offset..offset + 8)?.try_into().ok()
        })
    }

    #[test]
    fn list_len_is_exact_in_both_conventions() {
        let resources = |data: &[u8]| {
            let mut b = Builder::handoff();
            b.resource(7, PRIVATE, 0, 0x8000_0000);
            b.guid(TEST_GUID, data);
            b
        };
        let edk2 = resources(&[0xaa; 7]).end();
        let qemu = resources(&[0xaa; 7]).end_past();
        assert_eq!(edk2.len(), qemu.len());
        for bytes in [&edk2, &qemu, &every_hob_kind(), &qemu_td_hob()] {
            let len = list_len(bytes, 0x80_9000).unwrap();
            assert_eq!(len, bytes.len());
            assert_eq!(HobList::parse(&bytes[..len]).unwrap().as_bytes().len(), len);
        }
        // The documented ambiguity: an edk2 list whose last HOB ends in an end-of-list header's
        // bytes looks like a QEMU list; the length is 8 short and parsing it fails cleanly.
        let lookalike = resources(&[0xff, 0xff, 8, 0, 0, 0, 0]).end();
        let len = list_len(&lookalike, 0x80_9000).unwrap();
        assert_eq!(len, lookalike.len() - 8);
        assert_eq!(
            HobList::parse(&lookalike[..len]).unwrap_err(),
            HobError::MissingEnd
        );
        // The smallest lists: a PHIT and the end HOB.
        assert_eq!(list_len(&Builder::handoff().end(), 0x80_9000), Some(64));
        assert_eq!(
            list_len(&Builder::handoff().end_past(), 0x80_9000),
            Some(64)
        );
    }

    #[test]
    fn list_len_refuses_impossible_markers() {
        let bytes = qemu_td_hob();
        let with_marker = |marker: u64| {
            let mut b = bytes.clone();
            b[48..56].copy_from_slice(&marker.to_le_bytes());
            b
        };
        // Before the end of the PHIT, before the list, not 8-byte aligned.
        assert_eq!(list_len(&with_marker(0x80_9000 + 48), 0x80_9000), None);
        assert_eq!(list_len(&with_marker(0x80_8000), 0x80_9000), None);
        assert_eq!(list_len(&with_marker(0x80_9000 + 61), 0x80_9000), None);
        // The header cannot be read.
        let handoff = Handoff::decode(&bytes).unwrap();
        assert_eq!(handoff.list_len(0x80_9000, |_| None), None);
        // A marker at the top of the address space: the edk2 length would overflow.
        let far = Handoff::decode(&with_marker(u64::MAX - 7)).unwrap();
        assert_eq!(far.list_len(0, |_| Some([0; 8])), None);
        let end_header = [0xff, 0xff, 8, 0, 0, 0, 0, 0];
        assert_eq!(
            far.list_len(0, |at| (at == u64::MAX - 15).then_some(end_header)),
            usize::try_from(u64::MAX - 7).ok()
        );
    }

    /// Every kind of HOB this module reads (MMIO and I/O resources, allocations, a GUID
    /// extension, an unused HOB), edk2's end convention. Not what QEMU emits: QEMU's TD HOB has
    /// only RAM resource descriptors ([`qemu_td_hob`]); this one exercises the rest.
    fn every_hob_kind() -> Vec<u8> {
        let mut b = Builder::handoff();
        b.resource(0, PRIVATE, 0x0, 0x80_0000);
        b.resource(7, PRIVATE, 0x80_0000, 0x7f80_0000);
        b.resource(1, 0x403, 0xe000_0000, 0x1ec0_0000);
        b.resource(2, 0, 0x0, 0x1_0000); // I/O ports: not memory
        b.resource(7, PRIVATE, 0x1_0000_0000, 0x1_8000_0000);
        b.resource(1, 0x403, 0x80_0000_0000, 0x8_0000_0000);
        b.allocation(10, 0x80_9000, 0x1000); // firmware's ACPI NVS
        b.allocation(4, 0x1000, 0x1000); // boot-services data: adds nothing
        b.guid(TEST_GUID, &[0xaa; 12]);
        b.header(HOB_TYPE_UNUSED, 16);
        b.0.extend_from_slice(&[0; 8]);
        b.end()
    }

    #[test]
    fn every_hob_kind_becomes_a_map() {
        let bytes = every_hob_kind();
        let mut map = MemoryMap::<16>::new();
        let list = read_td_hob(&bytes, &mut map).unwrap();
        let r = Region::new;
        assert_eq!(
            map.regions(),
            &[
                r(0x0, 0x80_0000, Usable),
                r(0x80_0000, 0x80_9000, Unaccepted),
                r(0x80_9000, 0x80_a000, AcpiNvs),
                r(0x80_a000, 0x8000_0000, Unaccepted),
                r(0xe000_0000, 0xfec0_0000, Mmio),
                r(0x1_0000_0000, 0x2_8000_0000, Unaccepted),
                r(0x80_0000_0000, 0x88_0000_0000, Mmio),
            ]
        );
        assert_eq!(list.handoff().version, 9);
        assert_eq!(
            list.find_guid_extension(&TEST_GUID).map(|d| &d[..12]),
            Some(&[0xaa; 12][..])
        );
        assert_eq!(list.find_guid_extension(&Guid::default()), None);
        assert_eq!(list.resource_descriptors().count(), 6);
        assert_eq!(list_len(&bytes, 0x80_9000), Some(bytes.len()));
        assert!(matches!(
            list.iter().last(),
            Some(Hob::Other {
                hob_type: HOB_TYPE_UNUSED,
                ..
            })
        ));
    }

    #[test]
    fn bytes_after_the_end_marker_are_ignored() {
        let mut bytes = every_hob_kind();
        let len = bytes.len();
        bytes.extend_from_slice(&[0xff; 13]);
        let list = HobList::parse(&bytes).unwrap();
        assert_eq!(list.as_bytes().len(), len);
    }

    #[test]
    fn malformed_lists_are_rejected() {
        let good = every_hob_kind();
        assert_eq!(
            HobList::parse(&good[..40]).unwrap_err(),
            HobError::MissingHandoff
        );
        let mut not_first = Builder(Vec::new());
        not_first.resource(0, PRIVATE, 0, 0x1000);
        assert_eq!(
            HobList::parse(&not_first.0).unwrap_err(),
            HobError::MissingHandoff
        );
        // Cut inside the last resource descriptor.
        assert_eq!(
            HobList::parse(&good[..56 + 48 + 20]).unwrap_err(),
            HobError::Truncated { offset: 56 + 48 }
        );
        // Cut exactly between HOBs: no end marker.
        assert_eq!(
            HobList::parse(&good[..56 + 48]).unwrap_err(),
            HobError::MissingEnd
        );

        let mut short = good.clone();
        short[56 + 2] = 40; // resource descriptor claiming 40 bytes
        assert!(matches!(
            HobList::parse(&short).unwrap_err(),
            HobError::BadLength {
                offset: 56,
                hob_type: HOB_TYPE_RESOURCE_DESCRIPTOR,
                length: 40
            }
        ));
        let mut zero = good.clone();
        zero[56 + 2] = 0;
        zero[56 + 3] = 0;
        assert!(matches!(
            HobList::parse(&zero).unwrap_err(),
            HobError::BadLength { .. }
        ));
        let mut odd = good.clone();
        odd[56 + 2] = 52;
        assert!(matches!(
            HobList::parse(&odd).unwrap_err(),
            HobError::BadLength { .. }
        ));
        let mut huge = good.clone();
        huge[56 + 2] = 0xf8;
        huge[56 + 3] = 0xff;
        assert_eq!(
            HobList::parse(&huge).unwrap_err(),
            HobError::Truncated { offset: 56 }
        );

        let mut b = Builder::handoff();
        b.resource(0, PRIVATE, u64::MAX - 0xfff, 0x1000);
        let overflow = b.end();
        assert_eq!(
            HobList::parse(&overflow).unwrap_err(),
            HobError::RangeOverflow { offset: 56 }
        );
        let mut map = MemoryMap::<4>::new();
        assert!(read_td_hob(&overflow, &mut map).is_err());
        assert!(map.is_empty());
    }

    #[test]
    fn persistent_reserved_and_firmware_device_resources() {
        let mut b = Builder::handoff();
        b.resource(
            0,
            PRIVATE | RESOURCE_ATTRIBUTE_PERSISTENT,
            0x1_0000_0000,
            0x1000,
        );
        b.resource(3, 0, 0xffc0_0000, 0x40_0000);
        b.resource(5, 0, 0xfee0_0000, 0x1000);
        b.resource(0x99, 0, 0x2000, 0x1000);
        b.resource(7, 0, 0x5000, 0); // empty: skipped
        let bytes = b.end();
        let mut map = MemoryMap::<8>::new();
        read_td_hob(&bytes, &mut map).unwrap();
        let kinds: Vec<_> = map.regions().iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [Reserved, Reserved, Reserved, Persistent]);
    }
}
