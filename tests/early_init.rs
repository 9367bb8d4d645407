//! `early::init` against the model: TD information, the attribute policy (SEPT #VE), REDUCE_VE,
//! and the published shared-bit mask. Every model here has GPAW 48, so the one global mask is
//! the same for all tests of this binary (a conflicting GPAW is tested in `early_shared_mask`).
#![cfg(feature = "model")]

mod early_support;

use early_support::{Intercept, model_with_attributes};
use tdx_boot::early::{self, EarlyError, Policy, ReduceVe, SeptVe};
use tdx_boot::model::{FOREVER, ModelConfig, TdxModule};
use tdx_boot::tdcall::{TdAttributes, TdInfoError, TdcsField, TdxError, TdxStatus, leaf};

const SHARED_BIT_48: u64 = 1 << 47;

fn flexible(attributes: TdAttributes) -> TdxModule {
    TdxModule::new(ModelConfig {
        attributes: attributes.bits(),
        config_flags: TdcsField::CONFIG_FLAGS_FLEXIBLE_PENDING_VE,
        ..Default::default()
    })
}

#[test]
fn a_well_configured_td_initializes() {
    let model = TdxModule::new(ModelConfig {
        num_vcpus: 3,
        max_vcpus: 8,
        ..Default::default()
    });
    let td = early::init(&model.vcpu(2), Policy::default()).unwrap();
    assert_eq!(td.gpaw(), 48);
    assert_eq!(td.shared_mask(), SHARED_BIT_48);
    assert_eq!(td.info().num_vcpus, 3);
    assert_eq!(td.info().max_vcpus, 8);
    assert_eq!(td.info().vcpu_index, 2);
    assert_eq!(td.attributes(), TdAttributes::SEPT_VE_DISABLE);
    assert!(!td.is_debug());
    assert_eq!(td.sept_ve(), SeptVe::DisabledByAttribute);
    assert_eq!(td.reduce_ve(), ReduceVe::Enabled);
    assert_ne!(model.td_ctls() & TdcsField::TD_CTLS_REDUCE_VE, 0);
    // The SEPT #VE control was not touched: the attribute already covers it.
    assert_eq!(model.td_ctls() & TdcsField::TD_CTLS_PENDING_VE_DISABLE, 0);
    assert_eq!(early::shared_mask(), Some(SHARED_BIT_48));
    // TD information is read once.
    assert_eq!(model.tdcall_count(leaf::VP_INFO), 1);
}

#[test]
fn without_sept_ve_disable_a_production_td_is_refused() {
    let model = model_with_attributes(TdAttributes::empty());
    let err = early::init(&model.vcpu(0), Policy::default()).unwrap_err();
    assert_eq!(err, EarlyError::SeptVeEnabled { debug_td: false });
    let text = err.to_string();
    assert!(
        text.contains("SEPT #VE") && text.contains("refusing"),
        "{text}"
    );
    // Refused before asking for anything.
    assert_eq!(model.tdcall_count(leaf::VM_WR), 0);
    assert_eq!(model.td_ctls(), 0);
}

#[test]
fn allow_debug_does_not_cover_a_td_that_is_not_debug() {
    let model = model_with_attributes(TdAttributes::empty());
    assert_eq!(
        early::init(&model.vcpu(0), Policy::debug()),
        Err(EarlyError::SeptVeEnabled { debug_td: false })
    );
}

#[test]
fn a_debug_td_without_sept_ve_disable_needs_the_opt_in() {
    let model = model_with_attributes(TdAttributes::DEBUG);
    let err = early::init(&model.vcpu(0), Policy::default()).unwrap_err();
    assert_eq!(err, EarlyError::SeptVeEnabled { debug_td: true });
    assert!(err.to_string().contains("allow_debug"), "{err}");

    let td = early::init(&model.vcpu(0), Policy::debug()).unwrap();
    assert_eq!(td.sept_ve(), SeptVe::EnabledForDebug);
    assert!(!td.sept_ve().is_disabled());
    assert!(td.is_debug());
}

