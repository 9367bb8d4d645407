//! The #VE handler against the model: each exit reason injected into a vCPU, handled on a
//! Frame, with the registers, RIP and the VMM-side effect checked, and every error path.

#![cfg(feature = "model")]

use tdx_boot::model::{ModelConfig, RegisterFile, TdxModule};
use tdx_boot::tdcall::vmcall::{CpuidResult, VmcallError, function};
use tdx_boot::tdcall::{TdxStatus, VeInfo, VmcallStatus, leaf};
use tdx_boot::ve::mmio::MmioError;
use tdx_boot::ve::{
    Frame, RFLAGS_IF, VE_FATAL_ERROR_CODE, VeContext, VeError, handle, handle_with_code,
    report_fatal, safe_halt,
};

const RIP: u64 = 0xffff_8000_0010_0000;
const KERNEL_CS: u64 = 0x08;
const MMIO_BASE: u64 = 0xc000_0000;
/// EPT-violation exit qualification bit 7: the guest linear address is valid.
const EPT_GLA_VALID: u64 = 1 << 7;
/// Bit 8: the access was to that linear address's translation (not a paging-structure entry).
const EPT_GLA_TRANSLATED: u64 = 1 << 8;
/// Where the kernel maps the device page (shared); frames point RDI at it.
const DEVICE_VA: u64 = 0xffff_9000_0000_0000;

fn module() -> TdxModule {
    TdxModule::new(ModelConfig::default())
}

/// A kernel-mode frame with every register holding a distinct value, RDI the device page.
fn frame() -> Frame {
    let mut frame = Frame {
        rip: RIP,
        cs: KERNEL_CS,
        rflags: RFLAGS_IF | 2,
        rsp: 0xffff_8000_0020_0000,
        ss: 0x10,
        ..Frame::default()
    };
    for n in 0..16 {
        *frame.gpr_mut(n) = 0xa5a5_0000_0000_0000 | (u64::from(n) << 40) | (0x1111 * u64::from(n));
    }
    frame.rdi = DEVICE_VA;
    frame
}

fn instruction(exit_reason: u32, length: u32) -> VeInfo {
    VeInfo {
        exit_reason,
        instruction_length: length,
        ..VeInfo::default()
    }
}

fn io(port: u16, size: u64, is_in: bool) -> VeInfo {
    VeInfo {
        exit_reason: VeInfo::EXIT_REASON_IO,
        exit_qualification: u64::from(port) << 16 | u64::from(is_in) << 3 | (size - 1),
        instruction_length: 1,
        ..VeInfo::default()
    }
}

/// The EPT violation of an access at offset `gpa & 0xfff` of the device page, as the CPU reports
/// it: the GPA, and the linear address through the kernel's mapping (marked valid).
fn ept(gpa: u64) -> VeInfo {
    VeInfo {
        exit_reason: VeInfo::EXIT_REASON_EPT_VIOLATION,
        exit_qualification: EPT_GLA_VALID | EPT_GLA_TRANSLATED,
        guest_physical_address: gpa,
        guest_linear_address: DEVICE_VA | (gpa & 0xfff),
        // Not valid for EPT violations: the handler must not use it.
        instruction_length: 7,
        ..VeInfo::default()
    }
}

/// Injects `info`, handles it on `frame` with the instruction bytes `code` and asserts the
/// handler refused with `expected`, leaving the frame as it was.
fn assert_refused(td: &TdxModule, info: VeInfo, frame: Frame, code: &[u8], expected: VeError) {
    let mut after = frame;
    td.inject_ve(0, info);
    assert_eq!(
        handle_with_code(&td.vcpu(0), &mut after, code),
        Err(expected)
    );
    assert_untouched(td, &frame, &after);
}

/// Asserts a failed handling left the frame untouched and consumed the #VE information.
fn assert_untouched(td: &TdxModule, before: &Frame, after: &Frame) {
    assert_eq!(
        before, after,
        "a refused #VE must not change the frame (RIP included)"
    );
    assert!(!td.ve_pending(0), "VEINFO.GET must have consumed the #VE");
}

