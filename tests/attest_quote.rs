//! Quotes: the model's quoting service behind GetQuote (through the crate's shared-buffer
//! protocol), the version-4 layout checked field by field against the TDREPORT, a third-party
//! parser (`dcap-qvl`) reading it and both ECDSA signatures verified with `p256`; version 5,
//! trailing bytes, hostile quotes and a hostile VMM.
#![cfg(feature = "model")]

mod common;
mod early_support;

use common::HostMemory;
use early_support::{Intercept, back_current_stack};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use tdx_boot::attest::{GET_QUOTE_IN_FLIGHT, GetQuoteError, Quote, QuoteBuffer, QuoteError};
use tdx_boot::early::{self, IdentityMapped, Policy};
use tdx_boot::model::{
    MODEL_ATTESTATION_KEY, MODEL_PCK_KEY, ModelConfig, PageState, TdxModule, model_public_key,
};
use tdx_boot::tdcall::{Regs, TdReport, leaf, vmcall};

const SHARED: u64 = 1 << 47;
const PAGE: u64 = 4096;
const BUFFER_GPA: u64 = 0x80_0000;

fn model() -> TdxModule {
    let model = TdxModule::new(ModelConfig {
        mrtd: [0x11; 48],
        mr_config_id: [0x22; 48],
        ..ModelConfig::default()
    });
    early::init(&model.vcpu(0), Policy::default()).unwrap();
    model
}

fn report(model: &TdxModule, data: &[u8; 64]) -> TdReport {
    // SAFETY: the report buffers live on this stack, which is now identity-mapped private memory.
    unsafe { back_current_stack(model) };
    // SAFETY: as above.
    let phys = unsafe { IdentityMapped::new() };
    for i in 0..4u8 {
        early::extend_rtmr(&model.vcpu(0), i, &[i; 8], &phys).unwrap();
    }
    early::tdreport(&model.vcpu(0), data, &phys).unwrap()
}

/// A shared two-page buffer the model can reach.
fn shared_buffer(model: &TdxModule) -> (HostMemory, QuoteBuffer) {
    let mem = HostMemory::new(2 * PAGE as usize, 0);
    mem.back(model, BUFFER_GPA);
    model.add_memory(BUFFER_GPA, BUFFER_GPA + 2 * PAGE, PageState::Shared);
    // SAFETY: the memory is leaked test memory registered as the shared pages at BUFFER_GPA.
    let buffer = unsafe { QuoteBuffer::new(mem.ptr(0), SHARED | BUFFER_GPA, 2 * PAGE as usize) };
    (mem, buffer.unwrap())
}

fn model_quote() -> (TdReport, Vec<u8>) {
    let model = model();
    let report = report(&model, &[0x5a; 64]);
    let (_mem, mut buffer) = shared_buffer(&model);
    let mut out = vec![0u8; 8192];
    let len = buffer
        .request(&model.vcpu(0), &report, |_| false, &mut out)
        .unwrap();
    out.truncate(len);
    (report, out)
}

#[test]
fn the_model_quote_carries_the_tdreport_in_the_version_4_layout() {
    let (report, bytes) = model_quote();
    let quote = Quote::parse(&bytes).unwrap();
    assert_eq!(quote.version(), 4);
    assert_eq!(quote.len(), bytes.len());
    assert_eq!(quote.attestation_key_type(), 2);
    assert_eq!(quote.body().len(), 584);
    assert_eq!(quote.mr_td(), report.mrtd());
    assert_eq!(quote.mr_td(), &[0x11; 48]);
    assert_eq!(quote.mr_config_id(), report.mr_config_id());
    assert_eq!(quote.mr_owner(), report.mr_owner());
    assert_eq!(quote.mr_owner_config(), report.mr_owner_config());
    for i in 0..4 {
        assert_eq!(quote.rtmr(i), report.rtmr(i), "RTMR[{i}]");
        assert_ne!(quote.rtmr(i), Some(&[0; 48]));
    }
    assert_eq!(quote.rtmr(4), None);
    assert_eq!(quote.report_data(), &[0x5a; 64]);
    assert_eq!(quote.td_attributes(), report.attributes().bits());
    assert_eq!(quote.xfam(), report.xfam());
    assert_eq!(quote.tee_tcb_svn()[..], report.bytes[264..280]);
    assert_eq!(quote.mr_seam()[..], report.bytes[280..328]);
    assert_eq!(quote.signed_bytes().len(), 48 + 584);
}

