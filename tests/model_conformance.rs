//! Conformance of the software TDX module with the TDX module ABI and with a GHCI VMM.
//!
//! The tests drive the model with raw register files, as the TDCALL instruction would see
//! them, and check every rule and every error path. `every_status_the_model_returns_is_produced`
//! checks that the statuses these scenarios produce are exactly the model's documented lists
//! (`TDCALL_STATUSES`, `VMCALL_STATUSES`).
#![cfg(feature = "model")]

mod common;

use common::{HostMemory, call};
use sha2::{Digest, Sha384};
use std::collections::BTreeSet;
use tdx_boot::model::{
    FOREVER, HostPageSize, MapGpaFault, ModelConfig, PageState, QUOTE_STATUS_ERROR,
    QUOTE_STATUS_IN_FLIGHT, QUOTE_STATUS_SERVICE_UNAVAILABLE, QUOTE_STATUS_SUCCESS, RegisterFile,
    TD_KILLED_STATUS, TDCALL_STATUSES, TdKilled, TdxModule, VMCALL_STATUSES, VMM_GARBAGE,
};
use tdx_boot::tdcall::vmcall::{CpuidResult, expose, function};
use tdx_boot::tdcall::{
    Regs, TdAttributes, TdCall, TdReport, TdcsField, TdxStatus, VeInfo, VmcallStatus, leaf, vp_info,
};

const PAGE: u64 = 0x1000;
const MIB2: u64 = 0x20_0000;
const SHARED: u64 = 1 << 47;

fn status(regs: &Regs) -> TdxStatus {
    TdxStatus::from_raw(regs.rax)
}

fn accept(tdx: &TdxModule, vcpu: u32, rcx: u64) -> TdxStatus {
    let out = call(
        &tdx.vcpu(vcpu),
        Regs {
            rax: leaf::MEM_PAGE_ACCEPT,
            rcx,
            ..Regs::default()
        },
    );
    status(&out)
}

fn leaf_call(tdx: &TdxModule, regs: Regs) -> Regs {
    call(&tdx.vcpu(0), regs)
}

/// A TDG.VP.VMCALL of `function` exposing `exposed` plus R10/R11.
fn vmcall(tdx: &TdxModule, function: u64, exposed: u64, args: Regs) -> Regs {
    let out = call(
        &tdx.vcpu(0),
        Regs {
            rax: leaf::VP_VMCALL,
            rcx: exposed | expose::R10 | expose::R11,
            r10: 0,
            r11: function,
            ..args
        },
    );
    assert_eq!(status(&out), TdxStatus::SUCCESS, "the TDCALL itself failed");
    out
}

fn vmm_status(out: &Regs) -> VmcallStatus {
    VmcallStatus::from_raw(out.r10)
}

fn model() -> TdxModule {
    TdxModule::new(ModelConfig::default())
}

// ---------------------------------------------------------------------------------------------
// RAX: leaf and version
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_leaves_and_bad_versions_are_operand_invalid_on_rax() {
    let tdx = model();
    for rax in [5, 9, 10, 11, 22, 0x7fff, 0xffff] {
        let out = leaf_call(
            &tdx,
            Regs {
                rax,
                ..Regs::default()
            },
        );
        assert_eq!(status(&out), TdxStatus::OPERAND_INVALID, "leaf {rax}");
        assert_eq!(status(&out).operand_id(), 0, "operand id RAX");
    }
    // A version is allowed only on TDG.VM.RD (and only up to 1); reserved bits never.
    for rax in [
        leaf::VP_INFO | 1 << 16,
        leaf::MEM_PAGE_ACCEPT | 1 << 16,
        leaf::VM_RD | 2 << 16,
        leaf::VP_INFO | 1 << 24,
        leaf::VP_INFO | 1 << 40,
    ] {
        let out = leaf_call(
            &tdx,
            Regs {
                rax,
                ..Regs::default()
            },
        );
        assert_eq!(status(&out), TdxStatus::OPERAND_INVALID, "rax {rax:#x}");
    }
    assert_eq!(tdx.tdcall_count(leaf::VP_INFO), 3);
    assert_eq!(tdx.tdcall_count(0xffff), 1);
}

// ---------------------------------------------------------------------------------------------
// TDG.VP.INFO
// ---------------------------------------------------------------------------------------------

#[test]
fn vp_info_reports_gpaw_attributes_counts_and_the_calling_vcpu() {
    let attributes = (TdAttributes::SEPT_VE_DISABLE | TdAttributes::PKS).bits();
    let tdx = TdxModule::new(ModelConfig {
        gpaw: 52,
        num_vcpus: 3,
        max_vcpus: 8,
        attributes,
        ..Default::default()
    });
    for vcpu in 0..3 {
        let out = call(
            &tdx.vcpu(vcpu),
            Regs {
                rax: leaf::VP_INFO,
                r10: 0x1234,
                r11: 0x5678,
                ..Regs::default()
            },
        );
        assert_eq!(status(&out), TdxStatus::SUCCESS);
        assert_eq!(out.rcx, 52);
        assert_eq!(out.rdx, attributes);
        assert_eq!(out.r8, 3 | 8 << 32);
        assert_eq!(out.r9, u64::from(vcpu));
        assert_eq!((out.r10, out.r11), (0, 0));
    }
    // An index beyond NUM_VCPUS is reported as is, for the guest's checks to catch.
    let out = call(
        &tdx.vcpu(7),
        Regs {
            rax: leaf::VP_INFO,
            ..Regs::default()
        },
    );
    assert_eq!(out.r9, 7);
}

#[test]
fn the_model_and_its_vcpus_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<TdxModule>();
    send_sync::<tdx_boot::model::Vcpu<'static>>();
}

#[test]
fn default_config_is_a_sane_td() {
    let config = ModelConfig::default();
    assert_eq!(config.gpaw, 48);
    assert!(config.num_vcpus >= 1);
    assert_ne!(config.attributes & TdAttributes::SEPT_VE_DISABLE.bits(), 0);
    assert_eq!(config.host_page_size, HostPageSize::Size2M);
    assert_eq!(config.map_gpa_chunk, 0);
    let out = leaf_call(
        &TdxModule::new(config),
        Regs {
            rax: leaf::VP_INFO,
            ..Regs::default()
        },
    );
    assert_eq!(
        out.r8 >> 32,
        out.r8 & 0xffff_ffff,
        "MAX_VCPUS defaults to NUM_VCPUS"
    );
}

// ---------------------------------------------------------------------------------------------
// TDG.MEM.PAGE.ACCEPT
// ---------------------------------------------------------------------------------------------

#[test]
fn accept_rejects_bad_levels_reserved_bits_and_misalignment() {
    let tdx = model();
    tdx.add_memory(0, 4 * MIB2, PageState::Unaccepted);
    for level in 2..8 {
        let s = accept(&tdx, 0, level);
        assert_eq!(s, TdxStatus::OPERAND_INVALID, "level {level}");
        assert_eq!(s.operand_id(), 1, "operand RCX");
    }
    for bit in 3..12 {
        assert_eq!(
            accept(&tdx, 0, MIB2 | 1 << bit),
            TdxStatus::OPERAND_INVALID,
            "bit {bit}"
        );
    }
    assert_eq!(
        accept(&tdx, 0, (MIB2 + PAGE) | 1),
        TdxStatus::OPERAND_INVALID
    );
    assert!(
        tdx.page_runs(0, 4 * MIB2)
            .iter()
            .all(|r| r.2 == PageState::Unaccepted)
    );
    assert_eq!(tdx.accept_stats().failed, 6 + 9 + 1);
}

#[test]
fn accept_rejects_gpas_beyond_gpaw_or_with_the_shared_bit() {
    let tdx = model();
    tdx.add_memory(0, MIB2, PageState::Unaccepted);
    assert_eq!(accept(&tdx, 0, 1 << 48), TdxStatus::OPERAND_INVALID);
    assert_eq!(accept(&tdx, 0, SHARED), TdxStatus::OPERAND_INVALID);
    assert_eq!(accept(&tdx, 0, 1 << 52), TdxStatus::OPERAND_INVALID);
    // With GPAW 52, bit 47 is an ordinary address bit and bit 51 is the shared bit.
    let wide = TdxModule::new(ModelConfig {
        gpaw: 52,
        ..Default::default()
    });
    wide.add_memory(1 << 47, (1 << 47) + MIB2, PageState::Unaccepted);
    assert_eq!(accept(&wide, 0, 1 << 47), TdxStatus::SUCCESS);
    assert_eq!(accept(&wide, 0, 1 << 51), TdxStatus::OPERAND_INVALID);
}