#[test]
fn cpuid_hypervisor_leaf_is_asked_of_the_vmm() {
    let td = module();
    let answer = CpuidResult {
        eax: 0x4000_0001,
        ebx: 0x4b4d_564b,
        ecx: 0x564b_4d56,
        edx: 0x4d,
    };
    td.set_cpuid(0x4000_0000, 0, answer);
    let mut frame = frame();
    frame.rax = 0xffff_ffff_4000_0000; // only EAX is the leaf
    frame.rcx = 0xffff_ffff_0000_0000;
    let before = frame;
    td.inject_ve(0, instruction(VeInfo::EXIT_REASON_CPUID, 2));
    handle_with_code(&td.vcpu(0), &mut frame, &[]).unwrap();
    assert_eq!(
        (frame.rax, frame.rbx, frame.rcx, frame.rdx),
        (0x4000_0001, 0x4b4d_564b, 0x564b_4d56, 0x4d)
    );
    assert_eq!(frame.rip, RIP + 2);
    assert_eq!(
        (frame.rsi, frame.r15, frame.rsp),
        (before.rsi, before.r15, before.rsp)
    );
    assert_eq!(td.vmcall_count(function::CPUID), 1);
}

#[test]
fn cpuid_outside_the_hypervisor_range_reads_zero_without_asking_the_vmm() {
    let td = module();
    let lie = CpuidResult {
        eax: 1,
        ebx: 2,
        ecx: 3,
        edx: 4,
    };
    for leaf in [0x0000_0001u32, 0x3fff_ffff, 0x5000_0000, 0x8000_0001] {
        td.set_cpuid(leaf, 0, lie);
        let mut frame = frame();
        frame.rax = leaf.into();
        frame.rcx = 0;
        td.inject_ve(0, instruction(VeInfo::EXIT_REASON_CPUID, 2));
        handle_with_code(&td.vcpu(0), &mut frame, &[]).unwrap();
        assert_eq!(
            (frame.rax, frame.rbx, frame.rcx, frame.rdx),
            (0, 0, 0, 0),
            "{leaf:#x}"
        );
        assert_eq!(frame.rip, RIP + 2);
    }
    assert_eq!(td.vmcall_count(function::CPUID), 0);
}

#[test]
fn cpuid_refused_by_the_vmm_is_an_error() {
    let td = module();
    td.refuse_vmcall(function::CPUID, VmcallStatus::INVALID_OPERAND_RAW, 1);
    let mut frame = frame();
    frame.rax = 0x4000_0000;
    let before = frame;
    td.inject_ve(0, instruction(VeInfo::EXIT_REASON_CPUID, 2));
    let error = handle_with_code(&td.vcpu(0), &mut frame, &[]).unwrap_err();
    assert!(
        matches!(
            error,
            VeError::Vmcall {
                exit_reason: 10,
                error: VmcallError::Vmm(_)
            }
        ),
        "{error:?}"
    );
    assert_untouched(&td, &before, &frame);
}

#[test]
fn hlt_honours_the_interrupted_interrupt_flag() {
    let td = module();
    for enabled in [true, false] {
        let mut frame = frame();
        frame.rflags = if enabled { RFLAGS_IF | 2 } else { 2 };
        let before = frame;
        td.inject_ve(0, instruction(VeInfo::EXIT_REASON_HLT, 1));
        handle_with_code(&td.vcpu(0), &mut frame, &[]).unwrap();
        assert_eq!(frame.rip, RIP + 1);
        frame.rip = before.rip;
        assert_eq!(frame, before, "HLT changes no register");
        let halt = *td.halts().last().unwrap();
        assert_eq!(halt.interrupts_blocked, !enabled);
        assert!(!halt.sti, "HLT through #VE cannot enable interrupts");
    }
    assert_eq!(td.halts().len(), 2);
}

#[test]
fn safe_halt_enables_interrupts_right_before_the_call() {
    let td = module();
    // SAFETY: the model has no real interrupts; nothing on the host is enabled.
    unsafe { safe_halt(&td.vcpu(0)) }.unwrap();
    let halts = td.halts();
    assert_eq!(halts.len(), 1);
    assert!(halts[0].sti && !halts[0].interrupts_blocked);
    assert_eq!(td.sti_calls(0), 1);
}

