//! tdx-sim: a software TDX host. An EFI application that the emulated machine's firmware
//! (QEMU TCG, `-cpu max`, plain OVMF) starts; it takes the machine, turns on the emulated
//! CPU's SVM and runs the real TDVF, read from fw_cfg, as a TD: TDX's initial vCPU state,
//! private memory that must be accepted, TDCALL served by tdx-boot's software TDX module,
//! #VE where the TDX module raises it, the TD's device accesses reaching the machine's own
//! devices. See README.md beside this crate.
#![cfg_attr(bare_metal_image, no_std, no_main)]
#![cfg_attr(not(bare_metal_image), allow(dead_code, unused_imports))]

extern crate alloc;

mod apic_bank;
mod boot_paging;
mod console;
mod devices;
mod exits;
mod guest_walk;
mod host_clock;
mod host_device_irq;
mod host_efi;
mod host_fw_cfg;
mod host_idt;
mod host_timer;
mod kvm_cpuid;
mod layout;
mod module_cpuid;
mod npt;
mod report;
mod svm;
mod td;
mod td_msr;
mod tdcall_service;
mod vcpu;
mod ve_storm;
mod vm_setup;
mod vmcb;

use x86_64::instructions::port::Port;

/// QEMU's `isa-debug-exit` port, as `cargo xtask` configures it.
const DEBUG_EXIT_PORT: u16 = 0xf4;
/// Written to it when tdx-sim itself fails: QEMU exits with status 35... plus one (37).
pub const EXIT_SIM_FAILURE: u32 = 0x12;

#[cfg(not(bare_metal_image))]
fn main() {
    println!("tdx-sim is a UEFI image: build and boot it with `cargo xtask run --tdvf`");
}

/// Reports `why` and ends the run with tdx-sim's failure status.
pub fn fatal(why: core::fmt::Arguments<'_>) -> ! {
    console::emergency_print(format_args!("tdx-sim: FATAL: {why}\n"));
    exit_qemu(EXIT_SIM_FAILURE)
}

/// Writes `code` to the debug-exit device (QEMU exits with `code << 1 | 1`); halts if the
/// device is missing.
pub fn exit_qemu(code: u32) -> ! {
    // SAFETY: the port is QEMU's debug-exit device; elsewhere the write is ignored.
    unsafe { Port::<u32>::new(DEBUG_EXIT_PORT).write(code) };
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

#[cfg(bare_metal_image)]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    fatal(format_args!("panic: {info}"))
}

/// The UEFI entry point.
///
/// # Safety
///
/// Called once by the firmware with its image handle and system table.
#[unsafe(no_mangle)]
pub unsafe extern "efiapi" fn efi_main(
    image: uefi_raw::Handle,
    system_table: *const uefi_raw::table::system::SystemTable,
) -> uefi_raw::Status {
    console::init();
    println!("tdx-sim: started at {:#x}", efi_main as *const () as usize);
    // SAFETY: the firmware's arguments, boot services not exited.
    let Some(boot_services) = (unsafe { host_efi::BootServicesHandle::new(image, system_table) })
    else {
        fatal(format_args!("no boot services"));
    };
    match vm_setup::build_and_run(boot_services) {
        Ok(never) => match never {},
        Err(why) => fatal(format_args!("{why}")),
    }
}
