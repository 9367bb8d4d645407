//! The public API contract of ../shared/DESIGN.md, written the way code outside the crate uses
//! it. If a name, a field, a derive or a signature drifts, this file stops compiling; the
//! assertions check that the pieces also work together. `unused_unsafe` is denied so that an
//! `unsafe fn` of the contract that became safe stops compiling too.

#![deny(unused_unsafe)]

use tdx_boot::accept::{AcceptError, accept_range};
use tdx_boot::e820::{MemoryMap, Region, RegionKind};
use tdx_boot::model::{HostPageSize, ModelConfig, PageState, TdxModule};
use tdx_boot::mpwk::{Madt, MpWakeup};
use tdx_boot::tdcall::{Hardware, Regs, TdCall, leaf};
use tdx_boot::ve::{Frame, mmio::decode};

fn is_tdcall(_: &impl TdCall) {}
fn is_sync<T: Sync>() {}
fn is_copy_eq_debug<T: Copy + Eq + core::fmt::Debug>() {}
fn is_default_copy_eq_debug<T: Default + Copy + Eq + core::fmt::Debug>() {}
fn is_error<E: core::error::Error>() {}

#[test]
fn tdcall_items_have_the_contract_shape() {
    is_default_copy_eq_debug::<Regs>();
    let regs = Regs {
        rax: 1,
        rcx: 2,
        rdx: 3,
        rbx: 4,
        rsi: 5,
        rdi: 6,
        r8: 7,
        r9: 8,
        r10: 9,
        r11: 10,
        r12: 11,
        r13: 12,
        r14: 13,
        r15: 14,
    };
    let copied = regs;
    assert_eq!((copied.r15, regs.r15), (14, 14));
    is_tdcall(&Hardware);
}

#[test]
fn model_items_have_the_contract_shape() {
    is_sync::<TdxModule>();
    is_copy_eq_debug::<HostPageSize>();
    is_copy_eq_debug::<PageState>();
    let config = ModelConfig {
        gpaw: 52,
        host_page_size: HostPageSize::Size4K,
        ..Default::default()
    };
    let defaults = ModelConfig::default();
    assert_eq!(defaults.gpaw, 48);
    assert!(defaults.num_vcpus >= 1);
    assert_ne!(
        defaults.attributes & (1 << 28),
        0,
        "SEPT_VE_DISABLE by default"
    );
    assert_eq!(defaults.host_page_size, HostPageSize::Size2M);
    assert_eq!(defaults.map_gpa_chunk, 0);
    let ModelConfig {
        gpaw,
        num_vcpus: _,
        attributes: _,
        host_page_size: _,
        map_gpa_chunk,
        ..
    } = config;
    assert_eq!((gpaw, map_gpa_chunk), (52, 0));

    let module = TdxModule::new(config);
    module.add_memory(0, 0x40_0000, PageState::Unaccepted);
    let vcpu = module.vcpu(0);
    is_tdcall(&vcpu);
    assert_eq!(module.page_state(0x1000), PageState::Unaccepted);
    // SAFETY: the module added this memory unaccepted and nothing uses it.
    let accepted: Result<(), AcceptError> = unsafe { accept_range(&vcpu, 0, 0x40_0000) };
    accepted.expect("accept");
    assert_eq!(module.page_state(0x1000), PageState::Private);
    assert_eq!(module.page_state(0x40_0000), PageState::Absent);
    // The host maps 4K here: two failed 2M attempts at most, then 4K calls.
    assert!(module.tdcall_count(leaf::MEM_PAGE_ACCEPT) >= 1024);
}

#[test]
fn e820_items_have_the_contract_shape() {
    is_copy_eq_debug::<RegionKind>();
    let mut map = MemoryMap::<8>::new();
    map.insert(0, 0x1000, RegionKind::Usable).expect("insert");
    map.insert(0x1000, 0x2000, RegionKind::Usable)
        .expect("insert");
    map.insert(0x2000, 0x3000, RegionKind::Unaccepted)
        .expect("insert");
    let _: Result<(), _> = map.insert(0x3000, 0x4000, RegionKind::Mmio);
    let regions: &[Region] = map.regions();
    let Region { start, end, kind } = regions[0];
    assert_eq!(
        (start, end, kind),
        (0, 0x2000, RegionKind::Usable),
        "touching Usable merged"
    );
    // Outside code can match every kind the issue names, exhaustively.
    let restrictive = |kind: RegionKind| match kind {
        RegionKind::Usable | RegionKind::Unaccepted => false,
        RegionKind::Reserved
        | RegionKind::AcpiReclaimable
        | RegionKind::AcpiNvs
        | RegionKind::Mmio
        | RegionKind::Unusable
        | RegionKind::Persistent => true,
    };
    assert!(restrictive(RegionKind::Mmio) && !restrictive(kind));
}

#[test]
fn accept_error_is_debug() {
    let module = TdxModule::new(ModelConfig::default());
    // SAFETY: refused before any call (unaligned), so nothing is accepted.
    let error = unsafe { accept_range(&module.vcpu(0), 0x123, 0x2000) }.expect_err("unaligned");
    let _ = format!("{error:?}");
}