/// The module never answers an ACCEPT of a GPA without a private page: it exits to the VMM with
/// an EPT violation. RAM the VMM has not added yet is added (KVM adds the page and re-runs the
/// TDCALL), and the guest only sees the ACCEPT succeed.
#[test]
fn accept_of_ram_the_vmm_adds_on_demand_succeeds() {
    let mem = HostMemory::new(6 * MIB2 as usize, 0xaa);
    let tdx = model();
    mem.back(&tdx, 0);
    tdx.add_ram_on_demand(0, 6 * MIB2);
    tdx.add_memory(4 * MIB2, 4 * MIB2 + PAGE, PageState::Private);
    assert_eq!(tdx.page_state(PAGE), PageState::Absent);

    // 4 KiB: that page is added, pending, then accepted and zeroed; its neighbours stay absent.
    assert_eq!(accept(&tdx, 0, PAGE), TdxStatus::SUCCESS);
    assert_eq!(tdx.page_state(PAGE), PageState::Private);
    assert!(
        mem.read(PAGE as usize, PAGE as usize)
            .iter()
            .all(|&b| b == 0)
    );
    assert_eq!(tdx.page_state(0), PageState::Absent);
    assert_eq!(tdx.page_state(2 * PAGE), PageState::Absent);
    assert_eq!(tdx.ram_added_on_demand(), PAGE);

    // 2 MiB of RAM never added: the block is added whole and accepted at 2 MiB.
    assert_eq!(accept(&tdx, 0, MIB2 | 1), TdxStatus::SUCCESS);
    assert_eq!(
        tdx.page_runs(MIB2, 2 * MIB2),
        [(MIB2, 2 * MIB2, PageState::Private)]
    );
    assert_eq!(tdx.accept_stats().accepted_2m, 1);

    // A block that already holds a private page: the rest is added, pending, but the host maps
    // the mixed block with 4 KiB pages, so the guest must accept it 4 KiB at a time.
    assert_eq!(
        accept(&tdx, 0, (4 * MIB2) | 1),
        TdxStatus::PAGE_SIZE_MISMATCH
    );
    assert_eq!(tdx.page_state(4 * MIB2 + PAGE), PageState::Unaccepted);
    assert_eq!(tdx.page_state(4 * MIB2), PageState::Private);
    assert_eq!(accept(&tdx, 0, 4 * MIB2 + PAGE), TdxStatus::SUCCESS);
    assert_eq!(accept(&tdx, 0, 4 * MIB2), TdxStatus::PAGE_ALREADY_ACCEPTED);

    // A block part pending, part without memory that is not RAM: also 4 KiB only.
    tdx.add_memory(7 * MIB2, 7 * MIB2 + PAGE, PageState::Unaccepted);
    assert_eq!(
        accept(&tdx, 0, (7 * MIB2) | 1),
        TdxStatus::PAGE_SIZE_MISMATCH
    );
    assert_eq!(accept(&tdx, 0, 7 * MIB2), TdxStatus::SUCCESS);
    assert_eq!(tdx.td_killed(), None);
}

/// An EPT violation the VMM cannot resolve ends the TD: an ACCEPT outside guest RAM, of a page
/// the guest made shared (no MapGPA back to private), or of MMIO. The model records it, and no
/// TDCALL of any vCPU executes afterwards.
#[test]
fn accept_outside_guest_memory_ends_the_td() {
    let cases = [
        (0, 0, PageState::Shared),
        (PAGE, PAGE, PageState::Shared),
        (1, 0, PageState::Shared),
        (MIB2, MIB2, PageState::Mmio),
        (MIB2 | 1, MIB2, PageState::Mmio),
        (8 * MIB2, 8 * MIB2, PageState::Absent),
        ((8 * MIB2) | 1, 8 * MIB2, PageState::Absent),
        (4 * MIB2 + 2 * PAGE, 4 * MIB2 + 2 * PAGE, PageState::Absent),
    ];
    for (rcx, gpa, state) in cases {
        let tdx = model();
        tdx.add_memory(0, MIB2, PageState::Shared);
        tdx.add_memory(MIB2, 2 * MIB2, PageState::Mmio);
        tdx.add_ram_on_demand(2 * MIB2, 4 * MIB2);
        assert_eq!(vp_info(&tdx.vcpu(1)).map(|i| i.vcpu_index), Ok(1));
        let answer = call(
            &tdx.vcpu(1),
            Regs {
                rax: leaf::MEM_PAGE_ACCEPT,
                rcx,
                ..Regs::default()
            },
        );
        assert_eq!(answer.rax, TD_KILLED_STATUS, "rcx {rcx:#x}");
        assert_eq!(
            tdx.td_killed(),
            Some(TdKilled {
                vcpu: 1,
                gpa,
                state
            }),
            "rcx {rcx:#x}"
        );
        // A dead TD runs nothing: not the other vCPU, not this one, not the VMM.
        let info_calls = tdx.tdcall_count(leaf::VP_INFO);
        assert!(vp_info(&tdx.vcpu(0)).is_err());
        assert_eq!(tdx.tdcall_count(leaf::VP_INFO), info_calls);
        assert_eq!(tdx.ram_added_on_demand(), 0, "nothing else was added");
        assert_eq!(tdx.page_state(gpa), state, "the page is as it was");
    }
}

#[test]
fn accept_zeroes_the_page_and_a_second_accept_does_not() {
    let mem = HostMemory::new(2 * MIB2 as usize, 0xaa);
    let tdx = model();
    mem.back(&tdx, 0);
    tdx.add_memory(0, 2 * MIB2, PageState::Unaccepted);
    assert_eq!(accept(&tdx, 0, PAGE), TdxStatus::SUCCESS);
    assert!(
        mem.read(PAGE as usize, PAGE as usize)
            .iter()
            .all(|&b| b == 0)
    );
    assert_eq!(mem.read(0, 1), [0xaa]);
    assert_eq!(mem.read(2 * PAGE as usize, 1), [0xaa]);
    mem.fill(PAGE as usize, 16, 0x55);
    let again = accept(&tdx, 1, PAGE);
    assert_eq!(again, TdxStatus::PAGE_ALREADY_ACCEPTED);
    assert_eq!(again.operand_id(), 0, "found at the 4 KiB level");
    assert_eq!(mem.read(PAGE as usize, 16), [0x55; 16], "not zeroed again");
    // 2 MiB: all 512 pages zeroed.
    assert_eq!(accept(&tdx, 0, MIB2 | 1), TdxStatus::SUCCESS);
    assert!(
        mem.read(MIB2 as usize, MIB2 as usize)
            .iter()
            .all(|&b| b == 0)
    );
    let s = accept(&tdx, 0, MIB2 + 7 * PAGE);
    assert_eq!(s, TdxStatus::PAGE_ALREADY_ACCEPTED);
    assert_eq!(s.operand_id(), 1, "found at the 2 MiB level");
    assert_eq!(tdx.accept_stats().already_accepted, 2);
    assert_eq!(tdx.accept_stats().accepted_bytes(), PAGE + MIB2);
}

#[test]
fn accept_4k_splits_a_pending_2m_block_and_then_2m_is_a_size_mismatch() {
    let tdx = model();
    tdx.add_memory(0, 4 * MIB2, PageState::Unaccepted);
    assert!(!tdx.host_maps_4k(MIB2));
    assert_eq!(accept(&tdx, 0, MIB2 + PAGE), TdxStatus::SUCCESS);
    assert_eq!(tdx.page_state(MIB2 + PAGE), PageState::Private);
    assert_eq!(tdx.page_state(MIB2), PageState::Unaccepted);
    assert!(tdx.host_maps_4k(MIB2));
    assert!(
        !tdx.host_maps_4k(2 * MIB2),
        "only the touched block is split"
    );
    assert_eq!(accept(&tdx, 0, MIB2 | 1), TdxStatus::PAGE_SIZE_MISMATCH);
    // Accepting every page at 4 KiB leaves a block the host still maps at 4 KiB.
    for page in 0..512 {
        let s = accept(&tdx, 0, MIB2 + page * PAGE);
        assert!(s == TdxStatus::SUCCESS || page == 1, "page {page}: {s:?}");
    }
    assert_eq!(accept(&tdx, 0, MIB2 | 1), TdxStatus::PAGE_SIZE_MISMATCH);
    let stats = tdx.accept_stats();
    assert_eq!(stats.accepted_4k, 512);
    assert_eq!(stats.size_mismatch, 2);
    assert_eq!(stats.host_splits, 1);
}

#[test]
fn firmware_accepted_memory_is_already_accepted_at_both_sizes() {
    let tdx = model();
    tdx.add_memory(0, 2 * MIB2, PageState::Private);
    assert_eq!(accept(&tdx, 0, 1), TdxStatus::PAGE_ALREADY_ACCEPTED);
    assert_eq!(accept(&tdx, 0, PAGE), TdxStatus::PAGE_ALREADY_ACCEPTED);
}

#[test]
fn host_page_size_config_and_override() {
    let tdx = TdxModule::new(ModelConfig {
        host_page_size: HostPageSize::Size4K,
        ..Default::default()
    });
    tdx.add_memory(0, 4 * MIB2, PageState::Unaccepted);
    assert_eq!(accept(&tdx, 0, 1), TdxStatus::PAGE_SIZE_MISMATCH);
    tdx.set_host_page_size(MIB2 + PAGE, MIB2 + 2 * PAGE, HostPageSize::Size2M);
    assert_eq!(accept(&tdx, 0, MIB2 | 1), TdxStatus::SUCCESS);
    assert_eq!(
        accept(&tdx, 0, (2 * MIB2) | 1),
        TdxStatus::PAGE_SIZE_MISMATCH
    );
    let tdx = model();
    tdx.add_memory(0, 4 * MIB2, PageState::Unaccepted);
    tdx.set_host_page_size(2 * MIB2, 3 * MIB2, HostPageSize::Size4K);
    assert_eq!(
        accept(&tdx, 0, (2 * MIB2) | 1),
        TdxStatus::PAGE_SIZE_MISMATCH
    );
    assert_eq!(accept(&tdx, 0, (3 * MIB2) | 1), TdxStatus::SUCCESS);
}

#[test]
fn injected_busy_answers_first_then_the_accept_works() {
    let tdx = model();
    tdx.add_memory(0, MIB2, PageState::Unaccepted);
    tdx.inject_busy(2);
    let first = accept(&tdx, 0, 0);
    assert_eq!(first, TdxStatus::OPERAND_BUSY);
    assert_eq!(first.operand_id(), 1);
    assert_eq!(accept(&tdx, 0, 0), TdxStatus::OPERAND_BUSY);
    assert_eq!(tdx.page_state(0), PageState::Unaccepted);
    assert_eq!(accept(&tdx, 0, 0), TdxStatus::SUCCESS);
    assert_eq!(tdx.accept_stats().busy, 2);
    // The general knob works for any leaf and can be cleared.
    tdx.inject_tdcall_status(leaf::VP_INFO, TdxStatus::OPERAND_ADDR_RANGE_ERROR, FOREVER);
    for _ in 0..3 {
        let out = leaf_call(
            &tdx,
            Regs {
                rax: leaf::VP_INFO,
                ..Regs::default()
            },
        );
        assert_eq!(status(&out), TdxStatus::OPERAND_ADDR_RANGE_ERROR);
    }
    tdx.clear_faults();
    let out = leaf_call(
        &tdx,
        Regs {
            rax: leaf::VP_INFO,
            ..Regs::default()
        },
    );
    assert_eq!(status(&out), TdxStatus::SUCCESS);
}

