//! The kernel's own records, in the firmware log's format: a writer that continues a log.
//!
//! Where the kernel's records live is the kernel's choice; tdx-boot's is "a log of the kernel's
//! own that continues the firmware's": [`EventLogWriter::continue_log`] copies the firmware's
//! header and records (not its fill) into a buffer the kernel owns and appends there. The result
//! is one ordinary CC event log that any parser reads (this crate's, go-eventlog, tpm2-tools) and
//! that replays to the RTMRs of every later TDREPORT. The firmware's area stays as the firmware
//! left it, so a later reader of CCEL (a kexec'd kernel, a dump) still finds a valid log.
//!
//! Each record carries a digest for every algorithm the header lists (the TCG rule), computed
//! here; an algorithm this crate cannot compute (SHA-1, SM3) makes the log unwritable rather
//! than wrong.

use super::algorithm::{MAX_DIGEST_SIZE, TPM_ALG_SHA384, hash_into};
use super::event_log::{EventLog, EventLogError};
use super::spec_id::{AlgorithmSize, MAX_ALGORITHMS};
use core::fmt;

/// Appends records to a CC event log in a buffer.
#[derive(Debug)]
pub struct EventLogWriter<'a> {
    buffer: &'a mut [u8],
    len: usize,
    algorithms: [AlgorithmSize; MAX_ALGORITHMS],
    algorithm_count: usize,
    records: usize,
}

/// Why a record (or the log) could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogWriteError {
    /// The buffer has no room for it (bytes needed beyond what is used, bytes free).
    Full {
        /// Bytes the record needs.
        needed: usize,
        /// Bytes left.
        free: usize,
    },
    /// The header lists an algorithm this crate cannot compute.
    UnsupportedAlgorithm(u16),
    /// The header does not list SHA-384, so no record could extend an RTMR.
    NoSha384,
    /// The buffer does not hold a valid log.
    Log(EventLogError),
    /// The RTMR index is not 0..=3.
    BadRtmrIndex(u8),
}

/// The digests of one measurement, one per algorithm of the log's header.
#[derive(Clone, Copy, Debug)]
pub struct Digests {
    values: [(u16, [u8; MAX_DIGEST_SIZE], usize); MAX_ALGORITHMS],
    count: usize,
    sha384: [u8; 48],
}

impl Digests {
    /// The SHA-384 digest (what the RTMR is extended with).
    pub fn sha384(&self) -> &[u8; 48] {
        &self.sha384
    }
}

impl<'a> EventLogWriter<'a> {
    /// Copies `firmware`'s header and records to the start of `buffer` and appends after them.
    pub fn continue_log(
        buffer: &'a mut [u8],
        firmware: &EventLog<'_>,
    ) -> Result<Self, LogWriteError> {
        let log = firmware.bytes();
        let free = buffer.len();
        buffer
            .get_mut(..log.len())
            .ok_or(LogWriteError::Full {
                needed: log.len(),
                free,
            })?
            .copy_from_slice(log);
        let spec = firmware.spec_id();
        let mut algorithms = [AlgorithmSize::default(); MAX_ALGORITHMS];
        let listed = spec.algorithms();
        for (slot, a) in algorithms.iter_mut().zip(listed) {
            *slot = *a;
        }
        if spec.digest_size(TPM_ALG_SHA384).is_none() {
            return Err(LogWriteError::NoSha384);
        }
        Ok(Self {
            buffer,
            len: log.len(),
            algorithms,
            algorithm_count: listed.len(),
            records: firmware.len(),
        })
    }

    /// Starts a log of its own in `buffer` (for a kernel that found no firmware log): a td-shim
    /// style header (index 0) listing SHA-384 only.
    pub fn new_sha384(buffer: &'a mut [u8]) -> Result<Self, LogWriteError> {
        let mut header = [0u8; 65];
        header[4..8].copy_from_slice(&super::event_type::EV_NO_ACTION.to_le_bytes());
        header[28..32].copy_from_slice(&33u32.to_le_bytes());
        header[32..48].copy_from_slice(super::spec_id::SPEC_ID_SIGNATURE);
        // Platform class 0, spec version 2.0 errata 2, UINTN of two 32-bit words.
        header[52..56].copy_from_slice(&[0, 2, 2, 2]);
        header[56..60].copy_from_slice(&1u32.to_le_bytes());
        header[60..62].copy_from_slice(&TPM_ALG_SHA384.to_le_bytes());
        header[62..64].copy_from_slice(&48u16.to_le_bytes());
        let log = EventLog::parse(&header).map_err(LogWriteError::Log)?;
        Self::continue_log(buffer, &log)
    }

