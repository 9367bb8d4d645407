//! The AP trampoline: position-independent 64-bit code, copied into one page below 4 GiB, that
//! takes a woken AP from the firmware's state to the kernel's.
//!
//! # What the AP does
//! TDVF's AP loop sees WAKEUP with its APIC ID, acknowledges (command = NOOP) and jumps to the
//! wakeup vector in 64-bit mode, interrupts off, on the firmware's page tables, which identity-map
//! the vector's page. The trampoline then:
//! 1. reads the boot slot in its own page (RIP-relative): the kernel's CR3 and the address of this
//!    AP's [`ApBoot`];
//! 2. loads CR3; from here on only the kernel's page tables are used;
//! 3. loads RSP from the block, the GDT, reloads CS with a far return, loads DS/ES/FS/GS/SS, the IDT;
//! 4. turns SSE on (CR0.MP, not EM or TS; CR4.OSFXSR and OSXMMEXCPT): compiled Rust uses SSE
//!    anywhere, and TDVF enables it on the BSP only (found by running Debian's TDVF under
//!    tdx-sim: the first AP triple-faulted on `xorps` in the kernel's entry);
//! 5. sets the block's started flag, the point after which it never reads the slot again;
//! 6. calls `entry(&ApBoot)` with a 16-byte aligned stack (System V), interrupts still disabled.
//!
//! It executes no CPUID, RDMSR, WRMSR, HLT or port I/O: in a TD those raise #VE, and before step 3
//! there is no IDT of the kernel's to handle it.
//!
//! # The handshake (why the slot is safe to reuse)
//! The firmware, not this code, writes the NOOP acknowledgement, right before jumping. So the
//! acknowledgement says nothing about whether the AP has read the slot yet. The BSP therefore
//! writes the slot, wakes one AP, and waits for that AP's *started* flag, which the AP sets only
//! after its last read of the slot (x86 keeps a store after earlier loads). Only then is the slot
//! rewritten for the next AP. An AP that does not report started in time keeps the slot: the
//! waker refuses further wakes until it shows up (see [`super::MpWaker`]).
//!
//! # What must be mapped
//! - Firmware tables: only the trampoline page is touched (TDVF identity-maps the vector's page).
//! - The kernel's tables (the CR3 in [`ApBoot`]): the trampoline page **identity-mapped and
//!   executable** (execution continues at the same address after the CR3 write), and the block,
//!   the GDT, the IDT, the stack and `entry` at the addresses stored in the block. The kernel's
//!   tables must use the firmware's paging mode (4-level vs 5-level) and must not rely on EFER.NXE
//!   or CR4 bits the firmware did not set; `entry` may set the rest (EFER, CR4, TSS, GS base) with
//!   its IDT in place.
//! - After `entry` starts, the AP executes two more instructions from the page: keep the page
//!   mapped and unchanged until every woken AP has reached its entry.

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use super::ap_boot::{ApBoot, offsets};

/// Size of the trampoline page.
pub const TRAMPOLINE_PAGE_SIZE: usize = 4096;

