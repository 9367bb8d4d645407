//! The few UEFI interfaces the kernel calls, declared by hand (UEFI 2.10, x86-64 layout).
//!
//! Only what the boot needs: the system table, four boot services (AllocatePages,
//! GetMemoryMap, ExitBootServices, Stall) and the configuration table that holds the ACPI RSDP.

use core::ffi::c_void;

/// An opaque UEFI handle.
pub type Handle = *mut c_void;
/// A UEFI status: 0 is success, the top bit marks errors.
pub type Status = usize;

pub const SUCCESS: Status = 0;
pub const INVALID_PARAMETER: Status = (1 << 63) | 2;
pub const LOAD_ERROR: Status = (1 << 63) | 1;

/// `EFI_TABLE_HEADER`.
#[repr(C)]
pub struct TableHeader {
    pub signature: u64,
    pub revision: u32,
    pub header_size: u32,
    pub crc32: u32,
    pub reserved: u32,
}

/// `EFI_SYSTEM_TABLE`.
#[repr(C)]
pub struct SystemTable {
    pub header: TableHeader,
    pub firmware_vendor: *const u16,
    pub firmware_revision: u32,
    pub console_in_handle: Handle,
    pub con_in: *mut c_void,
    pub console_out_handle: Handle,
    pub con_out: *mut c_void,
    pub standard_error_handle: Handle,
    pub std_err: *mut c_void,
    pub runtime_services: *mut c_void,
    pub boot_services: *const BootServices,
    pub number_of_table_entries: usize,
    pub configuration_table: *const ConfigurationTable,
}

/// `EFI_ALLOCATE_TYPE`.
#[repr(u32)]
#[derive(Clone, Copy)]
#[allow(
    dead_code,
    reason = "the firmware's enum, kept whole; the kernel allocates with two of its values"
)]
pub enum AllocateType {
    AnyPages = 0,
    MaxAddress = 1,
    Address = 2,
}

/// `EfiLoaderCode`: executable memory the kernel keeps after ExitBootServices.
pub const LOADER_CODE: u32 = 1;
/// `EfiLoaderData`: memory the kernel keeps after ExitBootServices.
pub const LOADER_DATA: u32 = 2;
/// `EfiACPIMemoryNVS`: firmware memory the OS never reuses (where TDVF puts the AP mailbox).
pub const ACPI_MEMORY_NVS: u32 = 10;

/// `EFI_BOOT_SERVICES`, up to `Stall`; the unused entries are kept as opaque slots.
#[repr(C)]
pub struct BootServices {
    pub header: TableHeader,
    _raise_tpl: usize,
    _restore_tpl: usize,
    pub allocate_pages: unsafe extern "efiapi" fn(AllocateType, u32, usize, *mut u64) -> Status,
    _free_pages: usize,
    pub get_memory_map:
        unsafe extern "efiapi" fn(*mut usize, *mut u8, *mut usize, *mut usize, *mut u32) -> Status,
    _allocate_pool: usize,
    _free_pool: usize,
    _events: [usize; 6],
    _protocols: [usize; 4],
    _reserved: usize,
    _register_protocol_notify: usize,
    _locate_handle: usize,
    _locate_device_path: usize,
    _install_configuration_table: usize,
    _images: [usize; 4],
    pub exit_boot_services: unsafe extern "efiapi" fn(Handle, usize) -> Status,
    _get_next_monotonic_count: usize,
    pub stall: unsafe extern "efiapi" fn(usize) -> Status,
}

/// An `EFI_GUID`, in its in-memory byte order.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Guid {
    pub data1: u32,
    pub data2: u16,
    pub data3: u16,
    pub data4: [u8; 8],
}

/// `EFI_ACPI_20_TABLE_GUID`: the configuration table entry that points at the ACPI 2.0+ RSDP.
pub const ACPI_20_TABLE_GUID: Guid = Guid {
    data1: 0x8868_e871,
    data2: 0xe4f1,
    data3: 0x11d3,
    data4: [0xbc, 0x22, 0x00, 0x80, 0xc7, 0x3c, 0x88, 0x81],
};

