//! The kernel's IST slots: metal's per-CPU GDT and TSS, with a stack for each slot.
//!
//! Every IDT gate names one of these slots (see [`crate::interrupts::idt`]), so the CPU always
//! switches to a known-good stack before it pushes an interrupt frame: the red zone of the
//! interrupted code survives, and a #VE or #UD may arrive while the kernel's stack is in any
//! state.

pub use metal::gdt::{allocate_stack, task_register};

/// The IST slots (1-based, as IDT gates name them) and what each serves.
pub mod ist {
    /// #DF.
    pub const DOUBLE_FAULT: u8 = 1;
    /// NMI.
    pub const NMI: u8 = 2;
    /// #MC.
    pub const MACHINE_CHECK: u8 = 3;
    /// #VE.
    pub const VIRTUALIZATION: u8 = 4;
    /// #UD (the TDCALL emulation under plain QEMU).
    pub const INVALID_OPCODE: u8 = 5;
    /// Every other exception.
    pub const EXCEPTION: u8 = 6;
    /// External interrupts.
    pub const INTERRUPT: u8 = 7;
}

/// Bytes of each IST stack. The #UD stack runs the software TDX module, which needs more.
const IST_STACK_SIZE: usize = 32 * 1024;
const TDCALL_STACK_SIZE: usize = 128 * 1024;

/// Builds and loads this CPU's GDT and TSS, every slot of [`ist`] with its stack.
pub fn init() {
    let mut sizes = [IST_STACK_SIZE; 7];
    sizes[usize::from(ist::INVALID_OPCODE - 1)] = TDCALL_STACK_SIZE;
    metal::gdt::init(sizes);
}
