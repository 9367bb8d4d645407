//! The tdx-boot example kernel.
//!
//! A PE32+ EFI application (built by `cargo xtask run`) that boots the way a TD kernel does:
//! UEFI memory map and ACPI tables in, ExitBootServices, its own GDT/IDT, then the TD paths of
//! tdx-boot. On a TDX host it uses the real TDX module; in plain QEMU it runs the same paths
//! against tdx-boot's software model, still executing the real TDCALL instruction (see
//! [`ud_tdcall`]). Every step is printed on COM1 and recorded as a check; the final line reports
//! them and the kernel exits QEMU with a status CI reads.
//!
//! Built on the host without `--cfg mini_kernel_image` (plain `cargo build`, clippy, tests), the
//! crate is an ordinary program that says how to build the image: the kernel code is compiled
//! and linted all the same.
#![cfg_attr(mini_kernel_image, no_std, no_main)]

extern crate alloc;

mod acceptance;
mod attestation;
mod checks;
mod conversion;
mod external_interrupt;
mod fake_firmware;
mod firmware;
mod gdt;
mod interrupts;
mod ioapic;
mod measurement;
mod memory;
mod model_ept;
mod paging;
mod percpu;
mod platform;
mod qemu_exit;
mod serial;
mod smp;
mod td_model;
mod tsc;
mod ud_tdcall;
mod ve_instructions;
mod ve_mmio;
mod x2apic;

use alloc::vec::Vec;
use platform::Platform;
use qemu_exit::{ExitCode, exit};
use tdx_boot::early::{self, Policy, TdxSerial};
use tdx_boot::mpwk::{self, Madt};
use tdx_boot::tdcall::Hardware;

#[cfg(mini_kernel_image)]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    // Not `kprintln!`: the panicking code may hold the console lock.
    serial::emergency_print(format_args!("mini-kernel: PANIC: {info}\n"));
    exit(ExitCode::Failure)
}

#[cfg(not(mini_kernel_image))]
fn main() {
    println!("mini-kernel is a UEFI image: build and boot it with `cargo xtask run`");
}

/// The UEFI entry point: `#[uefi::entry]` records the image handle and system table for
/// `uefi::boot` and exports the function as `efi_main`.
#[uefi::entry]
fn efi_main() -> uefi::Status {
    let boot_tsc = tsc::now();
    // First, so that even the first line goes through TDVMCALLs in a TD. CPUID leaves 0, 1 and
    // 0x21 are answered by the TDX module itself: no #VE, which the firmware would handle.
    let tdx = early::detect();
    if tdx.is_ok() {
        platform::set_in_td();
    }
    serial::init();
    kprintln!(
        "\nmini-kernel: efi_main at {:#x}",
        efi_main as *const () as usize
    );
    // SAFETY: called once, from the entry point, while boot services run.
    match unsafe { firmware::prepare() } {
        Ok(boot_services) => kernel_main(boot_services, tdx, boot_tsc),
        Err(why) => {
            kprintln!("mini-kernel: {why}");
            uefi::Status::LOAD_ERROR
        }
    }
}

/// In plain QEMU, RAM from here up (free conventional memory) is declared unaccepted, as TDVF
/// leaves everything above the prefix it accepts itself (OVMF: 512 MiB).
const MODEL_ACCEPTED_PREFIX: u64 = 512 << 20;

