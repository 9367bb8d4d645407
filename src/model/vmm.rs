//! The VMM behind TDG.VP.VMCALL: its tables (CPUID, MSRs), its devices (a 16550 UART at COM1,
//! port and MMIO devices) and the simple sub-functions.
//!
//! Argument checks follow what KVM does for a TD: IO sizes 1/2/4, MMIO sizes 1/2/4/8 on a
//! shared GPA without crossing a page, directions 0/1; everything else answers
//! INVALID_OPERAND. Unknown sub-functions answer
//! [`ModelConfig::vmcall_unsupported_status`](super::ModelConfig::vmcall_unsupported_status).

use super::vmcall::{R8, R9, R10, R11, R12, R13, R14, R15, RBX, RDI, RDX, RSI, VmmRegs, VmmReply};
use super::{PageState, TdxModule};
use crate::tdcall::vmcall::{CpuidResult, function};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use spin::Mutex;

/// A device on IO ports. `offset` is the port minus the device's first port; `size` is 1, 2
/// or 4 bytes.
pub trait PortDevice: Send {
    /// An IN: the value read (the model keeps the low `size` bytes).
    fn read(&mut self, offset: u16, size: u8) -> u32;
    /// An OUT of the low `size` bytes of `value`.
    fn write(&mut self, offset: u16, size: u8, value: u32);
}

/// A device in MMIO space. `offset` is the GPA minus the device's base; `size` is 1, 2, 4 or
/// 8 bytes.
pub trait MmioDevice: Send {
    /// A read: the value (the model keeps the low `size` bytes).
    fn read(&mut self, offset: u64, size: u8) -> u64;
    /// A write of the low `size` bytes of `value`.
    fn write(&mut self, offset: u64, size: u8, value: u64);
}

/// MSRs a VMM emulates with behaviour (an x2APIC, say) rather than a stored value: asked before
/// the table of [`TdxModule::set_msr`]. `vcpu` is the VCPU_INDEX that made the TDVMCALL.
pub trait MsrDevice: Send {
    /// Whether this device emulates MSR `index`.
    fn claims(&self, index: u32) -> bool;
    /// RDMSR: the value, or None for a #GP (the VMM answers INVALID_OPERAND).
    fn read(&mut self, vcpu: u32, index: u32) -> Option<u64>;
    /// WRMSR: false for a #GP.
    fn write(&mut self, vcpu: u32, index: u32, value: u64) -> bool;
}

/// A VMM's CPUID answers that depend on the vCPU asking (KVM reports each vCPU's own APIC ID
/// in leaves 1, 0xB and 0x1F): asked before the table of [`TdxModule::set_cpuid`].
pub trait CpuidSource: Send {
    /// The answer to TDVMCALL<Instruction.CPUID>(`leaf`, `subleaf`) from `vcpu`, or None to
    /// use the table.
    fn cpuid(&mut self, vcpu: u32, leaf: u32, subleaf: u32) -> Option<CpuidResult>;
}

/// A plain register file: reads return what was last written (little endian, any size at
/// any offset inside it; outside reads as zero, writes are dropped). Clones share the
/// registers, so a test keeps one to inspect what the guest wrote.
#[derive(Clone, Debug)]
pub struct RegisterFile {
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl RegisterFile {
    /// `len` bytes of zeroed registers.
    pub fn new(len: usize) -> Self {
        Self {
            bytes: Arc::new(Mutex::new(vec![0; len])),
        }
    }

    /// Reads `size` (at most 8) bytes at `offset`, little endian.
    pub fn get(&self, offset: u64, size: u8) -> u64 {
        let bytes = self.bytes.lock();
        let mut value = 0u64;
        for i in (0..u64::from(size.min(8))).rev() {
            let byte = usize::try_from(offset.saturating_add(i))
                .ok()
                .and_then(|at| bytes.get(at))
                .copied()
                .unwrap_or(0);
            value = value << 8 | u64::from(byte);
        }
        value
    }

    /// Writes the low `size` (at most 8) bytes of `value` at `offset`, little endian.
    pub fn set(&self, offset: u64, size: u8, value: u64) {
        let mut bytes = self.bytes.lock();
        for i in 0..u64::from(size.min(8)) {
            if let Some(byte) = usize::try_from(offset.saturating_add(i))
                .ok()
                .and_then(|at| bytes.get_mut(at))
            {
                *byte = (value >> (8 * i)) as u8;
            }
        }
    }
}

impl MmioDevice for RegisterFile {
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        self.get(offset, size)
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        self.set(offset, size, value);
    }
}

