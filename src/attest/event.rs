//! One TCG_PCR_EVENT2 record of a crypto-agile log, and where the record area ends.
//!
//! ```text
//! u32 PCRIndex (here: the CC measurement register index), u32 EventType,
//! TPML_DIGEST_VALUES { u32 count, { u16 hashAlg, u8 digest[size from the header] }[count] },
//! u32 EventSize, u8 Event[EventSize]
//! ```
//! The CC index maps to TDX registers as UEFI 2.10 section 38.4.1 says: 0 is MRTD (built by the
//! TDX module at TD creation, never extended by the guest), 1..=4 are RTMR\[0\]..RTMR\[3\].

use super::algorithm::TPM_ALG_SHA384;
use super::event_log::EventLogError;
use super::event_type::EV_NO_ACTION;
use super::spec_id::{AlgorithmSize, MAX_ALGORITHMS, SpecIdEvent};
use crate::bytes::{u16_at, u32_at};

/// The CC measurement register index of MRTD.
pub const MR_INDEX_MRTD: u32 = 0;
/// The CC measurement register index of RTMR\[0\]; RTMR\[i\] is `MR_INDEX_RTMR0 + i`.
pub const MR_INDEX_RTMR0: u32 = 1;

/// One record of the log, borrowed from the log area.
#[derive(Clone, Copy, Debug)]
pub struct Event<'a> {
    /// The CC measurement register index (0 MRTD, 1..=4 RTMR[0..3]).
    pub mr_index: u32,
    /// The TCG event type.
    pub event_type: u32,
    /// The event data (what a verifier reads to judge the measurement).
    pub data: &'a [u8],
    /// Where the record starts in the log.
    pub offset: usize,
    digests: &'a [u8],
    digest_count: usize,
    sizes: [AlgorithmSize; MAX_ALGORITHMS],
}

impl<'a> Event<'a> {
    /// The RTMR this event extends, or `None` (EV_NO_ACTION, MRTD, or an index past RTMR\[3\]).
    pub fn rtmr_index(&self) -> Option<usize> {
        if self.event_type == EV_NO_ACTION {
            return None;
        }
        let rtmr = self.mr_index.checked_sub(MR_INDEX_RTMR0)?;
        usize::try_from(rtmr).ok().filter(|&i| i < 4)
    }

    /// The record's digests, `(algorithm, digest)`, in the record's order.
    pub fn digests(&self) -> impl Iterator<Item = (u16, &'a [u8])> + 'a {
        let (bytes, count, sizes) = (self.digests, self.digest_count, self.sizes);
        let mut at = 0usize;
        (0..count).map_while(move |_| {
            let algorithm = u16_at(bytes, at)?;
            let size = usize::from(sizes.iter().find(|s| s.algorithm == algorithm)?.digest_size);
            let digest = bytes.get(at + 2..at + 2 + size)?;
            at += 2 + size;
            Some((algorithm, digest))
        })
    }

    /// The digest for `algorithm`, if the record carries one.
    pub fn digest(&self, algorithm: u16) -> Option<&'a [u8]> {
        self.digests()
            .find(|&(a, _)| a == algorithm)
            .map(|(_, digest)| digest)
    }

    /// The SHA-384 digest: what a TDX register is extended with.
    pub fn sha384(&self) -> Option<&'a [u8; 48]> {
        self.digest(TPM_ALG_SHA384)?.try_into().ok()
    }
}

/// How the record area ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogEnd {
    /// The rest of the area is 0xFF, as edk2 (TDVF) initialises it.
    Fill0xFF,
    /// The rest of the area is zeros, as td-shim leaves it. (A record starting with index 0 and
    /// type 0, EV_PREBOOT_CERT on MRTD, is read as this end: no CC firmware writes one.)
    Zeros,
    /// The last record ends exactly at the end of the bytes given.
    AreaEnd,
    /// The bytes end inside a record (a copy cut short, or an area too small): the log holds
    /// the complete records before it.
    CutShort,
}

/// The outcome of reading at one offset.
pub(crate) enum Next<'a> {
    Record(Event<'a>, usize),
    End(LogEnd),
}

/// Reads the record at `at`, or says why the records end there.
pub(crate) fn read_record<'a>(
    log: &'a [u8],
    at: usize,
    spec: &SpecIdEvent<'_>,
) -> Result<Next<'a>, EventLogError> {
    let Some(rest) = log.get(at..).filter(|rest| !rest.is_empty()) else {
        return Ok(Next::End(LogEnd::AreaEnd));
    };
    let Some(first) = rest.get(..8) else {
        return Ok(Next::End(LogEnd::CutShort));
    };
    if first.iter().all(|&b| b == 0xFF) {
        return Ok(Next::End(LogEnd::Fill0xFF));
    }
    if first.iter().all(|&b| b == 0) {
        return Ok(Next::End(LogEnd::Zeros));
    }
    let cut = Ok(Next::End(LogEnd::CutShort));
    let (Some(mr_index), Some(event_type), Some(count)) =
        (u32_at(rest, 0), u32_at(rest, 4), u32_at(rest, 8))
    else {
        return cut;
    };
    let algorithms = spec.algorithms();
    let digest_count = usize::try_from(count)
        .ok()
        .filter(|n| (1..=algorithms.len()).contains(n))
        .ok_or(EventLogError::BadDigestCount { offset: at, count })?;
    let mut cursor = 12usize;
    let mut seen = [0u16; MAX_ALGORITHMS];
    for i in 0..digest_count {
        let Some(algorithm) = u16_at(rest, cursor) else {
            return cut;
        };
        let size = spec
            .digest_size(algorithm)
            .ok_or(EventLogError::UnlistedAlgorithm {
                offset: at,
                algorithm,
            })?;
        if seen[..i].contains(&algorithm) {
            return Err(EventLogError::DuplicateDigest {
                offset: at,
                algorithm,
            });
        }
        if let Some(slot) = seen.get_mut(i) {
            *slot = algorithm;
        }
        cursor += 2 + size;
    }
    let digests = match rest.get(12..cursor) {
        Some(digests) => digests,
        None => return cut,
    };
    let Some(event_size) = u32_at(rest, cursor) else {
        return cut;
    };
    let data_start = cursor + 4;
    let Some(data_end) = usize::try_from(event_size)
        .ok()
        .and_then(|n| data_start.checked_add(n))
    else {
        return cut;
    };
    let Some(data) = rest.get(data_start..data_end) else {
        return cut;
    };
    let mut sizes = [AlgorithmSize::default(); MAX_ALGORITHMS];
    for (slot, a) in sizes.iter_mut().zip(algorithms) {
        *slot = *a;
    }
    let event = Event {
        mr_index,
        event_type,
        data,
        offset: at,
        digests,
        digest_count,
        sizes,
    };
    Ok(Next::Record(event, at + data_end))
}
