//! Per-CPU GDT and TSS, with an interrupt stack (IST) for every vector.
//!
//! Every IDT gate names an IST slot, so the CPU always switches to a known-good stack before it
//! pushes an interrupt frame. That keeps the 128 bytes below the interrupted RSP intact, which
//! matters because the precompiled `core` may use the red zone, and it lets a #VE or #UD
//! arrive while the kernel's own stack is in any state.

use alloc::boxed::Box;
use alloc::vec;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;

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

/// A fresh stack of `size` bytes; returns its top (16-byte aligned).
pub fn allocate_stack(size: usize) -> VirtAddr {
    let stack = vec![0u8; size + 16].leak();
    VirtAddr::from_ptr(stack.as_ptr_range().end).align_down(16u64)
}

/// Builds and loads this CPU's GDT (kernel code, kernel data, TSS) and reloads the segments.
pub fn init() {
    let mut tss = TaskStateSegment::new();
    for slot in 1..=7u8 {
        let size = if slot == ist::INVALID_OPCODE {
            TDCALL_STACK_SIZE
        } else {
            IST_STACK_SIZE
        };
        tss.interrupt_stack_table[usize::from(slot - 1)] = allocate_stack(size);
    }
    let tss: &'static TaskStateSegment = Box::leak(Box::new(tss));
    let gdt: &'static mut GlobalDescriptorTable = Box::leak(Box::new(GlobalDescriptorTable::new()));
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    let tss_selector = gdt.append(Descriptor::tss_segment(tss));
    let gdt: &'static GlobalDescriptorTable = gdt;
    gdt.load();
    // SAFETY: the selectors name the descriptors just loaded: a 64-bit code segment, a data
    // segment and an available TSS that lives forever.
    unsafe {
        CS::set_reg(code);
        SS::set_reg(data);
        DS::set_reg(data);
        ES::set_reg(data);
        load_tss(tss_selector);
    }
}

/// The task register's selector on this CPU (non-zero once [`init`] loaded the TSS).
pub fn task_register() -> u16 {
    let selector: u16;
    // SAFETY: STR only reads the task register.
    unsafe {
        core::arch::asm!("str {0:x}", out(reg) selector, options(nomem, nostack, preserves_flags))
    };
    selector
}