#[test]
fn a_second_vcpu_accepting_a_page_in_flight_gets_busy() {
    let tdx = model();
    tdx.add_memory(0, 2 * MIB2, PageState::Unaccepted);
    tdx.stall_accepts(true);
    std::thread::scope(|scope| {
        let first = scope.spawn(|| accept(&tdx, 0, 1));
        while tdx.accepts_in_flight() == 0 {
            std::hint::spin_loop();
        }
        assert_eq!(accept(&tdx, 1, 1), TdxStatus::OPERAND_BUSY);
        assert_eq!(accept(&tdx, 2, 5 * PAGE), TdxStatus::OPERAND_BUSY);
        tdx.stall_accepts(false);
        assert_eq!(first.join().unwrap(), TdxStatus::SUCCESS);
    });
    assert_eq!(accept(&tdx, 1, 1), TdxStatus::PAGE_ALREADY_ACCEPTED);
    let stats = tdx.accept_stats();
    assert_eq!(
        (stats.accepted_2m, stats.busy, stats.already_accepted),
        (1, 2, 1)
    );
}

#[test]
fn map_gpa_waits_for_an_accept_in_flight_on_its_pages() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let tdx = model();
    tdx.add_memory(0, MIB2, PageState::Unaccepted);
    tdx.stall_accepts(true);
    let converted = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let accepting = scope.spawn(|| accept(&tdx, 0, PAGE));
        while tdx.accepts_in_flight() == 0 {
            std::hint::spin_loop();
        }
        let converting = scope.spawn(|| {
            let out = map_gpa(&tdx, SHARED | PAGE, PAGE);
            converted.store(true, Ordering::SeqCst);
            vmm_status(&out)
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(
            !converted.load(Ordering::SeqCst),
            "MapGPA went through a locked page"
        );
        tdx.stall_accepts(false);
        assert_eq!(accepting.join().unwrap(), TdxStatus::SUCCESS);
        assert_eq!(converting.join().unwrap(), VmcallStatus::Success);
    });
    assert_eq!(tdx.page_state(PAGE), PageState::Shared);
}

#[test]
fn vcpus_on_threads_accepting_overlapping_ranges_accept_each_page_once() {
    const PAGES: u64 = 2048;
    let tdx = model();
    tdx.add_memory(0, PAGES * PAGE, PageState::Unaccepted);
    let threads = 4u32;
    std::thread::scope(|scope| {
        for vcpu in 0..threads {
            let tdx = &tdx;
            scope.spawn(move || {
                // Each thread covers half of the range, starting at a different quarter, so
                // every page is wanted by two threads.
                let start = u64::from(vcpu) * PAGES / 4;
                for i in 0..PAGES / 2 {
                    let gpa = ((start + i) % PAGES) * PAGE;
                    loop {
                        let s = accept(tdx, vcpu, gpa);
                        if s == TdxStatus::OPERAND_BUSY {
                            continue;
                        }
                        assert!(
                            s == TdxStatus::SUCCESS || s == TdxStatus::PAGE_ALREADY_ACCEPTED,
                            "{s:?}"
                        );
                        break;
                    }
                }
            });
        }
    });
    let stats = tdx.accept_stats();
    assert_eq!(stats.accepted_4k, PAGES, "every page accepted exactly once");
    assert_eq!(
        stats.already_accepted, PAGES,
        "the second want of each page"
    );
    assert_eq!(
        tdx.page_runs(0, PAGES * PAGE),
        [(0, PAGES * PAGE, PageState::Private)]
    );
    assert_eq!(tdx.accepts_in_flight(), 0);
}

#[test]
fn a_one_tib_td_costs_little_memory() {
    const TIB: u64 = 1 << 40;
    let tdx = model();
    tdx.add_memory(0, TIB, PageState::Unaccepted);
    assert_eq!(tdx.page_map_entries(), 1);
    let mut gpa = 0x1234_5000u64;
    for _ in 0..1000 {
        gpa = (gpa
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407))
            % TIB;
        let page = gpa & !(PAGE - 1);
        let s = accept(&tdx, 0, page);
        assert!(s == TdxStatus::SUCCESS || s == TdxStatus::PAGE_ALREADY_ACCEPTED);
        assert_eq!(tdx.page_state(page), PageState::Private);
    }
    // Each scattered page costs at most two state runs and one split-block record.
    let entries = tdx.page_map_entries();
    assert!(entries <= 3 * 1000 + 1, "{entries} entries");
    assert_eq!(tdx.page_state(TIB - PAGE), PageState::Unaccepted);
    assert_eq!(tdx.page_state(TIB), PageState::Absent);
}

// ---------------------------------------------------------------------------------------------
// TDG.VP.VEINFO.GET
// ---------------------------------------------------------------------------------------------

#[test]
fn veinfo_returns_and_consumes_the_injected_ve_of_that_vcpu() {
    let tdx = model();
    let info = VeInfo {
        exit_reason: VeInfo::EXIT_REASON_EPT_VIOLATION,
        exit_qualification: 0x181,
        guest_linear_address: 0xffff_8000_dead_b000,
        guest_physical_address: SHARED | 0xfee0_0000,
        instruction_length: 3,
        instruction_info: 0x77,
    };
    let get = |vcpu| {
        call(
            &tdx.vcpu(vcpu),
            Regs {
                rax: leaf::VP_VEINFO_GET,
                ..Regs::default()
            },
        )
    };
    assert_eq!(status(&get(0)), TdxStatus::NO_VALID_VE_INFO);
    // Outputs are zeroed even on failure; version 1 exists, version 2 does not.
    let out = call(
        &tdx.vcpu(0),
        Regs {
            rax: leaf::VP_VEINFO_GET | 1 << 16,
            rcx: 1,
            rdx: 2,
            r8: 3,
            r9: 4,
            r10: 5,
            ..Regs::default()
        },
    );
    assert_eq!(status(&out), TdxStatus::NO_VALID_VE_INFO);
    assert_eq!((out.rcx, out.rdx, out.r8, out.r9, out.r10), (0, 0, 0, 0, 0));
    let out = call(
        &tdx.vcpu(0),
        Regs {
            rax: leaf::VP_VEINFO_GET | 2 << 16,
            ..Regs::default()
        },
    );
    assert_eq!(status(&out), TdxStatus::OPERAND_INVALID);
    assert!(tdx.inject_ve(1, info));
    assert!(tdx.ve_pending(1));
    assert_eq!(status(&get(0)), TdxStatus::NO_VALID_VE_INFO, "other vCPU");
    let out = get(1);
    assert_eq!(status(&out), TdxStatus::SUCCESS);
    assert_eq!(out.rcx, 48);
    assert_eq!(out.rdx, 0x181);
    assert_eq!(out.r8, 0xffff_8000_dead_b000);
    assert_eq!(out.r9, SHARED | 0xfee0_0000);
    assert_eq!(out.r10, 3 | 0x77 << 32);
    assert!(!tdx.ve_pending(1));
    assert_eq!(status(&get(1)), TdxStatus::NO_VALID_VE_INFO, "consumed");
    // A #VE while the previous one is unread: a double fault on hardware; the first stays.
    assert!(tdx.inject_ve(0, info));
    let second = VeInfo {
        exit_reason: VeInfo::EXIT_REASON_HLT,
        ..info
    };
    assert!(!tdx.inject_ve(0, second));
    assert_eq!(tdx.ve_double_faults(0), 1);
    assert_eq!(get(0).rcx, 48);
    assert!(tdx.inject_ve(0, second));
    assert_eq!(get(0).rcx, 12);
    assert_eq!(tdx.ve_double_faults(1), 0);
}

// ---------------------------------------------------------------------------------------------
// TDG.MR.REPORT and TDG.MR.RTMR.EXTEND
// ---------------------------------------------------------------------------------------------

fn sha384_extend(old: &[u8; 48], digest: &[u8; 48]) -> [u8; 48] {
    let mut h = Sha384::new();
    h.update(old);
    h.update(digest);
    h.finalize().into()
}

fn measured_model() -> (TdxModule, HostMemory) {
    let mem = HostMemory::new(4 * PAGE as usize, 0xcc);
    let tdx = TdxModule::new(ModelConfig {
        mrtd: [0x11; 48],
        mr_config_id: [0x22; 48],
        mr_owner: [0x33; 48],
        mr_owner_config: [0x44; 48],
        xfam: 0xe7,
        ..Default::default()
    });
    mem.back(&tdx, 0x10_0000);
    tdx.add_memory(0x10_0000, 0x10_0000 + 2 * PAGE, PageState::Private);
    tdx.add_memory(
        0x10_0000 + 2 * PAGE,
        0x10_0000 + 3 * PAGE,
        PageState::Shared,
    );
    tdx.add_memory(
        0x10_0000 + 3 * PAGE,
        0x10_0000 + 4 * PAGE,
        PageState::Unaccepted,
    );
    (tdx, mem)
}

fn rtmr_extend_raw(tdx: &TdxModule, gpa: u64, index: u64) -> TdxStatus {
    status(&leaf_call(
        tdx,
        Regs {
            rax: leaf::MR_RTMR_EXTEND,
            rcx: gpa,
            rdx: index,
            ..Regs::default()
        },
    ))
}

