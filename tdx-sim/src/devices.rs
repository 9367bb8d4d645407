//! The VMM's devices behind TDG.VP.VMCALL<Instruction.IO> and <#VE.RequestMMIO>: the emulated
//! machine's own devices, reached with real port and memory accesses (COM1, the PICs, PCI
//! configuration, the ACPI PM timer, the IOAPIC, the PCIe ECAM), and the few that tdx-sim
//! answers itself because the TD must see something other than the outer machine.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};
use tdx_boot::model::{MmioDevice, PortDevice};
use tdx_sim::cmos::{CMOS_DATA_PORT, CMOS_INDEX_PORT, CmosBackend, TdCmos};
use tdx_sim::fw_cfg::{
    BadGpa, FW_CFG_PORT_DATA, FW_CFG_PORT_SELECTOR, FwCfgBackend, TdFwCfg, TdMemory,
};
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

/// The machine's fw_cfg through its IO interface, for the TD's front.
pub struct MachineFwCfg;

impl FwCfgBackend for MachineFwCfg {
    fn select(&mut self, key: u16) {
        PassthroughPorts.write(FW_CFG_PORT_SELECTOR, 2, u32::from(key));
    }

    fn read(&mut self, buf: &mut [u8]) {
        for byte in buf {
            *byte = PassthroughPorts.read(FW_CFG_PORT_DATA, 1) as u8;
        }
    }
}

/// The TD offers no DMA interface, so the front never touches TD memory.
struct NoDmaMemory;

impl TdMemory for NoDmaMemory {
    fn read(&mut self, gpa: u64, _buf: &mut [u8]) -> Result<(), BadGpa> {
        Err(BadGpa(gpa))
    }

    fn write(&mut self, gpa: u64, _data: &[u8]) -> Result<(), BadGpa> {
        Err(BadGpa(gpa))
    }
}

