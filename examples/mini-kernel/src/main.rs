//! The tdx-boot example kernel.
//!
//! A PE32+ EFI application (built by `cargo xtask run`) that boots the way a TD kernel does:
//! UEFI memory map and ACPI tables in, ExitBootServices, its own GDT/IDT, then the TD paths of
//! tdx-boot. On a TDX host it uses the real TDX module; in plain QEMU it runs the same paths
//! against tdx-boot's software model. Every step is printed on COM1 and recorded as a check; the
//! final line reports them and the kernel exits QEMU with a status CI reads.
//!
//! Built on the host without `--cfg mini_kernel_image` (plain `cargo build`, clippy, tests), the
//! crate is an ordinary program that says how to build the image: the kernel code is compiled
//! and linted all the same.
#![cfg_attr(mini_kernel_image, no_std, no_main)]

extern crate alloc;

mod acpi;
mod checks;
mod fake_firmware;
mod firmware;
mod gdt;
mod heap;
mod interrupts;
mod percpu;
mod qemu_exit;
#[cfg(mini_kernel_image)]
mod runtime;
mod serial;
mod tsc;
mod ud_tdcall;
mod uefi;
mod ve_demo;

use qemu_exit::{ExitCode, exit};
use tdx_boot::tdcall::Hardware;

#[cfg(not(mini_kernel_image))]
fn main() {
    println!("mini-kernel is a UEFI image: build and boot it with `cargo xtask run`");
}

/// The UEFI entry point.
///
/// # Safety
///
/// Called once by the firmware with its image handle and system table.
#[unsafe(no_mangle)]
pub unsafe extern "efiapi" fn efi_main(
    image: uefi::Handle,
    system_table: *const uefi::SystemTable,
) -> uefi::Status {
    let boot_tsc = tsc::now();
    serial::init();
    kprintln!("mini-kernel: efi_main");
    // SAFETY: the firmware passes a valid system table.
    let Some(system_table) = (unsafe { system_table.as_ref() }) else {
        return uefi::INVALID_PARAMETER;
    };
    // SAFETY: called once, from efi_main, with the firmware's arguments.
    match unsafe { firmware::collect(image, system_table) } {
        Ok(handoff) => kernel_main(handoff, boot_tsc),
        Err(why) => {
            kprintln!("mini-kernel: {why}");
            uefi::LOAD_ERROR
        }
    }
}

/// Everything after ExitBootServices.
fn kernel_main(handoff: firmware::Handoff, boot_tsc: u64) -> ! {
    // SAFETY: the heap pages were allocated for the kernel and nothing else uses them.
    unsafe { heap::init(handoff.heap.0, handoff.heap.1) };
    kprintln!(
        "mini-kernel: ExitBootServices done ({} ms after efi_main; firmware took {} ms from reset)",
        tsc::ms(tsc::now() - boot_tsc),
        tsc::ms(boot_tsc)
    );
    percpu::init(0, 0);
    gdt::init();
    interrupts::idt::load();
    kprintln!(
        "mini-kernel: GDT/TSS with 7 IST stacks loaded; IDT: 256 gates, each on an IST stack"
    );

    static DUMMY: fn(u32, &mut tdx_boot::tdcall::Regs) = |_cpu, regs| {
        regs.rax = 0;
        regs.rcx = 48;
    };
    ud_tdcall::install(&DUMMY);
    let info = tdx_boot::tdcall::vp_info(&Hardware);
    kprintln!(
        "mini-kernel: VP.INFO through #UD: {info:?}; emulated {}",
        ud_tdcall::emulated_count()
    );
    let _ = (handoff.memory_map, handoff.descriptor_size);
    let rsdp = handoff.rsdp.unwrap_or(0);
    // SAFETY: the RSDP is the firmware's; ACPI memory is identity-mapped.
    let platform_madt = unsafe { acpi::find(rsdp, b"APIC") };
    let platform_madt = platform_madt.map(|t| t.bytes).unwrap_or_default();
    // SAFETY: the low page is ours and the APs are idle in the firmware.
    let published = unsafe { fake_firmware::park_aps(handoff.low_page, platform_madt) };
    kprintln!(
        "fake firmware: APs parked: {:?}; MADT {} bytes",
        published.parked,
        published.madt.len()
    );
    for &id in &published.parked {
        published
            .mailbox
            .apic_id
            .store(id, core::sync::atomic::Ordering::Relaxed);
        published.mailbox.wakeup_vector.store(
            test_ap as usize as u64,
            core::sync::atomic::Ordering::Relaxed,
        );
        published
            .mailbox
            .command
            .store(1, core::sync::atomic::Ordering::Release);
        while published
            .mailbox
            .command
            .load(core::sync::atomic::Ordering::Acquire)
            != 0
        {}
    }
    tsc::delay_us(10_000);
    kprintln!(
        "woken: {}",
        TESTED.load(core::sync::atomic::Ordering::Relaxed)
    );

    let (passed, failed) = checks::totals();
    kprintln!(
        "mini-kernel: checks: {passed} passed, {failed} failed ({} ms from efi_main)",
        tsc::ms(tsc::now() - boot_tsc)
    );
    exit(if failed == 0 {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}

static TESTED: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
extern "C" fn test_ap() -> ! {
    TESTED.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    qemu_exit::halt_forever()
}