#[test]
fn mpwk_items_have_the_contract_shape() {
    let error = Madt::parse(&[0u8; 10]).expect_err("too short");
    let _ = format!("{error:?}");
    let wakeup = MpWakeup {
        version: 1,
        mailbox_address: 0x1000,
        reset_vector: Some(0x2000),
    };
    assert_eq!(wakeup.reset_vector, Some(0x2000));
    fn apic_ids_of<'a>(madt: &'a Madt<'a>) -> impl Iterator<Item = u32> + 'a {
        madt.apic_ids()
    }
    fn mailbox_of(madt: &Madt<'_>) -> Option<MpWakeup> {
        madt.mailbox()
    }
    let _ = (apic_ids_of, mailbox_of);
}

#[test]
fn ve_items_have_the_contract_shape() {
    is_default_copy_eq_debug::<Frame>();
    let mut frame = Frame {
        rax: 0,
        rbx: 0,
        rcx: 0,
        rdx: 0,
        rsi: 0,
        rdi: 0,
        rbp: 0,
        r8: 0,
        r9: 0,
        r10: 0,
        r11: 0,
        r12: 0,
        r13: 0,
        r14: 0,
        r15: 0,
        rip: 0,
        cs: 0,
        rflags: 0,
        rsp: 0,
        ss: 0,
    };
    // mov eax, [rbx]
    let mmio = decode(&[0x8b, 0x03]).expect("decodes");
    let (len, size, write): (usize, usize, bool) = (mmio.insn_len(), mmio.size(), mmio.is_write());
    assert_eq!((len, size, write), (2, 4, false));
    frame.rax = u64::MAX;
    mmio.complete_read(&mut frame, 0x1234_5678);
    assert_eq!(frame.rax, 0x1234_5678, "32-bit loads zero-extend");
    let store = decode(&[0x89, 0x03]).expect("mov [rbx], eax");
    assert_eq!(store.write_value(&frame), 0x1234_5678);
}

#[test]
fn every_public_error_is_a_std_error() {
    use tdx_boot::{accept, convert, e820, early, mpwk, tdcall, ve};
    is_error::<accept::AcceptError>();
    is_error::<accept::BitmapError>();
    is_error::<convert::ConvertError>();
    is_error::<convert::MapperError>();
    is_error::<convert::MapGpaError>();
    is_error::<e820::MapError>();
    is_error::<e820::HobError>();
    is_error::<e820::UefiMapError>();
    is_error::<e820::UnacceptedTableError>();
    is_error::<early::EarlyError>();
    is_error::<early::DetectError>();
    is_error::<early::ConsoleError>();
    is_error::<early::MeasureError>();
    is_error::<mpwk::MadtError>();
    is_error::<mpwk::WakeupUnusable>();
    is_error::<mpwk::PlacementError>();
    is_error::<mpwk::RsdpError>();
    is_error::<mpwk::TrampolineError>();
    is_error::<mpwk::WakeError>();
    is_error::<mpwk::WakeAllError>();
    is_error::<tdcall::TdxError>();
    is_error::<tdcall::TdInfoError>();
    is_error::<tdcall::vmcall::VmcallError>();
    is_error::<ve::VeError>();
    is_error::<ve::mmio::MmioError>();
}

#[test]
fn attest_items_have_the_contract_shape() {
    use tdx_boot::attest::{self, Ccel, Event, EventLog, Quote};
    let ccel = Ccel::parse(&[0u8; 56]).expect_err("no signature");
    let _ = format!("{ccel:?} {ccel}");
    fn ccel_fields(c: &Ccel) -> (u8, u8, u64, u64) {
        (
            c.cc_type,
            c.cc_subtype,
            c.log_area_minimum_length,
            c.log_area_start_address,
        )
    }
    fn log_api<'a>(log: &EventLog<'a>) -> (impl Iterator<Item = Event<'a>>, [[u8; 48]; 4]) {
        (log.events(), log.replay().unwrap_or([[0; 48]; 4]))
    }
    fn quote_api<'a>(
        q: &Quote<'a>,
    ) -> (u16, &'a [u8; 48], Option<&'a [u8; 48]>, &'a [u8; 64], usize) {
        (q.version(), q.mr_td(), q.rtmr(0), q.report_data(), q.len())
    }
    let _ = (ccel_fields, log_api, quote_api);
    let _: Result<EventLog<'_>, attest::EventLogError> = EventLog::parse(&[]);
    let _: Result<Quote<'_>, attest::QuoteError> = Quote::parse(&[]);
    is_error::<attest::CcelError>();
    is_error::<attest::EventLogError>();
    is_error::<attest::ReplayError>();
    is_error::<attest::QuoteError>();
    is_error::<attest::GetQuoteError>();
    is_error::<attest::LogWriteError>();
    is_error::<attest::MeasureEventError>();
}
