//! The kernel's interrupt descriptor table: metal's 256 raw gates, each on an IST stack.

use super::stubs;
use crate::gdt::ist;
use metal::idt::{Entry, Idt};

static IDT: spin::Once<Idt> = spin::Once::new();

/// The IST slot for `vector`.
fn ist_for(vector: u8) -> u8 {
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
/// gates' code selector is the kernel's and their IST slots exist.
pub fn load() {
    let table = IDT.call_once(|| {
        Idt::new(|vector| Entry {
            stub: stubs::entry_for(vector),
            ist: ist_for(vector),
        })
    });
    // SAFETY: `entry_for` gives every vector a stub of the right form (the error-code form for
    // exactly the vectors that push one), each returning with `iretq` or never; the slots
    // `ist_for` names are the seven the kernel's TSS has.
    unsafe { table.load() };
}

/// Whether this CPU's IDTR points at the kernel's table, every gate present with an IST slot.
pub fn is_loaded() -> bool {
    IDT.get()
        .is_some_and(|table| table.is_loaded() && table.every_gate_has_an_ist_stack())
}