#[test]
fn rtmr_extend_is_a_sha384_chain() {
    let (tdx, mem) = measured_model();
    let mut expected = [[0u8; 48]; 4];
    for (round, index) in [0usize, 2, 2, 3, 0].into_iter().enumerate() {
        let digest = [round as u8 + 1; 48];
        mem.write(0x40, &digest);
        assert_eq!(
            rtmr_extend_raw(&tdx, 0x10_0040, index as u64),
            TdxStatus::SUCCESS
        );
        expected[index] = sha384_extend(&expected[index], &digest);
    }
    for (i, value) in expected.iter().enumerate() {
        assert_eq!(&tdx.rtmr(i), value, "RTMR{i}");
    }
    assert_eq!(tdx.rtmr(9), [0; 48]);
}

#[test]
fn rtmr_extend_checks_alignment_then_gpa_then_index() {
    let (tdx, _mem) = measured_model();
    let invalid =
        |s: TdxStatus, operand| s == TdxStatus::OPERAND_INVALID && s.operand_id() == operand;
    assert!(
        invalid(rtmr_extend_raw(&tdx, 0x10_0020, 0), 1),
        "misaligned"
    );
    assert!(invalid(rtmr_extend_raw(&tdx, 0x10_0000, 4), 2), "index 4");
    assert!(invalid(rtmr_extend_raw(&tdx, 0x10_0000, u64::MAX), 2));
    assert!(
        invalid(rtmr_extend_raw(&tdx, 0x10_0000 + 3 * PAGE, 4), 1),
        "GPA first"
    );
    assert!(invalid(rtmr_extend_raw(&tdx, 0x20_0000, 0), 1), "no memory");
    assert!(
        invalid(rtmr_extend_raw(&tdx, SHARED | (0x10_0000 + 2 * PAGE), 0), 1),
        "shared"
    );
    assert!(invalid(rtmr_extend_raw(&tdx, 1 << 48, 0), 1), "beyond GPAW");
    tdx.add_memory(0x30_0000, 0x30_1000, PageState::Private);
    assert!(
        invalid(rtmr_extend_raw(&tdx, 0x30_0000, 0), 1),
        "not backed"
    );
    assert_eq!(tdx.rtmr(0), [0; 48]);
}

fn report_raw(tdx: &TdxModule, report: u64, data: u64, subtype: u64) -> TdxStatus {
    status(&leaf_call(
        tdx,
        Regs {
            rax: leaf::MR_REPORT,
            rcx: report,
            rdx: data,
            r8: subtype,
            ..Regs::default()
        },
    ))
}

#[test]
fn report_binds_report_data_and_measurements() {
    let (tdx, mem) = measured_model();
    mem.write(0x40, &[9; 48]);
    assert_eq!(rtmr_extend_raw(&tdx, 0x10_0040, 1), TdxStatus::SUCCESS);
    let data: Vec<u8> = (0..64).collect();
    mem.write(PAGE as usize + 0x40, &data);
    assert_eq!(
        report_raw(&tdx, 0x10_0400, 0x10_1040, 0),
        TdxStatus::SUCCESS
    );
    let mut report = TdReport::default();
    report.bytes.copy_from_slice(&mem.read(0x400, 1024));
    assert_eq!(report.report_type(), [0x81, 0, 0, 0]);
    assert_eq!(report.report_data()[..], data[..]);
    assert_eq!(report.attributes().bits(), tdx.config().attributes);
    assert_eq!(report.xfam(), 0xe7);
    assert_eq!(report.mrtd(), &[0x11; 48]);
    assert_eq!(report.mr_config_id(), &[0x22; 48]);
    assert_eq!(report.mr_owner(), &[0x33; 48]);
    assert_eq!(report.mr_owner_config(), &[0x44; 48]);
    assert_eq!(report.rtmr(0), Some(&[0; 48]));
    assert_eq!(report.rtmr(1), Some(&sha384_extend(&[0; 48], &[9; 48])));
    let tdinfo_hash: [u8; 48] = Sha384::digest(&report.bytes[512..]).into();
    assert_eq!(report.tee_info_hash(), &tdinfo_hash);
    let tcb_hash: [u8; 48] = Sha384::digest(&report.bytes[256..495]).into();
    assert_eq!(report.tee_tcb_info_hash(), &tcb_hash);
    assert_ne!(report.mac(), &[0; 32], "a MAC stand-in is present");
    // REPORTDATA and the report itself may live in shared memory.
    mem.write(2 * PAGE as usize, &[7; 64]);
    let shared_page = SHARED | (0x10_0000 + 2 * PAGE);
    assert_eq!(
        report_raw(&tdx, shared_page, shared_page, 0),
        TdxStatus::SUCCESS
    );
    assert_eq!(mem.read(2 * PAGE as usize, 1), [0x81]);
    assert_eq!(mem.read(2 * PAGE as usize + 128, 64), [7; 64]);
}

#[test]
fn report_checks_alignment_buffers_and_subtype() {
    let (tdx, mem) = measured_model();
    // (report GPA, REPORTDATA GPA, subtype, operand id the module blames, case)
    let refused = [
        (0x10_0200, 0x10_1000, 0, 1, "report misaligned"),
        (0x10_0000, 0x10_1020, 0, 2, "data misaligned"),
        (0x10_0000, 0x10_1000, 1, 8, "subtype"),
        (0x10_0000, 0x10_3000, 0, 2, "data unaccepted"),
        (0x10_3000, 0x10_1000, 0, 1, "report unaccepted"),
        (0x10_2000, 0x10_1000, 0, 1, "shared page, private GPA"),
        (0x40_0000, 0x10_1000, 0, 1, "no memory"),
        (1 << 48, 0x10_1000, 0, 1, "beyond GPAW"),
    ];
    for (report_gpa, data_gpa, subtype, operand, case) in refused {
        let s = report_raw(&tdx, report_gpa, data_gpa, subtype);
        assert!(
            s == TdxStatus::OPERAND_INVALID && s.operand_id() == operand,
            "{case}: {s:?}"
        );
    }
    assert_eq!(mem.read(0, 4), [0xcc; 4], "nothing written");
}

// ---------------------------------------------------------------------------------------------
// TDG.VM.RD / TDG.VM.WR
// ---------------------------------------------------------------------------------------------

fn vm_rd_raw(tdx: &TdxModule, field: u64) -> Regs {
    leaf_call(
        tdx,
        Regs {
            rax: leaf::VM_RD,
            rdx: field,
            ..Regs::default()
        },
    )
}

fn vm_wr_raw(tdx: &TdxModule, field: u64, value: u64, mask: u64) -> Regs {
    leaf_call(
        tdx,
        Regs {
            rax: leaf::VM_WR,
            rdx: field,
            r8: value,
            r9: mask,
            ..Regs::default()
        },
    )
}

#[test]
fn vm_rd_wr_td_ctls_with_reduce_ve() {
    let tdx = model();
    let out = vm_rd_raw(&tdx, TdcsField::TD_CTLS);
    assert_eq!((status(&out), out.r8), (TdxStatus::SUCCESS, 0));
    let reduce = TdcsField::TD_CTLS_REDUCE_VE;
    let out = vm_wr_raw(&tdx, TdcsField::TD_CTLS, reduce, reduce);
    assert_eq!(
        (status(&out), out.r8),
        (TdxStatus::SUCCESS, 0),
        "old value in R8"
    );
    assert_eq!(tdx.td_ctls(), reduce);
    // Bits outside the mask stay.
    let topo = TdcsField::TD_CTLS_ENUM_TOPOLOGY;
    let out = vm_wr_raw(&tdx, TdcsField::TD_CTLS, topo, topo);
    assert_eq!((status(&out), out.r8), (TdxStatus::SUCCESS, reduce));
    assert_eq!(vm_rd_raw(&tdx, TdcsField::TD_CTLS).r8, reduce | topo);
    // Version 1 of VM.RD also works.
    let out = leaf_call(
        &tdx,
        Regs {
            rax: leaf::VM_RD | 1 << 16,
            rdx: TdcsField::TD_CTLS,
            ..Regs::default()
        },
    );
    assert_eq!((status(&out), out.r8), (TdxStatus::SUCCESS, reduce | topo));
}

#[test]
fn vm_wr_of_unsupported_or_read_only_bits_fails_like_the_module() {
    let tdx = TdxModule::new(ModelConfig {
        reduce_ve_supported: false,
        config_flags: 0,
        ..Default::default()
    });
    let reduce = TdcsField::TD_CTLS_REDUCE_VE;
    let topo = TdcsField::TD_CTLS_ENUM_TOPOLOGY;
    let pending = TdcsField::TD_CTLS_PENDING_VE_DISABLE;
    let s = status(&vm_wr_raw(&tdx, TdcsField::TD_CTLS, reduce, reduce));
    assert_eq!(
        s,
        TdxStatus::METADATA_FIELD_NOT_WRITABLE,
        "no writable bit in the mask"
    );
    let s = status(&vm_wr_raw(
        &tdx,
        TdcsField::TD_CTLS,
        reduce | topo,
        reduce | topo,
    ));
    assert_eq!(
        s,
        TdxStatus::METADATA_FIELD_VALUE_NOT_VALID,
        "would change a forbidden bit"
    );
    let s = status(&vm_wr_raw(&tdx, TdcsField::TD_CTLS, topo, reduce | topo));
    assert_eq!(
        s,
        TdxStatus::SUCCESS,
        "forbidden bit in the mask but unchanged"
    );
    assert_eq!(tdx.td_ctls(), topo);
    let s = status(&vm_wr_raw(&tdx, TdcsField::TD_CTLS, pending, pending));
    assert_eq!(
        s,
        TdxStatus::METADATA_FIELD_NOT_WRITABLE,
        "needs FLEXIBLE_PENDING_VE"
    );
    let s = status(&vm_wr_raw(&tdx, TdcsField::CONFIG_FLAGS, 1, 1));
    assert_eq!(s, TdxStatus::METADATA_FIELD_NOT_WRITABLE);
    let flexible = TdxModule::new(ModelConfig {
        config_flags: TdcsField::CONFIG_FLAGS_FLEXIBLE_PENDING_VE,
        ..Default::default()
    });
    let s = status(&vm_wr_raw(&flexible, TdcsField::TD_CTLS, pending, pending));
    assert_eq!(s, TdxStatus::SUCCESS);
    let out = vm_rd_raw(&flexible, TdcsField::CONFIG_FLAGS);
    assert_eq!(out.r8, TdcsField::CONFIG_FLAGS_FLEXIBLE_PENDING_VE);
}

