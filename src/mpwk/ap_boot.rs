//! The per-AP boot block: everything the trampoline loads to put an AP into the kernel's state.
//!
//! One block per AP, owned by that AP once it is woken: [`super::MpWaker::wake`] takes it as
//! `&'static mut` (so no other wake can be given the same block) and the AP keeps a `&ApBoot` for
//! ever (its entry function receives it). A block whose wake timed out is never handed back: the AP
//! may still arrive later and use it.

use core::sync::atomic::{AtomicU32, Ordering};

use x86_64::structures::DescriptorTablePointer;

/// The kernel function an AP calls last, on its own stack, with the kernel's GDT, IDT and CR3
/// loaded and interrupts disabled.
pub type ApEntry = extern "C" fn(&ApBoot) -> !;

/// Value of [`ApBoot`]'s started flag once the AP has left the trampoline.
const STARTED: u32 = 1;

/// Boot parameters for one AP. `#[repr(C)]`: the trampoline reads fields at fixed offsets.
///
/// Everything it points to (GDT, IDT, stack, entry, and the block itself) must be mapped at these
/// addresses by the page tables in [`ApBoot::cr3`].
#[repr(C)]
#[derive(Debug)]
pub struct ApBoot {
    /// Physical address of the kernel's top-level page table (written to CR3 as is; it must
    /// identity-map the trampoline page, see [`super::trampoline`]). No PCID and no bit 63
    /// ("no flush"): the AP arrives with CR4.PCIDE as the firmware left it (clear in TDVF).
    pub cr3: u64,
    /// The kernel's GDT (base is a kernel virtual address).
    pub gdtr: DescriptorTablePointer,
    /// The kernel's IDT (base is a kernel virtual address).
    pub idtr: DescriptorTablePointer,
    /// 64-bit code segment selector loaded into CS with a far return.
    pub code_selector: u16,
    /// Data selector loaded into DS, ES, FS, GS and SS (0 is allowed in 64-bit mode).
    pub data_selector: u16,
    /// The AP's APIC ID: the mailbox target. Must be this AP's real ID from the MADT.
    pub apic_id: u32,
    /// Top of the AP's stack (the trampoline rounds it down to 16 bytes).
    pub stack_top: u64,
    /// Called last; never returns.
    pub entry: ApEntry,
    /// Opaque per-CPU argument for the kernel (e.g. a pointer to its per-CPU area).
    pub arg: u64,
    /// Set to 1 by the AP, after it stops reading the trampoline page and before `entry`.
    started: AtomicU32,
}

/// Offsets the trampoline uses (checked against the layout at compile time).
pub(crate) mod offsets {
    use super::ApBoot;
    use core::mem::offset_of;

    pub const GDTR: usize = offset_of!(ApBoot, gdtr);
    pub const IDTR: usize = offset_of!(ApBoot, idtr);
    pub const CODE_SELECTOR: usize = offset_of!(ApBoot, code_selector);
    pub const DATA_SELECTOR: usize = offset_of!(ApBoot, data_selector);
    pub const STACK_TOP: usize = offset_of!(ApBoot, stack_top);
    pub const ENTRY: usize = offset_of!(ApBoot, entry);
    pub const STARTED: usize = offset_of!(ApBoot, started);
}

// lgdt/lidt read 10 bytes: u16 limit then u64 base.
static_assertions::const_assert_eq!(core::mem::size_of::<DescriptorTablePointer>(), 10);

impl ApBoot {
    /// A block for `apic_id` with the given kernel state, not started.
    pub const fn new(apic_id: u32, state: ApState, entry: ApEntry, arg: u64) -> Self {
        ApBoot {
            cr3: state.cr3,
            gdtr: state.gdtr,
            idtr: state.idtr,
            code_selector: state.code_selector,
            data_selector: state.data_selector,
            apic_id,
            stack_top: state.stack_top,
            entry,
            arg,
            started: AtomicU32::new(0),
        }
    }

    /// True once the AP has left the trampoline (acquire: the AP's earlier writes are visible).
    pub fn has_started(&self) -> bool {
        self.started.load(Ordering::Acquire) == STARTED
    }

    /// What the trampoline does right before calling `entry`. For test harnesses that play the AP
    /// and for kernels with their own trampoline; after this, the AP must not read the trampoline
    /// page again (the BSP reuses it for the next AP).
    ///
    /// Safe: [`super::MpWaker::wake`] clears the flag when it takes the block, so a flag set
    /// beforehand cannot make it reuse the trampoline page under an AP still reading it; while
    /// the AP runs, only the AP holds the block.
    pub fn mark_started(&self) {
        self.started.store(STARTED, Ordering::Release);
    }

    /// Clears the started flag (the block is exclusively borrowed: no AP runs on it).
    pub(crate) fn clear_started(&mut self) {
        *self.started.get_mut() = 0;
    }
}

/// The kernel state an AP loads (everything in [`ApBoot`] except identity and entry).
#[derive(Clone, Copy, Debug)]
pub struct ApState {
    /// See [`ApBoot::cr3`].
    pub cr3: u64,
    /// See [`ApBoot::gdtr`].
    pub gdtr: DescriptorTablePointer,
    /// See [`ApBoot::idtr`].
    pub idtr: DescriptorTablePointer,
    /// See [`ApBoot::code_selector`].
    pub code_selector: u16,
    /// See [`ApBoot::data_selector`].
    pub data_selector: u16,
    /// See [`ApBoot::stack_top`].
    pub stack_top: u64,
}
