//! MapGPA over GPAs that are not guest RAM (emulated MMIO, holes), as QEMU and KVM answer it.
//!
//! Where the behaviour comes from. The model follows QEMU 10.1 (the first release that runs TDX
//! guests; the `kvm_convert_memory` rules below came with the 9.1 cycle, Paolo Bonzini's pull of
//! 23 April 2024) on Linux 6.16 (the first with KVM TDX):
//! - Linux arch/x86/kvm/vmx/tdx.c, `tdx_map_gpa`: checks only the range itself (wrap, GPA
//!   width, one side of the shared bit, 4 KiB alignment), never the memslots, and hands every
//!   valid range to userspace as KVM_HC_MAP_GPA_RANGE in 2 MiB steps (`__tdx_map_gpa`);
//!   `tdx_complete_vmcall_map_gpa` answers INVALID_OPERAND for a non-zero `hypercall.ret`.
//! - QEMU target/i386/kvm/kvm.c, `kvm_handle_hc_map_gpa_range`: passes the step to
//!   `kvm_convert_memory` and returns its failure from the exit handler, so `kvm_cpu_exec`
//!   (accel/kvm/kvm-all.c) stops the VM with an internal error rather than answering the guest.
//! - QEMU accel/kvm/kvm-all.c, `kvm_convert_memory`: a range no memory region covers, or one
//!   whose region is neither guest_memfd RAM nor RAM/ROM (device MMIO), succeeds when converted
//!   to shared without changing anything; converted to private, both fail. OVMF relies on the
//!   first: it maps the 32-bit PCI MMIO window and the IO-APIC page shared before devices exist.
//!
//! Out-of-tree QEMU TDX branches from before those two `kvm_convert_memory` rules failed the
//! to-shared case too (and answered the guest INVALID_OPERAND from their own MapGPA handler in
//! target/i386/kvm/tdx.c); the model follows the released behaviour, the one a guest meets.

use tdx_boot::model::{
    ModelConfig, PageState, RegisterFile, TD_KILLED_STATUS, TdKilled, TdxModule,
};
use tdx_boot::tdcall::vmcall::{self, MapGpaOutcome, MmioSize, VmcallError, function};
use tdx_boot::tdcall::{Regs, TdCall, VmcallStatus, leaf, vp_info};

const K4: u64 = 0x1000;
const M2: u64 = 0x20_0000;
/// Guest RAM: `[0, RAM_END)`, private.
const RAM_END: u64 = 4 * M2;
/// An emulated device page, as the IO-APIC at 0xfec0_0000.
const MMIO: u64 = 0xfec0_0000;
/// A GPA inside the hole between RAM and the device.
const HOLE: u64 = 0x8000_0000;

/// A TD with private RAM at `[0, RAM_END)` and a register-file device at [`MMIO`]; its shared bit.
fn td(chunk: u64) -> (TdxModule, u64) {
    let tdx = TdxModule::new(ModelConfig {
        map_gpa_chunk: chunk,
        ..Default::default()
    });
    tdx.add_memory(0, RAM_END, PageState::Private);
    tdx.add_mmio_device(MMIO, K4, Box::new(RegisterFile::new(K4 as usize)));
    let shared = vp_info(&tdx.vcpu(0)).unwrap().shared_mask();
    (tdx, shared)
}

fn map(tdx: &TdxModule, vcpu: u32, gpa: u64, len: u64) -> Result<MapGpaOutcome, VmcallError> {
    // SAFETY: the model's guest memory is not Rust memory.
    unsafe { vmcall::map_gpa(&tdx.vcpu(vcpu), gpa, len) }
}

#[test]
fn to_shared_over_mmio_and_holes_succeeds_and_changes_nothing_there() {
    let (tdx, shared) = td(0);
    let entries = tdx.page_map_entries();
    assert_eq!(map(&tdx, 0, shared | MMIO, K4), Ok(MapGpaOutcome::Done));
    assert_eq!(
        map(&tdx, 0, shared | HOLE, 16 * M2),
        Ok(MapGpaOutcome::Done)
    );
    // The whole 32-bit window below 4 GiB past RAM, the way OVMF asks for it.
    let window = 0x1_0000_0000 - RAM_END;
    assert_eq!(
        map(&tdx, 0, shared | RAM_END, window),
        Ok(MapGpaOutcome::Done)
    );
    assert_eq!(tdx.page_state(MMIO), PageState::Mmio);
    assert_eq!(tdx.page_state(HOLE), PageState::Absent);
    assert_eq!(tdx.page_state(RAM_END), PageState::Absent);
    assert_eq!(
        tdx.page_map_entries(),
        entries,
        "no page appeared or changed"
    );
    assert_eq!(
        tdx.page_state(0),
        PageState::Private,
        "RAM outside the ranges"
    );
    assert_eq!(tdx.td_killed(), None);
    // The device still answers through the shared alias.
    let cpu = tdx.vcpu(0);
    vmcall::mmio_write(&cpu, shared | MMIO, MmioSize::U32, 0x1234_5678).unwrap();
    assert_eq!(
        vmcall::mmio_read(&cpu, shared | MMIO, MmioSize::U32),
        Ok(0x1234_5678)
    );
}

