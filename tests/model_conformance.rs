//! Conformance of the software TDX module with the TDX module ABI and a GHCI VMM.
//!
//! Each test drives the model through raw register files (as the instruction would see them)
//! and checks statuses against the module's rules. `STATUSES_PRODUCED` at the end lists every
//! status the model can return with the test that produces it.
#![cfg(feature = "model")]

use tdx_boot::model::{HostPageSize, ModelConfig, PageState, TdxModule};
use tdx_boot::tdcall::{Regs, TdCall, TdxStatus, leaf};

const MIB2: u64 = 0x20_0000;
const PAGE: u64 = 0x1000;

fn call(cpu: &impl TdCall, regs: Regs) -> Regs {
    let mut regs = regs;
    // SAFETY: the model only touches memory registered with `add_backing`, which these tests
    // own for the model's lifetime.
    unsafe { cpu.tdcall(&mut regs) };
    regs
}

fn accept(tdx: &TdxModule, vcpu: u32, rcx: u64) -> TdxStatus {
    TdxStatus::from_raw(
        call(
            &tdx.vcpu(vcpu),
            Regs {
                rax: leaf::MEM_PAGE_ACCEPT,
                rcx,
                ..Regs::default()
            },
        )
        .rax,
    )
}

#[test]
fn accept_4k_makes_the_page_private_and_splits_the_host_block() {
    let tdx = TdxModule::new(ModelConfig::default());
    tdx.add_memory(0, 4 * MIB2, PageState::Unaccepted);
    assert!(!tdx.host_maps_4k(MIB2));
    assert_eq!(accept(&tdx, 0, MIB2 + PAGE), TdxStatus::SUCCESS);
    assert_eq!(tdx.page_state(MIB2 + PAGE), PageState::Private);
    assert_eq!(tdx.page_state(MIB2), PageState::Unaccepted);
    assert!(tdx.host_maps_4k(MIB2));
    assert_eq!(accept(&tdx, 0, MIB2 | 1), TdxStatus::PAGE_SIZE_MISMATCH);
    let again = accept(&tdx, 1, MIB2 + PAGE);
    assert_eq!(again, TdxStatus::PAGE_ALREADY_ACCEPTED);
    assert!(again.is_success());
    let stats = tdx.accept_stats();
    assert_eq!(stats.accepted_4k, 1);
    assert_eq!(stats.already_accepted, 1);
    assert_eq!(stats.size_mismatch, 1);
    assert_eq!(stats.host_splits, 1);
    assert_eq!(tdx.tdcall_count(leaf::MEM_PAGE_ACCEPT), 3);
}

#[test]
fn accept_2m_on_a_host_that_maps_4k_is_a_size_mismatch() {
    let tdx = TdxModule::new(ModelConfig {
        host_page_size: HostPageSize::Size4K,
        ..Default::default()
    });
    tdx.add_memory(0, 2 * MIB2, PageState::Unaccepted);
    assert_eq!(accept(&tdx, 0, MIB2 | 1), TdxStatus::PAGE_SIZE_MISMATCH);
    tdx.set_host_page_size(MIB2, 2 * MIB2, HostPageSize::Size2M);
    assert_eq!(accept(&tdx, 0, MIB2 | 1), TdxStatus::SUCCESS);
    assert_eq!(accept(&tdx, 0, MIB2 | 1), TdxStatus::PAGE_ALREADY_ACCEPTED);
    // A 4 KiB page inside a 2 MiB accepted mapping is already accepted too.
    assert_eq!(
        accept(&tdx, 0, MIB2 + 5 * PAGE),
        TdxStatus::PAGE_ALREADY_ACCEPTED
    );
    assert_eq!(tdx.accept_stats().accepted_2m, 1);
}