#[test]
fn out_reaches_the_uart() {
    let td = module();
    let mut frame = frame();
    for &byte in b"ok\n" {
        frame.rax = 0xffff_ffff_ffff_ff00 | u64::from(byte); // only AL is written
        td.inject_ve(0, io(0x3f8, 1, false));
        let rip = frame.rip;
        handle_with_code(&td.vcpu(0), &mut frame, &[]).unwrap();
        assert_eq!(frame.rip, rip + 1);
    }
    assert_eq!(td.uart_output(), b"ok\n");
    assert_eq!(
        frame.rax,
        0xffff_ffff_ffff_ff00 | u64::from(b'\n'),
        "OUT leaves RAX alone"
    );
}

#[test]
fn in_merges_al_and_ax_and_zero_extends_eax() {
    let td = module();
    let device = RegisterFile::new(8);
    td.add_port_device(0x500, 8, Box::new(device.clone()));
    device.set(0, 4, 0x8899_aabb);
    let cases = [
        (1, 0xffff_ffff_ffff_ffbb),
        (2, 0xffff_ffff_ffff_aabb),
        (4, 0x0000_0000_8899_aabb),
    ];
    for (size, expected) in cases {
        let mut frame = frame();
        frame.rax = u64::MAX;
        td.inject_ve(
            0,
            VeInfo {
                instruction_length: 2,
                ..io(0x500, size, true)
            },
        );
        handle_with_code(&td.vcpu(0), &mut frame, &[]).unwrap();
        assert_eq!(frame.rax, expected, "size {size}");
        assert_eq!(frame.rip, RIP + 2);
    }
    // OUT of 2 bytes writes AX only.
    let mut frame = frame();
    frame.rax = 0x1234_5678_9abc_def0;
    td.inject_ve(0, io(0x504, 2, false));
    handle_with_code(&td.vcpu(0), &mut frame, &[]).unwrap();
    assert_eq!(device.get(4, 4), 0xdef0);
}

#[test]
fn string_rep_and_odd_sizes_are_refused_without_asking_the_vmm() {
    let td = module();
    let string = VeInfo {
        exit_qualification: io(0x3f8, 1, false).exit_qualification | 1 << 4,
        ..io(0x3f8, 1, false)
    };
    let rep = VeInfo {
        exit_qualification: io(0x3f8, 1, true).exit_qualification | 1 << 4 | 1 << 5,
        ..io(0x3f8, 1, true)
    };
    let three = io(0x3f8, 3, false);
    let eight = io(0x3f8, 8, true);
    let cases = [
        (string, VeError::StringIo { port: 0x3f8 }),
        (rep, VeError::StringIo { port: 0x3f8 }),
        (three, VeError::BadIoSize(three.exit_qualification)),
        (eight, VeError::BadIoSize(eight.exit_qualification)),
    ];
    for (info, expected) in cases {
        let mut frame = frame();
        let before = frame;
        td.inject_ve(0, info);
        assert_eq!(
            handle_with_code(&td.vcpu(0), &mut frame, &[]),
            Err(expected)
        );
        assert_untouched(&td, &before, &frame);
    }
    assert_eq!(td.vmcall_count(function::IO), 0);
    assert!(td.uart_output().is_empty());
}

#[test]
fn rdmsr_and_wrmsr_use_edx_eax() {
    let td = module();
    td.set_msr(0x1b, 0x1234_5678_9abc_def0);
    let mut frame = frame();
    frame.rcx = 0xffff_ffff_0000_001b; // only ECX names the MSR
    td.inject_ve(0, instruction(VeInfo::EXIT_REASON_RDMSR, 2));
    handle_with_code(&td.vcpu(0), &mut frame, &[]).unwrap();
    assert_eq!((frame.rax, frame.rdx), (0x9abc_def0, 0x1234_5678));
    assert_eq!(frame.rip, RIP + 2);

    frame.rax = 0xffff_ffff_0bad_f00d; // the upper half of RAX is not part of the value
    frame.rdx = 0xcafe;
    td.inject_ve(0, instruction(VeInfo::EXIT_REASON_WRMSR, 2));
    handle_with_code(&td.vcpu(0), &mut frame, &[]).unwrap();
    assert_eq!(td.msr(0x1b), Some(0x0000_cafe_0bad_f00d));
    assert_eq!(frame.rip, RIP + 4);
}