#[test]
fn forbidden_attributes_are_refused() {
    let model = model_with_attributes(TdAttributes::SEPT_VE_DISABLE | TdAttributes::DEBUG);
    let policy = Policy {
        forbidden_attributes: TdAttributes::DEBUG | TdAttributes::MIGRATABLE,
        ..Policy::default()
    };
    assert_eq!(
        early::init(&model.vcpu(0), policy),
        Err(EarlyError::ForbiddenAttributes(TdAttributes::DEBUG))
    );
    // Bits the crate does not name are compared as well.
    let unknown = TdAttributes::from_bits_retain(1 << 40);
    let model = model_with_attributes(TdAttributes::SEPT_VE_DISABLE | unknown);
    let policy = Policy {
        forbidden_attributes: unknown,
        ..Policy::default()
    };
    assert_eq!(
        early::init(&model.vcpu(0), policy),
        Err(EarlyError::ForbiddenAttributes(unknown))
    );
}

#[test]
fn a_flexible_td_gets_sept_ve_disabled_by_the_guest() {
    let model = flexible(TdAttributes::empty());
    let td = early::init(&model.vcpu(0), Policy::default()).unwrap();
    assert_eq!(td.sept_ve(), SeptVe::DisabledNow);
    assert_ne!(model.td_ctls() & TdcsField::TD_CTLS_PENDING_VE_DISABLE, 0);
    // A second init finds it done and writes nothing for it.
    let td = early::init(&model.vcpu(1), Policy::default()).unwrap();
    assert_eq!(td.sept_ve(), SeptVe::AlreadyDisabled);
    assert_eq!(td.reduce_ve(), ReduceVe::AlreadyEnabled);
}

#[test]
fn a_flexible_debug_td_keeps_sept_ve_when_allowed() {
    // As Linux: a debug TD keeps #VEs for backtraces...
    let model = flexible(TdAttributes::DEBUG);
    let td = early::init(&model.vcpu(0), Policy::debug()).unwrap();
    assert_eq!(td.sept_ve(), SeptVe::EnabledForDebug);
    assert_eq!(model.td_ctls() & TdcsField::TD_CTLS_PENDING_VE_DISABLE, 0);
    // ...but without the opt-in the guest disables them.
    let td = early::init(&model.vcpu(0), Policy::default()).unwrap();
    assert_eq!(td.sept_ve(), SeptVe::DisabledNow);
    assert_ne!(model.td_ctls() & TdcsField::TD_CTLS_PENDING_VE_DISABLE, 0);
}

#[test]
fn a_failed_config_flags_read_falls_back_to_the_attribute() {
    // A TDX 1.0 module has no CONFIG_FLAGS: the read fails and the attribute decides.
    let model = flexible(TdAttributes::empty());
    model.inject_tdcall_status(leaf::VM_RD, TdxStatus::METADATA_FIELD_ID_INCORRECT, 1);
    assert_eq!(
        early::init(&model.vcpu(0), Policy::default()),
        Err(EarlyError::SeptVeEnabled { debug_td: false })
    );
    assert_eq!(model.td_ctls() & TdcsField::TD_CTLS_PENDING_VE_DISABLE, 0);
}

#[test]
fn td_ctls_errors_refuse_the_td() {
    let model = flexible(TdAttributes::empty());
    let read_fails = Intercept {
        inner: model.vcpu(0),
        after: |input: &tdx_boot::tdcall::Regs, out: &mut tdx_boot::tdcall::Regs| {
            if input.rax == leaf::VM_RD && input.rdx == TdcsField::TD_CTLS {
                out.rax = TdxStatus::METADATA_FIELD_NOT_READABLE.raw();
                out.r8 = 0;
            }
        },
    };
    assert_eq!(
        early::init(&read_fails, Policy::default()),
        Err(EarlyError::TdCtlsRead(TdxError(
            TdxStatus::METADATA_FIELD_NOT_READABLE
        )))
    );

    // A busy module is asked again a bounded number of times, then the TD is refused.
    model.inject_tdcall_status(leaf::VM_WR, TdxStatus::OPERAND_BUSY, FOREVER);
    let err = early::init(&model.vcpu(0), Policy::default()).unwrap_err();
    assert_eq!(model.tdcall_count(leaf::VM_WR), 17);
    assert_eq!(
        err,
        EarlyError::SeptVeDisableFailed(TdxError(TdxStatus::OPERAND_BUSY))
    );
    assert_eq!(model.td_ctls() & TdcsField::TD_CTLS_PENDING_VE_DISABLE, 0);

    model.clear_faults();
    model.inject_tdcall_status(leaf::VM_WR, TdxStatus::OPERAND_BUSY, 2);
    let td = early::init(&model.vcpu(0), Policy::default()).unwrap();
    assert_eq!(td.sept_ve(), SeptVe::DisabledNow);
    assert_ne!(model.td_ctls() & TdcsField::TD_CTLS_PENDING_VE_DISABLE, 0);
}