impl PortDevice for RegisterFile {
    fn read(&mut self, offset: u16, size: u8) -> u32 {
        self.get(offset.into(), size) as u32
    }

    fn write(&mut self, offset: u16, size: u8, value: u32) {
        self.set(offset.into(), size, value.into());
    }
}

/// One Instruction.HLT the VMM saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Halt {
    /// The halting vCPU.
    pub vcpu: u32,
    /// R12 as the VMM saw it: the guest said interrupts were blocked.
    pub interrupts_blocked: bool,
    /// The TDCALL was made with STI right before it (`safe_halt`).
    pub sti: bool,
}

/// COM1's base port.
pub(crate) const COM1: u16 = 0x3f8;
/// Line status: transmit holding register empty and transmitter empty.
const LSR_IDLE: u8 = 0x60;

/// A 16550 UART that captures what is transmitted and is always ready to transmit.
#[derive(Debug, Default)]
pub(crate) struct Uart {
    pub(crate) output: Vec<u8>,
    /// Registers 1..=7 and the divisor latch, as last written.
    regs: [u8; 8],
    divisor: [u8; 2],
}

impl Uart {
    const LCR_DLAB: u8 = 0x80;

    fn dlab(&self) -> bool {
        self.regs
            .get(3)
            .is_some_and(|lcr| lcr & Self::LCR_DLAB != 0)
    }

    fn read(&mut self, offset: u16) -> u8 {
        match offset {
            0 | 1 if self.dlab() => self.divisor.get(usize::from(offset)).copied().unwrap_or(0),
            // Receive buffer: nothing is ever received.
            0 => 0,
            5 => LSR_IDLE,
            // Interrupt identification: no interrupt pending.
            2 => 0x01,
            _ => self.regs.get(usize::from(offset)).copied().unwrap_or(0),
        }
    }

    fn write(&mut self, offset: u16, value: u8) {
        match offset {
            0 | 1 if self.dlab() => {
                if let Some(d) = self.divisor.get_mut(usize::from(offset)) {
                    *d = value;
                }
            }
            0 => self.output.push(value),
            // LSR and IIR/FCR reads are synthesized; writes to LSR are ignored.
            5 => {}
            _ => {
                if let Some(r) = self.regs.get_mut(usize::from(offset)) {
                    *r = value;
                }
            }
        }
    }
}

/// The VMM's state.
pub(crate) struct Vmm {
    pub(crate) cpuid: BTreeMap<(u32, u32), CpuidResult>,
    pub(crate) msrs: BTreeMap<u32, u64>,
    pub(crate) uart: Uart,
    pub(crate) ports: Vec<(u16, u16, Box<dyn PortDevice>)>,
    pub(crate) mmio: Vec<(u64, u64, Box<dyn MmioDevice>)>,
    pub(crate) msr_devices: Vec<Box<dyn MsrDevice>>,
    pub(crate) cpuid_source: Option<Box<dyn CpuidSource>>,
    pub(crate) halts: Vec<Halt>,
    pub(crate) fatal: Option<(u32, Vec<u8>)>,
    pub(crate) notify_vector: Option<u8>,
    pub(crate) wbinvd: u64,
    pub(crate) quote_deferred: bool,
    pub(crate) quote_service: bool,
    pub(crate) pending_quotes: Vec<(u64, u64)>,
    pub(crate) event_notifications: u64,
}

impl Vmm {
    pub(crate) fn new() -> Self {
        Self {
            cpuid: BTreeMap::new(),
            msrs: BTreeMap::new(),
            uart: Uart::default(),
            ports: Vec::new(),
            mmio: Vec::new(),
            msr_devices: Vec::new(),
            cpuid_source: None,
            halts: Vec::new(),
            fatal: None,
            notify_vector: None,
            wbinvd: 0,
            quote_deferred: false,
            quote_service: true,
            pending_quotes: Vec::new(),
            event_notifications: 0,
        }
    }
}