#[test]
fn refused_msrs_are_errors_for_a_gp_never_panics() {
    let td = module();
    for (reason, write) in [
        (VeInfo::EXIT_REASON_RDMSR, false),
        (VeInfo::EXIT_REASON_WRMSR, true),
    ] {
        let mut frame = frame();
        frame.rcx = 0xc000_0999; // unknown to the VMM
        let before = frame;
        td.inject_ve(0, instruction(reason, 2));
        let error = handle_with_code(&td.vcpu(0), &mut frame, &[]).unwrap_err();
        assert_eq!(
            error,
            VeError::Msr {
                index: 0xc000_0999,
                write,
                error: VmcallError::Vmm(VmcallStatus::InvalidOperand)
            }
        );
        assert!(error.should_inject_gp());
        assert_untouched(&td, &before, &frame);
    }
    assert_eq!(td.msr(0xc000_0999), None);
}

/// A model with a 4 KiB register file at MMIO_BASE; returns the shared GPA of its base.
fn with_device(td: &TdxModule) -> (RegisterFile, u64) {
    let device = RegisterFile::new(4096);
    td.add_mmio_device(MMIO_BASE, 4096, Box::new(device.clone()));
    (device, MMIO_BASE | td.shared_bit())
}

#[test]
fn mmio_reads_land_in_the_registers_as_the_cpu_would() {
    let td = module();
    let (device, base) = with_device(&td);
    device.set(0x10, 8, 0x8877_6655_4433_2211);
    // (code, register number, expected from the old value)
    type Expect = fn(u64) -> u64;
    let cases: [(&[u8], u8, Expect); 6] = [
        (&[0x8b, 0x47, 0x10], 0, |_| 0x4433_2211), // mov eax, [rdi+0x10]
        (&[0x48, 0x8b, 0x5f, 0x10], 3, |_| 0x8877_6655_4433_2211), // mov rbx, [rdi+0x10]
        (&[0x66, 0x44, 0x8b, 0x47, 0x10], 8, |old| {
            old & !0xffff | 0x2211
        }), // mov r8w
        (&[0x8a, 0x67, 0x10], 0, |old| old & !0xff00 | 0x1100), // mov ah, [rdi+0x10]
        (&[0x0f, 0xbe, 0x4f, 0x17], 1, |_| 0xffff_ff88), // movsx ecx, byte [rdi+0x17]
        (&[0x4c, 0x0f, 0xb7, 0x7f, 0x16], 15, |_| 0x8877), // movzx r15, word [rdi+0x16]
    ];
    for (code, number, expected) in cases {
        let displacement = u64::from(*code.last().unwrap());
        let mut frame = frame();
        let before = frame;
        td.inject_ve(0, ept(base + displacement));
        // Trailing bytes after the instruction must not matter.
        let mut bytes = code.to_vec();
        bytes.extend_from_slice(&[0xcc; 8]);
        handle_with_code(&td.vcpu(0), &mut frame, &bytes).unwrap();
        assert_eq!(
            frame.gpr(number),
            expected(before.gpr(number)),
            "{code:02x?}"
        );
        assert_eq!(frame.rip, RIP + code.len() as u64, "{code:02x?}");
        *frame.gpr_mut(number) = before.gpr(number);
        frame.rip = RIP;
        assert_eq!(frame, before, "{code:02x?} changed another register");
    }
    assert_eq!(td.vmcall_count(function::REQUEST_MMIO), 6);
}

