//! The CC event log: a crypto-agile TCG log whose records extend TDX measurement registers,
//! read from the whole log area and replayed into the RTMR values it claims.
//!
//! The log is untrusted: a VMM or a bug can put anything in the area. Parsing walks it once,
//! bounds-checks every field against the bytes given and keeps no copy; a record that the header
//! cannot explain (a digest count above the header's, an algorithm it does not list, the same
//! algorithm twice) is an error. The record area ends at the first 0xFF fill (edk2), zero fill
//! (td-shim), the end of the bytes, or a record the bytes cut short ([`LogEnd`]). What the log
//! is worth is decided only by [`EventLog::replay`] matching the RTMRs of a TDREPORT or quote.

use super::algorithm::TPM_ALG_SHA384;
use super::event::{Event, LogEnd, MR_INDEX_MRTD, Next, read_record};
use super::event_type::EV_NO_ACTION;
use super::spec_id::SpecIdEvent;
use core::fmt;
use sha2::{Digest, Sha384};

/// A parsed CC event log.
#[derive(Clone, Copy, Debug)]
pub struct EventLog<'a> {
    bytes: &'a [u8],
    spec: SpecIdEvent<'a>,
    records_end: usize,
    count: usize,
    end: LogEnd,
}

/// Why a log area is not a CC event log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventLogError {
    /// The area ends inside the header record.
    TruncatedHeader,
    /// The first record is not an EV_NO_ACTION "Spec ID Event03".
    NotSpecIdHeader,
    /// The header record's index is neither 0 (td-shim) nor 1 (edk2).
    BadHeaderIndex(u32),
    /// The Spec ID structure runs past its event data.
    BadSpecId,
    /// The header lists no algorithm, or more than [`super::spec_id::MAX_ALGORITHMS`].
    BadAlgorithmCount(u32),
    /// A registered algorithm with the wrong digest size, or an unknown one with a size of 0 or
    /// above 64.
    BadDigestSize {
        /// TPM_ALG_* identifier.
        algorithm: u16,
        /// The size the header gave.
        size: u16,
    },
    /// The header lists an algorithm twice.
    DuplicateAlgorithm(u16),
    /// A record's digest count is 0 or above the header's algorithm count.
    BadDigestCount {
        /// Offset of the record in the log.
        offset: usize,
        /// The count.
        count: u32,
    },
    /// A record carries a digest of an algorithm the header does not list.
    UnlistedAlgorithm {
        /// Offset of the record in the log.
        offset: usize,
        /// TPM_ALG_* identifier.
        algorithm: u16,
    },
    /// A record carries two digests of one algorithm.
    DuplicateDigest {
        /// Offset of the record in the log.
        offset: usize,
        /// TPM_ALG_* identifier.
        algorithm: u16,
    },
}

/// Why a log cannot be replayed into RTMR values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayError {
    /// The header does not list SHA-384, the only digest a TDX register is extended with.
    NoSha384,
    /// An extending record has no SHA-384 digest.
    MissingSha384 {
        /// Offset of the record in the log.
        offset: usize,
    },
    /// A record extends a register index past RTMR\[3\] (MRTD is 0, RTMR\[3\] is 4).
    BadMrIndex {
        /// Offset of the record in the log.
        offset: usize,
        /// The index.
        mr_index: u32,
    },
}

impl<'a> EventLog<'a> {
    /// Parses the log in `log_area` (the whole area: the fill after the records is expected).
    pub fn parse(log_area: &'a [u8]) -> Result<EventLog<'a>, EventLogError> {
        let spec = SpecIdEvent::parse(log_area)?;
        let mut at = spec.record_len;
        let mut count = 0;
        let end = loop {
            match read_record(log_area, at, &spec)? {
                Next::Record(_, next) => {
                    count += 1;
                    at = next;
                }
                Next::End(end) => break end,
            }
        };
        Ok(EventLog {
            bytes: log_area,
            spec,
            records_end: at,
            count,
            end,
        })
    }

    /// The records after the header, in log order.
    pub fn events(&self) -> impl Iterator<Item = Event<'a>> + use<'a> {
        let (bytes, spec, end) = (self.bytes, self.spec, self.records_end);
        let mut at = spec.record_len;
        core::iter::from_fn(move || {
            if at >= end {
                return None;
            }
            match read_record(bytes, at, &spec) {
                Ok(Next::Record(event, next)) => {
                    at = next;
                    Some(event)
                }
                _ => None,
            }
        })
    }

    /// The RTMR values the log claims: every record that extends (not EV_NO_ACTION, not MRTD)
    /// folds its SHA-384 digest into its register, `RTMR = SHA-384(RTMR || digest)`, from 48
    /// zero bytes.
    pub fn replay(&self) -> Result<[[u8; 48]; 4], ReplayError> {
        if self.spec.digest_size(TPM_ALG_SHA384).is_none() {
            return Err(ReplayError::NoSha384);
        }
        let mut rtmr = [[0u8; 48]; 4];
        for event in self.events() {
            if event.event_type == EV_NO_ACTION || event.mr_index == MR_INDEX_MRTD {
                continue;
            }
            let register = event.rtmr_index().and_then(|i| rtmr.get_mut(i)).ok_or(
                ReplayError::BadMrIndex {
                    offset: event.offset,
                    mr_index: event.mr_index,
                },
            )?;
            let digest = event.sha384().ok_or(ReplayError::MissingSha384 {
                offset: event.offset,
            })?;
            let mut hasher = Sha384::new();
            hasher.update(*register);
            hasher.update(digest);
            register.copy_from_slice(&hasher.finalize());
        }
        Ok(rtmr)
    }

    /// The header: which algorithms the records carry.
    pub fn spec_id(&self) -> &SpecIdEvent<'a> {
        &self.spec
    }

    /// The number of records after the header.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the log has no record after the header.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The log proper: the header and every complete record, without the fill after them.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes.get(..self.records_end).unwrap_or_default()
    }

    /// How the record area ended.
    pub fn end(&self) -> LogEnd {
        self.end
    }
}

impl fmt::Display for EventLogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TruncatedHeader => f.write_str("event log ends inside its header"),
            Self::NotSpecIdHeader => f.write_str("first record is not a \"Spec ID Event03\""),
            Self::BadHeaderIndex(i) => write!(f, "header record index {i} is neither 0 nor 1"),
            Self::BadSpecId => f.write_str("Spec ID structure runs past its event data"),
            Self::BadAlgorithmCount(n) => write!(f, "header lists {n} digest algorithms"),
            Self::BadDigestSize { algorithm, size } => {
                write!(f, "algorithm {algorithm:#06x} with digest size {size}")
            }
            Self::DuplicateAlgorithm(a) => write!(f, "header lists algorithm {a:#06x} twice"),
            Self::BadDigestCount { offset, count } => {
                write!(f, "record at {offset:#x} has {count} digests")
            }
            Self::UnlistedAlgorithm { offset, algorithm } => write!(
                f,
                "record at {offset:#x} has a digest of unlisted algorithm {algorithm:#06x}"
            ),
            Self::DuplicateDigest { offset, algorithm } => write!(
                f,
                "record at {offset:#x} has two digests of algorithm {algorithm:#06x}"
            ),
        }
    }
}

impl core::error::Error for EventLogError {}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSha384 => f.write_str("the log carries no SHA-384 digests"),
            Self::MissingSha384 { offset } => {
                write!(f, "record at {offset:#x} has no SHA-384 digest")
            }
            Self::BadMrIndex { offset, mr_index } => {
                write!(f, "record at {offset:#x} extends register index {mr_index}")
            }
        }
    }
}

impl core::error::Error for ReplayError {}