/// The boot, from the firmware's memory map to the final line; `tdx` says whether this is a TD.
fn kernel_main(
    boot_services: firmware::BootServices,
    tdx: Result<(), early::DetectError>,
    boot_tsc: u64,
) -> ! {
    // The memory map and the ACPI tables are read while boot services still run: parsing them
    // calls no boot service and allocates only from the kernel's heap, so the map stays current.
    let mut map = match memory::read(&boot_services.memory_map()) {
        Ok(map) => map,
        Err(e) => fail_now(format_args!("UEFI memory map rejected: {e:?}")),
    };
    check!(
        "memory map",
        map.usable_bytes() > 0,
        "{} regions from the UEFI map into e820::MemoryMap, {} MiB usable",
        map.regions().len(),
        map.usable_bytes() >> 20
    );

    let Some(rsdp) = boot_services.rsdp else {
        fail_now(format_args!("no ACPI 2.0 RSDP"))
    };
    let platform_madt = match mpwk::find_madt(rsdp, |address, length| {
        memory::acpi_table_bytes(&map, address, length)
    }) {
        Ok(madt) => madt,
        Err(e) => fail_now(format_args!("ACPI MADT: {e:?}")),
    };
    let apic_ids: Vec<u32> = platform_madt.apic_ids().collect();
    check!(
        "ACPI tables",
        !apic_ids.is_empty(),
        "RSDP {rsdp:#x}, MADT lists APIC IDs {apic_ids:?}"
    );

    let pages = boot_services.pages;
    let uefi_map = match boot_services.exit() {
        Ok(uefi_map) => uefi_map,
        Err(why) => fail_now(format_args!("{why}")),
    };
    // Normally the same map; re-read in case the firmware changed it before the exit succeeded.
    map = match memory::read(&uefi_map) {
        Ok(map) => map,
        Err(e) => fail_now(format_args!("UEFI memory map rejected: {e:?}")),
    };
    // Nothing may raise a #VE between ExitBootServices and the kernel's IDT: the firmware's
    // handler is gone with boot services. The console goes through TDVMCALLs in a TD, and
    // descriptor tables, paging and the GS base take no #VE.
    gdt::init();
    interrupts::init();
    let ram_top = map.regions().iter().map(|r| r.end).max().unwrap_or(0);
    let page_table_root = match paging::init(ram_top, tdx.is_err()) {
        Ok(root) => root,
        Err(why) => fail_now(format_args!("page tables: {why}")),
    };
    percpu::init(0, percpu::apic_id_from_cpuid());
    kprintln!(
        "mini-kernel: ExitBootServices done ({} ms after efi_main; firmware took {} ms from reset)",
        tsc::ms(tsc::now() - boot_tsc),
        tsc::ms(boot_tsc)
    );
    let cr3 = x86_64::registers::control::Cr3::read_raw()
        .0
        .start_address()
        .as_u64();
    check!(
        "descriptor tables",
        interrupts::idt::is_loaded() && gdt::task_register() != 0 && cr3 == page_table_root,
        "GDT + TSS with 7 IST stacks; IDT: 256 gates each on an IST stack, #VE -> tdx-boot's ve_entry; \
         own identity-mapped page tables at {page_table_root:#x}"
    );

    let platform = match tdx {
        Ok(()) => {
            kprintln!(
                "mini-kernel: TD detected (CPUID leaf 0x21 says IntelTDX): using the TDX module"
            );
            Platform::Td
        }
        Err(why) => {
            for (start, end) in memory::conventional_ranges(&uefi_map, MODEL_ACCEPTED_PREFIX) {
                let _ = map.mark_unaccepted(start, end);
            }
            let module = td_model::install(&map, apic_ids.len() as u32);
            kprintln!(
                "mini-kernel: no TDX ({why}): TD detected (model): tdx-boot's software TDX module answers TDCALL's #UD"
            );
            Platform::Model(module)
        }
    };
    kprintln!("mini-kernel: memory map (tdx-boot e820):");
    memory::print(&map);

    let td = match early::init(&Hardware, Policy::default()) {
        Ok(td) => td,
        Err(e) => fail_now(format_args!("early::init: {e:?}")),
    };
    let info = td.info();
    check!(
        "TD info and policy",
        info.num_vcpus as usize == apic_ids.len() && info.vcpu_index == 0,
        "GPAW {}, shared bit {:#x}, attributes {:?}, {} vCPUs (max {}), SEPT #VE {:?}, REDUCE_VE {:?}",
        info.gpaw,
        td.shared_mask(),
        info.attributes,
        info.num_vcpus,
        info.max_vcpus,
        td.sept_ve(),
        td.reduce_ve()
    );

    let greeting = b"mini-kernel: hello through TDG.VP.VMCALL<Instruction.IO>";
    let console = TdxSerial::new(&Hardware).write_bytes(greeting);
    let reached_uart = match platform {
        Platform::Model(module) => module
            .uart_output()
            .windows(greeting.len())
            .any(|w| w == greeting),
        Platform::Td => true,
    };
    check!(
        "TDVMCALL console",
        console.is_ok() && reached_uart,
        "{} bytes written to COM1 by TDVMCALL",
        greeting.len()
    );

    ve_instructions::check(&platform);
    ve_mmio::check(&platform, td.shared_mask());
    external_interrupt::check(&platform, &platform_madt, td.shared_mask());

    // SAFETY: the map's unaccepted regions are the firmware's (read from its UEFI map above) or,
    // on the model, conventional memory past the prefix the kernel lives in; nothing has
    // accepted or used them, and from here on only the bitmap accepts them.
    let lazy = match unsafe { acceptance::bitmap(&map) } {
        Some(Ok(lazy)) => Some(lazy),
        Some(Err(e)) => {
            check!("lazy acceptance", false, "bitmap: {e:?}");
            None
        }
        None => {
            kprintln!("mini-kernel: no unaccepted memory: nothing to accept");
            None
        }
    };
    if let Some(lazy) = &lazy {
        acceptance::check_lazy(&platform, lazy);
    }

    // APs: in a TD they already wait in TDVF's mailbox; in plain QEMU the kernel parks them.
    let wake_madt_bytes;
    let wake_madt = match (&platform, pages.fake_firmware) {
        (Platform::Td, _) => platform_madt,
        (Platform::Model(_), None) => fail_now(format_args!("no pages for the fake firmware")),
        (Platform::Model(_), Some(own)) => {
            // SAFETY: the pages are the kernel's for good; the APs are idle after ExitBootServices.
            let published =
                unsafe { fake_firmware::park_aps(own.low_page, own.mailbox_page, &apic_ids) };
            kprintln!(
                "fake firmware: APs {:?} parked in the mailbox loop (INIT-SIPI-SIPI); MADT with MP-wakeup entry, mailbox {:#x}",
                published.parked,
                own.mailbox_page
            );
            wake_madt_bytes = published.madt;
            match Madt::parse(&wake_madt_bytes) {
                Ok(madt) => madt,
                Err(e) => fail_now(format_args!("published MADT: {e:?}")),
            }
        }
    };
    // SAFETY: the trampoline page is the kernel's for good, identity-mapped and executable.
    let woken = unsafe { smp::wake_aps(&wake_madt, &map, info.gpaw, pages.trampoline_page) };
    let expected_aps = apic_ids.len() - 1;
    match woken {
        Ok(ids) => {
            // Without TDX the fake firmware also counts the APs that left its parking loop.
            let firmware_agrees = match platform {
                Platform::Model(_) => {
                    fake_firmware::parking::WOKEN.load(core::sync::atomic::Ordering::Relaxed)
                        as usize
                        == ids.len()
                }
                Platform::Td => true,
            };
            check!(
                "APs woken through the mailbox",
                ids.len() == expected_aps
                    && smp::online_aps() as usize == expected_aps
                    && firmware_agrees,
                "APIC IDs {ids:?} woken by mpwk, {} online in the kernel",
                smp::online_aps()
            )
        }
        Err(e) => check!("APs woken through the mailbox", false, "{e:?}"),
    }

    smp::check_wake_ipis();

    if let Some(lazy) = &lazy {
        acceptance::check_parallel(&platform, lazy, &mut map);
    }

    // SAFETY: the trampoline page is still the kernel's; every AP is past it.
    unsafe { smp::check_hand_back(pages.trampoline_page, platform.model().is_some()) };

    conversion::check(&platform, td.shared_mask());

    attestation::check(&platform, &mut map, rsdp, td.shared_mask());

    if let Some(module) = platform.model() {
        kprintln!(
            "mini-kernel: the model answered {} TDCALLs through #UD ({} TDG.VP.VMCALLs); heap {} MiB free",
            ud_tdcall::emulated_count(),
            module.tdcall_count(tdx_boot::tdcall::leaf::VP_VMCALL),
            metal::heap::HEAP.free() >> 20
        );
    }
    let (_, failed) = checks::totals();
    let elapsed = tsc::ms(tsc::now() - boot_tsc);
    kprintln!(
        "mini-kernel: boot took {elapsed} ms from efi_main ({} ms from reset), measured with the TSC",
        tsc::ms(tsc::now())
    );
    kprintln!("{}", checks::final_line());
    exit(if failed == 0 {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}

/// Reports a failure that leaves nothing to continue with, and ends the run.
fn fail_now(why: core::fmt::Arguments<'_>) -> ! {
    check!("boot", false, "{why}");
    kprintln!("{}", checks::final_line());
    exit(ExitCode::Failure)
}
