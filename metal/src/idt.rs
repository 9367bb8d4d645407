//! The interrupt descriptor table: 256 raw 64-bit interrupt gates, each naming an entry stub and
//! an IST slot.
//!
//! Written as raw gate descriptors rather than with `x86_64`'s typed table, whose handlers need
//! the unstable `x86-interrupt` ABI: the images' gates point at naked stubs made with
//! `tdx_boot::entry_stub!`, whose three forms (with or without the vector, with an error code)
//! cover every vector.

use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, Segment};
use x86_64::structures::DescriptorTablePointer;

/// One 64-bit IDT gate descriptor.
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attributes: u8,
    offset_middle: u16,
    offset_high: u32,
    reserved: u32,
}

/// Present, DPL 0, 64-bit interrupt gate (interrupts stay disabled in the handler).
const INTERRUPT_GATE: u8 = 0x8e;

impl Gate {
    fn new(handler: u64, selector: u16, ist: u8) -> Self {
        Self {
            offset_low: handler as u16,
            selector,
            ist,
            attributes: INTERRUPT_GATE,
            offset_middle: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

/// Where a vector enters: its stub's address and its IST slot (1..=7, or 0 for none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The entry stub's address.
    pub stub: usize,
    /// The TSS's IST slot the CPU switches to, 0 to stay on the current stack.
    pub ist: u8,
}

/// A table of 256 interrupt gates.
#[repr(C, align(16))]
pub struct Idt([Gate; 256]);

impl Idt {
    /// The table whose gate `v` is `entry(v)`, with the current code selector (build it after
    /// the GDT is loaded). An IST slot above 7 is taken as 0.
    pub fn new(mut entry: impl FnMut(u8) -> Entry) -> Self {
        let selector = CS::get_reg().0;
        let mut gates = [Gate::default(); 256];
        for (vector, gate) in (0..=255u8).zip(gates.iter_mut()) {
            let Entry { stub, ist } = entry(vector);
            let ist = if ist <= 7 { ist } else { 0 };
            *gate = Gate::new(stub as u64, selector, ist);
        }
        Self(gates)
    }

    /// Loads the table on this CPU.
    ///
    /// # Safety
    ///
    /// Every gate's stub is an interrupt entry point fit for its vector: one that takes the
    /// error code the CPU pushes for that vector (and only then), and returns with `iretq` or
    /// never. Its IST slots exist in the loaded TSS (or are 0).
    pub unsafe fn load(&'static self) {
        let pointer = DescriptorTablePointer {
            limit: (core::mem::size_of::<Self>() - 1) as u16,
            base: VirtAddr::from_ptr(self),
        };
        // SAFETY: the table lives for ever and its gates are valid per the caller's contract.
        unsafe { x86_64::instructions::tables::lidt(&pointer) };
    }

    /// Whether this CPU's IDTR points at this table.
    pub fn is_loaded(&self) -> bool {
        let idtr = x86_64::instructions::tables::sidt();
        idtr.base.as_u64() == self as *const Self as u64
            && usize::from(idtr.limit) + 1 == core::mem::size_of::<Self>()
    }

    /// Whether every gate is a present interrupt gate that switches to an IST stack.
    pub fn every_gate_has_an_ist_stack(&self) -> bool {
        self.0
            .iter()
            .all(|gate| gate.attributes == INTERRUPT_GATE && gate.ist != 0)
    }

    /// The stub and IST slot of `vector`'s gate.
    pub fn entry(&self, vector: u8) -> Entry {
        let gate = &self.0[usize::from(vector)];
        let stub = u64::from(gate.offset_low)
            | u64::from(gate.offset_middle) << 16
            | u64::from(gate.offset_high) << 32;
        Entry {
            stub: stub as usize,
            ist: gate.ist,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_encode_the_stub_address_and_slot_as_the_sdm_lays_them_out() {
        let idt = Idt::new(|v| Entry {
            stub: 0xffff_8000_1234_5000 + usize::from(v) * 0x10,
            ist: v % 9,
        });
        assert_eq!(
            idt.entry(3),
            Entry {
                stub: 0xffff_8000_1234_5030,
                ist: 3
            }
        );
        assert_eq!(idt.entry(8).ist, 0, "slot 8 does not exist: no IST");
        // SAFETY: a gate is 16 bytes of plain integers (repr(C), no padding).
        let raw: [u8; 16] = unsafe { core::mem::transmute(idt.0[1]) };
        // Offset 15:0, selector, IST, type 0x8E, offset 31:16, offset 63:32, reserved.
        assert_eq!(&raw[0..2], &0x5010u16.to_le_bytes());
        assert_eq!(raw[4], 1);
        assert_eq!(raw[5], 0x8e);
        assert_eq!(&raw[6..8], &0x1234u16.to_le_bytes());
        assert_eq!(&raw[8..12], &0xffff_8000u32.to_le_bytes());
        assert_eq!(&raw[12..16], &[0; 4]);
        assert!(!idt.every_gate_has_an_ist_stack(), "vector 0 has slot 0");
        assert!(!idt.is_loaded());
    }
}
