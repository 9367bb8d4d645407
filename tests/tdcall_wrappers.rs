//! Every wrapper of `tdx_boot::tdcall` driven through the model: outcomes, errors (module
//! refusals, VMM refusals, bad arguments) and register exposure. The model shows the VMM only
//! exposed registers and fills exposed non-outputs with garbage, so a wrapper that forgets to
//! expose an input, or trusts an undefined output, fails here.
#![cfg(feature = "model")]

mod common;

use common::HostMemory;
use sha2::{Digest, Sha384};
use tdx_boot::model::{FOREVER, MapGpaFault, ModelConfig, PageState, RegisterFile, TdxModule};
use tdx_boot::tdcall::vmcall::{
    self, CpuidResult, IoSize, MapGpaOutcome, MmioSize, VmcallError, function,
};
use tdx_boot::tdcall::{
    AcceptOutcome, PageLevel, ReportData, RtmrDigest, TdAttributes, TdInfoError, TdReport,
    TdcsField, TdxError, TdxStatus, VeInfo, VmcallStatus, accept_page, leaf, rtmr_extend, tdreport,
    ve_info_get, vm_rd, vm_wr, vp_info,
};

const PAGE: u64 = 0x1000;
const MIB2: u64 = 0x20_0000;
const SHARED: u64 = 1 << 47;

fn model() -> TdxModule {
    TdxModule::new(ModelConfig::default())
}

// ---------------------------------------------------------------------------------------------
// Module leaves
// ---------------------------------------------------------------------------------------------

#[test]
fn vp_info_decodes_and_validates() {
    let tdx = TdxModule::new(ModelConfig {
        gpaw: 52,
        num_vcpus: 2,
        max_vcpus: 4,
        attributes: (TdAttributes::SEPT_VE_DISABLE | TdAttributes::DEBUG).bits(),
        ..Default::default()
    });
    let info = vp_info(&tdx.vcpu(1)).unwrap();
    assert_eq!(info.gpaw, 52);
    assert_eq!(info.shared_mask(), 1 << 51);
    assert_eq!(
        info.attributes,
        TdAttributes::SEPT_VE_DISABLE | TdAttributes::DEBUG
    );
    assert_eq!((info.num_vcpus, info.max_vcpus, info.vcpu_index), (2, 4, 1));
    assert_eq!(vp_info(&tdx.vcpu(2)), Err(TdInfoError::BadVcpuCounts));
    let odd = TdxModule::new(ModelConfig {
        gpaw: 20,
        ..Default::default()
    });
    assert_eq!(vp_info(&odd.vcpu(0)), Err(TdInfoError::BadGpaw(20)));
    let none = TdxModule::new(ModelConfig {
        num_vcpus: 0,
        ..Default::default()
    });
    assert_eq!(vp_info(&none.vcpu(0)), Err(TdInfoError::BadVcpuCounts));
    tdx.inject_tdcall_status(leaf::VP_INFO, TdxStatus::OPERAND_INVALID, 1);
    assert_eq!(
        vp_info(&tdx.vcpu(0)),
        Err(TdInfoError::Tdcall(TdxError(TdxStatus::OPERAND_INVALID)))
    );
}

#[test]
fn ve_info_get_returns_the_injected_ve_once() {
    let tdx = model();
    assert_eq!(
        ve_info_get(&tdx.vcpu(0)),
        Err(TdxError(TdxStatus::NO_VALID_VE_INFO))
    );
    let info = VeInfo {
        exit_reason: VeInfo::EXIT_REASON_IO,
        exit_qualification: 0x3f8 << 16 | 0x8,
        guest_linear_address: 1,
        guest_physical_address: 2,
        instruction_length: 1,
        instruction_info: 0xabcd,
    };
    tdx.inject_ve(0, info);
    assert_eq!(ve_info_get(&tdx.vcpu(0)), Ok(info));
    assert!(ve_info_get(&tdx.vcpu(0)).is_err());
}