#[test]
fn a_third_party_parser_reads_it_and_both_signatures_verify_with_the_test_keys() {
    let (report, bytes) = model_quote();
    let parsed = dcap_qvl::quote::Quote::parse(&bytes).expect("dcap-qvl parses the quote");
    assert_eq!(parsed.header.version, 4);
    assert_eq!(parsed.header.tee_type, 0x81);
    let body = parsed.report.as_td10().expect("a TDX 1.0 body");
    assert_eq!(&body.mr_td, report.mrtd());
    assert_eq!(&body.rt_mr2, report.rtmr(2).unwrap());
    assert_eq!(&body.report_data, report.report_data());
    assert_eq!(parsed.signed_length(), 48 + 584);
    let auth = parsed.auth_data.clone().into_v3();

    // The attestation key signs header and body.
    let attestation_key = model_public_key(&MODEL_ATTESTATION_KEY).unwrap();
    assert_eq!(auth.ecdsa_attestation_key, attestation_key);
    let key = verifying_key(&auth.ecdsa_attestation_key);
    let signature = Signature::from_slice(&auth.ecdsa_signature).unwrap();
    key.verify(&bytes[..parsed.signed_length()], &signature)
        .expect("the quote signature verifies");
    let mut tampered = bytes[..parsed.signed_length()].to_vec();
    tampered[48 + 136] ^= 1; // one bit of MRTD
    assert!(key.verify(&tampered, &signature).is_err());

    // The PCK key signs the QE report, whose REPORTDATA binds the attestation key.
    let pck = verifying_key(&model_public_key(&MODEL_PCK_KEY).unwrap());
    let qe_signature = Signature::from_slice(&auth.qe_report_signature).unwrap();
    pck.verify(&auth.qe_report, &qe_signature)
        .expect("the QE report signature verifies");
    let mut binding = Sha256::new();
    binding.update(auth.ecdsa_attestation_key);
    binding.update(&auth.qe_auth_data.data);
    assert_eq!(auth.qe_report[320..352], binding.finalize()[..]);
    assert_eq!(auth.qe_report[352..384], [0; 32]);
    assert!(!parsed.raw_cert_chain().unwrap().is_empty());

    // Our parser finds the same signature and key.
    let quote = Quote::parse(&bytes).unwrap();
    let (sig, key) = quote.ecdsa_signature_and_key().unwrap();
    assert_eq!(
        (sig, key),
        (&auth.ecdsa_signature, &auth.ecdsa_attestation_key)
    );
}

fn verifying_key(xy: &[u8; 64]) -> VerifyingKey {
    let mut sec1 = vec![4u8];
    sec1.extend_from_slice(xy);
    VerifyingKey::from_sec1_bytes(&sec1).unwrap()
}

/// The v4 quote rewritten as version 5 with a TDX 1.0 or 1.5 body descriptor.
fn as_version_5(v4: &[u8], body_type: u16) -> Vec<u8> {
    let mut v5 = v4[..48].to_vec();
    v5[0..2].copy_from_slice(&5u16.to_le_bytes());
    let body_len: u32 = if body_type == 3 { 648 } else { 584 };
    v5.extend(body_type.to_le_bytes());
    v5.extend(body_len.to_le_bytes());
    v5.extend(&v4[48..48 + 584]);
    v5.resize(48 + 6 + body_len as usize, 0x77);
    v5.extend(&v4[48 + 584..]);
    v5
}

#[test]
fn version_5_and_trailing_bytes() {
    let (report, v4) = model_quote();
    for body_type in [2u16, 3] {
        let mut bytes = as_version_5(&v4, body_type);
        let len = bytes.len();
        bytes.extend([0xEE; 300]); // what a host's buffer may carry after the quote
        let quote = Quote::parse(&bytes).unwrap();
        assert_eq!((quote.version(), quote.len()), (5, len));
        assert_eq!(quote.bytes(), &bytes[..len]);
        assert_eq!(quote.mr_td(), report.mrtd());
        assert_eq!(quote.rtmr(3), report.rtmr(3));
        assert_eq!(quote.report_data(), report.report_data());
        assert_eq!(quote.signature_data(), &v4[48 + 584 + 4..]);
        if body_type == 2 {
            let parsed = dcap_qvl::quote::Quote::parse(&bytes).unwrap();
            assert_eq!(parsed.header.version, 5);
        }
    }
    let mut trailing = v4.clone();
    trailing.extend([0; 4096]);
    assert_eq!(Quote::parse(&trailing).unwrap().len(), v4.len());
}

#[test]
fn hostile_quotes_are_refused() {
    let (_, v4) = model_quote();
    for cut in 0..v4.len() {
        assert!(
            matches!(Quote::parse(&v4[..cut]), Err(QuoteError::TooShort { .. })),
            "cut at {cut}"
        );
    }
    let with = |at: usize, bytes: &[u8]| {
        let mut q = v4.clone();
        q[at..at + bytes.len()].copy_from_slice(bytes);
        Quote::parse(&q).err()
    };
    assert_eq!(
        with(0, &3u16.to_le_bytes()),
        Some(QuoteError::UnsupportedVersion(3))
    );
    assert_eq!(with(4, &0u32.to_le_bytes()), Some(QuoteError::NotTdx(0)));
    assert!(matches!(
        with(48 + 584, &u32::MAX.to_le_bytes()),
        Some(QuoteError::TooShort { .. })
    ));
    let v5 = as_version_5(&v4, 2);
    let mut bad = v5.clone();
    bad[48..50].copy_from_slice(&1u16.to_le_bytes());
    assert_eq!(
        Quote::parse(&bad).err(),
        Some(QuoteError::UnsupportedBodyType(1))
    );
    let mut bad = v5.clone();
    bad[50..54].copy_from_slice(&648u32.to_le_bytes());
    assert_eq!(
        Quote::parse(&bad).err(),
        Some(QuoteError::BadBodySize {
            body_type: 2,
            size: 648
        })
    );
}