#[test]
fn to_shared_over_a_mixed_range_converts_only_its_ram() {
    let (tdx, shared) = td(0);
    // The last 2 MiB of RAM, the hole above it, and the device page.
    let start = RAM_END - M2;
    let len = MMIO + K4 - start;
    assert_eq!(map(&tdx, 0, shared | start, len), Ok(MapGpaOutcome::Done));
    assert_eq!(
        tdx.page_runs(0, MMIO + K4),
        vec![
            (0, start, PageState::Private),
            (start, RAM_END, PageState::Shared),
            (MMIO, MMIO + K4, PageState::Mmio),
        ]
    );
    // Back to private the RAM part converts; the whole range would end the TD (next tests).
    assert_eq!(map(&tdx, 0, start, M2), Ok(MapGpaOutcome::Done));
    assert_eq!(tdx.page_state(start), PageState::Unaccepted);
}

#[test]
fn to_private_over_mmio_ends_the_td_as_qemu_stops_the_vm() {
    let (tdx, shared) = td(0);
    let result = map(&tdx, 3, MMIO, K4);
    assert!(result.is_err(), "no success reaches the guest: {result:?}");
    assert_eq!(
        tdx.td_killed(),
        Some(TdKilled {
            vcpu: 3,
            gpa: MMIO,
            state: PageState::Mmio
        })
    );
    assert_eq!(tdx.page_state(MMIO), PageState::Mmio);
    // No TDCALL of any vCPU executes any more.
    let mut regs = Regs {
        rax: leaf::VP_INFO,
        ..Regs::default()
    };
    // SAFETY: TDG.VP.INFO writes only registers.
    unsafe { tdx.vcpu(0).tdcall(&mut regs) };
    assert_eq!(regs.rax, TD_KILLED_STATUS);
    assert!(map(&tdx, 0, shared, K4).is_err());
    assert_eq!(
        tdx.page_state(0),
        PageState::Private,
        "nothing ran after the end"
    );
}

#[test]
fn to_private_over_a_hole_ends_the_td_at_its_first_page_with_the_ram_before_unconverted() {
    let (tdx, shared) = td(0);
    let start = RAM_END - 2 * K4;
    assert_eq!(
        map(&tdx, 0, shared | start, 2 * K4),
        Ok(MapGpaOutcome::Done)
    );
    assert!(map(&tdx, 1, start, 4 * K4).is_err());
    assert_eq!(
        tdx.td_killed(),
        Some(TdKilled {
            vcpu: 1,
            gpa: RAM_END,
            state: PageState::Absent
        })
    );
    assert_eq!(
        tdx.page_state(start),
        PageState::Shared,
        "the step failed whole"
    );
}

#[test]
fn to_private_in_steps_converts_the_ram_steps_before_the_device_step_ends_the_td() {
    // The device sits right above RAM here, so one range covers both.
    let tdx = TdxModule::new(ModelConfig {
        map_gpa_chunk: M2,
        ..Default::default()
    });
    tdx.add_memory(0, 2 * M2, PageState::Shared);
    tdx.add_mmio_device(2 * M2, M2, Box::new(RegisterFile::new(16)));
    assert_eq!(
        map(&tdx, 0, 0, 3 * M2),
        Ok(MapGpaOutcome::Retry { resume_gpa: M2 })
    );
    assert_eq!(
        map(&tdx, 0, M2, 2 * M2),
        Ok(MapGpaOutcome::Retry { resume_gpa: 2 * M2 })
    );
    assert_eq!(tdx.page_state(M2), PageState::Unaccepted);
    assert!(map(&tdx, 0, 2 * M2, M2).is_err());
    assert_eq!(
        tdx.td_killed().map(|k| (k.gpa, k.state)),
        Some((2 * M2, PageState::Mmio))
    );
}

#[test]
fn on_demand_ram_is_ram_for_mapgpa() {
    let (tdx, shared) = td(0);
    let demand = 0x1_0000_0000;
    tdx.add_ram_on_demand(demand, demand + 2 * M2);
    // To private: the pages stay to be added, and a later ACCEPT adds them.
    assert_eq!(map(&tdx, 0, demand, M2), Ok(MapGpaOutcome::Done));
    assert_eq!(tdx.td_killed(), None);
    assert_eq!(tdx.page_state(demand), PageState::Absent);
    assert_eq!(tdx.ram_added_on_demand(), 0);
    // To shared: they become shared without being added as private pages.
    assert_eq!(
        map(&tdx, 0, shared | (demand + M2), M2),
        Ok(MapGpaOutcome::Done)
    );
    assert_eq!(tdx.page_state(demand + M2), PageState::Shared);
    assert_eq!(tdx.ram_added_on_demand(), 0);
    // Past the on-demand RAM is a hole again.
    assert!(map(&tdx, 0, demand + M2, 2 * M2).is_err());
    assert_eq!(
        tdx.td_killed().map(|k| (k.gpa, k.state)),
        Some((demand + 2 * M2, PageState::Absent))
    );
}

#[test]
fn the_vmm_still_refuses_what_kvm_refuses_before_looking_at_memory() {
    let (tdx, shared) = td(0);
    let calls = tdx.vmcall_count(function::MAP_GPA);
    // Across the shared bit: INVALID_OPERAND from KVM, whatever lies there.
    assert_eq!(
        map(&tdx, 0, shared - K4, 2 * K4),
        Err(VmcallError::Vmm(VmcallStatus::InvalidOperand))
    );
    // Beyond the GPA width, shared side.
    assert_eq!(
        map(&tdx, 0, shared | (shared - K4), 2 * K4),
        Err(VmcallError::Vmm(VmcallStatus::InvalidOperand))
    );
    assert_eq!(tdx.vmcall_count(function::MAP_GPA), calls + 2);
    assert_eq!(tdx.td_killed(), None, "a refused range never ends the TD");
}