#[test]
fn mmio_writes_reach_the_device() {
    let td = module();
    let (device, base) = with_device(&td);
    let cases: [(&[u8], u64, u8, u64); 5] = [
        (&[0x89, 0x37], 0x20, 4, 0x6666_6666 & 0xffff_ffff), // mov [rdi], esi
        (&[0x88, 0x27], 0x28, 1, 0x00),                      // mov [rdi], ah
        (
            &[0x48, 0xc7, 0x07, 0xfe, 0xff, 0xff, 0xff],
            0x30,
            8,
            0xffff_ffff_ffff_fffe,
        ),
        (&[0x66, 0xc7, 0x07, 0x34, 0x12], 0x38, 2, 0x1234),
        (&[0x4c, 0x89, 0x3f], 0x40, 8, 0), // mov [rdi], r15
    ];
    for (code, offset, size, expected) in cases {
        let mut frame = frame();
        frame.rdi = DEVICE_VA + offset;
        frame.rax = 0x0000_0000_0000_ab00 | frame.rax & !0xffff;
        let expected = match code {
            [0x88, 0x27] => 0xab,
            [0x4c, 0x89, 0x3f] => frame.r15,
            [0x89, 0x37] => frame.rsi & 0xffff_ffff,
            _ => expected,
        };
        let before = frame;
        td.inject_ve(0, ept(base + offset));
        handle_with_code(&td.vcpu(0), &mut frame, code).unwrap();
        assert_eq!(device.get(offset, size), expected, "{code:02x?}");
        assert_eq!(
            device.get(offset + u64::from(size), 1),
            0,
            "{code:02x?} wrote too much"
        );
        assert_eq!(frame.rip, RIP + code.len() as u64);
        frame.rip = RIP;
        assert_eq!(frame, before, "a write changes no register");
    }
}

#[test]
fn ept_violation_error_paths() {
    let td = module();
    let (_device, base) = with_device(&td);
    let load: &[u8] = &[0x8b, 0x07];
    let user = Frame {
        cs: 0x33,
        ..frame()
    };
    let cases: [(VeInfo, Frame, &[u8], VeError); 7] = [
        (
            ept(MMIO_BASE),
            frame(),
            load,
            VeError::PrivateGpa(MMIO_BASE),
        ),
        (ept(base), user, load, VeError::UserMode),
        (
            ept(base + 0xffe),
            Frame {
                rdi: DEVICE_VA + 0xffe,
                ..frame()
            },
            load,
            VeError::CrossesPage {
                linear: DEVICE_VA + 0xffe,
                size: 4,
            },
        ),
        (
            ept(base),
            frame(),
            &[0x8b, 0x07, 0x90][..1],
            VeError::Decode(MmioError::Truncated),
        ),
        (
            ept(base),
            frame(),
            &[0xf3, 0xa5],
            VeError::Decode(MmioError::Rep),
        ),
        (
            ept(base),
            frame(),
            &[0x01, 0x07],
            VeError::Decode(MmioError::UnsupportedOpcode(1)),
        ),
        (ept(1 << 50), frame(), load, VeError::GpaOutOfRange(1 << 50)),
    ];
    for (info, frame, code, expected) in cases {
        assert_refused(&td, info, frame, code, expected);
    }
    assert_eq!(td.vmcall_count(function::REQUEST_MMIO), 0);

    // A shared GPA where the VMM has no device: the VMM refuses.
    let mut frame = frame();
    let before = frame;
    td.inject_ve(0, ept(base + 0x10_0000));
    let error = handle_with_code(&td.vcpu(0), &mut frame, load).unwrap_err();
    assert!(
        matches!(
            error,
            VeError::Vmcall {
                exit_reason: 48,
                ..
            }
        ),
        "{error:?}"
    );
    assert_untouched(&td, &before, &frame);
}

#[test]
fn unknown_reasons_bad_lengths_and_missing_ve_are_errors() {
    let td = module();
    let mut frame = frame();
    let before = frame;
    // No #VE pending.
    let error = handle_with_code(&td.vcpu(0), &mut frame, &[]).unwrap_err();
    assert_eq!(
        error,
        VeError::VeInfo(tdx_boot::tdcall::TdxError(TdxStatus::NO_VALID_VE_INFO))
    );
    // WBINVD (54) and others are not emulated.
    td.inject_ve(0, instruction(54, 2));
    assert_eq!(
        handle_with_code(&td.vcpu(0), &mut frame, &[]),
        Err(VeError::UnsupportedExitReason(54))
    );
    for length in [0, 16, u32::MAX] {
        td.inject_ve(0, instruction(VeInfo::EXIT_REASON_HLT, length));
        assert_eq!(
            handle_with_code(&td.vcpu(0), &mut frame, &[]),
            Err(VeError::BadInstructionLength(length))
        );
    }
    assert_untouched(&td, &before, &frame);
    assert!(td.halts().is_empty());
}

