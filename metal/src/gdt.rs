//! A per-CPU GDT and TSS, with a stack of its own for each IST slot.
//!
//! Every IDT gate should name an IST slot, so the CPU always switches to a known-good stack
//! before it pushes an interrupt frame. That keeps the 128 bytes below the interrupted RSP
//! intact, which matters because the precompiled `core` the images link may use the red zone,
//! and it lets an exception arrive while the interrupted stack is in any state.

use alloc::boxed::Box;
use alloc::vec;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;

/// A fresh stack of `size` bytes from the heap, never freed; returns its top (16-byte aligned).
pub fn allocate_stack(size: usize) -> VirtAddr {
    let stack = vec![0u8; size + 16].leak();
    VirtAddr::from_ptr(stack.as_ptr_range().end).align_down(16u64)
}

/// Builds and loads this CPU's GDT (kernel code, kernel data, a TSS whose IST slot `n` has a
/// fresh stack of `ist_stack_sizes[n - 1]` bytes, none for 0) and reloads the segment
/// registers and the task register. The tables live for ever.
pub fn init(ist_stack_sizes: [usize; 7]) {
    let mut tss = TaskStateSegment::new();
    // The TSS is packed: its table is copied out, filled and written back whole.
    let mut stacks = tss.interrupt_stack_table;
    for (slot, size) in stacks.iter_mut().zip(ist_stack_sizes) {
        if size != 0 {
            *slot = allocate_stack(size);
        }
    }
    tss.interrupt_stack_table = stacks;
    let tss: &'static TaskStateSegment = Box::leak(Box::new(tss));
    let gdt: &'static mut GlobalDescriptorTable = Box::leak(Box::new(GlobalDescriptorTable::new()));
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    let tss_selector = gdt.append(Descriptor::tss_segment(tss));
    let gdt: &'static GlobalDescriptorTable = gdt;
    gdt.load();
    // SAFETY: the selectors name the descriptors just loaded: a 64-bit code segment, a data
    // segment and an available TSS that lives for ever.
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
