//! Handing the current AP back to the firmware through the version-1 wakeup entry's reset vector.
//!
//! ACPI 6.6 (MADT wakeup structure version 1) lets the OS send a CPU back to a firmware loop,
//! where the mailbox can wake it again, into this kernel or a kexec'd one. Linux does it to take
//! a CPU offline (`asm_acpi_mp_play_dead` in `arch/x86/kernel/acpi/madt_playdead.S`, since 6.12):
//! interrupts off, CR4.PGE cleared so the CR3 write flushes global translations too, CR3 = page
//! tables that identity-map the reset vector's page, then a jump to the reset vector in 64-bit
//! mode. edk2 2025.08's reset vector (`AsmRelocateApResetVector`) then takes its own stack,
//! leaves long mode, reloads its SEC page tables and re-enters the mailbox loop, where the BSP
//! can confirm with TEST ([`super::MpWaker::test`]).
//!
//! Only a version-1 entry of 24 bytes has a reset vector ([`super::MpWakeup::reset_vector`]);
//! for any other entry [`return_to_firmware`] refuses with [`ResetVectorError`] and returns, as
//! older firmware offers no way back (Linux then disables CPU offlining).

use core::ops::Range;

use super::madt::MpWakeup;

core::arch::global_asm!(
    ".pushsection .text.tdx_boot_return_to_firmware, \"ax\", @progbits",
    // 64-byte aligned and shorter than 64 bytes: the code never spans two pages, so mapping
    // the one page `return_to_firmware_code` names is enough.
    ".balign 64",
    ".globl tdx_boot_return_to_firmware",
    ".hidden tdx_boot_return_to_firmware",
    "tdx_boot_return_to_firmware:",
    "cli",
    "mov rax, cr4",
    "and rax, -129", // clear CR4.PGE (bit 7): the CR3 write below then flushes global entries
    "mov cr4, rax",
    "mov cr3, rsi",
    "jmp rdi",
    ".globl tdx_boot_return_to_firmware_end",
    ".hidden tdx_boot_return_to_firmware_end",
    "tdx_boot_return_to_firmware_end:",
    ".popsection",
);

unsafe extern "sysv64" {
    fn tdx_boot_return_to_firmware(reset_vector: u64, identity_cr3: u64) -> !;
    static tdx_boot_return_to_firmware_end: u8;
}

/// The wakeup entry offers no way back to the firmware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResetVectorError {
    /// The entry's version (a reset vector needs version 1 and 24 bytes).
    pub version: u16,
}

impl core::fmt::Display for ResetVectorError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "the version-{} wakeup entry has no reset vector: APs cannot go back to the firmware",
            self.version
        )
    }
}

impl core::error::Error for ResetVectorError {}

/// The addresses (as linked) of the code [`return_to_firmware`] runs after loading the new CR3:
/// the page tables given to it must map this range at these addresses. It lies in one page.
pub fn return_to_firmware_code() -> Range<usize> {
    let start = tdx_boot_return_to_firmware as *const () as usize;
    let end = &raw const tdx_boot_return_to_firmware_end as usize;
    start..end
}

/// Sends the calling CPU to the firmware's reset vector, as Linux's `asm_acpi_mp_play_dead`:
/// interrupts off, CR4.PGE cleared, CR3 = `identity_cr3`, jump. Never returns when `wakeup`
/// has a reset vector; returns the error at once, having done nothing, when it has none.
///
/// # Safety
///
/// - Called on an AP the kernel is done with: nothing of the kernel runs on this CPU afterwards,
///   its stack and per-CPU data may be reused once the BSP has confirmed with
///   [`super::MpWaker::test`], and no lock or other shared state is held.
/// - `identity_cr3` is the physical address of page tables in the paging mode the CPU is in
///   (4- or 5-level), with the CR3 flags bits the kernel wants, that identity-map the page of the
///   reset vector, executable, and map [`return_to_firmware_code`] at its current addresses.
/// - The reset vector is the firmware's loop, as the MADT (measured by TDVF) says; the crate
///   cannot check what code lies there.
pub unsafe fn return_to_firmware(wakeup: &MpWakeup, identity_cr3: u64) -> ResetVectorError {
    let Some(reset_vector) = wakeup.reset_vector else {
        return ResetVectorError {
            version: wakeup.version,
        };
    };
    // SAFETY: the caller guarantees the CPU may leave the kernel for good, and that
    // `identity_cr3` maps both this code and the reset vector; the stub changes only CR4.PGE,
    // CR3 and RFLAGS.IF before the jump.
    unsafe { tdx_boot_return_to_firmware(reset_vector, identity_cr3) }
}