#[test]
fn veinfo_get_comes_first_for_every_kind() {
    let td = module();
    let (_device, base) = with_device(&td);
    td.set_msr(0x10, 0);
    let kinds = [
        (instruction(VeInfo::EXIT_REASON_CPUID, 2), 0x4000_0000u64),
        (instruction(VeInfo::EXIT_REASON_HLT, 1), 0),
        (io(0x3f8, 1, false), 0),
        (instruction(VeInfo::EXIT_REASON_RDMSR, 2), 0),
        (ept(base), 0),
    ];
    for (info, rax) in kinds {
        td.enable_trace(true);
        td.clear_trace();
        let mut frame = Frame {
            rax,
            rcx: 0x10,
            ..frame()
        };
        td.inject_ve(0, info);
        handle_with_code(&td.vcpu(0), &mut frame, &[0x8b, 0x07]).unwrap();
        let trace = td.trace();
        assert_eq!(
            trace.first().map(|e| e.input.rax),
            Some(leaf::VP_VEINFO_GET),
            "{info:?}"
        );
        assert!(trace.len() >= 2, "{info:?}: the emulation follows");
    }
}

#[test]
fn fatal_report_names_the_error_and_rip() {
    let td = module();
    let frame = frame();
    let _ = report_fatal(&td.vcpu(0), &VeError::PrivateGpa(0x1000), &frame);
    let (code, message) = td.fatal_error().unwrap();
    assert_eq!(code, VE_FATAL_ERROR_CODE);
    let text = String::from_utf8(message).unwrap();
    assert!(
        text.starts_with("#VE at 0xffff800000100000: EPT violation on private GPA"),
        "{text}"
    );
}

/// Two pages of code, so an instruction can straddle the boundary.
#[repr(C, align(4096))]
struct CodePages([u8; 8192]);

#[test]
fn handle_reads_the_instruction_at_rip_including_across_a_page_boundary() {
    let td = module();
    let (device, base) = with_device(&td);
    device.set(0x80, 8, 0x0102_0304_0506_0708);
    let code = [0x48, 0x8b, 0x87, 0x80, 0x00, 0x00, 0x00]; // mov rax, [rdi+0x80]
    let mut pages = Box::new(CodePages([0xcc; 8192]));
    for start in [0usize, 100, 4096 - 7, 4096 - 3, 4096 - 1, 8192 - 7] {
        pages.0.fill(0xcc);
        pages.0[start..start + code.len()].copy_from_slice(&code);
        let mut frame = frame();
        frame.rip = pages.0.as_ptr() as u64 + start as u64;
        td.inject_ve(0, ept(base + 0x80));
        // SAFETY: RIP points into `pages`, readable up to its end; the instruction is inside it
        // and when it crosses the boundary the second page is part of `pages` too.
        unsafe { handle(&td.vcpu(0), &mut frame) }.unwrap();
        assert_eq!(frame.rax, 0x0102_0304_0506_0708, "at {start}");
        assert_eq!(frame.rip, pages.0.as_ptr() as u64 + start as u64 + 7);
    }
}