#[test]
fn accept_page_maps_every_module_answer() {
    let tdx = model();
    tdx.add_memory(0, 4 * MIB2, PageState::Unaccepted);
    let cpu = tdx.vcpu(0);
    // SAFETY (all calls): the model has no backing here, nothing is zeroed.
    let acc = |gpa, level| unsafe { accept_page(&cpu, gpa, level) };
    assert_eq!(acc(0, PageLevel::Size2M), AcceptOutcome::Accepted);
    assert_eq!(acc(0, PageLevel::Size2M), AcceptOutcome::AlreadyAccepted);
    assert_eq!(acc(MIB2 + PAGE, PageLevel::Size4K), AcceptOutcome::Accepted);
    assert_eq!(acc(MIB2, PageLevel::Size2M), AcceptOutcome::SizeMismatch);
    tdx.inject_busy(1);
    assert_eq!(acc(MIB2, PageLevel::Size4K), AcceptOutcome::Busy);
    assert_eq!(acc(MIB2, PageLevel::Size4K), AcceptOutcome::Accepted);
    assert_eq!(
        acc(SHARED | (2 * MIB2), PageLevel::Size2M),
        AcceptOutcome::Failed(TdxStatus::OPERAND_INVALID)
    );
    let calls = tdx.tdcall_count(leaf::MEM_PAGE_ACCEPT);
    assert_eq!(
        acc(2 * MIB2 + PAGE, PageLevel::Size2M),
        AcceptOutcome::Failed(TdxStatus::OPERAND_INVALID)
    );
    assert_eq!(
        tdx.tdcall_count(leaf::MEM_PAGE_ACCEPT),
        calls,
        "refused before the call"
    );
    assert_eq!(tdx.page_state(2 * MIB2), PageState::Unaccepted);
    // Outside guest memory the module does not answer: the VMM ends the TD. The model's
    // stand-in value still reads as a failure.
    assert!(matches!(
        acc(8 * MIB2, PageLevel::Size4K),
        AcceptOutcome::Failed(_)
    ));
    assert!(tdx.td_killed().is_some());
}

#[test]
fn accept_page_zeroes_backed_memory() {
    let mem = HostMemory::new(MIB2 as usize, 0xee);
    let tdx = model();
    mem.back(&tdx, 0);
    tdx.add_memory(0, MIB2, PageState::Unaccepted);
    // SAFETY: the backing is test-owned memory nothing else uses.
    let outcome = unsafe { accept_page(&tdx.vcpu(0), PAGE, PageLevel::Size4K) };
    assert_eq!(outcome, AcceptOutcome::Accepted);
    assert_eq!(
        mem.read(PAGE as usize, PAGE as usize),
        vec![0; PAGE as usize]
    );
    assert_eq!(mem.read(0, 1), [0xee]);
}

/// Guest memory at `gpa` whose host copy is a `T` the wrappers can borrow.
fn backed<T>(tdx: &TdxModule, gpa: u64, value: T) -> *mut T {
    let ptr = Box::into_raw(Box::new(value));
    // SAFETY: leaked, so valid for the model's lifetime; the tests access it only between
    // TDCALLs or through the wrapper that hands it to the module.
    assert!(unsafe { tdx.add_backing(gpa, ptr.cast(), size_of::<T>() as u64) });
    tdx.add_memory(gpa, gpa + size_of::<T>() as u64, PageState::Private);
    ptr
}