fn get(seen: &VmmRegs, reg: usize) -> u64 {
    seen.get(reg).copied().unwrap_or(0)
}

impl TdxModule {
    /// The VMM's handling of one TDG.VP.VMCALL, given the registers it sees.
    pub(super) fn vmm_handle(&self, vcpu: u32, seen: &VmmRegs, sti: bool) -> VmmReply {
        // R10 = 0 selects the GHCI-standard sub-functions; anything else is vendor-specific,
        // which this VMM does not implement.
        if get(seen, R10) != 0 {
            return VmmReply::invalid();
        }
        let function = get(seen, R11);
        self.stats.count_vmcall(function);
        if self
            .faults_armed
            .load(core::sync::atomic::Ordering::Relaxed)
            && let Some(status) = self.faults.lock().take_vmcall(function)
        {
            return VmmReply::status(status);
        }
        match function {
            function::CPUID => self.vmm_cpuid(vcpu, seen),
            function::HLT => {
                self.vmm.lock().halts.push(Halt {
                    vcpu,
                    interrupts_blocked: get(seen, R12) != 0,
                    sti,
                });
                VmmReply::success()
            }
            function::IO => self.vmm_io(seen),
            function::RDMSR => match u32::try_from(get(seen, R12)).ok().and_then(|index| {
                let mut vmm = self.vmm.lock();
                match vmm.msr_devices.iter_mut().find(|d| d.claims(index)) {
                    Some(device) => device.read(vcpu, index),
                    None => vmm.msrs.get(&index).copied(),
                }
            }) {
                Some(value) => VmmReply::success().with(R11, value),
                None => VmmReply::invalid(),
            },
            function::WRMSR => {
                let value = get(seen, R13);
                let written = u32::try_from(get(seen, R12)).is_ok_and(|index| {
                    let mut vmm = self.vmm.lock();
                    match vmm.msr_devices.iter_mut().find(|d| d.claims(index)) {
                        Some(device) => device.write(vcpu, index, value),
                        None => match vmm.msrs.get_mut(&index) {
                            Some(slot) => {
                                *slot = value;
                                true
                            }
                            None => false,
                        },
                    }
                });
                match written {
                    true => VmmReply::success(),
                    false => VmmReply::invalid(),
                }
            }
            function::REQUEST_MMIO => self.vmm_mmio(seen),
            function::WBINVD => {
                self.vmm.lock().wbinvd += 1;
                VmmReply::success()
            }
            function::GET_TD_VMCALL_INFO => match get(seen, R12) {
                // Leaf 0: the GHCI version is supported; R11..R14 are 0.
                0 => VmmReply::success()
                    .with(R11, 0)
                    .with(R12, 0)
                    .with(R13, 0)
                    .with(R14, 0),
                _ => VmmReply::invalid(),
            },
            function::MAP_GPA => self.vmm_map_gpa(vcpu, seen),
            function::GET_QUOTE => self.vmm_get_quote(seen),
            function::REPORT_FATAL_ERROR => {
                self.vmm_fatal(seen);
                VmmReply::success()
            }
            function::SETUP_EVENT_NOTIFY_INTERRUPT => match u8::try_from(get(seen, R12)) {
                Ok(vector) if vector >= 32 => {
                    self.vmm.lock().notify_vector = Some(vector);
                    VmmReply::success()
                }
                _ => VmmReply::invalid(),
            },
            _ => VmmReply::status(self.config.vmcall_unsupported_status),
        }
    }

    fn vmm_cpuid(&self, vcpu: u32, seen: &VmmRegs) -> VmmReply {
        let (Ok(leaf), Ok(subleaf)) =
            (u32::try_from(get(seen, R12)), u32::try_from(get(seen, R13)))
        else {
            return VmmReply::invalid();
        };
        let mut vmm = self.vmm.lock();
        let from_source = vmm
            .cpuid_source
            .as_mut()
            .and_then(|source| source.cpuid(vcpu, leaf, subleaf));
        let result = from_source
            .or_else(|| vmm.cpuid.get(&(leaf, subleaf)).copied())
            .unwrap_or_default();
        VmmReply::success()
            .with(R12, result.eax.into())
            .with(R13, result.ebx.into())
            .with(R14, result.ecx.into())
            .with(R15, result.edx.into())
    }

