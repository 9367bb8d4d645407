//! The APs' start-up code: real mode to long mode, then into the parking loop.
//!
//! A STARTUP IPI starts an AP in real mode at `vector << 12`. This code is copied to that page
//! (below 1 MiB) and patched with the BSP's control registers, so the AP enables paging on the
//! BSP's identity-mapped page tables and enters 64-bit mode directly (PAE, LME, then PG and PE
//! together), loads the stack and argument the BSP left for it, and jumps to the entry.
//! Everything it reads is addressed relative to the page (DS = CS in real mode, RIP-relative in
//! long mode), so the copy runs wherever it lands.

use core::arch::global_asm;

global_asm!(
    r#"
    .section .text.ap_trampoline, "ax"
    .global mini_kernel_ap_trampoline_start
    .global mini_kernel_ap_trampoline_end
    .global mini_kernel_ap_trampoline_gdtr
    .global mini_kernel_ap_trampoline_registers
    .global mini_kernel_ap_trampoline_far_jump
    .global mini_kernel_ap_trampoline_launch
    .global mini_kernel_ap_trampoline_long_mode
    .code16
mini_kernel_ap_trampoline_start:
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    lgdtl (mini_kernel_ap_trampoline_gdtr - mini_kernel_ap_trampoline_start)
    movl (mini_kernel_ap_trampoline_registers + 0 - mini_kernel_ap_trampoline_start), %eax
    movl %eax, %cr4
    movl (mini_kernel_ap_trampoline_registers + 4 - mini_kernel_ap_trampoline_start), %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx
    rdmsr
    orl (mini_kernel_ap_trampoline_registers + 8 - mini_kernel_ap_trampoline_start), %eax
    wrmsr
    movl (mini_kernel_ap_trampoline_registers + 12 - mini_kernel_ap_trampoline_start), %eax
    movl %eax, %cr0
    ljmpl *(mini_kernel_ap_trampoline_far_jump - mini_kernel_ap_trampoline_start)

    .code64
mini_kernel_ap_trampoline_long_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movq (mini_kernel_ap_trampoline_launch + 0)(%rip), %rsp
    movq (mini_kernel_ap_trampoline_launch + 8)(%rip), %rdi
    jmpq *(mini_kernel_ap_trampoline_launch + 16)(%rip)

    .balign 8
mini_kernel_ap_trampoline_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
mini_kernel_ap_trampoline_gdtr:
    .word 23
    .long 0
    .balign 4
mini_kernel_ap_trampoline_registers:
    .long 0, 0, 0, 0
mini_kernel_ap_trampoline_far_jump:
    .long 0
    .word 0x08
    .balign 8
mini_kernel_ap_trampoline_launch:
    .quad 0, 0, 0
mini_kernel_ap_trampoline_end:
    .text
    "#,
    options(att_syntax)
);

unsafe extern "C" {
    static mini_kernel_ap_trampoline_start: u8;
    static mini_kernel_ap_trampoline_end: u8;
    static mini_kernel_ap_trampoline_gdtr: u8;
    static mini_kernel_ap_trampoline_registers: u8;
    static mini_kernel_ap_trampoline_far_jump: u8;
    static mini_kernel_ap_trampoline_launch: u8;
    static mini_kernel_ap_trampoline_long_mode: u8;
}

/// Offset of a trampoline symbol from its start.
fn offset_of(symbol: &u8) -> usize {
    let start = &raw const mini_kernel_ap_trampoline_start as usize;
    symbol as *const u8 as usize - start
}

/// The copied trampoline in a page below 1 MiB.
pub struct Trampoline {
    page: u64,
}

impl Trampoline {
    /// Copies the code into `page` and patches it with this CPU's paging state.
    ///
    /// # Safety
    ///
    /// `page` is a 4 KiB page below 1 MiB that the kernel owns, identity-mapped and writable,
    /// used for nothing else while APs start.
    pub unsafe fn install(page: u64) -> Self {
        let start = &raw const mini_kernel_ap_trampoline_start as usize;
        let end = &raw const mini_kernel_ap_trampoline_end as usize;
        let length = end - start;
        assert!(length <= 4096 && page < 0x10_0000 && page.is_multiple_of(4096));
        // SAFETY: the source is this image's text; the destination is the caller's page.
        unsafe { core::ptr::copy_nonoverlapping(start as *const u8, page as *mut u8, length) };
        let this = Self { page };
        // SAFETY: the symbols are inside the copied range (offsets below `length`).
        let (gdtr, registers, far_jump, long_mode) = unsafe {
            (
                offset_of(&mini_kernel_ap_trampoline_gdtr),
                offset_of(&mini_kernel_ap_trampoline_registers),
                offset_of(&mini_kernel_ap_trampoline_far_jump),
                offset_of(&mini_kernel_ap_trampoline_long_mode),
            )
        };
        let gdt = gdtr - 24;
        let cr3 = x86_64::registers::control::Cr3::read_raw()
            .0
            .start_address()
            .as_u64();
        assert!(
            cr3 < 1 << 32,
            "the BSP's page tables must lie below 4 GiB for a 32-bit CR3 load"
        );
        // CR4 without PCIDE, which cannot be set outside long mode.
        let cr4 = x86_64::registers::control::Cr4::read_raw() & !(1 << 17);
        // LME to enter long mode, NXE because the firmware's page tables may set NX; not LMA,
        // which the CPU sets itself.
        let efer = x86_64::registers::model_specific::Efer::read_raw() & ((1 << 8) | (1 << 11));
        let cr0 = x86_64::registers::control::Cr0::read_raw();
        // SAFETY: every write is inside the copied trampoline in the caller's page.
        unsafe {
            this.write_u32(gdtr + 2, (page + gdt as u64) as u32);
            this.write_u32(registers, cr4 as u32);
            this.write_u32(registers + 4, cr3 as u32);
            this.write_u32(registers + 8, efer as u32);
            this.write_u32(registers + 12, cr0 as u32);
            this.write_u32(far_jump, (page + long_mode as u64) as u32);
        }
        this
    }

    /// # Safety
    ///
    /// `offset + 4` is inside the copied trampoline.
    unsafe fn write_u32(&self, offset: usize, value: u32) {
        // SAFETY: per the contract, inside the caller's page.
        unsafe { ((self.page as usize + offset) as *mut u32).write_unaligned(value) };
    }

    /// Sets what the next AP started loads: its stack, its argument (RDI) and where it jumps.
    pub fn set_launch(&self, stack_top: u64, argument: u64, entry: extern "sysv64" fn(u64) -> !) {
        // SAFETY: taking the symbol's address reads nothing.
        let launch = offset_of(unsafe { &mini_kernel_ap_trampoline_launch });
        let base = (self.page as usize + launch) as *mut u64;
        // SAFETY: the launch block is three u64 inside the copied trampoline.
        unsafe {
            base.write_volatile(stack_top);
            base.add(1).write_volatile(argument);
            base.add(2).write_volatile(entry as usize as u64);
        }
    }

    /// The STARTUP IPI vector: the page number.
    pub fn sipi_vector(&self) -> u8 {
        (self.page >> 12) as u8
    }
}