#[test]
fn tdreport_writes_the_report_and_binds_the_data() {
    let tdx = TdxModule::new(ModelConfig {
        mrtd: [0x5e; 48],
        ..Default::default()
    });
    let report = backed(&tdx, 0x10_0000, TdReport::default());
    let data = backed(&tdx, 0x20_0000, ReportData([0x3c; 64]));
    // SAFETY: the GPAs are the backing of exactly these two objects.
    let result = unsafe { tdreport(&tdx.vcpu(0), &mut *report, 0x10_0000, &*data, 0x20_0000) };
    assert_eq!(result, Ok(()));
    // SAFETY: no TDCALL is running; the object was written by the model as bytes.
    let report = unsafe { &*report };
    assert_eq!(report.report_type()[0], 0x81);
    assert_eq!(report.report_data(), &[0x3c; 64]);
    assert_eq!(report.mrtd(), &[0x5e; 48]);
    assert_eq!(report.attributes().bits(), tdx.config().attributes);
    // The module's refusal comes back as an error.
    let mut other = TdReport::default();
    // SAFETY: 0x30_0000 is not backed: the model refuses without touching memory.
    let result = unsafe { tdreport(&tdx.vcpu(0), &mut other, 0x30_0000, &*data, 0x20_0000) };
    assert_eq!(result, Err(TdxError(TdxStatus::OPERAND_INVALID)));
}

#[test]
fn rtmr_extend_matches_an_independent_sha384() {
    let tdx = model();
    let digest = backed(&tdx, 0x10_0000, RtmrDigest([0; 48]));
    let mut expected = [0u8; 48];
    for round in 1..=3u8 {
        // SAFETY: no TDCALL is running.
        unsafe { (*digest).0 = [round; 48] };
        // SAFETY: the GPA is the backing of `digest`.
        assert_eq!(
            unsafe { rtmr_extend(&tdx.vcpu(0), &*digest, 0x10_0000, 2) },
            Ok(())
        );
        let mut h = Sha384::new();
        h.update(expected);
        h.update([round; 48]);
        expected = h.finalize().into();
    }
    assert_eq!(tdx.rtmr(2), expected);
    assert_eq!(tdx.rtmr(0), [0; 48]);
    let calls = tdx.tdcall_count(leaf::MR_RTMR_EXTEND);
    // SAFETY: refused before the call.
    let bad = unsafe { rtmr_extend(&tdx.vcpu(0), &*digest, 0x10_0000, 4) };
    assert_eq!(bad, Err(TdxError(TdxStatus::OPERAND_INVALID)));
    assert_eq!(tdx.tdcall_count(leaf::MR_RTMR_EXTEND), calls);
    // SAFETY: a misaligned GPA: the module refuses without reading.
    let bad = unsafe { rtmr_extend(&tdx.vcpu(0), &*digest, 0x10_0008, 0) };
    assert_eq!(bad, Err(TdxError(TdxStatus::OPERAND_INVALID)));
    assert_eq!(tdx.rtmr(0), [0; 48]);
}

#[test]
fn vm_rd_and_vm_wr() {
    let tdx = model();
    let cpu = tdx.vcpu(0);
    assert_eq!(vm_rd(&cpu, TdcsField::TD_CTLS), Ok(0));
    let reduce = TdcsField::TD_CTLS_REDUCE_VE;
    assert_eq!(vm_wr(&cpu, TdcsField::TD_CTLS, reduce, reduce), Ok(0));
    assert_eq!(
        vm_wr(&cpu, TdcsField::TD_CTLS, 0, reduce),
        Ok(reduce),
        "returns the old value"
    );
    assert_eq!(vm_rd(&cpu, TdcsField::TD_CTLS), Ok(0));
    assert_eq!(
        vm_rd(&cpu, 0x1234),
        Err(TdxError(TdxStatus::METADATA_FIELD_ID_INCORRECT))
    );
    assert_eq!(
        vm_wr(&cpu, TdcsField::CONFIG_FLAGS, 1, 1),
        Err(TdxError(TdxStatus::METADATA_FIELD_NOT_WRITABLE))
    );
    let old = TdxModule::new(ModelConfig {
        reduce_ve_supported: false,
        ..Default::default()
    });
    assert_eq!(
        vm_wr(&old.vcpu(0), TdcsField::TD_CTLS, reduce, reduce),
        Err(TdxError(TdxStatus::METADATA_FIELD_NOT_WRITABLE))
    );
}

