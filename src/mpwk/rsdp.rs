//! Finding the MADT from the RSDP: RSDP -> XSDT (or RSDT) -> "APIC", every step validated.
//!
//! The `acpi` crate (5.2 builds on stable without default features) does this and much more, but
//! the whole job is three checksummed structures, so a small walker avoids a dependency and keeps
//! every byte the VMM controls under this crate's validation rules.
//!
//! Physical memory is reached only through the caller's `map(physical_address, length)` closure,
//! which returns the bytes (or `None` when the range is not mapped). Nothing here dereferences a
//! physical address.

use super::madt::{MADT_SIGNATURE, Madt, MadtError};
use crate::bytes::{u32_at, u64_at};

/// Length of the ACPI system description table header.
pub const SDT_HEADER_LEN: usize = 36;
/// Length of an ACPI 1.0 RSDP (checksummed by its first checksum).
const RSDP_V1_LEN: usize = 20;
/// Length of an ACPI 2.0+ RSDP.
const RSDP_V2_LEN: usize = 36;
/// The RSDP's signature.
const RSDP_SIGNATURE: &[u8; 8] = b"RSD PTR ";
/// The XSDT's signature.
const XSDT_SIGNATURE: [u8; 4] = *b"XSDT";
/// The RSDT's signature.
const RSDT_SIGNATURE: [u8; 4] = *b"RSDT";

/// Why a table could not be found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RsdpError {
    /// `map` returned `None` (or fewer bytes than asked) for this physical range.
    Unmapped {
        /// Physical address asked for.
        address: u64,
        /// Length asked for.
        length: usize,
    },
    /// The RSDP's signature is not "RSD PTR ".
    BadRsdpSignature,
    /// The RSDP's checksum (first 20 bytes) or extended checksum (its length) fails.
    BadRsdpChecksum,
    /// The RSDP's length is below 36 bytes for revision 2+.
    BadRsdpLength(u32),
    /// The root table (XSDT or RSDT) has the wrong signature.
    BadRootSignature([u8; 4]),
    /// A table's header length is below 36 bytes (or does not fit `usize`).
    BadTableLength {
        /// Physical address of the table.
        address: u64,
        /// Its header's length.
        length: u32,
    },
    /// A table's checksum fails.
    BadTableChecksum {
        /// Physical address of the table.
        address: u64,
    },
    /// No table with this signature is listed.
    NotFound([u8; 4]),
    /// The "APIC" table was found but is not a valid MADT.
    Madt(MadtError),
}

/// True when `bytes` sum to zero modulo 256 (the ACPI checksum rule).
pub fn sdt_checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte)) == 0
}

/// Calls `map` and insists on getting at least `length` bytes; returns exactly `length` bytes.
fn map_exact<'a, F>(map: &mut F, address: u64, length: usize) -> Result<&'a [u8], RsdpError>
where
    F: FnMut(u64, usize) -> Option<&'a [u8]>,
{
    map(address, length)
        .and_then(|bytes| bytes.get(..length))
        .ok_or(RsdpError::Unmapped { address, length })
}

/// Maps a whole system description table at `address`: header first, then its full length,
/// checksum validated. Returns exactly the header's length of bytes.
pub fn map_table<'a, F>(map: &mut F, address: u64) -> Result<&'a [u8], RsdpError>
where
    F: FnMut(u64, usize) -> Option<&'a [u8]>,
{
    let header = map_exact(map, address, SDT_HEADER_LEN)?;
    let length = u32_at(header, 4).unwrap_or(0);
    let table_len = usize::try_from(length)
        .ok()
        .filter(|len| *len >= SDT_HEADER_LEN)
        .ok_or(RsdpError::BadTableLength { address, length })?;
    let table = map_exact(map, address, table_len)?;
    if !sdt_checksum_ok(table) {
        return Err(RsdpError::BadTableChecksum { address });
    }
    Ok(table)
}

/// Where the root table is and how wide its entries are.
struct Root {
    address: u64,
    signature: [u8; 4],
    entry_size: usize,
}

