//! Building the TD the way a VMM does (QEMU's `hw/i386/tdvf.c`, `tdvf-hob.c`, `target/i386/kvm/
//! tdx.c`, with KVM and the TDX module underneath): TDVF's sections at their GPAs, TEMP_MEM and
//! TD_HOB as private memory already added, all other RAM unaccepted, the TD HOB as QEMU writes
//! it, MRTD from the measured pages; then the TD's vCPUs run.

use crate::devices::{
    CmosPorts, DebugExit, FwCfgPorts, MachineFwCfg, PassthroughMmio, PassthroughPorts,
};
use crate::host_efi::BootServicesHandle;
use crate::layout::{Block, HIGH_RAM_START, Layout, SHARED_BIT};
use crate::npt::Npt;
use crate::td::Td;
use crate::{boot_paging, host_fw_cfg, host_idt, host_timer, println, svm};
use alloc::format;
use alloc::string::String;
use core::convert::Infallible;
use tdx_boot::model::{ModelConfig, PageState, TdxModule};
use tdx_sim::cmos::RamLayout;
use tdx_sim::mrtd;
use tdx_sim::td_hob::{self, TdRam};
use tdx_sim::tdvf::TdvfMetadata;

/// The TD's vCPUs.
pub const NUM_VCPUS: u32 = 4;
/// The TD's RAM: split as QEMU's q35 splits it (2 GiB below 4 GiB, the rest from 4 GiB), the
/// layout TDVF's PCI apertures and shared MMIO ranges are computed for. TDVF 2022.11 accepts all
/// RAM below 4 GiB itself and leaves what is above unaccepted for the OS.
const RAM: RamLayout = RamLayout::q35(3 << 30);
const LOW_RAM: u64 = RAM.below_4g;
const HIGH_RAM: u64 = RAM.above_4g;
/// tdx-sim's own heap: the model's tables, the nested tables, the VMCBs.
const HEAP: u64 = 96 << 20;
/// The MSRs a TD reaches through TDVMCALL that the VMM answers with a value, as KVM answers a
/// TD: no MTRRs (MTRRcap 0, so firmware programs none) with write-back as the default type,
/// IA32_FEATURE_CONTROL locked, no microcode revision to report.
const KVM_MSRS: [(u32, u64); 5] = [
    (0xfe, 0),             // IA32_MTRRCAP
    (0x2ff, 0x806),        // IA32_MTRR_DEF_TYPE: enabled, WB
    (0x3a, 0x1),           // IA32_FEATURE_CONTROL: locked
    (0x17, 0),             // IA32_PLATFORM_ID
    (0x8b, 0x1_0000_0000), // IA32_BIOS_SIGN_ID
];
/// fw_cfg names of the files `cargo xtask` passes.
const TDVF_FILE: &str = "opt/tdx-sim/tdvf";
const KERNEL_FILE: &str = "opt/tdx-sim/kernel";

fn pages(bytes: u64) -> usize {
    bytes.div_ceil(4096) as usize
}