core::arch::global_asm!(
    ".pushsection .text.tdx_boot_ap_trampoline, \"ax\", @progbits",
    ".balign 16",
    ".globl tdx_boot_ap_trampoline_start",
    ".hidden tdx_boot_ap_trampoline_start",
    "tdx_boot_ap_trampoline_start:",
    "cli",
    "cld",
    "mov rax, qword ptr [rip + tdx_boot_ap_trampoline_slot]",
    "mov rbx, qword ptr [rip + tdx_boot_ap_trampoline_slot + 8]",
    "mov cr3, rax",
    "mov rsp, qword ptr [rbx + {stack_top}]",
    "and rsp, -16",
    "lgdt [rbx + {gdtr}]",
    "movzx eax, word ptr [rbx + {code_selector}]",
    "push rax",
    "lea rax, [rip + 2f]",
    "push rax",
    "retfq",
    "2:",
    "mov ax, word ptr [rbx + {data_selector}]",
    "mov ds, ax",
    "mov es, ax",
    "mov fs, ax",
    "mov gs, ax",
    "mov ss, ax",
    "lidt [rbx + {idtr}]",
    // SSE on (CR0.MP set, EM and TS clear; CR4.OSFXSR and OSXMMEXCPT): Rust code for x86-64
    // uses SSE anywhere, and TDVF's APs arrive without it (its SEC enables SSE on the BSP only).
    "mov rax, cr0",
    "and rax, -13",
    "or rax, 2",
    "mov cr0, rax",
    "mov rax, cr4",
    "or rax, 0x600",
    "mov cr4, rax",
    "mov dword ptr [rbx + {started}], 1",
    "mov rdi, rbx",
    "call qword ptr [rbx + {entry}]",
    "3:",
    "ud2",
    "jmp 3b",
    ".balign 8",
    ".globl tdx_boot_ap_trampoline_slot",
    ".hidden tdx_boot_ap_trampoline_slot",
    "tdx_boot_ap_trampoline_slot:",
    ".quad 0",
    ".quad 0",
    ".globl tdx_boot_ap_trampoline_end",
    ".hidden tdx_boot_ap_trampoline_end",
    "tdx_boot_ap_trampoline_end:",
    ".popsection",
    stack_top = const offsets::STACK_TOP,
    gdtr = const offsets::GDTR,
    code_selector = const offsets::CODE_SELECTOR,
    data_selector = const offsets::DATA_SELECTOR,
    idtr = const offsets::IDTR,
    started = const offsets::STARTED,
    entry = const offsets::ENTRY,
);

unsafe extern "C" {
    static tdx_boot_ap_trampoline_start: u8;
    static tdx_boot_ap_trampoline_slot: u8;
    static tdx_boot_ap_trampoline_end: u8;
}

/// The trampoline's machine code as linked into this binary, slot included (all zero).
pub fn trampoline_code() -> &'static [u8] {
    let start = &raw const tdx_boot_ap_trampoline_start;
    let end = &raw const tdx_boot_ap_trampoline_end;
    let len = (end as usize).saturating_sub(start as usize);
    // SAFETY: both symbols are defined in the same section of the global_asm! above, start before
    // end, and the bytes between them are the assembled code and slot, never written (the section
    // is read-only text).
    unsafe { core::slice::from_raw_parts(start, len) }
}

/// Offset of the boot slot from the start of the trampoline (and of the page).
pub fn slot_offset() -> usize {
    let start = &raw const tdx_boot_ap_trampoline_start;
    let slot = &raw const tdx_boot_ap_trampoline_slot;
    (slot as usize).saturating_sub(start as usize)
}

/// The two words the BSP writes for the next AP, inside the trampoline page.
#[repr(C)]
#[derive(Debug)]
pub struct BootSlot {
    cr3: AtomicU64,
    ap_boot: AtomicU64,
}

impl BootSlot {
    /// The CR3 the next AP loads.
    pub fn cr3(&self) -> u64 {
        self.cr3.load(Ordering::Acquire)
    }

    /// Address (in the kernel's page tables) of the next AP's [`ApBoot`].
    pub fn ap_boot(&self) -> u64 {
        self.ap_boot.load(Ordering::Acquire)
    }
}

/// Why the trampoline cannot be installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrampolineError {
    /// The page's physical address is not 4 KiB aligned.
    MisalignedPhysical(u64),
    /// The page (as mapped) is not 4 KiB aligned.
    MisalignedVirtual(usize),
    /// The page does not lie below 4 GiB.
    Above4GiB(u64),
    /// The code does not fit one page (a build problem, never input-dependent).
    TooLarge(usize),
}

/// An installed trampoline: the page it lives in and its physical address.
#[derive(Debug)]
pub struct Trampoline<'a> {
    page: NonNull<u8>,
    physical_address: u64,
    slot_offset: usize,
    _page: PhantomData<&'a mut [u8; TRAMPOLINE_PAGE_SIZE]>,
}