// ---------------------------------------------------------------------------------------------
// TDG.VP.VMCALL sub-functions
// ---------------------------------------------------------------------------------------------

#[test]
fn cpuid_passes_leaf_and_subleaf() {
    let tdx = model();
    let a = CpuidResult {
        eax: 1,
        ebx: 2,
        ecx: 3,
        edx: 4,
    };
    let b = CpuidResult {
        eax: 5,
        ebx: 6,
        ecx: 7,
        edx: 8,
    };
    tdx.set_cpuid(0x4000_0001, 0, a);
    tdx.set_cpuid(0x4000_0001, 1, b);
    assert_eq!(vmcall::cpuid(&tdx.vcpu(0), 0x4000_0001, 0), Ok(a));
    assert_eq!(
        vmcall::cpuid(&tdx.vcpu(0), 0x4000_0001, 1),
        Ok(b),
        "R13 reaches the VMM"
    );
    assert_eq!(
        vmcall::cpuid(&tdx.vcpu(0), 0x4000_0002, 0),
        Ok(CpuidResult::default())
    );
    assert_eq!(tdx.vmcall_count(function::CPUID), 3);
}

#[test]
fn hlt_and_safe_halt_tell_the_vmm_about_interrupts() {
    let tdx = model();
    assert_eq!(vmcall::hlt(&tdx.vcpu(0), true), Ok(()));
    assert_eq!(vmcall::hlt(&tdx.vcpu(0), false), Ok(()));
    // SAFETY: the model delivers no interrupts.
    assert_eq!(unsafe { vmcall::safe_halt(&tdx.vcpu(1)) }, Ok(()));
    let halts = tdx.halts();
    let summary: Vec<_> = halts
        .iter()
        .map(|h| (h.vcpu, h.interrupts_blocked, h.sti))
        .collect();
    assert_eq!(
        summary,
        [(0, true, false), (0, false, false), (1, false, true)]
    );
    assert_eq!(tdx.sti_calls(1), 1);
    tdx.refuse_vmcall(function::HLT, VmcallStatus::RETRY_RAW, 1);
    // SAFETY: as above.
    assert_eq!(
        unsafe { vmcall::safe_halt(&tdx.vcpu(1)) },
        Err(VmcallError::Vmm(VmcallStatus::Retry))
    );
}

#[test]
fn port_io_reaches_the_uart_and_devices() {
    let tdx = model();
    let cpu = tdx.vcpu(0);
    for &b in b"TDX" {
        vmcall::io_write(&cpu, 0x3f8, IoSize::U8, b.into()).unwrap();
    }
    assert_eq!(tdx.uart_output(), b"TDX");
    assert_eq!(
        vmcall::io_read(&cpu, 0x3fd, IoSize::U8).unwrap() & 0x20,
        0x20
    );
    let regs = RegisterFile::new(4);
    tdx.add_port_device(0xcf8, 4, Box::new(regs.clone()));
    vmcall::io_write(&cpu, 0xcf8, IoSize::U32, 0x8000_1234).unwrap();
    assert_eq!(regs.get(0, 4), 0x8000_1234, "R15 reaches the VMM");
    assert_eq!(vmcall::io_read(&cpu, 0xcf8, IoSize::U32), Ok(0x8000_1234));
    assert_eq!(vmcall::io_read(&cpu, 0xcfa, IoSize::U16), Ok(0x8000));
    assert_eq!(
        vmcall::io_read(&cpu, 0x70, IoSize::U8),
        Ok(0xff),
        "floating bus"
    );
    tdx.refuse_vmcall(function::IO, VmcallStatus::INVALID_OPERAND_RAW, 2);
    assert_eq!(
        vmcall::io_read(&cpu, 0x3f8, IoSize::U8),
        Err(VmcallError::Vmm(VmcallStatus::InvalidOperand))
    );
    assert!(vmcall::io_write(&cpu, 0x3f8, IoSize::U8, 0).is_err());
}