#[test]
fn get_quote_waits_while_in_flight_and_gives_up_when_told() {
    let model = model();
    let report = report(&model, &[1; 64]);
    let (_mem, mut buffer) = shared_buffer(&model);
    let mut out = vec![0u8; 8192];
    model.set_quote_deferred(true);
    let mut waits = 0;
    let len = buffer
        .request(
            &model.vcpu(0),
            &report,
            |attempt| {
                waits += 1;
                // The host finishes on the third look.
                if attempt == 2 {
                    model.complete_quotes();
                }
                true
            },
            &mut out,
        )
        .unwrap();
    assert_eq!(waits, 3);
    assert_eq!(Quote::parse(&out[..len]).unwrap().report_data(), &[1; 64]);

    let timeout = buffer.request(&model.vcpu(0), &report, |attempt| attempt < 5, &mut out);
    assert_eq!(timeout, Err(GetQuoteError::Timeout));
    assert_eq!(buffer.status(), GET_QUOTE_IN_FLIGHT, "still the VMM's");
    model.complete_quotes();

    model.set_quote_deferred(false);
    model.set_quote_service(false);
    assert_eq!(
        buffer.request(&model.vcpu(0), &report, |_| false, &mut out),
        Err(GetQuoteError::ServiceUnavailable)
    );
    model.set_quote_service(true);
    // A report the module did not make (one RTMR byte changed): the enclave refuses it.
    let mut forged = report.clone();
    forged.bytes[720] ^= 1;
    assert_eq!(
        buffer.request(&model.vcpu(0), &forged, |_| false, &mut out),
        Err(GetQuoteError::HostError)
    );
    // Too small an output buffer for what the host returned.
    let mut small = vec![0u8; 100];
    assert!(matches!(
        buffer.request(&model.vcpu(0), &report, |_| false, &mut small),
        Err(GetQuoteError::BadLength(_))
    ));
}

#[test]
fn a_hostile_vmm_cannot_make_the_guest_read_past_the_buffer() {
    let model = model();
    let report = report(&model, &[2; 64]);
    let (mem, mut buffer) = shared_buffer(&model);
    // After GetQuote, the "VMM" claims success with out_len beyond the buffer, or garbage.
    let base = mem.ptr(0).expose_provenance();
    let lie = |out_len: u32, status: u64| {
        move |input: &Regs, _: &mut Regs| {
            if input.rax == leaf::VP_VMCALL && input.r11 == vmcall::function::GET_QUOTE {
                let header = core::ptr::with_exposed_provenance_mut::<u8>(base);
                // SAFETY: the buffer's first 24 bytes, leaked test memory nothing else touches
                // during the call.
                unsafe {
                    header.add(8).cast::<u64>().write_unaligned(status);
                    header.add(20).cast::<u32>().write_unaligned(out_len);
                }
            }
        }
    };
    let mut out = vec![0u8; 1 << 20];
    for (out_len, status, expected) in [
        (
            2 * PAGE as u32 - 23,
            0,
            GetQuoteError::BadLength(2 * PAGE as u32 - 23),
        ),
        (u32::MAX, 0, GetQuoteError::BadLength(u32::MAX)),
        (16, 0x1234, GetQuoteError::UnknownStatus(0x1234)),
    ] {
        let cpu = Intercept {
            inner: model.vcpu(0),
            after: lie(out_len, status),
        };
        assert_eq!(
            buffer.request(&cpu, &report, |_| false, &mut out),
            Err(expected)
        );
    }
    // A length inside the buffer over bytes that are no quote.
    let cpu = Intercept {
        inner: model.vcpu(0),
        after: lie(100, 0),
    };
    assert!(matches!(
        buffer.request(&cpu, &report, |_| false, &mut out),
        Err(GetQuoteError::Quote(_))
    ));
    // SAFETY: misaligned or too small buffers are refused before anything is touched.
    unsafe {
        assert!(QuoteBuffer::new(mem.ptr(8), SHARED | BUFFER_GPA, 8192).is_err());
        assert!(QuoteBuffer::new(mem.ptr(0), SHARED | BUFFER_GPA, 1000).is_err());
        assert!(QuoteBuffer::new(mem.ptr(0), SHARED | BUFFER_GPA | 8, 8192).is_err());
    }
}
