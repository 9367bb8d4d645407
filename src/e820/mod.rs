//! One typed, sanitized memory map from whatever the firmware handed over.
//!
//! A TD learns its memory from tables the VMM can influence: the UEFI memory map (TDVF/OVMF),
//! the TD HOB list (TDVF, TD-shim), a Linux boot-protocol E820 table, or Linux's
//! unaccepted-memory bitmap. Each reader here validates its input and inserts it into a
//! [`MemoryMap`], which keeps regions sorted, disjoint and merged and resolves conflicts toward
//! the more restrictive [`RegionKind`]. The map then answers what a kernel asks at boot (how
//! much memory, which ranges still need acceptance, where to put a trampoline) and can be
//! written back out as an E820 table or an unaccepted-memory bitmap for a payload.
//!
//! | source | reader |
//! |---|---|
//! | UEFI `GetMemoryMap()` | [`read_uefi_memory_map`], [`UefiMemoryMap`] |
//! | uefi-rs `MemoryMapOwned` / `MemoryMapRef` (feature `uefi`) | `read_uefi_rs_memory_map`, `UefiMemoryMap::from_uefi_rs` |
//! | TD HOB list (TDVF, TD-shim) | [`read_td_hob`], [`HobList`] |
//! | Linux boot-protocol E820 table | [`read_e820_table`], [`read_zero_page_e820`] (writers: [`write_e820_table`], [`write_zero_page_e820`]) |
//! | Linux EFI unaccepted-memory table | [`UnacceptedBitmap`] (producer: [`encode_unaccepted_table`]) |
//!
//! ```
//! use tdx_boot::e820::{MemoryMap, RegionKind};
//!
//! let mut map = MemoryMap::<64>::new();
//! // What the firmware reported, in any order, overlaps allowed.
//! map.insert(0x10_0000, 0x8000_0000, RegionKind::Usable)?;
//! map.insert(0x2000_0000, 0x8000_0000, RegionKind::Unaccepted)?; // beats Usable
//! map.insert(0x7f00_0000, 0x7f10_0000, RegionKind::AcpiNvs)?; // beats both
//! map.insert(0x1000, 0xa_0000, RegionKind::Usable)?;
//!
//! // A page for the AP trampoline below 1 MiB, kept away from the frame allocator.
//! let trampoline = map.find_free(0x1000, 0x1000, 0x10_0000).expect("low memory");
//! map.insert(trampoline, trampoline + 0x1000, RegionKind::Reserved)?;
//!
//! // Accept what the kernel needs now (accept::accept_range), then record it.
//! let first = map.unaccepted_ranges().next().expect("unaccepted memory");
//! assert_eq!(first, 0x2000_0000..0x7f00_0000);
//! map.mark_accepted(0x2000_0000, 0x3000_0000)?;
//! assert_eq!(map.unaccepted_bytes(), 0x5000_0000 - 0x10_0000);
//! # Ok::<(), tdx_boot::e820::MapError>(())
//! ```

mod e820_table;
mod guid;
mod hob;
mod kind;
mod map;
mod paint;
mod query;
mod region;
mod uefi;
#[cfg(feature = "uefi")]
mod uefi_rs;
mod unaccepted_table;

pub use e820_table::{
    E820_ENTRY_SIZE, E820_MAX_ENTRIES_ZEROPAGE, E820Entry, E820Error, E820Type, UnacceptedAs,
    ZERO_PAGE_E820_ENTRIES_OFFSET, ZERO_PAGE_E820_TABLE_OFFSET, e820_entries, e820_kind, e820_type,
    read_e820_table, read_zero_page_e820, write_e820_table, write_zero_page_e820,
};
pub use guid::Guid;
pub use hob::{
    HOB_TYPE_END_OF_LIST, HOB_TYPE_GUID_EXTENSION, HOB_TYPE_HANDOFF, HOB_TYPE_MEMORY_ALLOCATION,
    HOB_TYPE_RESOURCE_DESCRIPTOR, HOB_TYPE_UNUSED, Handoff, Hob, HobError, HobList,
    MemoryAllocation, RESOURCE_ATTRIBUTE_INITIALIZED, RESOURCE_ATTRIBUTE_PERSISTENT,
    RESOURCE_ATTRIBUTE_PRESENT, RESOURCE_ATTRIBUTE_TESTED, ResourceDescriptor, ResourceType,
    read_td_hob,
};
pub use kind::RegionKind;
pub use map::{MapError, MemoryMap};
pub use region::Region;
pub use uefi::{
    MEMORY_DESCRIPTOR_MIN_SIZE, MEMORY_DESCRIPTOR_VERSION, MEMORY_RUNTIME, MEMORY_SPECIFIC_PURPOSE,
    MemoryDescriptor, UEFI_PAGE_SIZE, UefiMapError, UefiMemoryMap, UefiMemoryType,
    read_uefi_memory_map, uefi_kind,
};
#[cfg(feature = "uefi")]
#[cfg_attr(docsrs, doc(cfg(feature = "uefi")))]
pub use uefi_rs::read_uefi_rs_memory_map;
pub use unaccepted_table::{
    UNACCEPTED_TABLE_GUID, UNACCEPTED_TABLE_HEADER_LEN, UNACCEPTED_TABLE_VERSION,
    UNACCEPTED_UNIT_SIZE, UnacceptedBitmap, UnacceptedTableError, encode_unaccepted_table,
    read_unaccepted_table, unaccepted_table_extent, unaccepted_table_len,
};