#[test]
fn notify_enables_and_unknown_fields() {
    let tdx = model();
    let out = vm_wr_raw(&tdx, TdcsField::NOTIFY_ENABLES, 1, 1);
    assert_eq!(status(&out), TdxStatus::SUCCESS);
    assert_eq!(tdx.notify_enables(), 1);
    assert_eq!(
        status(&vm_wr_raw(&tdx, TdcsField::NOTIFY_ENABLES, 2, 2)),
        TdxStatus::METADATA_FIELD_NOT_WRITABLE
    );
    for field in [0, 0x1110_0003_0000_0099, u64::MAX] {
        let rd = vm_rd_raw(&tdx, field);
        assert_eq!(status(&rd), TdxStatus::METADATA_FIELD_ID_INCORRECT);
        assert_eq!(status(&rd).operand_id(), 2, "operand RDX");
        assert_eq!(
            status(&vm_wr_raw(&tdx, field, 1, 1)),
            TdxStatus::METADATA_FIELD_ID_INCORRECT
        );
    }
}

// ---------------------------------------------------------------------------------------------
// TDG.VP.VMCALL: the module's RCX check and register exposure
// ---------------------------------------------------------------------------------------------

#[test]
fn vmcall_rcx_may_not_expose_rax_rcx_rsp_nor_set_reserved_bits() {
    let tdx = model();
    for bad in [1 << 0, 1 << 1, 1 << 4, 1 << 32, 1 << 63] {
        let out = call(
            &tdx.vcpu(0),
            Regs {
                rax: leaf::VP_VMCALL,
                rcx: bad | expose::R10 | expose::R11,
                r11: function::WBINVD,
                ..Regs::default()
            },
        );
        assert_eq!(status(&out), TdxStatus::OPERAND_INVALID, "rcx bit {bad:#x}");
        assert_eq!(status(&out).operand_id(), 1);
    }
    assert_eq!(tdx.wbinvd_count(), 0, "the VMM never saw them");
    // RBP (bit 5) is allowed unless NO_RBP_MOD; XMM_SELECT bits are allowed.
    let out = vmcall(&tdx, function::WBINVD, 1 << 5 | 1 << 16, Regs::default());
    assert_eq!(vmm_status(&out), VmcallStatus::Success);
    let strict = TdxModule::new(ModelConfig {
        no_rbp_mod: true,
        ..Default::default()
    });
    let out = call(
        &strict.vcpu(0),
        Regs {
            rax: leaf::VP_VMCALL,
            rcx: 1 << 5 | expose::R10 | expose::R11,
            r11: function::WBINVD,
            ..Regs::default()
        },
    );
    assert_eq!(status(&out), TdxStatus::OPERAND_INVALID);
}

#[test]
fn vmm_sees_only_exposed_registers_and_clobbers_the_exposed_non_outputs() {
    let tdx = model();
    tdx.set_cpuid(
        0x4000_0000,
        0,
        CpuidResult {
            eax: 1,
            ebx: 2,
            ecx: 3,
            edx: 4,
        },
    );
    tdx.set_cpuid(
        0x4000_0000,
        5,
        CpuidResult {
            eax: 5,
            ebx: 6,
            ecx: 7,
            edx: 8,
        },
    );
    // Subleaf 5 in R13, but R13 not exposed: the VMM reads subleaf 0.
    let args = Regs {
        r12: 0x4000_0000,
        r13: 5,
        rbx: 0x1111,
        rsi: 0x2222,
        r8: 0x3333,
        ..Regs::default()
    };
    let out = vmcall(&tdx, function::CPUID, expose::R12 | expose::RBX, args);
    assert_eq!(vmm_status(&out), VmcallStatus::Success);
    assert_eq!(out.r12, 1, "R12 is an output");
    assert_eq!(out.r13, 5, "unexposed R13 is preserved, not the VMM's EBX");
    assert_eq!(out.rbx, VMM_GARBAGE | 3, "exposed non-output");
    assert_eq!(out.r11, VMM_GARBAGE | 11, "R11 is no CPUID output");
    assert_eq!((out.rsi, out.r8), (0x2222, 0x3333), "unexposed preserved");
    let out = vmcall(&tdx, function::CPUID, expose::R12_TO_R15, args);
    assert_eq!((out.r12, out.r13, out.r14, out.r15), (5, 6, 7, 8));
}

#[test]
fn an_unexposed_r11_or_r10_changes_what_the_vmm_and_guest_see() {
    let tdx = model();
    // R11 unexposed: the VMM sees sub-function 0, which does not exist.
    let out = call(
        &tdx.vcpu(0),
        Regs {
            rax: leaf::VP_VMCALL,
            rcx: expose::R10,
            r11: function::WBINVD,
            ..Regs::default()
        },
    );
    assert_eq!(status(&out), TdxStatus::SUCCESS);
    assert_eq!(vmm_status(&out), VmcallStatus::InvalidOperand);
    assert_eq!(out.r11, function::WBINVD, "preserved");
    assert_eq!(tdx.wbinvd_count(), 0);
    assert_eq!(tdx.vmcall_count(0), 1);
    // R10 unexposed: the status never arrives; R10 keeps the guest's value.
    tdx.refuse_vmcall(function::WBINVD, VmcallStatus::GPA_INUSE_RAW, 1);
    let out = call(
        &tdx.vcpu(0),
        Regs {
            rax: leaf::VP_VMCALL,
            rcx: expose::R11,
            r10: 0,
            r11: function::WBINVD,
            ..Regs::default()
        },
    );
    assert_eq!(out.r10, 0, "the refusal is invisible");
    // A non-zero R10 (non-standard TDVMCALL) is refused by this VMM.
    let out = vmcall(
        &tdx,
        function::WBINVD,
        0,
        Regs {
            r10: 1,
            ..Regs::default()
        },
    );
    let out2 = call(
        &tdx.vcpu(0),
        Regs {
            rax: leaf::VP_VMCALL,
            rcx: expose::R10 | expose::R11,
            r10: 1,
            r11: function::WBINVD,
            ..Regs::default()
        },
    );
    assert_eq!(
        vmm_status(&out),
        VmcallStatus::Success,
        "helper forces R10 = 0"
    );
    assert_eq!(vmm_status(&out2), VmcallStatus::InvalidOperand);
}

#[test]
fn garbage_can_be_turned_off() {
    let tdx = TdxModule::new(ModelConfig {
        vmm_clobbers_exposed: false,
        ..Default::default()
    });
    let out = vmcall(
        &tdx,
        function::WBINVD,
        expose::R12,
        Regs {
            r12: 42,
            ..Regs::default()
        },
    );
    assert_eq!((out.r12, out.r11), (42, function::WBINVD));
}

// ---------------------------------------------------------------------------------------------
// Sub-functions
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_sub_functions_and_refusals() {
    let tdx = model();
    for f in [0, 1, 13, 0x10005, 0x10006, u64::MAX] {
        let out = vmcall(&tdx, f, 0, Regs::default());
        assert_eq!(
            vmm_status(&out),
            VmcallStatus::InvalidOperand,
            "function {f:#x}"
        );
    }
    tdx.set_msr(0x10, 99);
    tdx.refuse_vmcall(function::RDMSR, VmcallStatus::GPA_INUSE_RAW, 2);
    for _ in 0..2 {
        let out = vmcall(
            &tdx,
            function::RDMSR,
            expose::R12,
            Regs {
                r12: 0x10,
                ..Regs::default()
            },
        );
        assert_eq!(vmm_status(&out), VmcallStatus::GpaInUse);
        assert_eq!(out.r11, VMM_GARBAGE | 11, "no output on refusal");
    }
    let out = vmcall(
        &tdx,
        function::RDMSR,
        expose::R12,
        Regs {
            r12: 0x10,
            ..Regs::default()
        },
    );
    assert_eq!((vmm_status(&out), out.r11), (VmcallStatus::Success, 99));
    assert_eq!(tdx.vmcall_count(function::RDMSR), 3);
}

#[test]
fn the_unsupported_sub_function_status_is_configurable() {
    let subfunc_unsupported = 0x8000_0000_0000_0003;
    let tdx = TdxModule::new(ModelConfig {
        vmcall_unsupported_status: subfunc_unsupported,
        ..Default::default()
    });
    let out = vmcall(&tdx, 0x10005, 0, Regs::default());
    assert_eq!(out.r10, subfunc_unsupported);
    let out = vmcall(
        &tdx,
        function::GET_TD_VMCALL_INFO,
        expose::R12,
        Regs {
            r12: 1,
            ..Regs::default()
        },
    );
    assert_eq!(
        vmm_status(&out),
        VmcallStatus::InvalidOperand,
        "a known sub-function's bad input"
    );
}

#[test]
fn hlt_records_the_blocked_flag_and_sti() {
    let tdx = model();
    vmcall(
        &tdx,
        function::HLT,
        expose::R12,
        Regs {
            r12: 1,
            ..Regs::default()
        },
    );
    let mut regs = Regs {
        rax: leaf::VP_VMCALL,
        rcx: expose::R10 | expose::R11 | expose::R12,
        r11: function::HLT,
        ..Regs::default()
    };
    // SAFETY: HLT carries no memory; the model has no interrupts to deliver.
    unsafe { tdx.vcpu(2).tdcall_enabling_interrupts(&mut regs) };
    assert_eq!(vmm_status(&regs), VmcallStatus::Success);
    let halts = tdx.halts();
    assert_eq!(halts.len(), 2);
    assert_eq!(
        (halts[0].vcpu, halts[0].interrupts_blocked, halts[0].sti),
        (0, true, false)
    );
    assert_eq!(
        (halts[1].vcpu, halts[1].interrupts_blocked, halts[1].sti),
        (2, false, true)
    );
    assert_eq!(tdx.sti_calls(2), 1);
    assert_eq!(tdx.sti_calls(0), 0);
}