#[test]
fn msr_wrappers() {
    let tdx = model();
    let cpu = tdx.vcpu(0);
    tdx.set_msr(0x4b56_4d00, 0x1122_3344_5566_7788);
    assert_eq!(vmcall::rdmsr(&cpu, 0x4b56_4d00), Ok(0x1122_3344_5566_7788));
    assert_eq!(vmcall::wrmsr(&cpu, 0x4b56_4d00, 0xfeed), Ok(()));
    assert_eq!(tdx.msr(0x4b56_4d00), Some(0xfeed), "R13 reaches the VMM");
    assert_eq!(
        vmcall::rdmsr(&cpu, 0x10),
        Err(VmcallError::Vmm(VmcallStatus::InvalidOperand))
    );
    assert_eq!(
        vmcall::wrmsr(&cpu, 0x10, 1),
        Err(VmcallError::Vmm(VmcallStatus::InvalidOperand))
    );
}

#[test]
fn mmio_wrappers() {
    let tdx = model();
    let cpu = tdx.vcpu(0);
    let regs = RegisterFile::new(0x100);
    tdx.add_mmio_device(0xfec0_0000, 0x100, Box::new(regs.clone()));
    let base = SHARED | 0xfec0_0000;
    vmcall::mmio_write(&cpu, base + 0x10, MmioSize::U32, 0xaabb_ccdd_1122_3344).unwrap();
    assert_eq!(
        regs.get(0x10, 8),
        0x1122_3344,
        "truncated to the width, R15 exposed"
    );
    assert_eq!(
        vmcall::mmio_read(&cpu, base + 0x10, MmioSize::U64),
        Ok(0x1122_3344)
    );
    assert_eq!(vmcall::mmio_read(&cpu, base + 0x12, MmioSize::U8), Ok(0x22));
    assert_eq!(
        vmcall::mmio_read(&cpu, 0xfec0_0000, MmioSize::U32),
        Err(VmcallError::Vmm(VmcallStatus::InvalidOperand)),
        "a private GPA"
    );
}

#[test]
fn wbinvd_info_and_notify_wrappers() {
    let tdx = model();
    let cpu = tdx.vcpu(0);
    assert_eq!(vmcall::wbinvd(&cpu), Ok(()));
    assert_eq!(tdx.wbinvd_count(), 1);
    assert_eq!(vmcall::get_td_vmcall_info(&cpu, 0), Ok([0; 4]));
    assert_eq!(
        vmcall::get_td_vmcall_info(&cpu, 1),
        Err(VmcallError::Vmm(VmcallStatus::InvalidOperand))
    );
    assert!(matches!(
        vmcall::setup_event_notify_interrupt(&cpu, 31),
        Err(VmcallError::InvalidArgument(_))
    ));
    assert_eq!(tdx.vmcall_count(function::SETUP_EVENT_NOTIFY_INTERRUPT), 0);
    assert_eq!(vmcall::setup_event_notify_interrupt(&cpu, 0xf3), Ok(()));
    assert_eq!(tdx.event_notify_vector(), Some(0xf3));
}

#[test]
fn report_fatal_error_carries_the_whole_message() {
    let tdx = model();
    let message = b"panicked at src/main.rs:42: out of memory while accepting 0x1000!";
    let result = vmcall::report_fatal_error(&tdx.vcpu(0), 0xdead, message);
    assert_eq!(
        result,
        VmcallError::Vmm(VmcallStatus::Success),
        "the VMM let it return"
    );
    let (code, got) = tdx.fatal_error().unwrap();
    assert_eq!(code, 0xdead);
    assert_eq!(got, &message[..64], "all eight message registers exposed");
    vmcall::report_fatal_error(&tdx.vcpu(0), 1, b"short");
    assert_eq!(tdx.fatal_error().unwrap(), (1, b"short".to_vec()));
}

