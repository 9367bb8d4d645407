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
mod checks;
mod conversion;
mod fake_firmware;
mod firmware;
mod gdt;
mod heap;
mod interrupts;
mod memory;
mod paging;
mod percpu;
mod qemu_exit;
#[cfg(mini_kernel_image)]
mod runtime;
mod serial;
mod smp;
mod td_model;
mod tsc;
mod ud_tdcall;
mod uefi;
mod ve_demo;

use alloc::vec::Vec;
use qemu_exit::{ExitCode, exit};
use tdx_boot::early::{self, IdentityMapped, Policy, TdxSerial};
use tdx_boot::model::TdxModule;
use tdx_boot::mpwk::{self, Madt};
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
    kprintln!(
        "\nmini-kernel: efi_main at {:#x}",
        efi_main as *const () as usize
    );
    // SAFETY: the firmware passes a valid system table.
    let Some(system_table) = (unsafe { system_table.as_ref() }) else {
        return uefi::INVALID_PARAMETER;
    };
    // SAFETY: called once, from efi_main, with the firmware's arguments.
    match unsafe { firmware::prepare(image, system_table) } {
        Ok(boot_services) => kernel_main(boot_services, boot_tsc),
        Err(why) => {
            kprintln!("mini-kernel: {why}");
            uefi::LOAD_ERROR
        }
    }
}

