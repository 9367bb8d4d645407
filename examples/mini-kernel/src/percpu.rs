//! Per-CPU data, reached through the GS base so interrupt handlers know which CPU they run on.

use alloc::boxed::Box;
use core::arch::asm;
use x86_64::VirtAddr;
use x86_64::registers::model_specific::GsBase;

/// What each CPU keeps about itself. `self_ptr` is first so `gs:[0]` finds the structure.
#[repr(C)]
pub struct PerCpu {
    self_ptr: *const PerCpu,
    /// 0 for the BSP, then 1.. in wake-up order; the model's vCPU index.
    pub index: u32,
    /// The local APIC ID.
    pub apic_id: u32,
}

/// Creates this CPU's structure and points GS at it.
pub fn init(index: u32, apic_id: u32) -> &'static PerCpu {
    let this = Box::leak(Box::new(PerCpu {
        self_ptr: core::ptr::null(),
        index,
        apic_id,
    }));
    this.self_ptr = this;
    GsBase::write(VirtAddr::from_ptr(this));
    this
}

/// This CPU's structure, if `init` ran on it.
pub fn current() -> Option<&'static PerCpu> {
    if GsBase::read().is_null() {
        return None;
    }
    let ptr: *const PerCpu;
    // SAFETY: GS points at a leaked `PerCpu` whose first field is its own address.
    unsafe { asm!("mov {}, gs:[0]", out(reg) ptr, options(nostack, readonly, preserves_flags)) };
    // SAFETY: the structure was leaked and is never freed or moved.
    unsafe { ptr.as_ref() }
}

/// The local APIC ID of the CPU this runs on, from CPUID: the x2APIC ID of leaf 0xB when the
/// CPU has that leaf, else the initial APIC ID of leaf 1. (In a TD the TDX module answers
/// both leaves itself, without #VE.)
pub fn apic_id_from_cpuid() -> u32 {
    let max = core::arch::x86_64::__cpuid(0).eax;
    if max >= 0xb {
        let leaf = core::arch::x86_64::__cpuid_count(0xb, 0);
        if leaf.ebx != 0 {
            return leaf.edx;
        }
    }
    core::arch::x86_64::__cpuid(1).ebx >> 24
}
