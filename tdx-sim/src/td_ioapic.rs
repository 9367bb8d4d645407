//! The TD's IOAPIC: the register window a TD reaches with #VE.RequestMMIO, in front of the
//! machine's IOAPIC, so that the machine's device interrupts reach TD vCPUs.
//!
//! The TD programs redirection entries for its own vectors and its own x2APIC IDs; the machine's
//! IOAPIC must instead deliver to the host CPU that runs tdx-sim. So the TD's entries are kept
//! here, as the TD wrote them (what it reads back), and each pin is programmed in the machine
//! with a host vector of its own ([`TdIoApic::host_vector`]), fixed delivery, physical mode,
//! the host CPU as destination, and the TD's polarity, trigger mode and mask. When the host
//! takes a pin's vector, [`TdIoApic::interrupt`] says which TD vector goes to which TD APICs.
//!
//! # Rules (QEMU `hw/intc/ioapic.c`, `ioapic_mem_read`/`ioapic_mem_write`: the device a TD
//! meets on real TDX, whose IOAPIC QEMU emulates; the Intel 82093AA datasheet for the fields)
//! - Only the offset's low byte decodes. IOREGSEL (+0x00) selects a register at any access
//!   size; IOWIN (+0x10) reads or writes it with 32-bit accesses only (others read 0 and are
//!   ignored); EOI (+0x40) retires a level-triggered vector, with a 32-bit write, on a version
//!   0x20 IOAPIC. Other offsets read as 0 and ignore writes.
//! - Register 0 is the ID (bits 27:24); 1 the version (read-only: version, highest entry); 2
//!   arbitration (read-only, reads as the ID); 0x10 + 2n and 0x11 + 2n the low and high halves
//!   of entry n. Anything else reads as 0.
//! - An entry: vector (7:0), delivery mode (10:8), logical destination mode (11), delivery
//!   status (12, read-only), active low (13), remote IRR (14, read-only), level trigger (15),
//!   mask (16), destination (63:56). Every other bit keeps what was written. Reset: masked,
//!   everything else 0.
//! - A level-triggered interrupt sets remote IRR until the EOI for its vector; the line is not
//!   delivered again meanwhile. tdx-sim keeps that by masking the pin in the machine while the
//!   TD's remote IRR is set (the machine's own remote IRR is cleared at once by the host's EOI),
//!   which is how a VMM handles a passed-through level interrupt.
//! - A TD takes fixed and lowest-priority interrupts only: SMI, NMI, INIT and ExtINT entries
//!   stay masked in the machine (TDX injects neither INIT nor ExtINT, and there is no PIC).

use crate::x2apic::{DeliveryMode, Destination, IpiRequest};

/// The IOAPIC's address in a PC.
pub const IOAPIC_BASE: u64 = 0xfec0_0000;
/// The index register.
pub const IOREGSEL: u64 = 0x00;
/// The data window.
pub const IOWIN: u64 = 0x10;
/// The EOI register (version 0x20).
pub const IOAPIC_EOI: u64 = 0x40;

const REG_ID: u8 = 0x00;
const REG_VERSION: u8 = 0x01;
const REG_ARBITRATION: u8 = 0x02;
const REG_REDIRECTION: u8 = 0x10;
/// The most entries the 8-bit IOREGSEL can reach.
pub const MAX_PINS: usize = 120;

const VECTOR: u64 = 0xff;
const DELIVERY_MODE: u64 = 0b111 << 8;
const LOGICAL: u64 = 1 << 11;
const DELIVERY_STATUS: u64 = 1 << 12;
const ACTIVE_LOW: u64 = 1 << 13;
const REMOTE_IRR: u64 = 1 << 14;
const LEVEL: u64 = 1 << 15;
const MASKED: u64 = 1 << 16;
const DESTINATION_SHIFT: u32 = 56;
/// Bits a write cannot change.
const READ_ONLY: u64 = DELIVERY_STATUS | REMOTE_IRR;
/// The version whose EOI register exists.
const VERSION_WITH_EOI: u32 = 0x20;

/// The machine's IOAPIC, register by register (IOREGSEL then IOWIN).
pub trait IoApicWindow {
    /// Reads register `index`.
    fn read(&mut self, index: u8) -> u32;
    /// Writes register `index`.
    fn write(&mut self, index: u8, value: u32);
}

/// Why a TD's IOAPIC cannot be put in front of the machine's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoApicError {
    /// The version register reads as all ones or zeros: no IOAPIC answers.
    Missing(u32),
    /// The host vectors for every pin do not fit below `0xf0` (tdx-sim's own vectors).
    NoHostVectors {
        /// The first host vector asked for.
        base: u8,
        /// The machine's pins.
        pins: usize,
    },
}