#[test]
fn a_context_saves_the_vp_info_query_and_keeps_the_checks() {
    let td = TdxModule::new(ModelConfig {
        gpaw: 52,
        ..ModelConfig::default()
    });
    let (device, base) = with_device(&td);
    assert_eq!(base, MMIO_BASE | 1 << 51);
    device.set(0, 4, 0x600d_cafe);
    let context = VeContext::query(&td.vcpu(0)).unwrap();
    assert_eq!((context.gpaw(), context.shared_mask()), (52, 1 << 51));
    let vp_info_before = td.tdcall_count(leaf::VP_INFO);
    for _ in 0..3 {
        let mut frame = crate::frame();
        td.inject_ve(0, ept(base));
        context
            .handle_with_code(&td.vcpu(0), &mut frame, &[0x8b, 0x07])
            .unwrap();
        assert_eq!(frame.rax, 0x600d_cafe);
    }
    assert_eq!(
        td.tdcall_count(leaf::VP_INFO),
        vp_info_before,
        "no VP.INFO per access"
    );
    // The free function asks every time.
    let mut frame = crate::frame();
    td.inject_ve(0, ept(base));
    handle_with_code(&td.vcpu(0), &mut frame, &[0x8b, 0x07]).unwrap();
    assert_eq!(td.tdcall_count(leaf::VP_INFO), vp_info_before + 1);
    // Bit 47 is not the shared bit with GPAW 52: a GPA with only bit 47 set is private.
    let mut frame = crate::frame();
    let private = MMIO_BASE | 1 << 47;
    td.inject_ve(0, ept(private));
    assert_eq!(
        context.handle_with_code(&td.vcpu(0), &mut frame, &[0x8b, 0x07]),
        Err(VeError::PrivateGpa(private))
    );
}

/// Linux's `virt_exception_user`: from user mode only CPUID is emulated; HLT, port IO, MSRs and
/// MMIO are refused before anything reaches the VMM, and the frame is left as it was.
#[test]
fn user_mode_gets_cpuid_and_nothing_else() {
    let td = module();
    let (_device, base) = with_device(&td);
    let user = Frame {
        cs: 0x33,
        ss: 0x2b,
        ..frame()
    };
    let refused = [
        instruction(VeInfo::EXIT_REASON_HLT, 1),
        io(0x3f8, 1, false),
        io(0x60, 1, true),
        instruction(VeInfo::EXIT_REASON_RDMSR, 2),
        instruction(VeInfo::EXIT_REASON_WRMSR, 2),
        ept(base),
    ];
    for info in refused {
        assert_refused(&td, info, user, &[0x8b, 0x07], VeError::UserMode);
    }
    for function in [
        function::HLT,
        function::IO,
        function::RDMSR,
        function::WRMSR,
        function::REQUEST_MMIO,
    ] {
        assert_eq!(
            td.vmcall_count(function),
            0,
            "{function:#x} reached the VMM"
        );
    }

    let answer = CpuidResult {
        eax: 0x4000_0001,
        ebx: 1,
        ecx: 2,
        edx: 3,
    };
    td.set_cpuid(0x4000_0000, 0, answer);
    let mut frame = Frame {
        rax: 0x4000_0000,
        rcx: 0,
        ..user
    };
    td.inject_ve(0, instruction(VeInfo::EXIT_REASON_CPUID, 2));
    handle_with_code(&td.vcpu(0), &mut frame, &[]).unwrap();
    assert_eq!((frame.rax, frame.rbx, frame.rip), (0x4000_0001, 1, RIP + 2));
}

/// A load that starts in a private page and runs into an MMIO page (what
/// `load_unaligned_zeropad()` does at the end of a buffer) faults on the MMIO page at offset 0:
/// the GPA looks in-page, but the access is not, and emulating it as a whole MMIO read would
/// read the device at the wrong address. Linux's `handle_mmio` refuses it; so does the handler.
#[test]
fn an_access_split_across_a_private_and_an_mmio_page_is_refused() {
    let td = module();
    let (device, base) = with_device(&td);
    device.set(0, 8, 0x1122_3344_5566_7788);
    const MMIO_VA: u64 = DEVICE_VA + 0x1000;
    let cases: [(&[u8], u64); 4] = [
        (&[0x8b, 0x07], 2),             // mov eax, [rdi]: 2 bytes before the page
        (&[0x48, 0x8b, 0x07], 1),       // mov rax, [rdi]: 1 byte before
        (&[0x48, 0x8b, 0x47, 0x01], 2), // mov rax, [rdi + 1] with rdi 2 bytes before + 1
        (&[0x66, 0x89, 0x37], 1),       // mov [rdi], si: a split store
    ];
    for (code, before_page) in cases {
        let mut frame = frame();
        let displacement = if code.len() == 4 { 1 } else { 0 };
        frame.rdi = MMIO_VA - before_page - displacement;
        let start = frame;
        td.inject_ve(
            0,
            VeInfo {
                exit_reason: VeInfo::EXIT_REASON_EPT_VIOLATION,
                exit_qualification: EPT_GLA_VALID | EPT_GLA_TRANSLATED,
                guest_linear_address: MMIO_VA,
                guest_physical_address: base,
                ..VeInfo::default()
            },
        );
        let result = handle_with_code(&td.vcpu(0), &mut frame, code);
        assert!(
            matches!(result, Err(VeError::CrossesPage { .. })),
            "{code:02x?}: {result:?}"
        );
        assert_untouched(&td, &start, &frame);
    }
    assert_eq!(td.vmcall_count(function::REQUEST_MMIO), 0);
}