/// `EFI_CONFIGURATION_TABLE`.
#[repr(C)]
pub struct ConfigurationTable {
    pub vendor_guid: Guid,
    pub vendor_table: *const c_void,
}

/// Calls into boot services; valid only until [`BootServicesRef::exit_boot_services`].
pub struct BootServicesRef {
    table: &'static BootServices,
    image: Handle,
}

impl BootServicesRef {
    /// # Safety
    ///
    /// `system_table` is the table the firmware passed to `efi_main` and boot services have not
    /// been exited.
    pub unsafe fn new(image: Handle, system_table: &SystemTable) -> Self {
        // SAFETY: the firmware's system table points at its live boot services table.
        let table = unsafe { &*system_table.boot_services };
        Self { table, image }
    }

    /// Allocates `pages` 4 KiB pages of `memory_type`, optionally below `max_address`.
    pub fn allocate_pages(
        &self,
        memory_type: u32,
        pages: usize,
        max_address: Option<u64>,
    ) -> Result<u64, Status> {
        let (kind, mut address) = match max_address {
            Some(max) => (AllocateType::MaxAddress, max),
            None => (AllocateType::AnyPages, 0),
        };
        // SAFETY: boot services are live; `address` is a valid out-parameter.
        let status = unsafe { (self.table.allocate_pages)(kind, memory_type, pages, &mut address) };
        if status == SUCCESS {
            Ok(address)
        } else {
            Err(status)
        }
    }

    /// Busy-waits `microseconds` in the firmware (used to calibrate the TSC).
    pub fn stall(&self, microseconds: usize) {
        // SAFETY: boot services are live; Stall has no memory effects.
        unsafe { (self.table.stall)(microseconds) };
    }

    /// Reads the memory map into `buffer`.
    pub fn memory_map(&self, buffer: &mut [u8]) -> Result<MapInfo, Status> {
        let mut size = buffer.len();
        let (mut key, mut descriptor_size, mut version) = (0usize, 0usize, 0u32);
        // SAFETY: boot services are live and every pointer is a valid out-parameter; the firmware
        // writes at most `size` bytes into the buffer.
        let status = unsafe {
            (self.table.get_memory_map)(
                &mut size,
                buffer.as_mut_ptr(),
                &mut key,
                &mut descriptor_size,
                &mut version,
            )
        };
        if status == SUCCESS {
            Ok(MapInfo {
                size,
                key,
                descriptor_size,
                version,
            })
        } else {
            Err(status)
        }
    }

    /// Leaves boot services: the memory map identified by `map_key` becomes the kernel's.
    pub fn exit_boot_services(self, map_key: usize) -> Result<(), (Self, Status)> {
        // SAFETY: boot services are live; on success nothing calls them again (self is consumed).
        let status = unsafe { (self.table.exit_boot_services)(self.image, map_key) };
        if status == SUCCESS {
            Ok(())
        } else {
            Err((self, status))
        }
    }
}

/// Finds the ACPI 2.0+ RSDP in the system table's configuration table.
pub fn acpi_rsdp(system_table: &SystemTable) -> Option<u64> {
    (0..system_table.number_of_table_entries).find_map(|i| {
        // SAFETY: the firmware's configuration table has `number_of_table_entries` entries.
        let entry = unsafe { &*system_table.configuration_table.add(i) };
        (entry.vendor_guid == ACPI_20_TABLE_GUID).then_some(entry.vendor_table as u64)
    })
}

/// What GetMemoryMap returned besides the descriptors.
pub struct MapInfo {
    /// Bytes of the buffer the map fills.
    pub size: usize,
    /// The key ExitBootServices must be given.
    pub key: usize,
    /// The stride between descriptors.
    pub descriptor_size: usize,
    /// The descriptor format version.
    pub version: u32,
}
