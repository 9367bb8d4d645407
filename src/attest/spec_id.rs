//! The log's first record: a TCG_PCR_EVENT (SHA-1 format) carrying the "Spec ID Event03"
//! structure, which says which digest algorithms every later record carries and how long each
//! digest is (TCG PC Client Platform Firmware Profile, "crypto agile" log).
//!
//! ```text
//! TCG_PCR_EVENT          u32 PCRIndex, u32 EventType (EV_NO_ACTION), u8 Digest[20] (zero),
//!                        u32 EventSize, then EventSize bytes:
//! TCG_EfiSpecIDEvent     u8 signature[16] = "Spec ID Event03\0", u32 platformClass,
//!                        u8 specVersionMinor, u8 specVersionMajor, u8 specErrata, u8 uintnSize,
//!                        u32 numberOfAlgorithms, { u16 algorithmId, u16 digestSize }[n],
//!                        u8 vendorInfoSize, u8 vendorInfo[vendorInfoSize]
//! ```
//! PCRIndex is the one place edk2 and td-shim differ: TDVF writes 1 ("PCRIndex 0 maps to MrIndex
//! 1", TdTcg2Dxe), td-shim 0. Both are accepted; any other index is not a CC log.

use super::algorithm::known_digest_size;
use super::event_log::EventLogError;
use super::event_type::EV_NO_ACTION;
use crate::bytes::{u16_at, u32_at};

/// The Spec ID structure's signature.
pub const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";
/// The most digest algorithms a header may list: the TCG registry has a handful of hashes; a
/// count beyond this is hostile, not a real log.
pub const MAX_ALGORITHMS: usize = 8;
/// Bytes of the TCG_PCR_EVENT before its event data.
pub(crate) const HEADER_EVENT_FIXED: usize = 32;
/// Bytes of the Spec ID structure before its algorithm list.
const SPEC_ID_FIXED: usize = 28;

/// One `{ algorithmId, digestSize }` pair of the header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlgorithmSize {
    /// TPM_ALG_* identifier.
    pub algorithm: u16,
    /// Bytes of each of its digests.
    pub digest_size: u16,
}

/// The parsed "Spec ID Event03" header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecIdEvent<'a> {
    /// The header record's PCRIndex (1 from edk2, 0 from td-shim).
    pub header_index: u32,
    /// TCG platform class (0 client, 1 server).
    pub platform_class: u32,
    /// Spec version, (major, minor, errata).
    pub spec_version: (u8, u8, u8),
    /// UINTN size in 32-bit words (2 on a 64-bit firmware).
    pub uintn_size: u8,
    algorithms: [AlgorithmSize; MAX_ALGORITHMS],
    algorithm_count: usize,
    /// The vendor information bytes.
    pub vendor_info: &'a [u8],
    /// Bytes of the header record in the log.
    pub record_len: usize,
}

impl<'a> SpecIdEvent<'a> {
    /// Parses the header record at the start of `log`.
    pub(crate) fn parse(log: &'a [u8]) -> Result<Self, EventLogError> {
        let truncated = EventLogError::TruncatedHeader;
        let header_index = u32_at(log, 0).ok_or(truncated)?;
        let event_type = u32_at(log, 4).ok_or(truncated)?;
        let event_size = u32_at(log, 28).ok_or(truncated)?;
        if event_type != EV_NO_ACTION {
            return Err(EventLogError::NotSpecIdHeader);
        }
        if header_index > 1 {
            return Err(EventLogError::BadHeaderIndex(header_index));
        }
        let data_len = usize::try_from(event_size).map_err(|_| truncated)?;
        let record_len = HEADER_EVENT_FIXED.checked_add(data_len).ok_or(truncated)?;
        let data = log.get(HEADER_EVENT_FIXED..record_len).ok_or(truncated)?;
        if data.get(..16) != Some(SPEC_ID_SIGNATURE.as_slice()) {
            return Err(EventLogError::NotSpecIdHeader);
        }
        let bad = EventLogError::BadSpecId;
        let byte = |offset: usize| data.get(offset).copied().ok_or(bad);
        let platform_class = u32_at(data, 16).ok_or(bad)?;
        let spec_version = (byte(21)?, byte(20)?, byte(22)?);
        let uintn_size = byte(23)?;
        let count = u32_at(data, 24).ok_or(bad)?;
        let algorithm_count = usize::try_from(count)
            .ok()
            .filter(|n| (1..=MAX_ALGORITHMS).contains(n))
            .ok_or(EventLogError::BadAlgorithmCount(count))?;
        let mut algorithms = [AlgorithmSize::default(); MAX_ALGORITHMS];
        for (i, slot) in algorithms.iter_mut().take(algorithm_count).enumerate() {
            let at = SPEC_ID_FIXED + 4 * i;
            let algorithm = u16_at(data, at).ok_or(bad)?;
            let digest_size = u16_at(data, at + 2).ok_or(bad)?;
            let size_ok = match known_digest_size(algorithm) {
                Some(known) => usize::from(digest_size) == known,
                None => (1..=super::algorithm::MAX_DIGEST_SIZE).contains(&usize::from(digest_size)),
            };
            if !size_ok {
                return Err(EventLogError::BadDigestSize {
                    algorithm,
                    size: digest_size,
                });
            }
            *slot = AlgorithmSize {
                algorithm,
                digest_size,
            };
        }
        for (i, a) in algorithms[..algorithm_count].iter().enumerate() {
            if algorithms[..i].iter().any(|b| b.algorithm == a.algorithm) {
                return Err(EventLogError::DuplicateAlgorithm(a.algorithm));
            }
        }
        let vendor_at = SPEC_ID_FIXED + 4 * algorithm_count;
        let vendor_len = usize::from(byte(vendor_at)?);
        let vendor_info = data
            .get(vendor_at + 1..vendor_at + 1 + vendor_len)
            .ok_or(bad)?;
        Ok(SpecIdEvent {
            header_index,
            platform_class,
            spec_version,
            uintn_size,
            algorithms,
            algorithm_count,
            vendor_info,
            record_len,
        })
    }

    /// The algorithms every record carries, in the header's order.
    pub fn algorithms(&self) -> &[AlgorithmSize] {
        self.algorithms.get(..self.algorithm_count).unwrap_or(&[])
    }

    /// The digest size of `algorithm`, if the header lists it.
    pub fn digest_size(&self, algorithm: u16) -> Option<usize> {
        self.algorithms()
            .iter()
            .find(|a| a.algorithm == algorithm)
            .map(|a| usize::from(a.digest_size))
    }
}