fn root_from_rsdp<'a, F>(map: &mut F, rsdp_address: u64) -> Result<Root, RsdpError>
where
    F: FnMut(u64, usize) -> Option<&'a [u8]>,
{
    let rsdp = map_exact(map, rsdp_address, RSDP_V1_LEN)?;
    if rsdp.get(..8) != Some(RSDP_SIGNATURE.as_slice()) {
        return Err(RsdpError::BadRsdpSignature);
    }
    if !sdt_checksum_ok(rsdp) {
        return Err(RsdpError::BadRsdpChecksum);
    }
    let revision = rsdp.get(15).copied().unwrap_or(0);
    if revision >= 2 {
        let v2 = map_exact(map, rsdp_address, RSDP_V2_LEN)?;
        let length = u32_at(v2, 20).unwrap_or(0);
        let rsdp_len = usize::try_from(length)
            .ok()
            .filter(|len| *len >= RSDP_V2_LEN)
            .ok_or(RsdpError::BadRsdpLength(length))?;
        let full = map_exact(map, rsdp_address, rsdp_len)?;
        if !sdt_checksum_ok(full) {
            return Err(RsdpError::BadRsdpChecksum);
        }
        let xsdt = u64_at(full, 24).unwrap_or(0);
        if xsdt != 0 {
            return Ok(Root {
                address: xsdt,
                signature: XSDT_SIGNATURE,
                entry_size: 8,
            });
        }
    }
    Ok(Root {
        address: u64::from(u32_at(rsdp, 16).unwrap_or(0)),
        signature: RSDT_SIGNATURE,
        entry_size: 4,
    })
}

/// Finds the table with `signature` listed by the RSDP at `rsdp_address` and returns its bytes
/// (exactly its header's length, checksum validated). Uses the XSDT when the RSDP has one
/// (revision 2+, non-zero address), else the RSDT. The first matching valid table wins; a listed
/// table with the right signature but a bad checksum is an error, not skipped.
pub fn find_table<'a, F>(
    rsdp_address: u64,
    signature: [u8; 4],
    mut map: F,
) -> Result<&'a [u8], RsdpError>
where
    F: FnMut(u64, usize) -> Option<&'a [u8]>,
{
    let root = root_from_rsdp(&mut map, rsdp_address)?;
    let root_table = map_table(&mut map, root.address)?;
    let root_signature: [u8; 4] = root_table
        .get(..4)
        .and_then(|s| s.try_into().ok())
        .unwrap_or([0; 4]);
    if root_signature != root.signature {
        return Err(RsdpError::BadRootSignature(root_signature));
    }
    let entries = root_table.get(SDT_HEADER_LEN..).unwrap_or(&[]);
    for entry in entries.chunks_exact(root.entry_size) {
        let address = match root.entry_size {
            8 => u64_at(entry, 0),
            _ => u32_at(entry, 0).map(u64::from),
        }
        .unwrap_or(0);
        if address == 0 {
            continue;
        }
        let header = map_exact(&mut map, address, SDT_HEADER_LEN)?;
        if header.get(..4) == Some(signature.as_slice()) {
            return map_table(&mut map, address);
        }
    }
    Err(RsdpError::NotFound(signature))
}

/// Finds and parses the MADT ("APIC") from the RSDP at `rsdp_address`.
pub fn find_madt<'a, F>(rsdp_address: u64, map: F) -> Result<Madt<'a>, RsdpError>
where
    F: FnMut(u64, usize) -> Option<&'a [u8]>,
{
    let bytes = find_table(rsdp_address, MADT_SIGNATURE, map)?;
    Madt::parse(bytes).map_err(RsdpError::Madt)
}

impl core::fmt::Display for RsdpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Unmapped { address, length } => {
                write!(
                    f,
                    "cannot map {length} bytes of ACPI memory at {address:#x}"
                )
            }
            Self::BadRsdpSignature => f.write_str("RSDP signature is not \"RSD PTR \""),
            Self::BadRsdpChecksum => f.write_str("RSDP checksum mismatch"),
            Self::BadRsdpLength(len) => write!(f, "RSDP length {len} is below 36"),
            Self::BadRootSignature(sig) => {
                write!(
                    f,
                    "root table signature {:?} is neither XSDT nor RSDT",
                    sig.escape_ascii()
                )
            }
            Self::BadTableLength { address, length } => {
                write!(f, "ACPI table at {address:#x} has invalid length {length}")
            }
            Self::BadTableChecksum { address } => {
                write!(f, "ACPI table at {address:#x}: checksum mismatch")
            }
            Self::NotFound(sig) => write!(f, "no {:?} table is listed", sig.escape_ascii()),
            Self::Madt(e) => write!(f, "invalid MADT: {e}"),
        }
    }
}

impl core::error::Error for RsdpError {}
