//! Handing the machine over to a kexec'd kernel: the APs back in the firmware's loop, the memory
//! not yet accepted described for the next kernel, and a MADT that tells it the truth.
//!
//! Linux (`arch/x86/kernel/acpi/madt_wakeup.c`) sends every AP to the version-1 reset vector
//! before kexec, so the next kernel wakes them through the same mailbox. Where the entry has no
//! reset vector (version 0, or version 1 with 16 bytes) the APs cannot go back: Linux then writes
//! 0 into the MADT's mailbox address (a Linux convention, not ACPI's), so the next kernel does not
//! wait for APs that never answer. [`hand_over`] does the same, and also clears the *Enabled* flag
//! of every processor that is not back in the firmware's loop (TEST unanswered), so the next
//! kernel never counts on it.
//!
//! The order for a kernel:
//! 1. on each AP: [`super::return_to_firmware`] (the AP leaves the kernel for good);
//! 2. on the BSP: [`hand_over`] with the MADT's bytes (writable: the table lives in ACPI memory
//!    the next kernel reads), the kernel's memory map and a buffer for Linux's
//!    unaccepted-memory table, whose address the kernel passes on (EFI configuration table
//!    [`crate::e820::UNACCEPTED_TABLE_GUID`]).

use core::ops::Range;

use super::madt::{
    ENTRY_LOCAL_APIC, ENTRY_LOCAL_X2APIC, ENTRY_MP_WAKEUP, MADT_ENTRIES_OFFSET, Madt, MadtError,
};
use super::wake::{MpWaker, WakeError};
use crate::e820::{MemoryMap, UNACCEPTED_UNIT_SIZE, UnacceptedTableError, encode_unaccepted_table};

/// Offset of the checksum byte in an ACPI table header.
const CHECKSUM_OFFSET: usize = 9;
/// Processor flags: Enabled (bit 0) and Online Capable (bit 1).
const FLAGS_ENABLED_OR_ONLINE_CAPABLE: u32 = 0b11;

/// What [`hand_over`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandOverReport {
    /// APs that answered TEST: back in the firmware's loop, ready for the next kernel.
    pub aps_back: usize,
    /// The first AP that is not back, and why (its processor entry is now disabled).
    pub first_not_back: Option<(u32, WakeError)>,
    /// Processor entries whose Enabled flag was cleared.
    pub processors_disabled: usize,
    /// The MADT's mailbox address was set to 0: the entry has no reset vector, so no AP can be
    /// woken by the next kernel.
    pub mailbox_cleared: bool,
    /// Bytes of Linux's unaccepted-memory table written to the caller's buffer.
    pub unaccepted_table_len: usize,
}

/// Why [`hand_over`] stopped; nothing was written to the MADT in either case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandOverError {
    /// The bytes are not a valid MADT.
    Madt(MadtError),
    /// The unaccepted-memory table could not be written (e.g. the buffer is too small).
    Unaccepted(UnacceptedTableError),
}

impl core::fmt::Display for HandOverError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Madt(e) => write!(f, "kexec hand-over: {e}"),
            Self::Unaccepted(e) => write!(f, "kexec hand-over: {e}"),
        }
    }
}

impl core::error::Error for HandOverError {}