/// The TD's view of the IOAPIC and the routing of its pins.
#[derive(Clone, Debug)]
pub struct TdIoApic {
    selected: u8,
    id: u32,
    version: u32,
    pins: usize,
    entries: [u64; MAX_PINS],
    host_apic_id: u8,
    host_vector_base: u8,
}

/// Host vectors stop below this one (the host timer's and the spurious vector's range).
const HOST_VECTOR_LIMIT: usize = 0xf0;

impl TdIoApic {
    /// The TD's IOAPIC in front of `machine`, its pins delivered to host APIC `host_apic_id` on
    /// host vectors `host_vector_base + pin`, of which the host handles `host_vectors`: the TD
    /// sees as many pins as the machine has, the 8-bit IOREGSEL reaches and the host handles.
    /// Masks every pin of the machine (the TD's reset state, and for good the pins beyond).
    pub fn new(
        machine: &mut impl IoApicWindow,
        host_apic_id: u8,
        host_vector_base: u8,
        host_vectors: usize,
    ) -> Result<Self, IoApicError> {
        let version = machine.read(REG_VERSION);
        if version == 0 || version == u32::MAX {
            return Err(IoApicError::Missing(version));
        }
        let machine_pins = ((version >> 16) & 0xff) as usize + 1;
        let pins = machine_pins.min(MAX_PINS).min(host_vectors);
        if pins == 0
            || host_vector_base < 0x20
            || usize::from(host_vector_base) + pins > HOST_VECTOR_LIMIT
        {
            return Err(IoApicError::NoHostVectors {
                base: host_vector_base,
                pins,
            });
        }
        let ioapic = Self {
            selected: 0,
            id: machine.read(REG_ID) & 0x0f00_0000,
            version: (version & !0x00ff_0000) | ((pins as u32 - 1) << 16),
            pins,
            entries: [MASKED; MAX_PINS],
            host_apic_id,
            host_vector_base,
        };
        for pin in 0..pins {
            ioapic.program(machine, pin);
        }
        // Pins the TD cannot see stay masked (only the low half: its mask bit).
        for pin in pins..machine_pins.min(MAX_PINS) {
            machine.write(REG_REDIRECTION + 2 * pin as u8, MASKED as u32);
        }
        Ok(ioapic)
    }

    /// The machine's pins the TD sees.
    pub fn pins(&self) -> usize {
        self.pins
    }

    /// The host vector of `pin`.
    pub fn host_vector(&self, pin: usize) -> Option<u8> {
        (pin < self.pins).then(|| self.host_vector_base + pin as u8)
    }

    /// The pin whose host vector is `vector`.
    pub fn pin_of_host_vector(&self, vector: u8) -> Option<usize> {
        let pin = usize::from(vector.checked_sub(self.host_vector_base)?);
        (pin < self.pins).then_some(pin)
    }

    /// The TD's entry of `pin`, as it reads it.
    pub fn entry(&self, pin: usize) -> Option<u64> {
        self.entries.get(..self.pins)?.get(pin).copied()
    }

    /// Whether some pin can still deliver to the TD (unmasked, a mode a TD takes): a TD whose
    /// vCPUs all halt may then still be woken by a device.
    pub fn may_deliver(&self) -> bool {
        self.entries[..self.pins]
            .iter()
            .any(|&td| td & MASKED == 0 && matches!((td & DELIVERY_MODE) >> 8, 0 | 1))
    }

    /// A TD's MMIO read of `size` bytes at `offset` in the IOAPIC page.
    pub fn mmio_read(&mut self, offset: u64, size: u8) -> u64 {
        match (offset & 0xff, size) {
            (IOREGSEL, _) => u64::from(self.selected),
            (IOWIN, 4) => u64::from(self.register(self.selected)),
            _ => 0,
        }
    }

    /// A TD's MMIO write.
    pub fn mmio_write(
        &mut self,
        machine: &mut impl IoApicWindow,
        offset: u64,
        size: u8,
        value: u64,
    ) {
        match (offset & 0xff, size) {
            (IOREGSEL, _) => self.selected = value as u8,
            (IOWIN, 4) => self.set_register(machine, self.selected, value as u32),
            (IOAPIC_EOI, 4) if self.version & 0xff == VERSION_WITH_EOI => {
                self.end_of_interrupt(machine, value as u8)
            }
            _ => {}
        }
    }

