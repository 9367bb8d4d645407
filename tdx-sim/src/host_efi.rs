//! The outer firmware's services tdx-sim uses before it takes the machine: page allocations for
//! the TD's memory and its own heap, then ExitBootServices. Nothing of UEFI is used after that.

use uefi_raw::table::boot::{AllocateType, BootServices, MemoryDescriptor, MemoryType};
use uefi_raw::table::system::SystemTable;
use uefi_raw::{Handle, Status};

/// The outer firmware's boot services, valid until [`BootServicesHandle::exit`].
pub struct BootServicesHandle {
    image: Handle,
    services: *mut BootServices,
}

impl BootServicesHandle {
    /// # Safety
    ///
    /// `image` and `system_table` are the arguments the firmware passed to the entry point, and
    /// boot services have not been exited.
    pub unsafe fn new(image: Handle, system_table: *const SystemTable) -> Option<Self> {
        // SAFETY: per the contract the table is the firmware's and valid.
        let table = unsafe { system_table.as_ref()? };
        (!table.boot_services.is_null()).then_some(Self {
            image,
            services: table.boot_services,
        })
    }

    /// `pages` 4 KiB pages of loader data anywhere, zeroed; `below` limits the highest address
    /// (exclusive) when it is not `u64::MAX`.
    pub fn allocate(&self, pages: usize, below: u64) -> Result<u64, Status> {
        let (kind, mut address) = if below == u64::MAX {
            (AllocateType::ANY_PAGES, 0)
        } else {
            (AllocateType::MAX_ADDRESS, below - 1)
        };
        // SAFETY: boot services are live (type invariant); the out pointer is a local.
        let status = unsafe {
            ((*self.services).allocate_pages)(kind, MemoryType::LOADER_DATA, pages, &mut address)
        };
        if status != Status::SUCCESS {
            return Err(status);
        }
        // SAFETY: the firmware just gave us these pages; UEFI identity-maps memory.
        unsafe { core::ptr::write_bytes(address as *mut u8, 0, pages * 4096) };
        Ok(address)
    }

    /// Leaves boot services: from here on tdx-sim owns the machine.
    pub fn exit(self) -> Result<(), Status> {
        let mut buffer = [0u64; 4096];
        for _ in 0..4 {
            let mut size = core::mem::size_of_val(&buffer);
            let (mut key, mut descriptor_size, mut version) = (0usize, 0usize, 0u32);
            // SAFETY: boot services are live; every pointer is to a local of the right type and
            // `size` says how large the buffer is.
            let status = unsafe {
                ((*self.services).get_memory_map)(
                    &mut size,
                    buffer.as_mut_ptr().cast::<MemoryDescriptor>(),
                    &mut key,
                    &mut descriptor_size,
                    &mut version,
                )
            };
            if status != Status::SUCCESS {
                return Err(status);
            }
            // SAFETY: as above; the key is the one GetMemoryMap just returned.
            let status = unsafe { ((*self.services).exit_boot_services)(self.image, key) };
            if status == Status::SUCCESS {
                return Ok(());
            }
            // INVALID_PARAMETER: the map changed in between; read it again.
        }
        Err(Status::INVALID_PARAMETER)
    }
}
