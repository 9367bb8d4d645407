//! A TDX quote (Intel DCAP layout, versions 4 and 5): what a verifier checks instead of the
//! TDREPORT, whose MAC only the same platform can check.
//!
//! ```text
//! header (48)      u16 version, u16 attestation key type (2 = ECDSA P-256), u32 TEE type
//!                  (0x81 = TDX), u16 reserved, u16 reserved, u8 QE vendor id[16], u8 user data[20]
//! v5 only (6)      u16 body type (2 = TDX 1.0 body, 3 = TDX 1.5 body), u32 body size
//! TD report body   TDX 1.0 (584): TEE_TCB_SVN[16], MRSEAM[48], MRSIGNERSEAM[48],
//!                  SEAMATTRIBUTES[8], TDATTRIBUTES[8], XFAM[8], MRTD[48], MRCONFIGID[48],
//!                  MROWNER[48], MROWNERCONFIG[48], RTMR0..3[4 x 48], REPORTDATA[64];
//!                  TDX 1.5 (648) adds TEE_TCB_SVN2[16], MRSERVICETD[48]
//! u32 signature data length, then the signature data (ECDSA key type: signature[64] over
//!                  header and body, attestation public key[64], certification data)
//! ```
//! A quote's length is its signature-data length plus what precedes it: hosts hand back buffers
//! with trailing bytes, so the buffer's length says nothing.

use crate::bytes::{u16_at, u32_at};
use core::fmt;

/// Bytes of the quote header.
pub const QUOTE_HEADER_LEN: usize = 48;
/// Bytes of a TDX 1.0 TD report body.
pub const TD_REPORT_BODY_V10_LEN: usize = 584;
/// Bytes of a TDX 1.5 TD report body.
pub const TD_REPORT_BODY_V15_LEN: usize = 648;
/// TEE type of a TDX quote.
pub const TEE_TYPE_TDX: u32 = 0x81;
/// Attestation key type ECDSA-256-with-P-256.
pub const ATTESTATION_KEY_ECDSA_P256: u16 = 2;
/// Version 5 body type of a TDX 1.0 body.
pub const BODY_TYPE_TD10: u16 = 2;
/// Version 5 body type of a TDX 1.5 body.
pub const BODY_TYPE_TD15: u16 = 3;

/// Offsets in the TD report body.
const MR_TD: usize = 136;
const RTMR0: usize = 328;
const REPORT_DATA: usize = 520;

/// A parsed quote, borrowed from its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Quote<'a> {
    bytes: &'a [u8],
    body_at: usize,
    body_len: usize,
    signature_at: usize,
    len: usize,
}

/// Why bytes are not a TDX quote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuoteError {
    /// The bytes end before the part the quote says comes next.
    TooShort {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        have: usize,
    },
    /// Not version 4 or 5.
    UnsupportedVersion(u16),
    /// The TEE type is not TDX (SGX quotes are not TD quotes).
    NotTdx(u32),
    /// A version-5 body type other than TDX 1.0 or 1.5.
    UnsupportedBodyType(u16),
    /// A version-5 body size that does not match its type.
    BadBodySize {
        /// The body type.
        body_type: u16,
        /// The size given.
        size: u32,
    },
}

impl<'a> Quote<'a> {
    /// Parses the quote at the start of `bytes` (trailing bytes are allowed and ignored).
    pub fn parse(bytes: &'a [u8]) -> Result<Quote<'a>, QuoteError> {
        let need = |needed: usize| {
            if bytes.len() < needed {
                Err(QuoteError::TooShort {
                    needed,
                    have: bytes.len(),
                })
            } else {
                Ok(())
            }
        };
        need(QUOTE_HEADER_LEN)?;
        let version = u16_at(bytes, 0).unwrap_or(0);
        let tee_type = u32_at(bytes, 4).unwrap_or(0);
        let (body_at, body_len) = match version {
            4 => (QUOTE_HEADER_LEN, TD_REPORT_BODY_V10_LEN),
            5 => {
                need(QUOTE_HEADER_LEN + 6)?;
                let body_type = u16_at(bytes, QUOTE_HEADER_LEN).unwrap_or(0);
                let size = u32_at(bytes, QUOTE_HEADER_LEN + 2).unwrap_or(0);
                let expected = match body_type {
                    BODY_TYPE_TD10 => TD_REPORT_BODY_V10_LEN,
                    BODY_TYPE_TD15 => TD_REPORT_BODY_V15_LEN,
                    _ => return Err(QuoteError::UnsupportedBodyType(body_type)),
                };
                if usize::try_from(size).ok() != Some(expected) {
                    return Err(QuoteError::BadBodySize { body_type, size });
                }
                (QUOTE_HEADER_LEN + 6, expected)
            }
            _ => return Err(QuoteError::UnsupportedVersion(version)),
        };
        if tee_type != TEE_TYPE_TDX {
            return Err(QuoteError::NotTdx(tee_type));
        }
        let length_at = body_at + body_len;
        need(length_at + 4)?;
        let signature_len = u32_at(bytes, length_at).unwrap_or(0);
        let signature_at = length_at + 4;
        let len = usize::try_from(signature_len)
            .ok()
            .and_then(|n| signature_at.checked_add(n))
            .unwrap_or(usize::MAX);
        need(len)?;
        Ok(Quote {
            bytes,
            body_at,
            body_len,
            signature_at,
            len,
        })
    }

    /// The quote's version (4 or 5).
    pub fn version(&self) -> u16 {
        u16_at(self.bytes, 0).unwrap_or(0)
    }

    /// The attestation key type ([`ATTESTATION_KEY_ECDSA_P256`] in practice).
    pub fn attestation_key_type(&self) -> u16 {
        u16_at(self.bytes, 2).unwrap_or(0)
    }

    /// The quoting enclave's vendor id.
    pub fn qe_vendor_id(&self) -> &'a [u8; 16] {
        self.array(12)
    }