fn io(tdx: &TdxModule, size: u64, write: u64, port: u64, value: u64) -> Regs {
    vmcall(
        tdx,
        function::IO,
        expose::R12_TO_R15,
        Regs {
            r12: size,
            r13: write,
            r14: port,
            r15: value,
            ..Regs::default()
        },
    )
}

#[test]
fn io_reaches_the_uart_devices_and_floating_ports() {
    let tdx = model();
    for &b in b"hi\n" {
        assert_eq!(
            vmm_status(&io(&tdx, 1, 1, 0x3f8, u64::from(b))),
            VmcallStatus::Success
        );
    }
    assert_eq!(tdx.uart_output(), b"hi\n");
    let lsr = io(&tdx, 1, 0, 0x3fd, 0);
    assert_eq!(lsr.r11 & 0x60, 0x60, "transmitter empty");
    // Divisor latch: with DLAB set, port 0 is not the transmit register.
    io(&tdx, 1, 1, 0x3fb, 0x80);
    io(&tdx, 1, 1, 0x3f8, 0x01);
    assert_eq!(io(&tdx, 1, 0, 0x3f8, 0).r11, 0x01);
    io(&tdx, 1, 1, 0x3fb, 0x03);
    assert_eq!(tdx.uart_output(), b"hi\n");
    // Nothing on the port: reads float high, writes vanish.
    assert_eq!(io(&tdx, 2, 0, 0x80, 0).r11, 0xffff);
    assert_eq!(io(&tdx, 4, 0, 0x80, 0).r11, 0xffff_ffff);
    assert_eq!(vmm_status(&io(&tdx, 1, 1, 0x80, 0)), VmcallStatus::Success);
    // A device.
    let regs = RegisterFile::new(8);
    tdx.add_port_device(0x500, 8, Box::new(regs.clone()));
    io(&tdx, 4, 1, 0x504, 0xdead_beef_1234_5678);
    assert_eq!(
        regs.get(4, 4),
        0x1234_5678,
        "the value is cut to the access size"
    );
    assert_eq!(io(&tdx, 2, 0, 0x504, 0).r11, 0x5678);
}

#[test]
fn io_rejects_bad_sizes_directions_and_ports() {
    let tdx = model();
    for (size, write, port) in [
        (0, 1, 0x3f8),
        (3, 1, 0x3f8),
        (8, 0, 0x3f8),
        (1, 2, 0x3f8),
        (1, 0, 0x1_0000),
    ] {
        let out = io(&tdx, size, write, port, b'x'.into());
        assert_eq!(
            vmm_status(&out),
            VmcallStatus::InvalidOperand,
            "{size} {write} {port:#x}"
        );
    }
    assert!(tdx.uart_output().is_empty());
}

#[test]
fn msrs_read_write_and_unknown() {
    let tdx = model();
    tdx.set_msr(0x1b, 0xfee0_0900);
    let out = vmcall(
        &tdx,
        function::RDMSR,
        expose::R12,
        Regs {
            r12: 0x1b,
            ..Regs::default()
        },
    );
    assert_eq!(
        (vmm_status(&out), out.r11),
        (VmcallStatus::Success, 0xfee0_0900)
    );
    let out = vmcall(
        &tdx,
        function::WRMSR,
        expose::R12_R13,
        Regs {
            r12: 0x1b,
            r13: 7,
            ..Regs::default()
        },
    );
    assert_eq!(vmm_status(&out), VmcallStatus::Success);
    assert_eq!(tdx.msr(0x1b), Some(7));
    for f in [function::RDMSR, function::WRMSR] {
        let out = vmcall(
            &tdx,
            f,
            expose::R12_R13,
            Regs {
                r12: 0xc000_0080,
                r13: 1,
                ..Regs::default()
            },
        );
        assert_eq!(vmm_status(&out), VmcallStatus::InvalidOperand);
        let out = vmcall(
            &tdx,
            f,
            expose::R12_R13,
            Regs {
                r12: 1 << 32 | 0x1b,
                r13: 1,
                ..Regs::default()
            },
        );
        assert_eq!(
            vmm_status(&out),
            VmcallStatus::InvalidOperand,
            "index beyond 32 bits"
        );
    }
    assert_eq!(tdx.msr(0xc000_0080), None);
}

fn mmio(tdx: &TdxModule, size: u64, write: u64, gpa: u64, value: u64) -> Regs {
    vmcall(
        tdx,
        function::REQUEST_MMIO,
        expose::R12_TO_R15,
        Regs {
            r12: size,
            r13: write,
            r14: gpa,
            r15: value,
            ..Regs::default()
        },
    )
}

#[test]
fn mmio_reaches_devices_at_shared_gpas_only() {
    let tdx = model();
    let regs = RegisterFile::new(0x1000);
    tdx.add_mmio_device(0xfed0_0000, 0x1000, Box::new(regs.clone()));
    assert_eq!(tdx.page_state(0xfed0_0000), PageState::Mmio);
    let base = SHARED | 0xfed0_0000;
    assert_eq!(
        vmm_status(&mmio(&tdx, 8, 1, base + 0x10, 0x0102_0304_0506_0708)),
        VmcallStatus::Success
    );
    assert_eq!(regs.get(0x10, 8), 0x0102_0304_0506_0708);
    assert_eq!(mmio(&tdx, 4, 0, base + 0x10, 0).r11, 0x0506_0708);
    assert_eq!(mmio(&tdx, 1, 0, base + 0x17, 0).r11, 0x01);
    mmio(&tdx, 2, 1, base + 0x20, 0xffff_abcd);
    assert_eq!(regs.get(0x20, 4), 0xabcd);
    for (size, write, gpa) in [
        (4, 0, 0xfed0_0010),        // no shared bit
        (3, 0, base),               // size
        (16, 0, base),              // size
        (4, 2, base),               // direction
        (4, 0, base + 0xffe),       // crosses the page
        (4, 0, SHARED | 0x10_0000), // not MMIO
        (4, 0, (1 << 48) | base),   // beyond GPAW
    ] {
        let out = mmio(&tdx, size, write, gpa, 0);
        assert_eq!(
            vmm_status(&out),
            VmcallStatus::InvalidOperand,
            "{size} {write} {gpa:#x}"
        );
        assert_eq!(out.r11, VMM_GARBAGE | 11);
    }
}

#[test]
fn wbinvd_info_notify_and_fatal() {
    let tdx = model();
    vmcall(&tdx, function::WBINVD, 0, Regs::default());
    assert_eq!(tdx.wbinvd_count(), 1);
    let out = vmcall(
        &tdx,
        function::GET_TD_VMCALL_INFO,
        expose::R12_TO_R15,
        Regs::default(),
    );
    assert_eq!(vmm_status(&out), VmcallStatus::Success);
    assert_eq!((out.r11, out.r12, out.r13, out.r14), (0, 0, 0, 0));
    let out = vmcall(
        &tdx,
        function::GET_TD_VMCALL_INFO,
        expose::R12,
        Regs {
            r12: 1,
            ..Regs::default()
        },
    );
    assert_eq!(vmm_status(&out), VmcallStatus::InvalidOperand);
    for vector in [0, 31, 256, u64::MAX] {
        let out = vmcall(
            &tdx,
            function::SETUP_EVENT_NOTIFY_INTERRUPT,
            expose::R12,
            Regs {
                r12: vector,
                ..Regs::default()
            },
        );
        assert_eq!(
            vmm_status(&out),
            VmcallStatus::InvalidOperand,
            "vector {vector}"
        );
    }
    assert_eq!(tdx.event_notify_vector(), None);
    let out = vmcall(
        &tdx,
        function::SETUP_EVENT_NOTIFY_INTERRUPT,
        expose::R12,
        Regs {
            r12: 32,
            ..Regs::default()
        },
    );
    assert_eq!(vmm_status(&out), VmcallStatus::Success);
    assert_eq!(tdx.event_notify_vector(), Some(32));
    // Fatal error: the message comes from R14, R15, RBX, RDI, RSI, R8, R9, RDX.
    let word = |s: &[u8; 8]| u64::from_le_bytes(*s);
    let args = Regs {
        r12: 0x1234,
        r14: word(b"abcdefgh"),
        r15: word(b"ijklmnop"),
        rbx: word(b"qrstuvwx"),
        rdi: word(b"yz012345"),
        rsi: word(b"6789ABCD"),
        r8: word(b"EFGHIJKL"),
        r9: word(b"MNOPQRST"),
        rdx: word(b"UVW\0\0\0\0\0"),
        ..Regs::default()
    };
    let all = expose::R12_TO_R15
        | expose::RBX
        | expose::RDI
        | expose::RSI
        | expose::R8
        | expose::R9
        | expose::RDX;
    vmcall(&tdx, function::REPORT_FATAL_ERROR, all, args);
    let (code, message) = tdx.fatal_error().unwrap();
    assert_eq!(code, 0x1234);
    assert_eq!(
        message,
        b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVW"
    );
    // Forgetting to expose RBX loses that part of the message.
    vmcall(&tdx, function::REPORT_FATAL_ERROR, all & !expose::RBX, args);
    assert_eq!(tdx.fatal_error().unwrap().1, b"abcdefghijklmnop");
}

// ---------------------------------------------------------------------------------------------
// MapGPA
// ---------------------------------------------------------------------------------------------

fn map_gpa(tdx: &TdxModule, gpa: u64, len: u64) -> Regs {
    vmcall(
        tdx,
        function::MAP_GPA,
        expose::R12_R13,
        Regs {
            r12: gpa,
            r13: len,
            ..Regs::default()
        },
    )
}