#[test]
fn reduce_ve_unsupported_is_reported_not_fatal() {
    let model = TdxModule::new(ModelConfig {
        reduce_ve_supported: false,
        topology_enum_configured: false,
        ..Default::default()
    });
    let td = early::init(&model.vcpu(0), Policy::default()).unwrap();
    assert_eq!(
        td.reduce_ve(),
        ReduceVe::Unsupported(TdxError(TdxStatus::METADATA_FIELD_NOT_WRITABLE))
    );
    assert!(!td.reduce_ve().is_enabled());
    assert_eq!(model.td_ctls() & TdcsField::TD_CTLS_REDUCE_VE, 0);
}

#[test]
fn a_refused_reduce_ve_falls_back_to_topology_enumeration_when_configured() {
    let model = TdxModule::new(ModelConfig {
        reduce_ve_supported: false,
        topology_enum_configured: true,
        ..Default::default()
    });
    let td = early::init(&model.vcpu(0), Policy::default()).unwrap();
    assert_eq!(
        td.reduce_ve(),
        ReduceVe::TopologyOnly(TdxError(TdxStatus::METADATA_FIELD_NOT_WRITABLE))
    );
    assert!(!td.reduce_ve().is_enabled());
    assert_eq!(model.td_ctls(), TdcsField::TD_CTLS_ENUM_TOPOLOGY);
}

#[test]
fn without_a_configured_topology_neither_control_is_set() {
    let model = TdxModule::new(ModelConfig {
        topology_enum_configured: false,
        ..Default::default()
    });
    let td = early::init(&model.vcpu(0), Policy::default()).unwrap();
    assert!(matches!(td.reduce_ve(), ReduceVe::Unsupported(_)));
    assert_eq!(model.td_ctls(), 0);
    // The fallback asked whether the topology was configured before trying ENUM_TOPOLOGY.
    assert_eq!(
        model.tdcall_count(leaf::VM_WR),
        2,
        "REDUCE_VE and NOTIFY_ENABLES only"
    );
}

#[test]
fn notifications_are_turned_off() {
    let model = TdxModule::new(ModelConfig::default());
    let vcpu = model.vcpu(0);
    tdx_boot::tdcall::vm_wr(&vcpu, TdcsField::NOTIFY_ENABLES, 1, 1).unwrap();
    assert_eq!(model.notify_enables(), 1);
    let td = early::init(&vcpu, Policy::default()).unwrap();
    assert!(td.notifications_disabled());
    assert_eq!(model.notify_enables(), 0);
}

#[test]
fn reduce_ve_is_left_alone_when_not_requested() {
    let model = TdxModule::new(ModelConfig::default());
    let policy = Policy {
        reduce_ve: false,
        ..Policy::default()
    };
    let td = early::init(&model.vcpu(0), policy).unwrap();
    assert_eq!(td.reduce_ve(), ReduceVe::NotRequested);
    assert_eq!(
        model.tdcall_count(leaf::VM_WR),
        1,
        "only NOTIFY_ENABLES is written"
    );
    assert_eq!(model.td_ctls(), 0);
}

#[test]
fn vp_info_failures_and_inconsistencies_are_errors() {
    let model = TdxModule::new(ModelConfig::default());
    model.inject_tdcall_status(leaf::VP_INFO, TdxStatus::OPERAND_INVALID, 1);
    assert_eq!(
        early::init(&model.vcpu(0), Policy::default()),
        Err(EarlyError::Info(TdInfoError::Tdcall(TdxError(
            TdxStatus::OPERAND_INVALID
        ))))
    );
    // vCPU 9 of a 4-vCPU TD: VCPU_INDEX is not below NUM_VCPUS.
    assert_eq!(
        early::init(&model.vcpu(9), Policy::default()),
        Err(EarlyError::Info(TdInfoError::BadVcpuCounts))
    );
    // Nothing was asked of TD_CTLS after a failed VP.INFO.
    assert_eq!(model.tdcall_count(leaf::VM_WR), 0);
    model.inject_tdcall_status(leaf::VP_INFO, TdxStatus::OPERAND_BUSY, FOREVER);
    assert!(early::init(&model.vcpu(0), Policy::default()).is_err());
}