    /// The TD report body (584 or 648 bytes).
    pub fn body(&self) -> &'a [u8] {
        self.bytes
            .get(self.body_at..self.body_at + self.body_len)
            .unwrap_or_default()
    }

    /// TEE_TCB_SVN: the TDX module's security version numbers.
    pub fn tee_tcb_svn(&self) -> &'a [u8; 16] {
        self.array(self.body_at)
    }

    /// MRSEAM: the measurement of the TDX module.
    pub fn mr_seam(&self) -> &'a [u8; 48] {
        self.array(self.body_at + 16)
    }

    /// TDATTRIBUTES.
    pub fn td_attributes(&self) -> u64 {
        u64::from_le_bytes(*self.array(self.body_at + 120))
    }

    /// XFAM.
    pub fn xfam(&self) -> u64 {
        u64::from_le_bytes(*self.array(self.body_at + 128))
    }

    /// MRTD: the TD's build-time measurement.
    pub fn mr_td(&self) -> &'a [u8; 48] {
        self.array(self.body_at + MR_TD)
    }

    /// MRCONFIGID.
    pub fn mr_config_id(&self) -> &'a [u8; 48] {
        self.array(self.body_at + MR_TD + 48)
    }

    /// MROWNER.
    pub fn mr_owner(&self) -> &'a [u8; 48] {
        self.array(self.body_at + MR_TD + 96)
    }

    /// MROWNERCONFIG.
    pub fn mr_owner_config(&self) -> &'a [u8; 48] {
        self.array(self.body_at + MR_TD + 144)
    }

    /// RTMR `index` (0..=3).
    pub fn rtmr(&self, index: usize) -> Option<&'a [u8; 48]> {
        (index < 4).then(|| self.array(self.body_at + RTMR0 + 48 * index))
    }

    /// REPORTDATA: the 64 bytes the TD bound into its TDREPORT.
    pub fn report_data(&self) -> &'a [u8; 64] {
        self.array(self.body_at + REPORT_DATA)
    }

    /// The bytes the attestation key signs: header (and v5 body descriptor) and body.
    pub fn signed_bytes(&self) -> &'a [u8] {
        self.bytes
            .get(..self.body_at + self.body_len)
            .unwrap_or_default()
    }

    /// The signature data.
    pub fn signature_data(&self) -> &'a [u8] {
        self.bytes
            .get(self.signature_at..self.len)
            .unwrap_or_default()
    }

    /// For an ECDSA P-256 quote with enough signature data: the signature (r || s) over
    /// [`Self::signed_bytes`] and the attestation public key (x || y).
    pub fn ecdsa_signature_and_key(&self) -> Option<(&'a [u8; 64], &'a [u8; 64])> {
        if self.attestation_key_type() != ATTESTATION_KEY_ECDSA_P256 {
            return None;
        }
        let data = self.signature_data();
        Some((
            data.get(..64)?.try_into().ok()?,
            data.get(64..128)?.try_into().ok()?,
        ))
    }

    /// Bytes the quote occupies (header to the end of its signature data).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a parsed quote has at least a header and a body.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The quote's own bytes, without what trailed it.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }

    fn array<const N: usize>(&self, at: usize) -> &'a [u8; N] {
        // `parse` checked the body is inside the bytes; the fallback is never taken.
        self.bytes
            .get(at..at + N)
            .and_then(|b| b.try_into().ok())
            .unwrap_or(&[0; N])
    }
}

impl fmt::Display for QuoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { needed, have } => {
                write!(f, "quote needs {needed} bytes, {have} given")
            }
            Self::UnsupportedVersion(v) => write!(f, "quote version {v} is not 4 or 5"),
            Self::NotTdx(t) => write!(f, "TEE type {t:#x} is not TDX (0x81)"),
            Self::UnsupportedBodyType(t) => write!(f, "quote body type {t} is not a TD report"),
            Self::BadBodySize { body_type, size } => {
                write!(f, "quote body type {body_type} with size {size}")
            }
        }
    }
}

impl core::error::Error for QuoteError {}