/// fw_cfg as the TD sees it (ports 0x510-0x51B): [`TdFwCfg`] over the machine's device, without
/// DMA (the machine's device would write host memory at the TD's guest-physical addresses).
pub struct FwCfgPorts(pub TdFwCfg<'static>);

impl PortDevice for FwCfgPorts {
    fn read(&mut self, offset: u16, size: u8) -> u32 {
        self.0
            .io_read(FW_CFG_PORT_SELECTOR + offset, size, &mut MachineFwCfg)
            .unwrap_or(0)
    }

    fn write(&mut self, offset: u16, size: u8, value: u32) {
        let _ = self.0.io_write(
            FW_CFG_PORT_SELECTOR + offset,
            size,
            value,
            &mut MachineFwCfg,
            &mut NoDmaMemory,
        );
    }
}

/// The machine's CMOS, for the TD's front.
struct MachineCmos;

impl CmosBackend for MachineCmos {
    fn read(&mut self, index: u8) -> u8 {
        PassthroughPorts.write(CMOS_INDEX_PORT, 1, u32::from(index));
        PassthroughPorts.read(CMOS_DATA_PORT, 1) as u8
    }

    fn write(&mut self, index: u8, value: u8) {
        PassthroughPorts.write(CMOS_INDEX_PORT, 1, u32::from(index));
        PassthroughPorts.write(CMOS_DATA_PORT, 1, u32::from(value));
    }
}

/// The RTC/CMOS as the TD sees it (ports 0x70-0x71): its RAM-size registers describe the TD.
pub struct CmosPorts(pub TdCmos);

impl PortDevice for CmosPorts {
    fn read(&mut self, offset: u16, _size: u8) -> u32 {
        u32::from(self.0.read_port(CMOS_INDEX_PORT + offset, &mut MachineCmos))
    }

    fn write(&mut self, offset: u16, _size: u8, value: u32) {
        self.0
            .write_port(CMOS_INDEX_PORT + offset, value as u8, &mut MachineCmos);
    }
}

/// COM1 as the TD writes it: passed through to the machine's UART, and the kernel's final line
/// (`mini-kernel: checks: P passed, F failed ...`) read on the way, for tdx-sim's summary.
#[derive(Clone, Default)]
pub struct SerialTap(Arc<spin::Mutex<TapState>>);

#[derive(Default)]
struct TapState {
    line: alloc::vec::Vec<u8>,
    checks: Option<(u32, u32)>,
}

/// The final line's prefix.
const CHECKS_LINE: &[u8] = b"mini-kernel: checks: ";
/// COM1's first port.
pub const COM1: u16 = 0x3f8;

/// "P passed, F failed" at the start of `rest`.
fn parse_checks(rest: &[u8]) -> Option<(u32, u32)> {
    let text = core::str::from_utf8(rest).ok()?;
    let (passed, rest) = text.split_once(" passed, ")?;
    let (failed, _) = rest.split_once(" failed")?;
    Some((passed.trim().parse().ok()?, failed.trim().parse().ok()?))
}

impl SerialTap {
    /// The kernel's "passed, failed" counts, once its final line went by.
    pub fn checks(&self) -> Option<(u32, u32)> {
        self.0.lock().checks
    }

    /// Takes one byte the TD sent to the data register.
    fn byte(&self, byte: u8) {
        let mut tap = self.0.lock();
        if byte == b'\n' {
            if let Some(rest) = tap.line.strip_prefix(CHECKS_LINE) {
                tap.checks = parse_checks(rest).or(tap.checks);
            }
            tap.line.clear();
        } else if tap.line.len() < 512 {
            tap.line.push(byte);
        }
    }
}

impl PortDevice for SerialTap {
    fn read(&mut self, offset: u16, size: u8) -> u32 {
        PassthroughPorts.read(COM1 + offset, size)
    }

    fn write(&mut self, offset: u16, size: u8, value: u32) {
        // The data register (offset 0) unless DLAB is set; a divisor write is not text, and the
        // line parser ignores what does not parse.
        if offset == 0 {
            self.byte(value as u8);
        }
        PassthroughPorts.write(COM1 + offset, size, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_line_is_read_and_nothing_else_counts() {
        let tap = SerialTap::default();
        for byte in
            b"mini-kernel: checks: 3 passed\nmini-kernel: checks: 16 passed, 0 failed (x: pass)\r\n"
        {
            tap.byte(*byte);
        }
        assert_eq!(tap.checks(), Some((16, 0)));
        for byte in b"[PASS] mini-kernel: checks: 1 passed, 2 failed\n" {
            tap.byte(*byte);
        }
        assert_eq!(
            tap.checks(),
            Some((16, 0)),
            "only a line that starts with it"
        );
        assert_eq!(parse_checks(b"15 passed, 1 failed (...)"), Some((15, 1)));
        assert_eq!(parse_checks(b"many passed, 1 failed"), None);
    }
}

/// The machine's IOAPIC, at its physical address.
pub struct MachineIoApic;

impl tdx_sim::td_ioapic::IoApicWindow for MachineIoApic {
    fn read(&mut self, index: u8) -> u32 {
        let base = tdx_sim::td_ioapic::IOAPIC_BASE;
        // SAFETY: the outer firmware identity-maps the IOAPIC page; IOREGSEL and IOWIN are
        // aligned 32-bit registers, and only the single-threaded host uses them (the TD's own
        // accesses come here too, through `TdIoApicDevice`).
        unsafe {
            ((base + tdx_sim::td_ioapic::IOREGSEL) as *mut u32).write_volatile(u32::from(index));
            ((base + tdx_sim::td_ioapic::IOWIN) as *const u32).read_volatile()
        }
    }

    fn write(&mut self, index: u8, value: u32) {
        let base = tdx_sim::td_ioapic::IOAPIC_BASE;
        // SAFETY: as for reads.
        unsafe {
            ((base + tdx_sim::td_ioapic::IOREGSEL) as *mut u32).write_volatile(u32::from(index));
            ((base + tdx_sim::td_ioapic::IOWIN) as *mut u32).write_volatile(value);
        }
    }
}

/// The TD's IOAPIC page (#VE.RequestMMIO), shared with the scheduler that routes its pins.
#[derive(Clone)]
pub struct TdIoApicDevice(pub Arc<spin::Mutex<tdx_sim::td_ioapic::TdIoApic>>);

impl MmioDevice for TdIoApicDevice {
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        self.0.lock().mmio_read(offset, size)
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        self.0
            .lock()
            .mmio_write(&mut MachineIoApic, offset, size, value);
    }
}