    fn vmm_io(&self, seen: &VmmRegs) -> VmmReply {
        let size = get(seen, R12);
        let direction = get(seen, R13);
        let (Ok(port), true, true) = (
            u16::try_from(get(seen, R14)),
            matches!(size, 1 | 2 | 4),
            direction <= 1,
        ) else {
            return VmmReply::invalid();
        };
        let size = size as u8;
        let mask = u32::MAX >> (32 - 8 * u32::from(size));
        let mut vmm = self.vmm.lock();
        let device = vmm.ports.iter_mut().rev().find(|(first, count, _)| {
            port >= *first && u32::from(port) < u32::from(*first) + u32::from(*count)
        });
        if direction == 0 {
            let value = match device {
                Some((first, _, device)) => device.read(port - *first, size),
                None if (COM1..COM1 + 8).contains(&port) => u32::from(vmm.uart.read(port - COM1)),
                None => u32::MAX,
            };
            VmmReply::success().with(R11, u64::from(value & mask))
        } else {
            let value = get(seen, R15) as u32 & mask;
            match device {
                Some((first, _, device)) => device.write(port - *first, size, value),
                None if (COM1..COM1 + 8).contains(&port) => {
                    vmm.uart.write(port - COM1, value as u8)
                }
                None => {}
            }
            VmmReply::success()
        }
    }

    fn vmm_mmio(&self, seen: &VmmRegs) -> VmmReply {
        let size = get(seen, R12);
        let direction = get(seen, R13);
        let gpa = get(seen, R14);
        let shared_bit = self.shared_bit();
        if !matches!(size, 1 | 2 | 4 | 8)
            || direction > 1
            || gpa & shared_bit == 0
            || !self.config.gpa_in_range(gpa)
        {
            return VmmReply::invalid();
        }
        let gpa = gpa & !shared_bit;
        let last = gpa + size - 1;
        if gpa >> 12 != last >> 12 || self.page_state(gpa) != PageState::Mmio {
            return VmmReply::invalid();
        }
        let size = size as u8;
        let mask = u64::MAX >> (64 - 8 * u32::from(size));
        let mut vmm = self.vmm.lock();
        let Some((base, _, device)) = vmm
            .mmio
            .iter_mut()
            .rev()
            .find(|(base, len, _)| gpa >= *base && last - *base < *len)
        else {
            return VmmReply::invalid();
        };
        let offset = gpa - *base;
        if direction == 0 {
            VmmReply::success().with(R11, device.read(offset, size) & mask)
        } else {
            device.write(offset, size, get(seen, R15) & mask);
            VmmReply::success()
        }
    }

    fn vmm_fatal(&self, seen: &VmmRegs) {
        let code = get(seen, R12) as u32;
        let mut message = Vec::with_capacity(64);
        for reg in [R14, R15, RBX, RDI, RSI, R8, R9, RDX] {
            message.extend_from_slice(&get(seen, reg).to_le_bytes());
        }
        if let Some(nul) = message.iter().position(|&b| b == 0) {
            message.truncate(nul);
        }
        self.vmm.lock().fatal = Some((code, message));
    }
}