/// Builds the TD and runs it; returns only on failure to build.
pub fn build_and_run(boot_services: BootServicesHandle) -> Result<Infallible, String> {
    if !svm::supported() {
        return Err("the CPU has no SVM with nested paging (QEMU needs -cpu max)".into());
    }
    if !host_fw_cfg::present() {
        return Err("the machine has no fw_cfg".into());
    }
    let alloc = |bytes: u64, what: &str| {
        boot_services
            .allocate(pages(bytes), u64::MAX)
            .map_err(|s| format!("AllocatePages for {what} ({bytes:#x} bytes): {s:?}"))
    };
    let heap = alloc(HEAP, "the heap")?;
    // SAFETY: freshly allocated loader data, used for nothing else.
    unsafe { metal::heap::init(heap, HEAP) };

    let tdvf_file = host_fw_cfg::find(TDVF_FILE).ok_or(format!("no fw_cfg file {TDVF_FILE}"))?;
    let image_host = alloc(tdvf_file.size.into(), "TDVF")?;
    // SAFETY: just allocated with the file's size.
    let image =
        unsafe { core::slice::from_raw_parts_mut(image_host as *mut u8, tdvf_file.size as usize) };
    host_fw_cfg::read(tdvf_file, image);
    let kernel = host_fw_cfg::find(KERNEL_FILE).ok_or(format!("no fw_cfg file {KERNEL_FILE}"))?;
    let digest = <sha2::Sha256 as sha2::Digest>::digest(&*image);
    let metadata = TdvfMetadata::parse(image).map_err(|e| format!("TDVF metadata: {e}"))?;
    metadata
        .require_qemu_types()
        .map_err(|e| format!("TDVF metadata: {e}"))?;
    println!(
        "tdx-sim: TDVF {} bytes, {} sections; kernel {} bytes",
        image.len(),
        metadata.sections().len(),
        kernel.size
    );

    // Firmware sections outside RAM (BFV, CFV) share one block ending at 4 GiB.
    let firmware_start = metadata
        .sections()
        .iter()
        .filter(|s| s.gpa >= LOW_RAM)
        .map(|s| s.gpa)
        .min()
        .ok_or("TDVF has no section above RAM")?;
    let firmware_len = HIGH_RAM_START - firmware_start;
    let layout = Layout {
        low_ram: Block {
            gpa: 0,
            len: LOW_RAM,
            host: alloc(LOW_RAM, "low RAM")?,
        },
        high_ram: Block {
            gpa: HIGH_RAM_START,
            len: HIGH_RAM,
            host: alloc(HIGH_RAM, "high RAM")?,
        },
        firmware: Block {
            gpa: firmware_start,
            len: firmware_len,
            host: alloc(firmware_len, "firmware")?,
        },
    };
    let boot_tables = alloc(boot_paging::TABLES_LEN, "boot page tables")?;
    let host_save_area = alloc(4096, "the SVM host save area")?;

    // The sections' contents.
    for section in metadata.sections() {
        let data = section.data(image);
        let host = layout
            .host_of(section.gpa, section.memory_size)
            .ok_or(format!(
                "section at {:#x} is outside the TD's memory",
                section.gpa
            ))?;
        // SAFETY: `host_of` found a block holding the whole section; blocks are ours.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), host as *mut u8, data.len()) };
    }
    let mrtd = mrtd::measure_tdvf(image, &metadata);

    // RAM as QEMU's ram_entries: unaccepted, with TEMP_MEM and TD_HOB added.
    let ram = TdRam::<32>::for_tdvf(
        layout.ram_ranges().map(|(start, end)| (start, end - start)),
        &metadata,
    )
    .map_err(|e| format!("TD RAM: {e}"))?;
    let hob_section = metadata.td_hob().ok_or("TDVF has no TD_HOB section")?;
    let hob_host = layout
        .host_of(hob_section.gpa, hob_section.memory_size)
        .ok_or("TD_HOB outside RAM")?;
    // SAFETY: the section's memory in our RAM block.
    let hob_buf = unsafe {
        core::slice::from_raw_parts_mut(hob_host as *mut u8, hob_section.memory_size as usize)
    };
    td_hob::build_td_hob(hob_buf, hob_section.gpa, ram.entries())
        .map_err(|e| format!("TD HOB: {e}"))?;

    // The module: page states as the build left them, the host memory behind them.
    let module = TdxModule::new(ModelConfig {
        num_vcpus: NUM_VCPUS,
        mrtd,
        // KVM leaves exposed registers that are not outputs as the TD had them, and TDVF's AP
        // loop relies on it (it exposes RBX, its mailbox pointer, to TDVMCALL<CPUID>).
        vmm_clobbers_exposed: false,
        ..ModelConfig::default()
    });
    for entry in ram.entries() {
        let state = match entry.state {
            td_hob::RamState::Unaccepted => PageState::Unaccepted,
            td_hob::RamState::Added => PageState::Private,
        };
        module.add_memory(entry.start, entry.end(), state);
    }
    module.add_memory(firmware_start, HIGH_RAM_START, PageState::Private);
    // Everything else below the shared bit is device space.
    module.add_memory(LOW_RAM, firmware_start, PageState::Mmio);
    module.add_memory(HIGH_RAM_START + HIGH_RAM, SHARED_BIT, PageState::Mmio);
    for block in layout.blocks() {
        // SAFETY: each block is host memory we allocated for exactly that guest memory, used
        // for nothing else while the TD lives.
        unsafe { module.add_backing(block.gpa, block.host as *mut u8, block.len) };
    }
    module.add_port_device(0, u16::MAX, alloc::boxed::Box::new(PassthroughPorts));
    let files = tdx_sim::fw_cfg::KernelFiles {
        kernel: KERNEL_FILE,
        cmdline: None,
    };
    let fw_cfg = tdx_sim::fw_cfg::TdFwCfg::new(&mut MachineFwCfg, files, false)
        .map_err(|e| format!("fw_cfg: {e}"))?;
    module.add_port_device(0x510, 12, alloc::boxed::Box::new(FwCfgPorts(fw_cfg)));
    let cmos = tdx_sim::cmos::TdCmos::new(tdx_sim::cmos::RamLayout {
        below_4g: LOW_RAM,
        above_4g: HIGH_RAM,
    });
    module.add_port_device(0x70, 2, alloc::boxed::Box::new(CmosPorts(cmos)));
    module.set_cpuid_source(alloc::boxed::Box::new(crate::kvm_cpuid::KvmCpuid {
        vcpus: NUM_VCPUS,
    }));
    for (index, value) in KVM_MSRS {
        module.set_msr(index, value);
    }
    // The TD's IOAPIC in front of the machine's (registered after the pass-through MMIO
    // above, so the model asks it first for its page).
    let ioapic = tdx_sim::td_ioapic::TdIoApic::new(
        &mut crate::devices::MachineIoApic,
        host_timer::apic_id(),
        crate::host_device_irq::FIRST_VECTOR,
        crate::host_device_irq::PINS,
    )
    .map_err(|e| format!("the machine's IOAPIC: {e:?}"))?;
    let ioapic = crate::devices::TdIoApicDevice(alloc::sync::Arc::new(spin::Mutex::new(ioapic)));
    let apics = crate::apic_bank::ApicBank::new(NUM_VCPUS, ioapic.clone());
    module.add_msr_device(alloc::boxed::Box::new(apics.clone()));
    let serial = crate::devices::SerialTap::default();
    module.add_port_device(
        crate::devices::COM1,
        8,
        alloc::boxed::Box::new(serial.clone()),
    );
    let debug_exit = DebugExit::new();
    module.add_port_device(0xf4, 1, alloc::boxed::Box::new(debug_exit.clone()));
    module.add_mmio_device(
        LOW_RAM,
        firmware_start - LOW_RAM,
        alloc::boxed::Box::new(PassthroughMmio { base: LOW_RAM }),
    );
    module.add_mmio_device(
        tdx_sim::td_ioapic::IOAPIC_BASE,
        4096,
        alloc::boxed::Box::new(ioapic.clone()),
    );

    // The nested tables: what is private and present from the start.
    let npt = Npt::new().map_err(|e| format!("nested tables: {e:?}"))?;
    // SAFETY: the tables' pages were just allocated for this.
    unsafe { boot_paging::write_tables(boot_tables as *mut u64) };

    boot_services
        .exit()
        .map_err(|s| format!("ExitBootServices: {s:?}"))?;
    host_idt::init();
    host_timer::init();
    crate::host_clock::init();
    // SAFETY: the page was allocated for this alone; SVM is supported (checked above).
    unsafe { svm::enable(host_save_area) };
    x86_64::instructions::interrupts::enable();

    let mut td = Td::new(
        layout,
        npt,
        module,
        crate::td::TdDevices {
            debug_exit,
            apics,
            ioapic,
            serial,
        },
        NUM_VCPUS,
        hob_section.gpa,
    );
    td.sync_mappings(0, HIGH_RAM_START + HIGH_RAM);
    // After the sync, which unmaps every GPA the module calls device space: the reset vector's
    // tables sit in such a hole.
    boot_paging::map_tables(&mut td.npt, boot_tables)
        .map_err(|e| format!("nested tables: {e:?}"))?;
    println!(
        "tdx-sim: TD built: {} MiB RAM ({} MiB above 4 GiB), {NUM_VCPUS} vCPUs; starting TDVF",
        (LOW_RAM + HIGH_RAM) >> 20,
        HIGH_RAM >> 20
    );
    let stop = td.run();
    crate::report::finish(&td, &digest, stop)
}
