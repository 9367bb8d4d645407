//! Measured boot against the model: RTMR extension chains checked against SHA-384 computed here,
//! TDREPORT contents, and the checks on the buffers' GPAs. Buffers live on the test's stack,
//! which the tests make identity-mapped private guest memory (as a kernel on identity-mapped
//! page tables).
#![cfg(feature = "model")]

mod early_support;

use early_support::back_current_stack;
use sha2::{Digest, Sha384};
use tdx_boot::early::{
    self, IdentityMapped, MeasureError, Policy, TranslateWith, extend_rtmr, extend_rtmr_digest,
    tdreport,
};
use tdx_boot::model::{FOREVER, ModelConfig, TdxModule};
use tdx_boot::tdcall::{TdAttributes, TdxError, TdxStatus, leaf};

fn sha384(parts: &[&[u8]]) -> [u8; 48] {
    let mut h = Sha384::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// A backed model whose stack window is identity mapped; `init` done so the shared mask is known.
fn setup(config: ModelConfig) -> TdxModule {
    let model = TdxModule::new(config);
    early::init(&model.vcpu(0), Policy::default()).unwrap();
    model
}

fn identity() -> IdentityMapped {
    // SAFETY: `back_current_stack` made the stack window identity mapped in the model.
    unsafe { IdentityMapped::new() }
}

#[test]
fn an_extension_chain_matches_sha384_computed_independently() {
    let model = setup(ModelConfig::default());
    // SAFETY: only GPAs of the crate's own stack buffers are passed to the model.
    unsafe { back_current_stack(&model) };
    let vcpu = model.vcpu(0);
    let events: [&[u8]; 3] = [b"kernel image", b"command line: console=ttyS0", b""];
    let mut expected = [0u8; 48];
    for event in events {
        let digest = extend_rtmr(&vcpu, 2, event, &identity()).unwrap();
        assert_eq!(digest, sha384(&[event]), "the event log digest");
        expected = sha384(&[&expected, &digest]);
        assert_eq!(model.rtmr(2), expected);
    }
    for other in [0, 1, 3] {
        assert_eq!(model.rtmr(other), [0; 48], "RTMR {other} untouched");
    }

    let raw = [0xa5u8; 48];
    extend_rtmr_digest(&vcpu, 3, &raw, &identity()).unwrap();
    assert_eq!(model.rtmr(3), sha384(&[&[0; 48], &raw]));
    assert_eq!(model.tdcall_count(leaf::MR_RTMR_EXTEND), 4);
}

#[test]
fn bad_indexes_are_refused_before_any_call() {
    let model = setup(ModelConfig::default());
    // SAFETY: as above.
    unsafe { back_current_stack(&model) };
    for index in [4, 5, 255] {
        assert_eq!(
            extend_rtmr(&model.vcpu(0), index, b"x", &identity()),
            Err(MeasureError::BadRtmrIndex(index))
        );
    }
    assert_eq!(model.tdcall_count(leaf::MR_RTMR_EXTEND), 0);
}

#[test]
fn wrong_translations_are_caught() {
    let model = setup(ModelConfig::default());
    // SAFETY: as above.
    unsafe { back_current_stack(&model) };
    let vcpu = model.vcpu(0);
    // SAFETY (all three): the closures are deliberately wrong, but every GPA they produce is
    // refused by the crate before it reaches the model, which the test asserts.
    let none = unsafe { TranslateWith::new(|_| None) };
    assert_eq!(
        extend_rtmr(&vcpu, 0, b"x", &none),
        Err(MeasureError::Untranslated)
    );
    let off_by_8 = unsafe { TranslateWith::new(|va: usize| Some(va as u64 + 8)) };
    assert!(matches!(
        extend_rtmr(&vcpu, 0, b"x", &off_by_8),
        Err(MeasureError::Misaligned { align: 64, .. })
    ));
    let shared = unsafe { TranslateWith::new(|va: usize| Some(va as u64 | 1 << 47)) };
    assert!(matches!(
        extend_rtmr(&vcpu, 0, b"x", &shared),
        Err(MeasureError::NotPrivate(gpa)) if gpa & (1 << 47) != 0
    ));
    let beyond = unsafe { TranslateWith::new(|va: usize| Some(va as u64 | 1 << 50)) };
    assert!(matches!(
        extend_rtmr(&vcpu, 0, b"x", &beyond),
        Err(MeasureError::NotPrivate(_))
    ));
    assert_eq!(model.tdcall_count(leaf::MR_RTMR_EXTEND), 0);
    assert_eq!(model.rtmr(0), [0; 48]);
}

#[test]
fn memory_the_module_cannot_use_is_its_error() {
    // Nothing backed: the module refuses the GPA, and the error says so.
    let model = setup(ModelConfig::default());
    assert_eq!(
        extend_rtmr(&model.vcpu(0), 1, b"x", &identity()),
        Err(MeasureError::Tdcall(TdxError(TdxStatus::OPERAND_INVALID)))
    );
    assert_eq!(model.rtmr(1), [0; 48]);
}

#[test]
fn a_busy_module_is_retried_boundedly() {
    let model = setup(ModelConfig::default());
    // SAFETY: as above.
    unsafe { back_current_stack(&model) };
    let vcpu = model.vcpu(0);
    model.inject_tdcall_status(leaf::MR_RTMR_EXTEND, TdxStatus::OPERAND_BUSY, 3);
    let digest = extend_rtmr(&vcpu, 0, b"busy", &identity()).unwrap();
    assert_eq!(model.rtmr(0), sha384(&[&[0; 48], &digest]));
    assert_eq!(model.tdcall_count(leaf::MR_RTMR_EXTEND), 4);

    model.inject_tdcall_status(leaf::MR_RTMR_EXTEND, TdxStatus::OPERAND_BUSY, FOREVER);
    assert_eq!(
        extend_rtmr(&vcpu, 0, b"never", &identity()),
        Err(MeasureError::Tdcall(TdxError(TdxStatus::OPERAND_BUSY)))
    );
    assert_eq!(model.tdcall_count(leaf::MR_RTMR_EXTEND), 4 + 17);
}

#[test]
fn a_tdreport_binds_the_data_and_the_current_rtmrs() {
    let model = setup(ModelConfig {
        attributes: (TdAttributes::SEPT_VE_DISABLE | TdAttributes::PKS).bits(),
        mrtd: [0x11; 48],
        ..Default::default()
    });
    // SAFETY: as above.
    unsafe { back_current_stack(&model) };
    let vcpu = model.vcpu(0);
    extend_rtmr(&vcpu, 1, b"initrd", &identity()).unwrap();
    let mut data = [0u8; 64];
    for (i, b) in data.iter_mut().enumerate() {
        *b = i as u8 ^ 0x5a;
    }
    let report = tdreport(&vcpu, &data, &identity()).unwrap();
    assert_eq!(report.report_type()[0], 0x81, "a TDX report");
    assert_eq!(report.report_data(), &data);
    assert_eq!(
        report.attributes(),
        TdAttributes::SEPT_VE_DISABLE | TdAttributes::PKS
    );
    assert_eq!(report.mrtd(), &[0x11; 48]);
    for i in 0..4 {
        assert_eq!(report.rtmr(i), Some(&model.rtmr(i)), "RTMR {i}");
    }
    assert_ne!(report.rtmr(1), Some(&[0; 48]));
}
