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

mod qemu_exit;
#[cfg(mini_kernel_image)]
mod runtime;
mod serial;
mod tsc;
mod uefi;

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
    kprintln!("mini-kernel: efi_main (TSC {boot_tsc})");
    // SAFETY: the firmware passes a valid system table.
    let Some(system_table) = (unsafe { system_table.as_ref() }) else {
        return uefi::INVALID_PARAMETER;
    };
    // SAFETY: called from efi_main, before ExitBootServices.
    let boot_services = unsafe { uefi::BootServicesRef::new(image, system_table) };
    let per_ms = tsc::calibrate(|| boot_services.stall(10_000));
    kprintln!("mini-kernel: TSC {per_ms} ticks/ms");
    let rsdp = uefi::acpi_rsdp(system_table);
    kprintln!("mini-kernel: ACPI RSDP at {rsdp:#x?}");

    static mut MAP: [u8; 64 * 1024] = [0; 64 * 1024];
    // SAFETY: only the BSP runs here, once.
    let map = unsafe { &mut *core::ptr::addr_of_mut!(MAP) };
    let mut boot_services = boot_services;
    let (size, descriptor_size) = loop {
        let (size, key, descriptor_size) = match boot_services.memory_map(map) {
            Ok(v) => v,
            Err(status) => {
                kprintln!("mini-kernel: GetMemoryMap failed: {status:#x}");
                return uefi::LOAD_ERROR;
            }
        };
        match boot_services.exit_boot_services(key) {
            Ok(()) => break (size, descriptor_size),
            Err((again, _)) => boot_services = again,
        }
    };
    let map = map.get(..size).unwrap_or_default();
    let total: u64 = uefi::descriptors(map, descriptor_size)
        .map(|d| d.number_of_pages * 4096)
        .sum();
    kprintln!(
        "mini-kernel: ExitBootServices done; memory map {} bytes, {} MiB",
        size,
        total >> 20
    );
    kprintln!(
        "mini-kernel: hello ({} ms since efi_main)",
        tsc::ms(tsc::now() - boot_tsc)
    );
    qemu_exit::exit(qemu_exit::ExitCode::Success)
}