impl TdxModule {
    /// Sets the VMM's answer to CPUID `leaf`/`subleaf` (Instruction.CPUID). Unset leaves read
    /// as zeros.
    pub fn set_cpuid(&self, leaf: u32, subleaf: u32, result: CpuidResult) {
        self.vmm.lock().cpuid.insert((leaf, subleaf), result);
    }
    /// Gives MSR `index` the value `value` in the VMM (RDMSR returns it, WRMSR may change it).
    /// MSRs never set are unknown: RDMSR and WRMSR of them fail with INVALID_OPERAND.
    pub fn set_msr(&self, index: u32, value: u64) {
        self.vmm.lock().msrs.insert(index, value);
    }
    /// The value of MSR `index` in the VMM, if it exists.
    pub fn msr(&self, index: u32) -> Option<u64> {
        self.vmm.lock().msrs.get(&index).copied()
    }
    /// Everything written to the COM1 UART's transmit register so far.
    pub fn uart_output(&self) -> Vec<u8> {
        self.vmm.lock().uart.output.clone()
    }
    /// Makes `source` answer `TDVMCALL<CPUID>` before the table (see [`CpuidSource`]).
    pub fn set_cpuid_source(&self, source: Box<dyn CpuidSource>) {
        self.vmm.lock().cpuid_source = Some(source);
    }
    /// Attaches an MSR device; it answers RDMSR/WRMSR of the MSRs it claims (the latest
    /// attached first), before the MSR table.
    pub fn add_msr_device(&self, device: Box<dyn MsrDevice>) {
        self.vmm.lock().msr_devices.insert(0, device);
    }
    /// Attaches `device` to ports `[first_port, first_port + count)`; it answers Instruction.IO
    /// there (before the built-in UART). Unclaimed ports read as all ones and ignore writes, as
    /// on a PC.
    pub fn add_port_device(&self, first_port: u16, count: u16, device: Box<dyn PortDevice>) {
        self.vmm.lock().ports.push((first_port, count, device));
    }
    /// Attaches `device` at `[gpa, gpa + len)` (no shared bit) and marks those pages `Mmio`:
    /// #VE.RequestMMIO at the shared alias of these GPAs reaches it.
    pub fn add_mmio_device(&self, gpa: u64, len: u64, device: Box<dyn MmioDevice>) {
        let gpa = gpa & !self.shared_bit();
        self.add_memory(gpa, gpa.saturating_add(len), PageState::Mmio);
        self.vmm.lock().mmio.push((gpa, len, device));
    }
    /// The halts the VMM saw (Instruction.HLT), oldest first.
    pub fn halts(&self) -> Vec<Halt> {
        self.vmm.lock().halts.clone()
    }
    /// The last ReportFatalError the VMM received: the error code (R12\[31:0\]) and the message
    /// bytes (up to the first NUL, at most 64). A real VMM stops the TD there; the model answers
    /// SUCCESS so the test goes on, and the wrapper reports that unexpected return.
    pub fn fatal_error(&self) -> Option<(u32, Vec<u8>)> {
        self.vmm.lock().fatal.clone()
    }
    /// The vector registered with SetupEventNotifyInterrupt.
    pub fn event_notify_vector(&self) -> Option<u8> {
        self.vmm.lock().notify_vector
    }
    /// How many Instruction.WBINVD requests the VMM received.
    pub fn wbinvd_count(&self) -> u64 {
        self.vmm.lock().wbinvd
    }
}

#[cfg(test)]
mod tests {
    use super::{LSR_IDLE, RegisterFile, Uart};

    #[test]
    fn register_file_reads_zero_outside_and_drops_writes_there() {
        let regs = RegisterFile::new(4);
        regs.set(2, 4, 0xaabb_ccdd);
        assert_eq!(regs.get(0, 4), 0xccdd_0000, "the part inside is written");
        assert_eq!(regs.get(2, 8), 0xccdd);
        assert_eq!(regs.get(u64::MAX, 8), 0);
        regs.set(u64::MAX, 8, u64::MAX);
        assert_eq!(regs.get(0, 16), 0xccdd_0000, "sizes above 8 read 8 bytes");
    }

    #[test]
    fn uart_registers() {
        let mut uart = Uart::default();
        assert_eq!(uart.read(5), LSR_IDLE);
        assert_eq!(uart.read(2) & 1, 1, "no interrupt pending");
        uart.write(7, 0x5a);
        assert_eq!(uart.read(7), 0x5a, "scratch register");
        uart.write(5, 0);
        assert_eq!(uart.read(5), LSR_IDLE, "LSR writes are ignored");
        uart.write(3, 0x80);
        uart.write(1, 0x12);
        assert_eq!(uart.read(1), 0x12, "divisor latch high");
        uart.write(3, 0x03);
        uart.write(1, 0x0f);
        assert_eq!(uart.read(1), 0x0f, "IER");
        assert_eq!(uart.read(0), 0, "nothing received");
        assert!(uart.output.is_empty());
        assert_eq!(uart.read(9), 0, "outside the UART");
    }
}
