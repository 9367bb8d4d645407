//! The VMM's devices behind TDG.VP.VMCALL<Instruction.IO> and <#VE.RequestMMIO>: the emulated
//! machine's own devices, reached with real port and memory accesses (COM1, the PICs, PCI
//! configuration, the ACPI PM timer, the IOAPIC, the PCIe ECAM), and the few that tdx-sim
//! answers itself because the TD must see something other than the outer machine.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};
use tdx_boot::model::{MmioDevice, PortDevice};
use x86_64::instructions::port::Port;

/// Every port, passed through to the machine.
pub struct PassthroughPorts;

impl PortDevice for PassthroughPorts {
    fn read(&mut self, port: u16, size: u8) -> u32 {
        // SAFETY: tdx-sim owns the machine and the TD is its only user; a port read has no
        // effect on tdx-sim's own memory.
        unsafe {
            match size {
                1 => u32::from(Port::<u8>::new(port).read()),
                2 => u32::from(Port::<u16>::new(port).read()),
                _ => Port::<u32>::new(port).read(),
            }
        }
    }

    fn write(&mut self, port: u16, size: u8, value: u32) {
        // SAFETY: as for reads. Ports that could reach tdx-sim's memory (fw_cfg DMA) are
        // claimed by other devices before this one is asked.
        unsafe {
            match size {
                1 => Port::<u8>::new(port).write(value as u8),
                2 => Port::<u16>::new(port).write(value as u16),
                _ => Port::<u32>::new(port).write(value),
            }
        }
    }
}

/// MMIO at its physical address in the machine (the GPA without the shared bit).
pub struct PassthroughMmio {
    /// The machine physical address of the device's offset 0.
    pub base: u64,
}

impl MmioDevice for PassthroughMmio {
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        let address = self.base + offset;
        // SAFETY: the outer firmware identity-maps the MMIO space below 4 GiB; the model has
        // checked that the access does not cross a page and that the GPA is MMIO, not RAM.
        unsafe {
            match size {
                1 => u64::from((address as *const u8).read_volatile()),
                2 => u64::from((address as *const u16).read_volatile()),
                4 => u64::from((address as *const u32).read_volatile()),
                _ => (address as *const u64).read_volatile(),
            }
        }
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        let address = self.base + offset;
        // SAFETY: as for reads.
        unsafe {
            match size {
                1 => (address as *mut u8).write_volatile(value as u8),
                2 => (address as *mut u16).write_volatile(value as u16),
                4 => (address as *mut u32).write_volatile(value as u32),
                _ => (address as *mut u64).write_volatile(value),
            }
        }
    }
}

/// QEMU's `isa-debug-exit` as the TD sees it: tdx-sim takes the value (to print its summary
/// before QEMU goes) instead of letting the write end QEMU at once.
#[derive(Clone, Default)]
pub struct DebugExit(Arc<AtomicU64>);

/// No value written yet.
const NONE: u64 = u64::MAX;

impl DebugExit {
    /// A device that has seen no write.
    pub fn new() -> Self {
        Self(Arc::new(AtomicU64::new(NONE)))
    }

    /// The value written since the last call, if any.
    pub fn take(&self) -> Option<u32> {
        match self.0.swap(NONE, Ordering::Relaxed) {
            NONE => None,
            value => Some(value as u32),
        }
    }
}

impl PortDevice for DebugExit {
    fn read(&mut self, _offset: u16, _size: u8) -> u32 {
        u32::MAX
    }

    fn write(&mut self, _offset: u16, _size: u8, value: u32) {
        self.0.store(u64::from(value), Ordering::Relaxed);
    }
}

/// fw_cfg as the TD sees it, in front of the machine's (ports 0x510-0x51B).
///
/// - The DMA interface is hidden (its ports read as zero, FW_CFG_ID says "IO only"): the
///   machine's device would write to host memory at the TD's guest-physical addresses.
/// - The kernel items are the TD's kernel (the fw_cfg file `cargo xtask` passes for it), not
///   the image the outer firmware was given (tdx-sim itself): KERNEL_SIZE answers its size,
///   KERNEL_DATA streams the file, and the setup, initrd and command-line sizes are zero.
pub struct FwCfgFront {
    kernel: crate::host_fw_cfg::File,
    /// The TD's selected item, and bytes of a synthesized item read so far.
    selected: u16,
    offset: usize,
}

const FW_CFG_ID: u16 = 0x01;
const FW_CFG_KERNEL_SIZE: u16 = 0x08;
const FW_CFG_INITRD_SIZE: u16 = 0x0b;
const FW_CFG_KERNEL_DATA: u16 = 0x11;
const FW_CFG_CMDLINE_SIZE: u16 = 0x14;
const FW_CFG_SETUP_SIZE: u16 = 0x17;
/// FW_CFG_ID's "traditional interface" bit, without the DMA bit.
const FW_CFG_ID_IO_ONLY: u32 = 1;

impl FwCfgFront {
    /// A front that serves `kernel` as the TD's kernel.
    pub fn new(kernel: crate::host_fw_cfg::File) -> Self {
        Self {
            kernel,
            selected: 0,
            offset: 0,
        }
    }

    /// The value of an item tdx-sim answers itself, as little-endian bytes.
    fn synthesized(&self) -> Option<u32> {
        match self.selected {
            FW_CFG_ID => Some(FW_CFG_ID_IO_ONLY),
            FW_CFG_KERNEL_SIZE => Some(self.kernel.size),
            FW_CFG_INITRD_SIZE | FW_CFG_CMDLINE_SIZE | FW_CFG_SETUP_SIZE => Some(0),
            _ => None,
        }
    }
}

impl PortDevice for FwCfgFront {
    fn read(&mut self, offset: u16, size: u8) -> u32 {
        match offset {
            1 => match self.synthesized() {
                Some(value) => {
                    let byte = value.to_le_bytes().get(self.offset).copied().unwrap_or(0);
                    self.offset += 1;
                    u32::from(byte)
                }
                None => PassthroughPorts.read(0x511, size),
            },
            // The selector port, and the DMA address ports (no DMA signature).
            _ => 0,
        }
    }

    fn write(&mut self, offset: u16, size: u8, value: u32) {
        if offset != 0 {
            return; // DMA address writes: ignored, there is no DMA
        }
        self.selected = value as u16;
        self.offset = 0;
        let real = match self.selected {
            FW_CFG_KERNEL_DATA => self.kernel.select,
            other => other,
        };
        PassthroughPorts.write(0x510, size.max(2), u32::from(real));
    }
}