    fn register(&self, index: u8) -> u32 {
        match index {
            REG_ID | REG_ARBITRATION => self.id,
            REG_VERSION => self.version,
            _ => match self.entry_half(index) {
                Some((pin, true)) => (self.entries[pin] >> 32) as u32,
                Some((pin, false)) => self.entries[pin] as u32,
                None => 0,
            },
        }
    }

    fn set_register(&mut self, machine: &mut impl IoApicWindow, index: u8, value: u32) {
        if index == REG_ID {
            self.id = value & 0x0f00_0000;
            return;
        }
        let Some((pin, high)) = self.entry_half(index) else {
            return;
        };
        let old = self.entries[pin];
        let written = if high {
            (old & 0xffff_ffff) | u64::from(value) << 32
        } else {
            (old & !0xffff_ffff) | u64::from(value)
        };
        self.entries[pin] = (written & !READ_ONLY) | (old & READ_ONLY);
        // An edge-triggered entry has no remote IRR (QEMU clears it on the switch).
        if self.entries[pin] & LEVEL == 0 {
            self.entries[pin] &= !REMOTE_IRR;
        }
        self.program(machine, pin);
    }

    /// `(pin, high half)` of redirection register `index`.
    fn entry_half(&self, index: u8) -> Option<(usize, bool)> {
        let offset = usize::from(index.checked_sub(REG_REDIRECTION)?);
        let pin = offset / 2;
        (pin < self.pins).then_some((pin, offset % 2 == 1))
    }

    /// Writes `pin`'s machine entry from the TD's: masked unless the TD unmasked it, its mode
    /// reaches a TD and no level-triggered interrupt of it awaits the TD's EOI.
    fn program(&self, machine: &mut impl IoApicWindow, pin: usize) {
        let td = self.entries[pin];
        let deliverable = matches!((td & DELIVERY_MODE) >> 8, 0 | 1);
        let awaiting_eoi = td & (LEVEL | REMOTE_IRR) == LEVEL | REMOTE_IRR;
        let masked = td & MASKED != 0 || !deliverable || awaiting_eoi;
        let entry = u64::from(self.host_vector_base + pin as u8)
            | td & (ACTIVE_LOW | LEVEL)
            | if masked { MASKED } else { 0 }
            | u64::from(self.host_apic_id) << DESTINATION_SHIFT;
        let index = REG_REDIRECTION + 2 * pin as u8;
        // The destination first, then the low half, which may unmask.
        machine.write(index + 1, (entry >> 32) as u32);
        machine.write(index, entry as u32);
    }

    /// The host took `pin`'s vector: the interrupt message for the TD, if the TD's entry lets
    /// one through. A level-triggered one sets remote IRR and masks the pin until the TD's EOI.
    pub fn interrupt(&mut self, machine: &mut impl IoApicWindow, pin: usize) -> Option<IpiRequest> {
        let td = self.entry(pin)?;
        let mode = match (td & DELIVERY_MODE) >> 8 {
            0 => DeliveryMode::Fixed,
            1 => DeliveryMode::LowestPriority,
            _ => return None,
        };
        // Masked by the TD after the machine delivered, or a level interrupt already pending.
        if td & MASKED != 0 || td & (LEVEL | REMOTE_IRR) == LEVEL | REMOTE_IRR {
            return None;
        }
        let level_triggered = td & LEVEL != 0;
        if level_triggered {
            self.entries[pin] |= REMOTE_IRR;
            self.program(machine, pin);
        }
        let destination = (td >> DESTINATION_SHIFT) as u32;
        Some(IpiRequest {
            source: u32::MAX,
            vector: (td & VECTOR) as u8,
            mode,
            // Without interrupt remapping the IOAPIC's 8-bit destination is an x2APIC ID, or
            // a cluster-0 member bitmap in logical mode (0xFF: everyone).
            destination: match (td & LOGICAL != 0, destination) {
                (false, 0xff) => Destination::Physical(u32::MAX),
                (false, id) => Destination::Physical(id),
                (true, 0xff) => Destination::Logical(u32::MAX),
                (true, members) => Destination::Logical(members),
            },
            level_triggered,
        })
    }

    /// An EOI of `vector` by a TD APIC (a level-triggered vector retired) or at the EOI
    /// register: clears remote IRR of the level-triggered entries with that vector and lets
    /// their pins deliver again.
    pub fn end_of_interrupt(&mut self, machine: &mut impl IoApicWindow, vector: u8) {
        for pin in 0..self.pins {
            let td = self.entries[pin];
            if td & VECTOR == u64::from(vector) && td & REMOTE_IRR != 0 {
                self.entries[pin] &= !REMOTE_IRR;
                self.program(machine, pin);
            }
        }
    }
}

#[cfg(test)]
mod tests;
