//! The interrupt descriptor table: 256 interrupt gates, each with an IST slot.
//!
//! Written as raw gate descriptors rather than with `x86_64`'s typed table, whose handlers need
//! the unstable `x86-interrupt` ABI; the kernel's gates point at its own naked entry stubs.

use super::stubs;
use crate::gdt::ist;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, Segment};
use x86_64::instructions::tables::lidt;
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

#[repr(C, align(16))]
struct Table([Gate; 256]);

static IDT: spin::Once<Table> = spin::Once::new();

/// The IST slot for `vector`.
fn ist_for(vector: usize) -> u8 {
    match vector {
        2 => ist::NMI,
        6 => ist::INVALID_OPCODE,
        8 => ist::DOUBLE_FAULT,
        18 => ist::MACHINE_CHECK,
        20 => ist::VIRTUALIZATION,
        0..32 => ist::EXCEPTION,
        _ => ist::INTERRUPT,
    }
}

/// Builds the table (once) and loads it on this CPU. Call after [`crate::gdt::init`], so the
/// gates' code selector is the kernel's.
pub fn load() {
    let table = IDT.call_once(|| {
        let selector = CS::get_reg().0;
        let mut gates = [Gate::default(); 256];
        for (vector, gate) in gates.iter_mut().enumerate() {
            let handler = stubs::entry_for(vector);
            *gate = Gate::new(handler as u64, selector, ist_for(vector));
        }
        Table(gates)
    });
    let pointer = DescriptorTablePointer {
        limit: (core::mem::size_of::<Table>() - 1) as u16,
        base: VirtAddr::from_ptr(table),
    };
    // SAFETY: the table is static and every gate points at an entry stub in this image.
    unsafe { lidt(&pointer) };
}

/// Whether this CPU's IDTR points at the kernel's table, every gate present with an IST slot.
pub fn is_loaded() -> bool {
    let Some(table) = IDT.get() else { return false };
    let idtr = x86_64::instructions::tables::sidt();
    idtr.base.as_u64() == table as *const Table as u64
        && usize::from(idtr.limit) + 1 == core::mem::size_of::<Table>()
        && table
            .0
            .iter()
            .all(|gate| gate.attributes == INTERRUPT_GATE && gate.ist != 0)
}
