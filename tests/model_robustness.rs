//! The model never panics, whatever registers a guest passes: random register files for every
//! leaf and sub-function, with interesting values (shared bit, alignment edges, GPAs inside and
//! outside memory) mixed in. After every call no ACCEPT is left in flight.
#![cfg(feature = "model")]

mod common;

use common::{HostMemory, call};
use proptest::prelude::*;
use tdx_boot::model::{ModelConfig, PageState, RegisterFile, TdxModule};
use tdx_boot::tdcall::Regs;

const SHARED: u64 = 1 << 47;

fn interesting() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        0u64..0x40_0000,
        (0u64..0x400).prop_map(|page| page << 12),
        (0u64..0x400).prop_map(|page| SHARED | page << 12),
        (0u64..0x400).prop_map(|page| page << 12 | 1),
        Just(0xfed0_0000 | SHARED),
        Just(0x3f8),
        Just(u64::MAX),
        0u64..16,
        0x1_0000u64..0x1_0006,
    ]
}

fn registers() -> impl Strategy<Value = Regs> {
    (
        prop_oneof![0u64..12, Just(7 | 1 << 16), Just(3 | 1 << 16), any::<u64>()],
        prop_oneof![interesting(), Just(0xfc00), Just(0xffcc), any::<u64>()],
        proptest::collection::vec(interesting(), 12),
    )
        .prop_map(|(rax, rcx, v)| Regs {
            rax,
            rcx,
            rdx: v[0],
            rbx: v[1],
            rsi: v[2],
            rdi: v[3],
            r8: v[4],
            r9: v[5],
            r10: if v[6] % 4 == 0 { v[6] } else { 0 },
            r11: v[7],
            r12: v[8],
            r13: v[9],
            r14: v[10],
            r15: v[11],
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_register_file_is_answered_without_panic(calls in proptest::collection::vec(registers(), 1..24)) {
        let mem = HostMemory::new(0x40_0000, 0x11);
        let tdx = TdxModule::new(ModelConfig { map_gpa_chunk: 0x2000, ..Default::default() });
        mem.back(&tdx, 0);
        tdx.add_memory(0, 0x20_0000, PageState::Unaccepted);
        tdx.add_memory(0x20_0000, 0x30_0000, PageState::Private);
        tdx.add_memory(0x30_0000, 0x40_0000, PageState::Shared);
        tdx.add_mmio_device(0xfed0_0000, 0x1000, Box::new(RegisterFile::new(0x100)));
        tdx.set_msr(0x10, 1);
        for (i, regs) in calls.into_iter().enumerate() {
            let out = call(&tdx.vcpu(i as u32 % 5), regs);
            prop_assert_eq!(tdx.accepts_in_flight(), 0);
            // Registers the leaf does not own are never touched by a failing module call.
            if out.rax >> 63 == 1 {
                prop_assert_eq!((out.rbx, out.rsi, out.rdi), (regs.rbx, regs.rsi, regs.rdi));
            }
        }
        let runs = tdx.page_runs(0, u64::MAX);
        prop_assert!(runs.iter().all(|&(start, end, _)| start < end));
        prop_assert!(runs.iter().all(|&(_, end, _)| end <= 0x40_0000 || end > 0xfed0_0000));
    }
}

/// vCPUs on threads mixing ACCEPT, MapGPA both ways, VP.INFO and port IO on the same small
/// TD: no deadlock, no panic, nothing left in flight, and every page in a state it can reach.
#[test]
fn concurrent_mixed_calls_leave_a_consistent_td() {
    const SPAN: u64 = 8 << 20;
    let mem = HostMemory::new(SPAN as usize, 0x22);
    let tdx = TdxModule::new(ModelConfig {
        map_gpa_chunk: 0x4000,
        ..Default::default()
    });
    mem.back(&tdx, 0);
    tdx.add_memory(0, SPAN, PageState::Unaccepted);
    std::thread::scope(|scope| {
        for vcpu in 0..4u32 {
            let tdx = &tdx;
            scope.spawn(move || {
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(vcpu);
                for _ in 0..3000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let page = ((x >> 8) % (SPAN >> 12)) << 12;
                    let (rax, rcx, r11, r12, r13) = match x % 5 {
                        0 | 1 => (6, page | (x >> 3 & 1), 0, 0, 0),
                        2 => (0, 0x3c00, 0x10001, SHARED | page, 0x1000 << (x >> 4 & 3)),
                        3 => (0, 0x3c00, 0x10001, page, 0x1000),
                        _ => (1, 0, 0, 0, 0),
                    };
                    let regs = Regs {
                        rax,
                        rcx,
                        r11,
                        r12,
                        r13,
                        ..Regs::default()
                    };
                    let out = call(&tdx.vcpu(vcpu), regs);
                    if rax == 0 && out.r10 == 1 {
                        // RETRY: finish the request from where the VMM says.
                        let mut resume = out.r11;
                        while resume < r12 + r13 {
                            let again = call(
                                &tdx.vcpu(vcpu),
                                Regs {
                                    r12: resume,
                                    r13: r12 + r13 - resume,
                                    ..regs
                                },
                            );
                            if again.r10 != 1 {
                                break;
                            }
                            resume = again.r11;
                        }
                    }
                }
            });
        }
    });
    assert_eq!(tdx.accepts_in_flight(), 0);
    let runs = tdx.page_runs(0, SPAN);
    assert_eq!(runs.first().map(|r| r.0), Some(0));
    assert!(
        runs.windows(2)
            .all(|w| w[0].1 == w[1].0 && w[0].2 != w[1].2)
    );
    assert!(runs.iter().all(|r| matches!(
        r.2,
        PageState::Unaccepted | PageState::Private | PageState::Shared
    )));
    let stats = tdx.accept_stats();
    assert!(stats.accepted_4k + stats.accepted_2m > 0);
}