/// The instruction at RIP must be the access that faulted: at the GPA's page offset and, when
/// the exit qualification marks it valid, at VEINFO's linear address. FS/GS-relative accesses
/// have no computable address and are refused.
#[test]
fn the_decoded_address_must_be_the_one_that_faulted() {
    let td = module();
    let (_device, base) = with_device(&td);
    let load: &[u8] = &[0x8b, 0x47, 0x10]; // mov eax, [rdi + 0x10]
    let other_offset = ept(base + 0x20);
    let other_linear = VeInfo {
        guest_linear_address: DEVICE_VA + 0x5010,
        ..ept(base + 0x10)
    };
    let cases = [
        (
            other_offset,
            load,
            VeError::AddressMismatch {
                linear: DEVICE_VA + 0x10,
                gpa: base + 0x20,
            },
        ),
        (
            other_linear,
            load,
            VeError::AddressMismatch {
                linear: DEVICE_VA + 0x10,
                gpa: base + 0x10,
            },
        ),
        // mov eax, fs:[rdi + 0x10] and gs:
        (
            ept(base + 0x10),
            &[0x64, 0x8b, 0x47, 0x10][..],
            VeError::SegmentOverride,
        ),
        (
            ept(base + 0x10),
            &[0x65, 0x8b, 0x47, 0x10][..],
            VeError::SegmentOverride,
        ),
    ];
    for (info, code, expected) in cases {
        assert_refused(&td, info, frame(), code, expected);
    }
    assert_eq!(td.vmcall_count(function::REQUEST_MMIO), 0);

    // Without the GLA-valid bit only the page offset is compared: a different linear address in
    // VEINFO does not matter, and the access is emulated.
    let mut frame = frame();
    td.inject_ve(
        0,
        VeInfo {
            exit_qualification: 0,
            ..other_linear
        },
    );
    handle_with_code(&td.vcpu(0), &mut frame, load).unwrap();
    assert_eq!(td.vmcall_count(function::REQUEST_MMIO), 1);
}

/// An EPT violation the CPU reports as a paging-structure access (qualification bit 7 set, bit
/// 8 clear: the kernel's page tables reach shared memory) is refused, even when the decoded
/// operand happens to sit at the GPA's page offset and VEINFO's linear address: the GPA is a
/// page-table entry's, and emulating MMIO there would touch the wrong device page.
#[test]
fn a_paging_structure_access_is_never_emulated_as_mmio() {
    let td = module();
    let (_device, base) = with_device(&td);
    let load: &[u8] = &[0x8b, 0x47, 0x10]; // mov eax, [rdi + 0x10]
    let walk = VeInfo {
        exit_qualification: EPT_GLA_VALID,
        ..ept(base + 0x10)
    };
    assert_refused(
        &td,
        walk,
        frame(),
        load,
        VeError::PagingStructureAccess(base + 0x10),
    );
    assert_eq!(td.vmcall_count(function::REQUEST_MMIO), 0);
    // The same access marked as the translation's is emulated.
    let mut emulated = frame();
    td.inject_ve(0, ept(base + 0x10));
    assert_eq!(handle_with_code(&td.vcpu(0), &mut emulated, load), Ok(()));
    assert_eq!(td.vmcall_count(function::REQUEST_MMIO), 1);
}