#[test]
fn map_gpa_validates_its_range() {
    let tdx = model();
    tdx.add_memory(0, 4 * MIB2, PageState::Private);
    tdx.add_mmio_device(4 * MIB2, PAGE, Box::new(RegisterFile::new(8)));
    let cases = [
        (SHARED | 0x800, PAGE, VmcallStatus::AlignError),
        (SHARED, 0x800, VmcallStatus::AlignError),
        (SHARED, 0, VmcallStatus::InvalidOperand),
        (!0xfff, 2 * PAGE, VmcallStatus::InvalidOperand),
        (1 << 48, PAGE, VmcallStatus::InvalidOperand),
        (SHARED - PAGE, 2 * PAGE, VmcallStatus::InvalidOperand),
        // What lies in a valid range (RAM, MMIO, nothing) does not matter to KVM; QEMU's answer
        // for what is not RAM is in tests/model_map_gpa_not_ram.rs.
        // KVM checks the range before the alignment.
        (SHARED - 0x800, PAGE, VmcallStatus::InvalidOperand),
    ];
    for (gpa, len, expected) in cases {
        assert_eq!(
            vmm_status(&map_gpa(&tdx, gpa, len)),
            expected,
            "{gpa:#x}+{len:#x}"
        );
    }
    assert_eq!(
        tdx.page_runs(0, 4 * MIB2),
        [(0, 4 * MIB2, PageState::Private)]
    );
}

#[test]
fn map_gpa_converts_both_ways_and_loses_private_contents() {
    let mem = HostMemory::new(MIB2 as usize, 0x5a);
    let tdx = model();
    mem.back(&tdx, 0);
    tdx.add_memory(0, MIB2, PageState::Private);
    let out = map_gpa(&tdx, SHARED | 0x10_0000, 0x2000);
    assert_eq!(vmm_status(&out), VmcallStatus::Success);
    assert_eq!(tdx.page_state(0x10_0000), PageState::Shared);
    assert_eq!(tdx.page_state(0x10_1000), PageState::Shared);
    assert_eq!(tdx.page_state(0x10_2000), PageState::Private);
    assert_eq!(mem.read(0x10_0000, 0x2000), vec![0; 0x2000]);
    assert_eq!(mem.read(0x10_2000, 1), [0x5a]);
    // Already shared: fine, and shared contents stay.
    mem.fill(0x10_0000, 8, 0x77);
    assert_eq!(
        vmm_status(&map_gpa(&tdx, SHARED | 0x10_0000, PAGE)),
        VmcallStatus::Success
    );
    assert_eq!(mem.read(0x10_0000, 8), [0x77; 8]);
    // Back to private: pending until accepted again, which zeroes it.
    assert_eq!(
        vmm_status(&map_gpa(&tdx, 0x10_0000, 0x3000)),
        VmcallStatus::Success
    );
    assert_eq!(tdx.page_state(0x10_0000), PageState::Unaccepted);
    assert_eq!(
        tdx.page_state(0x10_2000),
        PageState::Private,
        "already private stays"
    );
    assert_eq!(accept(&tdx, 0, 0x10_0000), TdxStatus::SUCCESS);
    assert_eq!(mem.read(0x10_0000, 8), [0; 8]);
    assert_eq!(accept(&tdx, 0, 0x10_2000), TdxStatus::PAGE_ALREADY_ACCEPTED);
}