/// Copies the trampoline into `page`, whose physical address is `physical_address`, and zeroes the
/// rest of the page. The page must be 4 KiB aligned (both addresses) and below 4 GiB.
///
/// Safe although `physical_address` is not checked against the page tables: nothing safe
/// jumps to it. It matters only once an AP is woken into the trampoline through a firmware
/// mailbox, which only the `unsafe` [`super::Mailbox::from_address`] provides, and that
/// contract includes "every trampoline used with this mailbox was installed at its true
/// physical address" (as it includes the [`super::ApBoot`] state an AP loads).
pub fn install_trampoline(
    page: &mut [u8; TRAMPOLINE_PAGE_SIZE],
    physical_address: u64,
) -> Result<Trampoline<'_>, TrampolineError> {
    let page_size = TRAMPOLINE_PAGE_SIZE as u64;
    if !physical_address.is_multiple_of(page_size) {
        return Err(TrampolineError::MisalignedPhysical(physical_address));
    }
    if physical_address
        .checked_add(page_size)
        .is_none_or(|end| end > 1 << 32)
    {
        return Err(TrampolineError::Above4GiB(physical_address));
    }
    let virtual_address = page.as_ptr() as usize;
    if !virtual_address.is_multiple_of(TRAMPOLINE_PAGE_SIZE) {
        return Err(TrampolineError::MisalignedVirtual(virtual_address));
    }
    let code = trampoline_code();
    let slot_offset = slot_offset();
    if code.len() > TRAMPOLINE_PAGE_SIZE
        || !slot_offset.is_multiple_of(8)
        || slot_offset + core::mem::size_of::<BootSlot>() > code.len()
    {
        return Err(TrampolineError::TooLarge(code.len()));
    }
    page.fill(0);
    if let Some(destination) = page.get_mut(..code.len()) {
        destination.copy_from_slice(code);
    }
    Ok(Trampoline {
        page: NonNull::from(page).cast(),
        physical_address,
        slot_offset,
        _page: PhantomData,
    })
}

// SAFETY: a `Trampoline` only hands out `&BootSlot` (atomics) and writes the slot through those
// atomics; the code bytes are never written after installation, so sharing the handle between
// threads (a BSP and test threads playing APs) cannot race non-atomically.
unsafe impl Sync for Trampoline<'_> {}
// SAFETY: the handle owns the page's mutable borrow; moving it to another thread moves that
// exclusive access with it.
unsafe impl Send for Trampoline<'_> {}

impl Trampoline<'_> {
    /// The wakeup vector to put in the mailbox: the physical (= identity) address of the entry.
    pub fn wakeup_vector(&self) -> u64 {
        self.physical_address
    }

    /// The boot slot, as an AP reads it (for test harnesses that play the AP).
    pub fn slot(&self) -> &BootSlot {
        // SAFETY: `install_trampoline` checked that the page is 4 KiB aligned and that the slot
        // (8-byte aligned offset, 16 bytes) lies inside it; the page is borrowed mutably for 'a,
        // so only this handle reaches it, and the slot is accessed through atomics only.
        unsafe { &*self.page.as_ptr().add(self.slot_offset).cast::<BootSlot>() }
    }

    /// Publishes the next AP's CR3 and block. Relaxed: the mailbox's release store of WAKEUP
    /// orders these writes before the AP can run.
    pub(crate) fn publish(&self, boot: &ApBoot) {
        let slot = self.slot();
        slot.cr3.store(boot.cr3, Ordering::Relaxed);
        slot.ap_boot
            .store(boot as *const ApBoot as usize as u64, Ordering::Relaxed);
    }
}

impl core::fmt::Display for TrampolineError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::MisalignedPhysical(a) => {
                write!(f, "trampoline page {a:#x} is not 4 KiB aligned")
            }
            Self::MisalignedVirtual(a) => {
                write!(f, "trampoline page mapped at {a:#x} is not 4 KiB aligned")
            }
            Self::Above4GiB(a) => write!(f, "trampoline page {a:#x} is not below 4 GiB"),
            Self::TooLarge(len) => write!(f, "trampoline code of {len} bytes does not fit a page"),
        }
    }
}

impl core::error::Error for TrampolineError {}