    /// Computes the digests of `measured` for every algorithm of the header.
    pub fn digests_of(&self, measured: &[u8]) -> Result<Digests, LogWriteError> {
        let mut digests = Digests {
            values: [(0, [0; MAX_DIGEST_SIZE], 0); MAX_ALGORITHMS],
            count: self.algorithm_count,
            sha384: [0; 48],
        };
        for (slot, a) in digests.values.iter_mut().zip(self.algorithms()) {
            let size = usize::from(a.digest_size);
            let out = slot.1.get_mut(..size).unwrap_or_default();
            hash_into(a.algorithm, measured, out)
                .ok_or(LogWriteError::UnsupportedAlgorithm(a.algorithm))?;
            *slot = (a.algorithm, slot.1, size);
        }
        hash_into(TPM_ALG_SHA384, measured, &mut digests.sha384).ok_or(LogWriteError::NoSha384)?;
        Ok(digests)
    }

    /// Bytes a record with `event_data` takes.
    pub fn record_len(&self, event_data: &[u8]) -> usize {
        let digests: usize = self
            .algorithms()
            .iter()
            .map(|a| 2 + usize::from(a.digest_size))
            .sum();
        12 + digests + 4 + event_data.len()
    }

    /// Fails with [`LogWriteError::Full`] unless a record with `event_data` fits.
    pub fn check_room(&self, event_data: &[u8]) -> Result<(), LogWriteError> {
        let needed = self.record_len(event_data);
        let free = self.buffer.len().saturating_sub(self.len);
        if needed > free || u32::try_from(event_data.len()).is_err() {
            return Err(LogWriteError::Full { needed, free });
        }
        Ok(())
    }

    /// Appends a record of `digests` for CC register index `mr_index` (RTMR\[i\] is `i + 1`).
    pub fn append(
        &mut self,
        mr_index: u32,
        event_type: u32,
        digests: &Digests,
        event_data: &[u8],
    ) -> Result<(), LogWriteError> {
        self.check_room(event_data)?;
        let mut at = self.len;
        let mut put = |bytes: &[u8]| {
            if let Some(dst) = self.buffer.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
            at += bytes.len();
        };
        put(&mr_index.to_le_bytes());
        put(&event_type.to_le_bytes());
        put(&(digests.count as u32).to_le_bytes());
        for (algorithm, value, size) in digests.values.iter().take(digests.count) {
            put(&algorithm.to_le_bytes());
            put(value.get(..*size).unwrap_or_default());
        }
        put(&(event_data.len() as u32).to_le_bytes());
        put(event_data);
        self.len = at;
        self.records += 1;
        Ok(())
    }

    /// The log so far: header, the firmware's records, the kernel's records.
    pub fn bytes(&self) -> &[u8] {
        self.buffer.get(..self.len).unwrap_or_default()
    }

    /// The number of records after the header.
    pub fn records(&self) -> usize {
        self.records
    }

    fn algorithms(&self) -> &[AlgorithmSize] {
        self.algorithms.get(..self.algorithm_count).unwrap_or(&[])
    }
}

impl fmt::Display for LogWriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full { needed, free } => {
                write!(
                    f,
                    "event log full: a record needs {needed} bytes, {free} free"
                )
            }
            Self::UnsupportedAlgorithm(a) => {
                write!(f, "cannot compute digests of algorithm {a:#06x}")
            }
            Self::NoSha384 => f.write_str("the log carries no SHA-384 digests"),
            Self::Log(e) => write!(f, "not an event log: {e}"),
            Self::BadRtmrIndex(i) => write!(f, "RTMR index {i} is not in 0..=3"),
        }
    }
}

impl core::error::Error for LogWriteError {}