#[test]
fn map_gpa_wrapper_done_retry_and_errors() {
    let tdx = TdxModule::new(ModelConfig {
        map_gpa_chunk: MIB2,
        ..Default::default()
    });
    tdx.add_memory(0, 8 * MIB2, PageState::Private);
    let cpu = tdx.vcpu(0);
    // SAFETY (all map_gpa calls): the model's memory is not Rust memory.
    let map = |gpa, len| unsafe { vmcall::map_gpa(&cpu, gpa, len) };
    assert_eq!(map(SHARED, MIB2), Ok(MapGpaOutcome::Done));
    assert_eq!(tdx.page_state(0), PageState::Shared);
    assert_eq!(
        map(SHARED | MIB2, 2 * MIB2),
        Ok(MapGpaOutcome::Retry {
            resume_gpa: SHARED | (2 * MIB2)
        }),
        "R13 (length) reaches the VMM and R11 is read on RETRY"
    );
    assert_eq!(map(SHARED | (2 * MIB2), MIB2), Ok(MapGpaOutcome::Done));
    assert_eq!(map(0, MIB2), Ok(MapGpaOutcome::Done));
    assert_eq!(tdx.page_state(0), PageState::Unaccepted);
    let calls = tdx.vmcall_count(function::MAP_GPA);
    assert!(matches!(
        map(0x800, PAGE),
        Err(VmcallError::InvalidArgument(_))
    ));
    assert!(matches!(map(0, 0), Err(VmcallError::InvalidArgument(_))));
    assert!(matches!(
        map(!0xfff, 2 * PAGE),
        Err(VmcallError::InvalidArgument(_))
    ));
    assert_eq!(
        tdx.vmcall_count(function::MAP_GPA),
        calls,
        "refused before the call"
    );
    assert_eq!(
        map(SHARED - PAGE, 2 * PAGE),
        Err(VmcallError::Vmm(VmcallStatus::InvalidOperand)),
        "across the shared bit"
    );
    tdx.set_map_gpa_fault(Some(MapGpaFault::ResumeAt(0x42_0000)));
    assert_eq!(
        map(SHARED | (4 * MIB2), MIB2),
        Ok(MapGpaOutcome::Retry {
            resume_gpa: 0x42_0000
        }),
        "the wrapper reports the VMM's value as is; convert validates it"
    );
    tdx.set_map_gpa_fault(None);
    tdx.refuse_vmcall(function::MAP_GPA, VmcallStatus::GPA_INUSE_RAW, FOREVER);
    assert_eq!(
        map(SHARED, PAGE),
        Err(VmcallError::Vmm(VmcallStatus::GpaInUse))
    );
}

#[test]
fn get_quote_wrapper() {
    let mem = HostMemory::new(2 * PAGE as usize, 0);
    let tdx = model();
    mem.back(&tdx, 0x80_0000);
    tdx.add_memory(0x80_0000, 0x80_2000, PageState::Shared);
    let mut header = 1u64.to_le_bytes().to_vec();
    header.extend(0u64.to_le_bytes());
    header.extend(64u32.to_le_bytes());
    header.extend(0u32.to_le_bytes());
    mem.write(0, &header);
    mem.write(24, &[0x99; 64]);
    let cpu = tdx.vcpu(0);
    // SAFETY: the shared buffer is test-owned memory handed to the VMM.
    assert_eq!(
        unsafe { vmcall::get_quote(&cpu, SHARED | 0x80_0000, 2 * PAGE) },
        Ok(())
    );
    // The VMM read the header through the whole length (R13) and answered: 64 bytes are no
    // TDREPORT, so its quoting service reports an error.
    assert_eq!(
        mem.read(8, 8),
        tdx_boot::model::QUOTE_STATUS_ERROR.to_le_bytes(),
        "status error"
    );
    // SAFETY: refused before the call.
    let bad = unsafe { vmcall::get_quote(&cpu, SHARED | 0x80_0100, PAGE) };
    assert!(matches!(bad, Err(VmcallError::InvalidArgument(_))));
    // SAFETY: the VMM refuses a private GPA without touching memory.
    let bad = unsafe { vmcall::get_quote(&cpu, 0x80_0000, PAGE) };
    assert_eq!(bad, Err(VmcallError::Vmm(VmcallStatus::InvalidOperand)));
}