/// Where the TD's answers come from.
enum Platform {
    /// A real TD: TDCALL reaches the TDX module.
    Td,
    /// No TDX: the software module answers TDCALL's #UD.
    Model(&'static TdxModule),
}

/// In plain QEMU, RAM from here up (free conventional memory) is declared unaccepted, as TDVF
/// leaves everything above the prefix it accepts itself (OVMF: 512 MiB).
const MODEL_ACCEPTED_PREFIX: u64 = 512 << 20;

/// The boot, from the firmware's memory map to the final line.
fn kernel_main(boot_services: firmware::BootServices, boot_tsc: u64) -> ! {
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
    let identity = |address: u64, length: usize| {
        // SAFETY: ACPI tables live in firmware memory, identity-mapped and never reused.
        Some(unsafe { core::slice::from_raw_parts(address as *const u8, length) })
    };
    let platform_madt = match mpwk::find_madt(rsdp, identity) {
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
    kprintln!(
        "mini-kernel: ExitBootServices done ({} ms after efi_main; firmware took {} ms from reset)",
        tsc::ms(tsc::now() - boot_tsc),
        tsc::ms(boot_tsc)
    );

    let bsp_apic_id = fake_firmware::current_apic_id();
    percpu::init(0, bsp_apic_id);
    gdt::init();
    interrupts::init();
    let page_table_root = paging::init();
    check!(
        "descriptor tables",
        true,
        "GDT + TSS with 7 IST stacks; IDT: 256 gates each on an IST stack, #VE -> tdx-boot's ve_entry; \
         own identity-mapped page tables at {page_table_root:#x}"
    );

    let platform = match early::detect() {
        Ok(()) => {
            kprintln!(
                "mini-kernel: TD detected (CPUID leaf 0x21 says IntelTDX): using the TDX module"
            );
            early::install_console(&Hardware);
            serial::route_through_tdvmcall();
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

    virtualization_exceptions(&platform, td.shared_mask());

    let lazy = match acceptance::bitmap(&map) {
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
        accept_lazily(&platform, lazy);
    }

    // APs: in a TD they already wait in TDVF's mailbox; in plain QEMU the kernel parks them.
    let wake_madt_bytes;
    let wake_madt = match platform {
        Platform::Td => platform_madt,
        Platform::Model(_) => {
            // SAFETY: the pages are the kernel's for good; the APs are idle after ExitBootServices.
            let published =
                unsafe { fake_firmware::park_aps(pages.low_page, pages.mailbox_page, &apic_ids) };
            kprintln!(
                "fake firmware: APs {:?} parked in the mailbox loop (INIT-SIPI-SIPI); MADT with MP-wakeup entry, mailbox {:#x}",
                published.parked,
                pages.mailbox_page
            );
            wake_madt_bytes = published.madt;
            match Madt::parse(&wake_madt_bytes) {
                Ok(madt) => madt,
                Err(e) => fail_now(format_args!("published MADT: {e:?}")),
            }
        }
    };
    // SAFETY: the trampoline page is the kernel's for good, identity-mapped and executable.
    let woken = unsafe { smp::wake_aps(&wake_madt, &map, pages.trampoline_page) };
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

    if let Some(lazy) = &lazy {
        accept_in_parallel(&platform, lazy, &mut map);
    }

    convert_round_trip(&platform, td.shared_mask());

    measure(&platform);

    if let Platform::Model(module) = platform {
        kprintln!(
            "mini-kernel: the model answered {} TDCALLs through #UD ({} TDG.VP.VMCALLs); heap {} MiB free",
            ud_tdcall::emulated_count(),
            module.tdcall_count(tdx_boot::tdcall::leaf::VP_VMCALL),
            heap::HEAP.free() >> 20
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

/// Takes 16 MiB out of unaccepted memory the way an allocator would: accepted on first use.
fn accept_lazily(platform: &Platform, lazy: &acceptance::Lazy) {
    const TAKE: u64 = 16 << 20;
    let Some(&(start, end)) = lazy.ranges.iter().find(|(s, e)| e - s > TAKE + (2 << 20)) else {
        return kprintln!("mini-kernel: lazy acceptance: no unaccepted range above 18 MiB");
    };
    let before = lazy.bitmap.unaccepted_bytes();
    let begin = tsc::now();
    let result = lazy.bitmap.ensure_accepted(&Hardware, start, start + TAKE);
    let ms = tsc::ms(tsc::now() - begin);
    let accepted = before - lazy.bitmap.unaccepted_bytes();
    // SAFETY: the range was just accepted (private, zeroed by the module) and is unused.
    let zeroed = unsafe { core::slice::from_raw_parts(start as *const u64, (TAKE / 8) as usize) }
        .iter()
        .all(|&w| w == 0);
    let states_ok = match platform {
        Platform::Model(module) => {
            module.page_state(start) == tdx_boot::model::PageState::Private
                && module.page_state(start + TAKE) == tdx_boot::model::PageState::Private
                && module.page_state(start + TAKE + (2 << 20))
                    == tdx_boot::model::PageState::Unaccepted
        }
        Platform::Td => true,
    };
    check!(
        "lazy acceptance",
        result.is_ok() && accepted == TAKE + (2 << 20) && zeroed && states_ok && end > start,
        "ensure_accepted({start:#x}..{:#x}) accepted {} MiB (with the 2 MiB guard unit) in {ms} ms, \
         zeroed; {} MiB still unaccepted",
        start + TAKE,
        accepted >> 20,
        lazy.bitmap.unaccepted_bytes() >> 20
    );
}

/// The rest of unaccepted memory, split across every CPU.
fn accept_in_parallel<const N: usize>(
    platform: &Platform,
    lazy: &acceptance::Lazy,
    map: &mut tdx_boot::e820::MemoryMap<N>,
) {
    let before = lazy.bitmap.unaccepted_bytes();
    let accept_calls = |platform: &Platform| match platform {
        Platform::Model(module) => module.tdcall_count(tdx_boot::tdcall::leaf::MEM_PAGE_ACCEPT),
        Platform::Td => 0,
    };
    let calls_before = accept_calls(platform);
    let run = acceptance::accept_rest_in_parallel(lazy);
    for (cpu, apic_id, share) in &run.shares {
        kprintln!(
            "    CPU {cpu} (APIC ID {apic_id}): {} MiB in {} work items",
            share.bytes >> 20,
            share.items
        );
    }
    let total: u64 = run.shares.iter().map(|(_, _, s)| s.bytes).sum();
    let busy_cpus = run.shares.iter().filter(|(_, _, s)| s.bytes > 0).count();
    for &(start, end) in &lazy.ranges {
        let _ = map.mark_accepted(start, end);
    }
    let none_left = match platform {
        Platform::Model(module) => lazy.ranges.iter().all(|&(s, e)| {
            module
                .page_runs(s, e)
                .iter()
                .all(|r| r.2 == tdx_boot::model::PageState::Private)
        }),
        Platform::Td => true,
    };
    let rate = ((total >> 20) * 1000).checked_div(run.ms).unwrap_or(0);
    check!(
        "parallel acceptance",
        run.result.is_ok()
            && run.first_error.is_none()
            && total == before
            && lazy.bitmap.unaccepted_bytes() == 0
            && none_left
            && busy_cpus == run.shares.len(),
        "{} MiB on {} CPUs in {} ms ({rate} MiB/s, {} ACCEPT calls), every CPU took a share; \
         map now {} MiB unaccepted{}",
        total >> 20,
        run.shares.len(),
        run.ms,
        accept_calls(platform) - calls_before,
        map.unaccepted_bytes() >> 20,
        run.first_error
            .map(|e| alloc::format!(" (error {e:?})"))
            .unwrap_or_default()
    );
}

/// A buffer to shared and back.
fn convert_round_trip(platform: &Platform, shared_mask: u64) {
    let mut vmm_saw_shared = matches!(platform, Platform::Td);
    let trip = conversion::round_trip(shared_mask, |range| {
        if let Platform::Model(module) = platform {
            vmm_saw_shared = (0..conversion::PAGES).all(|p| {
                module.page_state(range.gpa + p * 4096) == tdx_boot::model::PageState::Shared
            });
        }
    });
    let vmm_sees_private = match platform {
        Platform::Model(module) => {
            module.page_state(trip.range.gpa) == tdx_boot::model::PageState::Private
        }
        Platform::Td => true,
    };
    check!(
        "shared conversion round trip",
        trip.error.is_none()
            && trip.shared_mapping
            && vmm_saw_shared
            && trip.private_mapping_restored
            && vmm_sees_private
            && trip.zeroed_after,
        "{} KiB at {:#x}: shared (PTE bit {:#x}, MapGPA {} calls / {} retries, VMM view shared: {vmm_saw_shared}), \
         then private again (accepted, zeroed: {}){}",
        trip.range.len >> 10,
        trip.range.gpa,
        shared_mask,
        trip.shared_stats.calls,
        trip.shared_stats.retries,
        trip.zeroed_after,
        trip.error
            .map(|e| alloc::format!(" error {e:?}"))
            .unwrap_or_default()
    );
}

/// CPUID, port IO and MMIO through #VE and tdx-boot's handler.
fn virtualization_exceptions(platform: &Platform, shared_bit: u64) {
    let (source, mmio_device) = match *platform {
        Platform::Td => (ve_demo::Source::Td, None),
        Platform::Model(module) => (
            ve_demo::Source::Model(module),
            Some(ve_demo::prepare_model(module)),
        ),
    };
    let cpuid = source.cpuid(ve_demo::HYPERVISOR_LEAF);
    let expected = match platform {
        Platform::Model(_) => cpuid == ve_demo::MODEL_HYPERVISOR,
        Platform::Td => cpuid.eax >= ve_demo::HYPERVISOR_LEAF,
    };
    let vendor: Vec<u8> = [cpuid.ebx, cpuid.ecx, cpuid.edx]
        .iter()
        .flat_map(|r| r.to_le_bytes())
        .collect();
    check!(
        "#VE CPUID",
        expected,
        "leaf {:#x} -> max leaf {:#x}, vendor {:?}",
        ve_demo::HYPERVISOR_LEAF,
        cpuid.eax,
        core::str::from_utf8(&vendor).unwrap_or("?")
    );

    source.outb(ve_demo::SCRATCH_PORT, 0xa5);
    let back = source.inb(ve_demo::SCRATCH_PORT);
    check!(
        "#VE port IO",
        back == 0xa5,
        "OUT {:#x} then IN {:#x}: {back:#04x}",
        ve_demo::SCRATCH_PORT,
        ve_demo::SCRATCH_PORT
    );

    match (
        source.mmio_round_trip(ve_demo::MMIO_GPA, shared_bit, 0x1234_5678),
        mmio_device,
    ) {
        (Some(read), Some(device)) => check!(
            "#VE MMIO",
            read == 0x1234_5678 && device.get(0, 4) == 0x1234_5678,
            "MOV store + load at shared GPA {:#x}: device saw {:#x}, load returned {read:#x}",
            ve_demo::MMIO_GPA | shared_bit,
            device.get(0, 4)
        ),
        _ => {
            kprintln!("mini-kernel: #VE MMIO: not exercised in a TD (needs a shared MMIO mapping)")
        }
    }
}

/// RTMR extend and TDREPORT: the measured-boot helpers of `early`.
fn measure(platform: &Platform) {
    // SAFETY: the kernel runs on the firmware's identity map and its stack and heap are private.
    let phys = unsafe { IdentityMapped::new() };
    let event = b"mini-kernel: booted";
    let extended = early::extend_rtmr(&Hardware, 2, event, &phys);
    let report = early::tdreport(&Hardware, &[0x5a; 64], &phys);
    match (extended, report) {
        (Ok(digest), Ok(report)) => {
            let rtmr = report.rtmr(2).copied().unwrap_or([0; 48]);
            let module_agrees = match platform {
                Platform::Model(module) => module.rtmr(2) == rtmr,
                Platform::Td => true,
            };
            check!(
                "RTMR extend and TDREPORT",
                rtmr != [0; 48] && module_agrees,
                "RTMR[2] extended with SHA-384 {:02x}{:02x}{:02x}{:02x}..; TDREPORT type {:?}, RTMR[2] {:02x}{:02x}{:02x}{:02x}..",
                digest[0],
                digest[1],
                digest[2],
                digest[3],
                report.report_type(),
                rtmr[0],
                rtmr[1],
                rtmr[2],
                rtmr[3]
            );
        }
        (extended, report) => check!(
            "RTMR extend and TDREPORT",
            false,
            "extend {:?}, report {:?}",
            extended.err(),
            report.err()
        ),
    }
}

/// Reports a failure that leaves nothing to continue with, and ends the run.
fn fail_now(why: core::fmt::Arguments<'_>) -> ! {
    check!("boot", false, "{why}");
    kprintln!("{}", checks::final_line());
    exit(ExitCode::Failure)
}
