//! The #VE handler under arbitrary #VE information, registers, instruction bytes and VMM
//! refusals: it never panics, a refusal leaves the frame exactly as it was, and a success moves
//! RIP by the instruction's length (VEINFO's for instruction exits, the decoded one for MMIO).

#![cfg(feature = "model")]

use proptest::prelude::*;
use tdx_boot::model::{ModelConfig, RegisterFile, TdxModule};
use tdx_boot::tdcall::VeInfo;
use tdx_boot::tdcall::vmcall::function;
use tdx_boot::ve::mmio::decode;
use tdx_boot::ve::{Frame, handle_with_code};

const MMIO_BASE: u64 = 0xc000_0000;

fn exit_reason() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(VeInfo::EXIT_REASON_CPUID),
        Just(VeInfo::EXIT_REASON_HLT),
        Just(VeInfo::EXIT_REASON_IO),
        Just(VeInfo::EXIT_REASON_RDMSR),
        Just(VeInfo::EXIT_REASON_WRMSR),
        Just(VeInfo::EXIT_REASON_EPT_VIOLATION),
        any::<u32>(),
    ]
}

fn gpa(shared: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        (0u64..0x1010).prop_map(move |offset| (MMIO_BASE | shared) + offset),
        (0u64..0x1000).prop_map(|offset| MMIO_BASE + offset),
        any::<u64>(),
    ]
}

fn ve_info(shared: u64) -> impl Strategy<Value = VeInfo> {
    (
        exit_reason(),
        any::<u64>(),
        gpa(shared),
        0u32..20,
        any::<u32>(),
    )
        .prop_map(
            |(exit_reason, exit_qualification, gpa, instruction_length, instruction_info)| VeInfo {
                exit_reason,
                exit_qualification,
                guest_linear_address: gpa,
                guest_physical_address: gpa,
                instruction_length,
                instruction_info,
            },
        )
}

fn frame() -> impl Strategy<Value = Frame> {
    (
        prop::array::uniform16(any::<u64>()),
        any::<u64>(),
        prop_oneof![Just(8u64), Just(0x33)],
        any::<u64>(),
    )
        .prop_map(|(gprs, rip, cs, rflags)| {
            let mut frame = Frame {
                rip,
                cs,
                rflags,
                ..Frame::default()
            };
            for (n, value) in (0u8..).zip(gprs) {
                *frame.gpr_mut(n) = value;
            }
            frame
        })
}

fn code() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..20),
        // Mostly valid moves with random operands.
        (
            prop::sample::select(vec![0x88u8, 0x89, 0x8a, 0x8b, 0xc6, 0xc7, 0xa1, 0xa3]),
            prop::collection::vec(any::<u8>(), 0..14)
        )
            .prop_map(|(opcode, rest)| {
                let mut bytes = vec![opcode];
                bytes.extend(rest);
                bytes
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn never_panics_and_refusals_change_nothing(
        info in ve_info(1 << 47),
        start in frame(),
        code in code(),
        refuse in prop::option::of(prop::sample::select(vec![
            function::CPUID, function::HLT, function::IO, function::RDMSR, function::WRMSR,
            function::REQUEST_MMIO,
        ])),
        refusal_status in prop::sample::select(vec![1u64, 0x8000_0000_0000_0000, 0x8000_0000_0000_0002, 7]),
    ) {
        let td = TdxModule::new(ModelConfig::default());
        td.add_mmio_device(MMIO_BASE, 4096, Box::new(RegisterFile::new(4096)));
        td.set_msr(0x1b, 0xfee0_0900);
        if let Some(f) = refuse {
            td.refuse_vmcall(f, refusal_status, 1);
        }
        td.inject_ve(0, info);
        let mut frame = start;
        match handle_with_code(&td.vcpu(0), &mut frame, &code) {
            Err(_) => prop_assert_eq!(frame, start),
            Ok(()) => {
                let advanced = frame.rip.wrapping_sub(start.rip);
                if info.exit_reason == VeInfo::EXIT_REASON_EPT_VIOLATION {
                    let insn = decode(&code).unwrap();
                    prop_assert_eq!(advanced, insn.insn_len() as u64);
                    // Only an access inside one page, at the faulting offset, is emulated.
                    let linear = insn.linear_address(&start).unwrap();
                    let last = linear.checked_add(insn.size() as u64 - 1).unwrap();
                    prop_assert_eq!(linear / 4096, last / 4096);
                    prop_assert_eq!(linear % 4096, info.guest_physical_address % 4096);
                } else {
                    prop_assert_eq!(advanced, u64::from(info.instruction_length));
                }
                prop_assert_eq!((frame.cs, frame.rflags, frame.ss),
                                (start.cs, start.rflags, start.ss));
            }
        }
        prop_assert!(!td.ve_pending(0));
    }
}