#[test]
fn every_vmcall_wrapper_reports_module_and_vmm_refusals() {
    let tdx = model();
    tdx.add_memory(0, MIB2, PageState::Private);
    tdx.set_msr(1, 1);
    let cpu = tdx.vcpu(0);
    type Call<'a> = Box<dyn Fn() -> Result<(), VmcallError> + 'a>;
    let calls: Vec<(u64, Call)> = vec![
        (
            function::CPUID,
            Box::new(|| vmcall::cpuid(&cpu, 0, 0).map(drop)),
        ),
        (function::HLT, Box::new(|| vmcall::hlt(&cpu, false))),
        (
            function::IO,
            Box::new(|| vmcall::io_read(&cpu, 0x3f8, IoSize::U8).map(drop)),
        ),
        (
            function::IO,
            Box::new(|| vmcall::io_write(&cpu, 0x3f8, IoSize::U8, 0)),
        ),
        (
            function::RDMSR,
            Box::new(|| vmcall::rdmsr(&cpu, 1).map(drop)),
        ),
        (function::WRMSR, Box::new(|| vmcall::wrmsr(&cpu, 1, 0))),
        (
            function::REQUEST_MMIO,
            Box::new(|| vmcall::mmio_read(&cpu, SHARED, MmioSize::U8).map(drop)),
        ),
        (
            function::REQUEST_MMIO,
            Box::new(|| vmcall::mmio_write(&cpu, SHARED, MmioSize::U8, 0)),
        ),
        (function::WBINVD, Box::new(|| vmcall::wbinvd(&cpu))),
        (
            function::GET_TD_VMCALL_INFO,
            Box::new(|| vmcall::get_td_vmcall_info(&cpu, 0).map(drop)),
        ),
        (
            function::SETUP_EVENT_NOTIFY_INTERRUPT,
            Box::new(|| vmcall::setup_event_notify_interrupt(&cpu, 40)),
        ),
        (
            function::MAP_GPA,
            // SAFETY: model memory only.
            Box::new(|| unsafe { vmcall::map_gpa(&cpu, SHARED, PAGE) }.map(drop)),
        ),
        (
            function::GET_QUOTE,
            // SAFETY: refused by the VMM before any access.
            Box::new(|| unsafe { vmcall::get_quote(&cpu, SHARED, PAGE) }),
        ),
        (
            function::REPORT_FATAL_ERROR,
            Box::new(|| Err(vmcall::report_fatal_error(&cpu, 0, b"x"))),
        ),
    ];
    for (function, call) in &calls {
        tdx.refuse_vmcall(*function, VmcallStatus::GPA_INUSE_RAW, 1);
        assert_eq!(
            call(),
            Err(VmcallError::Vmm(VmcallStatus::GpaInUse)),
            "function {function:#x}"
        );
        tdx.inject_tdcall_status(leaf::VP_VMCALL, TdxStatus::OPERAND_INVALID, 1);
        assert_eq!(
            call(),
            Err(VmcallError::Tdcall(TdxError(TdxStatus::OPERAND_INVALID))),
            "function {function:#x}"
        );
    }
}