#[test]
fn map_gpa_chunks_with_retry_and_resume_gpa() {
    let tdx = TdxModule::new(ModelConfig {
        map_gpa_chunk: MIB2,
        ..Default::default()
    });
    tdx.add_memory(0, 8 * MIB2, PageState::Private);
    let mut gpa = SHARED | PAGE;
    let end = SHARED | (5 * MIB2 + PAGE);
    let mut calls = 0;
    loop {
        calls += 1;
        let out = map_gpa(&tdx, gpa, end - gpa);
        match vmm_status(&out) {
            VmcallStatus::Success => break,
            VmcallStatus::Retry => {
                assert_eq!(
                    out.r11,
                    gpa + MIB2,
                    "resume one chunk later, shared bit kept"
                );
                gpa = out.r11;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(calls, 5, "10 MiB in 2 MiB chunks");
    assert_eq!(
        tdx.page_runs(0, 8 * MIB2),
        [
            (0, PAGE, PageState::Private),
            (PAGE, 5 * MIB2 + PAGE, PageState::Shared),
            (5 * MIB2 + PAGE, 8 * MIB2, PageState::Private)
        ]
    );
}

#[test]
fn map_gpa_faults_lie_about_the_resume_gpa() {
    let tdx = TdxModule::new(ModelConfig {
        map_gpa_chunk: MIB2,
        ..Default::default()
    });
    tdx.add_memory(0, 8 * MIB2, PageState::Private);
    let start = SHARED | MIB2;
    let len = 2 * MIB2;
    let cases = [
        (MapGpaFault::RetryWithoutProgress, start, PageState::Private),
        (
            MapGpaFault::ResumePastEnd,
            start + len + PAGE,
            PageState::Shared,
        ),
        (
            MapGpaFault::ResumeBeforeStart,
            start - PAGE,
            PageState::Shared,
        ),
        (
            MapGpaFault::ResumeWithoutSharedBit,
            MIB2 + MIB2,
            PageState::Shared,
        ),
        (
            MapGpaFault::ResumeAt(0x1234_5000),
            0x1234_5000,
            PageState::Shared,
        ),
    ];
    for (fault, resume, first_chunk) in cases {
        tdx.add_memory(0, 8 * MIB2, PageState::Private);
        tdx.set_map_gpa_fault(Some(fault));
        for _ in 0..3 {
            let out = map_gpa(&tdx, start, len);
            assert_eq!(
                (vmm_status(&out), out.r11),
                (VmcallStatus::Retry, resume),
                "{fault:?}"
            );
        }
        assert_eq!(tdx.page_state(MIB2), first_chunk, "{fault:?}");
        assert_eq!(
            tdx.page_state(2 * MIB2),
            PageState::Private,
            "{fault:?}: one chunk only"
        );
    }
    tdx.set_map_gpa_fault(None);
    assert_eq!(vmm_status(&map_gpa(&tdx, start, len)), VmcallStatus::Retry);
    assert_eq!(
        vmm_status(&map_gpa(&tdx, start + MIB2, MIB2)),
        VmcallStatus::Success
    );
}

// ---------------------------------------------------------------------------------------------
// GetQuote
// ---------------------------------------------------------------------------------------------

fn quote_model() -> (TdxModule, HostMemory) {
    let mem = HostMemory::new(3 * PAGE as usize, 0);
    let tdx = model();
    mem.back(&tdx, 0x80_0000);
    tdx.add_memory(0x80_0000, 0x80_2000, PageState::Shared);
    tdx.add_memory(0x80_2000, 0x80_3000, PageState::Private);
    (tdx, mem)
}

fn get_quote(tdx: &TdxModule, gpa: u64, len: u64) -> Regs {
    vmcall(
        tdx,
        function::GET_QUOTE,
        expose::R12_R13,
        Regs {
            r12: gpa,
            r13: len,
            ..Regs::default()
        },
    )
}

fn header(version: u64, status: u64, in_len: u32, out_len: u32) -> Vec<u8> {
    let mut h = version.to_le_bytes().to_vec();
    h.extend(status.to_le_bytes());
    h.extend(in_len.to_le_bytes());
    h.extend(out_len.to_le_bytes());
    h
}

/// A TDREPORT binding `data`, made by the module in the private page at 0x80_2000.
fn model_tdreport(tdx: &TdxModule, mem: &HostMemory, data: &[u8; 64]) -> Vec<u8> {
    mem.write(0x2400, data);
    assert_eq!(report_raw(tdx, 0x80_2000, 0x80_2400, 0), TdxStatus::SUCCESS);
    mem.read(0x2000, 1024)
}

#[test]
fn get_quote_fills_the_shared_buffer() {
    let (tdx, mem) = quote_model();
    let report = model_tdreport(&tdx, &mem, &[0x42; 64]);
    mem.write(0, &header(1, 0, 1024, 0));
    mem.write(24, &report);
    let out = get_quote(&tdx, SHARED | 0x80_0000, 2 * PAGE);
    assert_eq!(vmm_status(&out), VmcallStatus::Success);
    let out_len = u32::from_le_bytes(mem.read(20, 4).try_into().unwrap());
    assert_eq!(
        mem.read(0, 24),
        header(1, QUOTE_STATUS_SUCCESS, 1024, out_len)
    );
    let bytes = mem.read(24, out_len as usize);
    let quote = tdx_boot::attest::Quote::parse(&bytes).expect("a TDX quote");
    assert_eq!(quote.len(), out_len as usize);
    assert_eq!(quote.report_data(), &[0x42; 64]);
    assert_eq!(quote.mr_td()[..], report[528..576]);
}

#[test]
fn get_quote_rejects_bad_buffers() {
    let (tdx, mem) = quote_model();
    mem.write(0, &header(1, 0, 64, 0));
    for (gpa, len, expected) in [
        (0x80_0000, PAGE, VmcallStatus::InvalidOperand), // private GPA
        (SHARED | 0x80_0000, 0, VmcallStatus::InvalidOperand), // empty
        (SHARED | 0x80_0800, PAGE, VmcallStatus::AlignError), // misaligned
        (SHARED | 0x80_0000, 0x800, VmcallStatus::AlignError), // misaligned length
        (SHARED | 0x80_1000, 2 * PAGE, VmcallStatus::InvalidOperand), // into private memory
        (SHARED | 0x90_0000, PAGE, VmcallStatus::InvalidOperand), // no memory
    ] {
        assert_eq!(vmm_status(&get_quote(&tdx, gpa, len)), expected, "{gpa:#x}");
    }
    // Header checks: version 1 only, the report must fit in the buffer.
    for bad in [header(2, 0, 64, 0), header(1, 0, 4073, 0)] {
        mem.write(0, &bad);
        assert_eq!(
            vmm_status(&get_quote(&tdx, SHARED | 0x80_0000, PAGE)),
            VmcallStatus::InvalidOperand
        );
        assert_eq!(mem.read(0, 24), bad, "untouched");
    }
    // No quoting service: the call succeeds, the buffer says so.
    mem.write(0, &header(1, 0, 64, 0));
    tdx.set_quote_service(false);
    assert_eq!(
        vmm_status(&get_quote(&tdx, SHARED | 0x80_0000, PAGE)),
        VmcallStatus::Success
    );
    assert_eq!(
        mem.read(8, 8),
        QUOTE_STATUS_SERVICE_UNAVAILABLE.to_le_bytes()
    );
    tdx.set_quote_service(true);
    // A report that does not fit: the request is answered, the buffer says error.
    mem.write(0, &header(1, 0, 4072, 0));
    assert_eq!(
        vmm_status(&get_quote(&tdx, SHARED | 0x80_0000, PAGE)),
        VmcallStatus::Success
    );
    assert_eq!(mem.read(8, 8), QUOTE_STATUS_ERROR.to_le_bytes());
    // Shared memory without backing.
    tdx.add_memory(0xa0_0000, 0xa0_1000, PageState::Shared);
    assert_eq!(
        vmm_status(&get_quote(&tdx, SHARED | 0xa0_0000, PAGE)),
        VmcallStatus::InvalidOperand
    );
}

#[test]
fn deferred_quotes_are_in_flight_until_completed_and_then_notified() {
    let (tdx, mem) = quote_model();
    tdx.set_quote_deferred(true);
    let out = vmcall(
        &tdx,
        function::SETUP_EVENT_NOTIFY_INTERRUPT,
        expose::R12,
        Regs {
            r12: 0xf0,
            ..Regs::default()
        },
    );
    assert_eq!(vmm_status(&out), VmcallStatus::Success);
    let report = model_tdreport(&tdx, &mem, &[0x13; 64]);
    mem.write(0, &header(1, 0, 1024, 0));
    mem.write(24, &report);
    assert_eq!(
        vmm_status(&get_quote(&tdx, SHARED | 0x80_0000, 2 * PAGE)),
        VmcallStatus::Success
    );
    assert_eq!(mem.read(8, 8), QUOTE_STATUS_IN_FLIGHT.to_le_bytes());
    assert_eq!(mem.read(24, 1024), report, "nothing written yet");
    assert_eq!(tdx.event_notifications(), 0);
    assert_eq!(tdx.complete_quotes(), 1);
    assert_eq!(mem.read(8, 8), QUOTE_STATUS_SUCCESS.to_le_bytes());
    let quote = mem.read(24, 2 * PAGE as usize - 24);
    let quote = tdx_boot::attest::Quote::parse(&quote).expect("a TDX quote");
    assert_eq!(quote.report_data(), &[0x13; 64]);
    assert_eq!(tdx.event_notifications(), 1);
    assert_eq!(tdx.complete_quotes(), 0);
}

// ---------------------------------------------------------------------------------------------
// Backing
// ---------------------------------------------------------------------------------------------

#[test]
fn backing_rejects_empty_wrapping_and_overlapping_ranges() {
    let mem = HostMemory::new(2 * PAGE as usize, 0);
    let tdx = model();
    // SAFETY (all calls): `mem` is leaked test memory; the model never touches it here except
    // through the one registration that succeeds.
    unsafe {
        assert!(!tdx.add_backing(0, mem.ptr(0), 0));
        assert!(!tdx.add_backing(u64::MAX - 10, mem.ptr(0), 100));
        assert!(tdx.add_backing(PAGE, mem.ptr(0), PAGE));
        assert!(!tdx.add_backing(0, mem.ptr(PAGE as usize), 2 * PAGE));
        assert!(!tdx.add_backing(PAGE + 8, mem.ptr(8), 8));
        // Host address 0: the null page is skipped; one page of it leaves nothing.
        assert!(!tdx.add_backing(0x100_0000, std::ptr::null_mut(), PAGE));
    }
}

// ---------------------------------------------------------------------------------------------
// Trace and counters
// ---------------------------------------------------------------------------------------------

#[test]
fn the_trace_records_calls_only_while_enabled() {
    let tdx = model();
    leaf_call(
        &tdx,
        Regs {
            rax: leaf::VP_INFO,
            ..Regs::default()
        },
    );
    tdx.enable_trace(true);
    call(
        &tdx.vcpu(3),
        Regs {
            rax: leaf::VP_INFO,
            ..Regs::default()
        },
    );
    vmcall(&tdx, function::WBINVD, 0, Regs::default());
    tdx.enable_trace(false);
    leaf_call(
        &tdx,
        Regs {
            rax: leaf::VP_INFO,
            ..Regs::default()
        },
    );
    let trace = tdx.trace();
    assert_eq!(trace.len(), 2);
    assert_eq!(
        (trace[0].vcpu, trace[0].input.rax, trace[0].output.r9),
        (3, leaf::VP_INFO, 3)
    );
    assert_eq!(
        (trace[1].input.r11, trace[1].output.r10),
        (function::WBINVD, 0)
    );
    tdx.clear_trace();
    assert!(tdx.trace().is_empty());
    assert_eq!(tdx.tdcall_count(leaf::VP_INFO), 3);
    assert_eq!(tdx.tdcall_count(leaf::VP_VMCALL), 1);
    assert_eq!(tdx.vmcall_count(function::WBINVD), 1);
}

#[test]
fn a_hook_rewrites_chosen_answers_and_may_call_the_model() {
    let tdx = std::sync::Arc::new(model());
    let inner = tdx.clone();
    tdx.set_tdcall_hook(Some(Box::new(move |vcpu, input, output| {
        // Only VM.WR of NOTIFY_ENABLES fails, after a nested call into the model.
        if input.rax == leaf::VM_WR && input.rdx == TdcsField::NOTIFY_ENABLES {
            let nested = call(
                &inner.vcpu(vcpu),
                Regs {
                    rax: leaf::VP_INFO,
                    ..Regs::default()
                },
            );
            assert_eq!(nested.r9, u64::from(vcpu));
            output.rax = TdxStatus::OPERAND_BUSY.raw();
        }
    })));
    let s = status(&vm_wr_raw(&tdx, TdcsField::NOTIFY_ENABLES, 1, 1));
    assert_eq!(s, TdxStatus::OPERAND_BUSY);
    let reduce = TdcsField::TD_CTLS_REDUCE_VE;
    assert_eq!(
        status(&vm_wr_raw(&tdx, TdcsField::TD_CTLS, reduce, reduce)),
        TdxStatus::SUCCESS
    );
    tdx.set_tdcall_hook(None);
    assert_eq!(
        status(&vm_wr_raw(&tdx, TdcsField::NOTIFY_ENABLES, 1, 1)),
        TdxStatus::SUCCESS
    );
}

// ---------------------------------------------------------------------------------------------
// Every status the model returns is produced
// ---------------------------------------------------------------------------------------------

#[test]
fn every_status_the_model_returns_is_produced() {
    let mut tdcall = BTreeSet::new();
    let mut vmm = BTreeSet::new();
    let (tdx, _mem) = measured_model();
    tdx.add_memory(0, 2 * MIB2, PageState::Unaccepted);
    let mut note = |s: TdxStatus| {
        tdcall.insert(s.code());
    };
    note(accept(&tdx, 0, PAGE)); // SUCCESS
    note(accept(&tdx, 0, PAGE)); // PAGE_ALREADY_ACCEPTED
    note(accept(&tdx, 0, 2)); // OPERAND_INVALID
    note(accept(&tdx, 0, 1)); // PAGE_SIZE_MISMATCH (split block)
    note(status(&leaf_call(
        &tdx,
        Regs {
            rax: leaf::VP_VEINFO_GET,
            ..Regs::default()
        },
    )));
    note(status(&vm_rd_raw(&tdx, 5))); // METADATA_FIELD_ID_INCORRECT
    note(status(&vm_wr_raw(&tdx, TdcsField::CONFIG_FLAGS, 1, 1))); // NOT_WRITABLE
    let topo = TdcsField::TD_CTLS_ENUM_TOPOLOGY;
    note(status(&vm_wr_raw(
        &tdx,
        TdcsField::TD_CTLS,
        1 << 40 | topo,
        1 << 40 | topo,
    ))); // VALUE_NOT_VALID
    tdx.stall_accepts(true);
    std::thread::scope(|scope| {
        let first = scope.spawn(|| accept(&tdx, 0, 2 * PAGE));
        while tdx.accepts_in_flight() == 0 {
            std::hint::spin_loop();
        }
        note(accept(&tdx, 1, 2 * PAGE)); // OPERAND_BUSY
        tdx.stall_accepts(false);
        first.join().unwrap();
    });
    let expected: BTreeSet<u32> = TDCALL_STATUSES.iter().map(|s| s.code()).collect();
    assert_eq!(tdcall, expected);

    tdx.add_memory(0x40_0000, 0x60_0000, PageState::Private);
    let chunked = TdxModule::new(ModelConfig {
        map_gpa_chunk: PAGE,
        ..Default::default()
    });
    chunked.add_memory(0, MIB2, PageState::Private);
    vmm.insert(vmm_status(&map_gpa(&tdx, SHARED | 0x40_0000, PAGE)).raw());
    vmm.insert(vmm_status(&map_gpa(&chunked, SHARED, 2 * PAGE)).raw());
    vmm.insert(vmm_status(&map_gpa(&tdx, SHARED | 0x40_0000, 0x10)).raw());
    vmm.insert(vmm_status(&vmcall(&tdx, 0x1234, 0, Regs::default())).raw());
    let expected: BTreeSet<u64> = VMCALL_STATUSES.iter().map(|s| s.raw()).collect();
    assert_eq!(vmm, expected);
}