/// Hands the machine over to the next kernel (see the module documentation for the order).
///
/// - Every enabled processor of `madt_table` other than `self_apic_id` is asked with TEST whether
///   it is back in the firmware's loop, each within `budget_for(apic_id)` (Linux allows 1 s), if
///   the waker's mailbox supports TEST; without it none can be back.
/// - `map`'s unaccepted memory is written to `unaccepted_out` as Linux's table (2 MiB units); the
///   parts a unit cannot express are passed to `accept_now` first (accept them before jumping).
/// - The MADT is rewritten in place, its checksum fixed: processors not back are disabled, and
///   without a reset vector the mailbox address becomes 0.
///
/// The unaccepted table is written before the MADT is touched, so on error the MADT is as it was.
#[allow(clippy::too_many_arguments)]
pub fn hand_over<const N: usize, K>(
    waker: &mut MpWaker<'_>,
    madt_table: &mut [u8],
    self_apic_id: u32,
    mut budget_for: impl FnMut(u32) -> K,
    map: &MemoryMap<N>,
    unaccepted_out: &mut [u8],
    accept_now: impl FnMut(Range<u64>),
) -> Result<HandOverReport, HandOverError>
where
    K: FnMut() -> bool,
{
    let madt = Madt::parse(madt_table).map_err(HandOverError::Madt)?;
    let table_len = madt.bytes().len();
    let clear_mailbox = madt
        .mailbox()
        .is_some_and(|wakeup| wakeup.reset_vector.is_none());
    let unaccepted_table_len =
        encode_unaccepted_table(map, UNACCEPTED_UNIT_SIZE, unaccepted_out, accept_now)
            .map_err(HandOverError::Unaccepted)?;
    let mut report = HandOverReport {
        aps_back: 0,
        first_not_back: None,
        processors_disabled: 0,
        mailbox_cleared: false,
        unaccepted_table_len,
    };
    let table = madt_table.get_mut(..table_len).unwrap_or_default();
    let mut offset = MADT_ENTRIES_OFFSET;
    // `Madt::parse` checked that the entries tile the table, each at least its type's size.
    while let (Some(&entry_type), Some(&length)) = (table.get(offset), table.get(offset + 1)) {
        let length = usize::from(length).max(2);
        let (id_at, id_len, flags_at) = match entry_type {
            ENTRY_LOCAL_APIC => (offset + 3, 1, offset + 4),
            ENTRY_LOCAL_X2APIC => (offset + 4, 4, offset + 8),
            ENTRY_MP_WAKEUP => {
                if clear_mailbox && let Some(address) = table.get_mut(offset + 8..offset + 16) {
                    address.fill(0);
                    report.mailbox_cleared = true;
                }
                offset += length;
                continue;
            }
            _ => {
                offset += length;
                continue;
            }
        };
        let apic_id = read_le(table, id_at, id_len);
        let flags = read_le(table, flags_at, 4);
        let invalid = apic_id == Some(if id_len == 1 { 0xFF } else { 0xFFFF_FFFF });
        if let (Some(apic_id), Some(flags)) = (apic_id, flags)
            && !invalid
            && flags & 1 != 0
            && apic_id as u32 != self_apic_id
        {
            let apic_id = apic_id as u32;
            match waker.test(apic_id, budget_for(apic_id)) {
                Ok(()) => report.aps_back += 1,
                Err(error) => {
                    report.first_not_back.get_or_insert((apic_id, error));
                    let cleared = flags as u32 & !FLAGS_ENABLED_OR_ONLINE_CAPABLE;
                    if let Some(bytes) = table.get_mut(flags_at..flags_at + 4) {
                        bytes.copy_from_slice(&cleared.to_le_bytes());
                        report.processors_disabled += 1;
                    }
                }
            }
        }
        offset += length;
    }
    fix_checksum(table);
    Ok(report)
}

/// The little-endian value of `len` bytes at `at`, if they exist.
fn read_le(bytes: &[u8], at: usize, len: usize) -> Option<u64> {
    let field = bytes.get(at..at.checked_add(len)?)?;
    Some(
        field
            .iter()
            .rev()
            .fold(0u64, |value, &byte| value << 8 | u64::from(byte)),
    )
}

/// Makes the table's bytes sum to zero again.
fn fix_checksum(table: &mut [u8]) {
    if let Some(checksum) = table.get_mut(CHECKSUM_OFFSET) {
        *checksum = 0;
    }
    let sum = table.iter().fold(0u8, |sum, &byte| sum.wrapping_add(byte));
    if let Some(checksum) = table.get_mut(CHECKSUM_OFFSET) {
        *checksum = 0u8.wrapping_sub(sum);
    }
}