/// The registers each wrapper exposes: every input of its sub-function (else the VMM reads 0)
/// and nothing beyond inputs and outputs (anything more hands the VMM guest values for nothing).
#[test]
fn every_vmcall_wrapper_exposes_its_inputs_and_nothing_else() {
    use tdx_boot::tdcall::vmcall::expose::*;
    let tdx = model();
    tdx.add_memory(0, MIB2, PageState::Private);
    let cpu = tdx.vcpu(0);
    let base = R10 | R11;
    let fatal_message = R14 | R15 | RBX | RDI | RSI | R8 | R9 | RDX;
    // (what the wrapper does, required inputs, inputs and outputs)
    type Call<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Call, u64, u64)> = vec![
        (
            "cpuid",
            Box::new(|| {
                let _ = vmcall::cpuid(&cpu, 0, 0);
            }),
            R12 | R13,
            R12_TO_R15,
        ),
        (
            "hlt",
            Box::new(|| {
                let _ = vmcall::hlt(&cpu, true);
            }),
            R12,
            R12,
        ),
        (
            "io_read",
            Box::new(|| {
                let _ = vmcall::io_read(&cpu, 0x80, IoSize::U8);
            }),
            R12 | R13 | R14,
            R12 | R13 | R14,
        ),
        (
            "io_write",
            Box::new(|| {
                let _ = vmcall::io_write(&cpu, 0x80, IoSize::U8, 0);
            }),
            R12_TO_R15,
            R12_TO_R15,
        ),
        (
            "rdmsr",
            Box::new(|| {
                let _ = vmcall::rdmsr(&cpu, 1);
            }),
            R12,
            R12,
        ),
        (
            "wrmsr",
            Box::new(|| {
                let _ = vmcall::wrmsr(&cpu, 1, 0);
            }),
            R12_R13,
            R12_R13,
        ),
        (
            "mmio_read",
            Box::new(|| {
                let _ = vmcall::mmio_read(&cpu, SHARED, MmioSize::U8);
            }),
            R12 | R13 | R14,
            R12 | R13 | R14,
        ),
        (
            "mmio_write",
            Box::new(|| {
                let _ = vmcall::mmio_write(&cpu, SHARED, MmioSize::U8, 0);
            }),
            R12_TO_R15,
            R12_TO_R15,
        ),
        (
            "wbinvd",
            Box::new(|| {
                let _ = vmcall::wbinvd(&cpu);
            }),
            0,
            0,
        ),
        (
            "get_td_vmcall_info",
            Box::new(|| {
                let _ = vmcall::get_td_vmcall_info(&cpu, 0);
            }),
            R12,
            R12 | R13 | R14,
        ),
        (
            "setup_event_notify_interrupt",
            Box::new(|| {
                let _ = vmcall::setup_event_notify_interrupt(&cpu, 40);
            }),
            R12,
            R12,
        ),
        (
            "map_gpa",
            // SAFETY: model memory only.
            Box::new(|| {
                let _ = unsafe { vmcall::map_gpa(&cpu, SHARED, PAGE) };
            }),
            R12_R13,
            R12_R13,
        ),
        (
            "get_quote",
            // SAFETY: the VMM refuses (no shared memory there) before any access.
            Box::new(|| {
                let _ = unsafe { vmcall::get_quote(&cpu, SHARED | MIB2, PAGE) };
            }),
            R12_R13,
            R12_R13,
        ),
        (
            "report_fatal_error",
            Box::new(|| {
                let _ = vmcall::report_fatal_error(&cpu, 0, b"x");
            }),
            R12 | fatal_message,
            R12 | R13 | fatal_message,
        ),
        (
            "safe_halt",
            // SAFETY: the model delivers no interrupts.
            Box::new(|| {
                let _ = unsafe { vmcall::safe_halt(&cpu) };
            }),
            R12,
            R12,
        ),
    ];
    tdx.enable_trace(true);
    for (name, call, required, allowed) in &cases {
        tdx.clear_trace();
        call();
        let trace = tdx.trace();
        assert_eq!(trace.len(), 1, "{name}: one TDCALL");
        let mask = trace[0].input.rcx;
        assert_eq!(
            mask & (required | base),
            required | base,
            "{name}: input not exposed"
        );
        assert_eq!(
            mask & !(allowed | base),
            0,
            "{name}: exposes more than it needs"
        );
    }
}
