//! The model's quoting enclave: turns a TDREPORT into a version-4 TDX quote in Intel's DCAP
//! layout, signed with ECDSA P-256 by a *test* attestation key.
//!
//! A real TD quoting enclave checks the TDREPORT's MAC (only the CPU that made it can), copies
//! its measurements into a TD report body, and signs header and body with an attestation key
//! that the enclave's own report vouches for, itself signed by the platform's PCK key, whose
//! certificate chain leads to Intel. The model does every step with keys anyone can read
//! ([`MODEL_ATTESTATION_KEY`], [`MODEL_PCK_KEY`]) and no certificate chain, so third-party
//! parsers accept the layout and tests can check both signatures, while nothing could mistake
//! the quote for evidence.

use super::measurement::report_mac;
use crate::tdcall::TDREPORT_SIZE;
use alloc::vec::Vec;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use sha2::{Digest, Sha256, Sha384};

/// The test attestation key's private scalar (big-endian). Public on purpose: never trust a
/// quote it signed.
pub const MODEL_ATTESTATION_KEY: [u8; 32] = *b"tdx-boot model attestation key!!";
/// The test PCK key's private scalar (big-endian), which signs the enclave's report.
pub const MODEL_PCK_KEY: [u8; 32] = *b"tdx-boot model PCK key (test) !!";
/// Intel's QE vendor id, as real quotes carry it.
const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];
/// Certification data type 6: the QE report certification data.
const CERT_TYPE_QE_REPORT: u16 = 6;
/// Certification data type 5: a PCK certificate chain (PEM). The model has none; it says so.
const CERT_TYPE_PCK_CHAIN: u16 = 5;
const NO_CHAIN: &[u8] = b"tdx-boot model quote: test keys, no PCK certificate chain\n";
/// ISVPRODID of Intel's TD quoting enclave.
const TDQE_PROD_ID: u16 = 2;

/// The public key of `secret` as the quote carries it: x || y, 64 bytes.
pub fn model_public_key(secret: &[u8; 32]) -> Option<[u8; 64]> {
    let key = SigningKey::from_bytes(secret.into()).ok()?;
    let point = key.verifying_key().to_encoded_point(false);
    point.as_bytes().get(1..65)?.try_into().ok()
}

fn sign(secret: &[u8; 32], message: &[u8]) -> Option<[u8; 64]> {
    let key = SigningKey::from_bytes(secret.into()).ok()?;
    let signature: Signature = key.sign(message);
    signature.to_bytes().as_slice().try_into().ok()
}

/// Copies `len` bytes of `report` from `at`.
fn field(report: &[u8], at: usize, len: usize) -> &[u8] {
    report.get(at..at + len).unwrap_or_default()
}

/// The quote for `report`, or `None` if it is not a TDREPORT this module made (wrong size, type
/// or MAC), as the real enclave refuses a report it cannot verify.
pub(super) fn quote_for(report: &[u8]) -> Option<Vec<u8>> {
    if report.len() != TDREPORT_SIZE || report.first() != Some(&0x81) {
        return None;
    }
    // EVERIFYREPORT2's part (the MAC) and the enclave's (the hashes the MAC covers match the
    // structures they stand for).
    let tcb_hash = Sha384::digest(field(report, 256, 239));
    let info_hash = Sha384::digest(field(report, 512, 512));
    if field(report, 224, 32) != report_mac(report).as_slice()
        || field(report, 32, 48) != tcb_hash.as_slice()
        || field(report, 80, 48) != info_hash.as_slice()
    {
        return None;
    }
    let mut quote = Vec::with_capacity(2048);
    // Header: version 4, ECDSA P-256 key, TEE type TDX, two reserved u16, QE vendor, user data.
    quote.extend_from_slice(&4u16.to_le_bytes());
    quote.extend_from_slice(&2u16.to_le_bytes());
    quote.extend_from_slice(&0x81u32.to_le_bytes());
    quote.extend_from_slice(&[0; 4]);
    quote.extend_from_slice(&INTEL_QE_VENDOR_ID);
    quote.extend_from_slice(&[0; 20]);
    // TD report body (TDX 1.0): TEE_TCB_INFO's SVN, MRSEAM, MRSIGNERSEAM, attributes; TDINFO's
    // attributes, XFAM, MRTD, MRCONFIGID, MROWNER, MROWNERCONFIG, RTMR0..3; REPORTDATA.
    for (at, len) in [
        (264, 16),
        (280, 48),
        (328, 48),
        (376, 8),
        (512, 8),
        (520, 8),
    ] {
        quote.extend_from_slice(field(report, at, len));
    }
    quote.extend_from_slice(field(report, 528, 4 * 48 + 4 * 48));
    quote.extend_from_slice(field(report, 128, 64));
    let signed_len = quote.len();

    let attestation_key = model_public_key(&MODEL_ATTESTATION_KEY)?;
    let signature = sign(&MODEL_ATTESTATION_KEY, quote.get(..signed_len)?)?;
    let auth_data: Vec<u8> = (0u8..32).collect();
    let mut qe_report = [0u8; 384];
    qe_report[64..96].copy_from_slice(&Sha256::digest(b"tdx-boot model TD quoting enclave"));
    qe_report[128..160].copy_from_slice(&Sha256::digest(b"tdx-boot model QE signer"));
    qe_report[256..258].copy_from_slice(&TDQE_PROD_ID.to_le_bytes());
    let mut binding = Sha256::new();
    binding.update(attestation_key);
    binding.update(&auth_data);
    qe_report[320..352].copy_from_slice(&binding.finalize());
    let qe_report_signature = sign(&MODEL_PCK_KEY, &qe_report)?;

    let mut qe_certification = Vec::new();
    qe_certification.extend_from_slice(&qe_report);
    qe_certification.extend_from_slice(&qe_report_signature);
    qe_certification.extend_from_slice(&(auth_data.len() as u16).to_le_bytes());
    qe_certification.extend_from_slice(&auth_data);
    qe_certification.extend_from_slice(&CERT_TYPE_PCK_CHAIN.to_le_bytes());
    qe_certification.extend_from_slice(&(NO_CHAIN.len() as u32).to_le_bytes());
    qe_certification.extend_from_slice(NO_CHAIN);

    let mut signature_data = Vec::new();
    signature_data.extend_from_slice(&signature);
    signature_data.extend_from_slice(&attestation_key);
    signature_data.extend_from_slice(&CERT_TYPE_QE_REPORT.to_le_bytes());
    signature_data.extend_from_slice(&(qe_certification.len() as u32).to_le_bytes());
    signature_data.extend_from_slice(&qe_certification);

    quote.extend_from_slice(&(signature_data.len() as u32).to_le_bytes());
    quote.extend_from_slice(&signature_data);
    Some(quote)
}
