//! The ACPI "CCEL" table: where the firmware's confidential-computing event log lives.
//!
//! ACPI 6.5 (edk2 `EFI_CC_EVENTLOG_ACPI_TABLE`): the 36-byte table header, then
//! `u8 cc_type, u8 cc_subtype, u16 reserved, u64 LAML, u64 LASA`: 56 bytes in all. TDVF
//! allocates the log area as ACPI NVS memory and fills it with 0xFF before it writes the first
//! record. Every field comes from the firmware (and through it, in a TD, from whatever the VMM
//! could influence): the table is checksummed and the area checked to be addressable, nothing
//! more can be known about it until the log is replayed against the RTMRs.

use crate::bytes::{u32_at, u64_at};
use crate::mpwk::rsdp::{SDT_HEADER_LEN, sdt_checksum_ok};
use core::fmt;

/// The table's signature.
pub const CCEL_SIGNATURE: [u8; 4] = *b"CCEL";
/// The table's length: header, CC type and subtype, reserved, LAML, LASA.
pub const CCEL_TABLE_LEN: usize = 56;
/// `cc_type` of an Intel TDX guest (1 is AMD SEV, 3 Arm CCA).
pub const CC_TYPE_TDX: u8 = 2;

/// A parsed CCEL table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ccel {
    /// The confidential-computing technology ([`CC_TYPE_TDX`] for TDX).
    pub cc_type: u8,
    /// Its subtype (0 for TDX).
    pub cc_subtype: u8,
    /// LAML: the length of the log area in bytes.
    pub log_area_minimum_length: u64,
    /// LASA: the physical address of the log area.
    pub log_area_start_address: u64,
    /// The table's revision (1 in edk2).
    pub revision: u8,
}

/// Why a CCEL table was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CcelError {
    /// Fewer bytes than the table needs, or fewer than its header's length says.
    TooShort {
        /// Bytes the table needs.
        needed: usize,
        /// Bytes given.
        have: usize,
    },
    /// The signature is not "CCEL".
    BadSignature([u8; 4]),
    /// The header's length is below 56.
    BadLength(u32),
    /// The bytes of the table do not sum to zero.
    BadChecksum,
    /// LAML is zero, LASA is zero, or the area wraps around the address space.
    BadLogArea {
        /// LASA.
        start: u64,
        /// LAML.
        length: u64,
    },
}

impl Ccel {
    /// Parses a CCEL table: `table` starts at its header (extra bytes after the header's length
    /// are ignored, so a mapping rounded up to a page works).
    pub fn parse(table: &[u8]) -> Result<Ccel, CcelError> {
        let too_short = |needed| CcelError::TooShort {
            needed,
            have: table.len(),
        };
        let header = table
            .get(..SDT_HEADER_LEN)
            .ok_or(too_short(CCEL_TABLE_LEN))?;
        let signature: [u8; 4] = header
            .get(..4)
            .and_then(|s| s.try_into().ok())
            .unwrap_or_default();
        if signature != CCEL_SIGNATURE {
            return Err(CcelError::BadSignature(signature));
        }
        let length = u32_at(header, 4).unwrap_or(0);
        let table_len = usize::try_from(length)
            .ok()
            .filter(|len| *len >= CCEL_TABLE_LEN)
            .ok_or(CcelError::BadLength(length))?;
        let table = table.get(..table_len).ok_or(too_short(table_len))?;
        if !sdt_checksum_ok(table) {
            return Err(CcelError::BadChecksum);
        }
        let field = |offset| table.get(offset).copied().unwrap_or(0);
        let length = u64_at(table, 40).unwrap_or(0);
        let start = u64_at(table, 48).unwrap_or(0);
        if length == 0 || start == 0 || start.checked_add(length).is_none() {
            return Err(CcelError::BadLogArea { start, length });
        }
        Ok(Ccel {
            cc_type: field(36),
            cc_subtype: field(37),
            log_area_minimum_length: length,
            log_area_start_address: start,
            revision: field(8),
        })
    }

    /// The log area as a physical range `[start, end)`.
    pub fn log_area(&self) -> core::ops::Range<u64> {
        self.log_area_start_address
            ..self
                .log_area_start_address
                .saturating_add(self.log_area_minimum_length)
    }
}

impl fmt::Display for CcelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { needed, have } => {
                write!(f, "CCEL table needs {needed} bytes, {have} given")
            }
            Self::BadSignature(sig) => {
                write!(f, "signature {:?} is not \"CCEL\"", sig.escape_ascii())
            }
            Self::BadLength(len) => write!(f, "CCEL length {len} is below {CCEL_TABLE_LEN}"),
            Self::BadChecksum => f.write_str("CCEL checksum mismatch"),
            Self::BadLogArea { start, length } => {
                write!(f, "CCEL log area {start:#x} + {length:#x} is not a range")
            }
        }
    }
}

impl core::error::Error for CcelError {}
