//! The ACPI MADT ("APIC" table): processors and the multiprocessor wakeup entry.
//!
//! Layout (ACPI 6.4+ §5.2.12): the 36-byte system description table header, then a `u32` local APIC
//! address and `u32` flags, then variable-length entries `{ u8 type, u8 length, .. }` up to the
//! header's length. [`Madt::parse`] validates the signature, the length, the checksum and every
//! entry's length once, so the iterators afterwards never meet a malformed entry.
//!
//! Decisions:
//! - [`Madt::apic_ids`] yields processors whose *Enabled* flag (bit 0) is set. A processor that is not
//!   enabled but *Online Capable* (bit 1, ACPI 6.3+) is listed by [`Madt::processors`] only: a TD has
//!   no CPU hot-add, and TDVF parks only the vCPUs it reports as enabled, so waking an online-capable
//!   one would wait for an acknowledgement that never comes.
//! - The reserved "no processor" IDs (0xFF in a local APIC entry, 0xFFFF_FFFF in an x2APIC entry)
//!   are skipped, as Linux does.
//! - The wakeup entry (type 0x10) follows Linux (`acpi_parse_mp_wake` in
//!   `arch/x86/kernel/acpi/madt_wakeup.c`): its mailbox is used whatever the version, once the
//!   entry has its 16 bytes; the reset vector is taken only from an entry of version >= 1 *and*
//!   at least 24 bytes, and a zero reset vector counts as none. Real firmware needs both halves of
//!   the rule: edk2's TdxDxe wrote version 1 with 16 bytes (no reset vector) from edk2-stable202211
//!   to 202305 (the TDVF in Debian bookworm) and td-shim did until 2023-09, edk2 then wrote version
//!   0 with 16 bytes until 202505, and version 1 with 24 bytes (reset vector, TEST) since 202508.
//!   Refusing the 16-byte version-1 entry would leave every AP of those TDs asleep.
//! - TEST (mailbox command 2) is only sent to an entry of version 1 with a reset vector
//!   ([`MpWakeup::supports_test`]): in edk2 2022.11 to 2025.05 command 2 makes the AP jump to
//!   itself for ever, never acknowledging.
//! - More than one wakeup entry is ambiguous (the spec allows one): [`WakeupUnusable::Duplicate`].

use super::rsdp::{SDT_HEADER_LEN, sdt_checksum_ok};
use crate::bytes::{u16_at, u32_at, u64_at};

/// The table's signature.
pub const MADT_SIGNATURE: [u8; 4] = *b"APIC";

/// Offset of the first interrupt controller entry: SDT header + local APIC address + flags.
pub const MADT_ENTRIES_OFFSET: usize = SDT_HEADER_LEN + 8;

/// Entry type: Processor Local APIC.
pub const ENTRY_LOCAL_APIC: u8 = 0;
/// Entry type: Processor Local x2APIC.
pub const ENTRY_LOCAL_X2APIC: u8 = 9;
/// Entry type: Multiprocessor Wakeup.
pub const ENTRY_MP_WAKEUP: u8 = 0x10;

/// Length of a Processor Local APIC entry.
const LOCAL_APIC_LEN: usize = 8;
/// Length of a Processor Local x2APIC entry.
const LOCAL_X2APIC_LEN: usize = 16;
/// Length of a wakeup entry without reset vector (mailbox version 0, and version 1 as edk2 wrote
/// it until 2023-08).
pub const MP_WAKEUP_LEN_V0: usize = 16;
/// Length of a wakeup entry with reset vector (mailbox version 1 since ACPI 6.6 / edk2 2025.08).
pub const MP_WAKEUP_LEN_V1: usize = 24;
/// The first mailbox version that may carry a reset vector.
pub const MP_WAKEUP_VERSION_V1: u16 = 1;

/// Processor flag: the processor is enabled (usable now).
const FLAG_ENABLED: u32 = 1 << 0;
/// Processor flag (ACPI 6.3+): not enabled now, but can be brought online at run time.
const FLAG_ONLINE_CAPABLE: u32 = 1 << 1;

/// Local APIC ID that means "no processor" in a type-0 entry.
const INVALID_XAPIC_ID: u32 = 0xFF;
/// x2APIC ID that means "no processor" in a type-9 entry.
const INVALID_X2APIC_ID: u32 = 0xFFFF_FFFF;

/// Why a byte slice is not a valid MADT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MadtError {
    /// Fewer bytes than the fixed part of the table (44), or than the header's length says.
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        available: usize,
    },
    /// The signature is not "APIC".
    BadSignature([u8; 4]),
    /// The header's length is smaller than the fixed part of the table.
    BadLength(u32),
    /// The bytes of the table do not sum to zero.
    BadChecksum,
    /// An entry's length is below 2, below its type's minimum, or runs past the table's end.
    BadEntry {
        /// Offset of the entry from the start of the table.
        offset: usize,
        /// The entry's type byte.
        entry_type: u8,
        /// The entry's length byte (0 when the length byte itself is missing).
        length: u8,
    },
}

/// A validated MADT borrowed from its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Madt<'a> {
    /// Exactly the header's length; checksum and entries validated.
    table: &'a [u8],
}

/// One processor entry (type 0 or 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Processor {
    /// Local APIC ID (xAPIC IDs widened) as the mailbox expects it.
    pub apic_id: u32,
    /// ACPI processor UID.
    pub uid: u32,
    /// Enabled flag: usable now.
    pub enabled: bool,
    /// Online Capable flag (ACPI 6.3+): can be enabled at run time; meaningful when not enabled.
    pub online_capable: bool,
    /// True for a type-9 (x2APIC) entry.
    pub x2apic: bool,
}

/// The multiprocessor wakeup mailbox as the MADT describes it, checked usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MpWakeup {
    /// Mailbox version as the entry states it (0 and 1 exist; firmware writes both with 16 bytes).
    pub version: u16,
    /// Physical address of the 4 KiB mailbox page (non-zero, 4 KiB aligned).
    pub mailbox_address: u64,
    /// Where the OS may send an AP back to a firmware loop: only from an entry of version >= 1 and
    /// at least 24 bytes, and never zero (Linux's rule).
    pub reset_vector: Option<u64>,
}

impl MpWakeup {
    /// Whether the firmware behind this entry implements the TEST command (2): only a version-1
    /// entry with a reset vector (edk2 2025.08 and later) does. Firmware that writes 16-byte
    /// entries treats command 2 as "sleep" (edk2 2022.11 to 2025.05: `jmp $`, no
    /// acknowledgement) or ignores it (td-shim), so sending it there loses the AP for good.
    pub fn supports_test(&self) -> bool {
        self.version == MP_WAKEUP_VERSION_V1 && self.reset_vector.is_some()
    }
}

/// Why the MADT's wakeup entry cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WakeupUnusable {
    /// There is no type-0x10 entry.
    Missing,
    /// More than one type-0x10 entry.
    Duplicate,
    /// The mailbox address is zero (also how Linux tells a kexec'd kernel "already used").
    NullMailbox,
    /// The mailbox address is not 4 KiB aligned.
    MisalignedMailbox(u64),
    /// The mailbox page would wrap around the address space.
    MailboxOverflows(u64),
}

/// Minimum length of an entry of a type this module reads; 2 (just the header) for others.
fn minimum_entry_len(entry_type: u8) -> usize {
    match entry_type {
        ENTRY_LOCAL_APIC => LOCAL_APIC_LEN,
        ENTRY_LOCAL_X2APIC => LOCAL_X2APIC_LEN,
        ENTRY_MP_WAKEUP => MP_WAKEUP_LEN_V0,
        _ => 2,
    }
}

impl<'a> Madt<'a> {
    /// Validates `bytes` as a MADT. Bytes past the header's length are ignored.
    pub fn parse(bytes: &'a [u8]) -> Result<Madt<'a>, MadtError> {
        let truncated = |needed| MadtError::Truncated {
            needed,
            available: bytes.len(),
        };
        let signature: [u8; 4] = bytes
            .get(0..4)
            .and_then(|s| s.try_into().ok())
            .ok_or(truncated(MADT_ENTRIES_OFFSET))?;
        if signature != MADT_SIGNATURE {
            return Err(MadtError::BadSignature(signature));
        }
        let length = u32_at(bytes, 4).ok_or(truncated(MADT_ENTRIES_OFFSET))?;
        let table_len = usize::try_from(length).map_err(|_| MadtError::BadLength(length))?;
        if table_len < MADT_ENTRIES_OFFSET {
            return Err(MadtError::BadLength(length));
        }
        let table = bytes.get(..table_len).ok_or(truncated(table_len))?;
        if !sdt_checksum_ok(table) {
            return Err(MadtError::BadChecksum);
        }
        let madt = Madt { table };
        let mut offset = MADT_ENTRIES_OFFSET;
        while offset < table_len {
            let entry_type = table.get(offset).copied().unwrap_or(0);
            let length = table.get(offset.wrapping_add(1)).copied().unwrap_or(0);
            let bad = MadtError::BadEntry {
                offset,
                entry_type,
                length,
            };
            let len = usize::from(length);
            if len < 2 || len < minimum_entry_len(entry_type) {
                return Err(bad);
            }
            match offset.checked_add(len) {
                Some(next) if next <= table_len => offset = next,
                _ => return Err(bad),
            }
        }
        Ok(madt)
    }

    /// The table's bytes (exactly the header's length).
    pub fn bytes(&self) -> &'a [u8] {
        self.table
    }

    /// Physical address of the local APIC (xAPIC MMIO) from the fixed part of the table.
    pub fn local_apic_address(&self) -> u32 {
        u32_at(self.table, SDT_HEADER_LEN).unwrap_or(0)
    }

    /// The MADT flags (bit 0: PC-AT compatible dual 8259 present).
    pub fn flags(&self) -> u32 {
        u32_at(self.table, SDT_HEADER_LEN + 4).unwrap_or(0)
    }

    /// Every entry as `(type, bytes including the 2-byte header)`.
    pub fn entries(&self) -> Entries<'a> {
        Entries {
            table: self.table,
            offset: MADT_ENTRIES_OFFSET,
        }
    }

    /// Every processor entry (types 0 and 9), enabled or not, except the reserved invalid IDs.
    pub fn processors(&self) -> impl Iterator<Item = Processor> + 'a {
        self.entries()
            .filter_map(|(entry_type, entry)| parse_processor(entry_type, entry))
    }

    /// APIC IDs of the enabled processors (types 0 and 9), in table order, the BSP included.
    ///
    /// A hostile table may repeat an ID; [`super::MpWaker::wake_all`] wakes each ID once.
    pub fn apic_ids(&self) -> impl Iterator<Item = u32> + 'a {
        self.processors()
            .filter(|processor| processor.enabled)
            .map(|processor| processor.apic_id)
    }

    /// The wakeup mailbox, or why it cannot be used.
    pub fn wakeup(&self) -> Result<MpWakeup, WakeupUnusable> {
        let mut wakeup_entries = self
            .entries()
            .filter(|(entry_type, _)| *entry_type == ENTRY_MP_WAKEUP)
            .map(|(_, entry)| entry);
        let entry = wakeup_entries.next().ok_or(WakeupUnusable::Missing)?;
        if wakeup_entries.next().is_some() {
            return Err(WakeupUnusable::Duplicate);
        }
        parse_wakeup(entry)
    }

    /// The wakeup mailbox if the MADT describes a usable one (see [`Madt::wakeup`] for why not).
    pub fn mailbox(&self) -> Option<MpWakeup> {
        self.wakeup().ok()
    }
}

fn parse_processor(entry_type: u8, entry: &[u8]) -> Option<Processor> {
    let (apic_id, uid, flags, x2apic) = match entry_type {
        ENTRY_LOCAL_APIC => {
            let uid = u32::from(*entry.get(2)?);
            let apic_id = u32::from(*entry.get(3)?);
            if apic_id == INVALID_XAPIC_ID {
                return None;
            }
            (apic_id, uid, u32_at(entry, 4)?, false)
        }
        ENTRY_LOCAL_X2APIC => {
            let apic_id = u32_at(entry, 4)?;
            if apic_id == INVALID_X2APIC_ID {
                return None;
            }
            (apic_id, u32_at(entry, 12)?, u32_at(entry, 8)?, true)
        }
        _ => return None,
    };
    Some(Processor {
        apic_id,
        uid,
        enabled: flags & FLAG_ENABLED != 0,
        online_capable: flags & FLAG_ONLINE_CAPABLE != 0,
        x2apic,
    })
}

fn parse_wakeup(entry: &[u8]) -> Result<MpWakeup, WakeupUnusable> {
    let length = entry.len();
    // `parse` guarantees at least MP_WAKEUP_LEN_V0 bytes; treat a short slice as missing anyway.
    let version = u16_at(entry, 2).ok_or(WakeupUnusable::Missing)?;
    let mailbox_address = u64_at(entry, 8).ok_or(WakeupUnusable::Missing)?;
    let reset_vector = u64_at(entry, 16).filter(|&vector| {
        version >= MP_WAKEUP_VERSION_V1 && length >= MP_WAKEUP_LEN_V1 && vector != 0
    });
    if mailbox_address == 0 {
        return Err(WakeupUnusable::NullMailbox);
    }
    if mailbox_address % super::mailbox::MAILBOX_SIZE as u64 != 0 {
        return Err(WakeupUnusable::MisalignedMailbox(mailbox_address));
    }
    if mailbox_address
        .checked_add(super::mailbox::MAILBOX_SIZE as u64)
        .is_none()
    {
        return Err(WakeupUnusable::MailboxOverflows(mailbox_address));
    }
    Ok(MpWakeup {
        version,
        mailbox_address,
        reset_vector,
    })
}

/// Iterator over a validated MADT's entries: `(type, entry bytes)`.
#[derive(Clone, Debug)]
pub struct Entries<'a> {
    table: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for Entries<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let entry_type = *self.table.get(self.offset)?;
        let len = usize::from(*self.table.get(self.offset.checked_add(1)?)?);
        let end = self.offset.checked_add(len)?;
        // `parse` checked every length; a zero length would loop, so stop defensively.
        if len < 2 {
            self.offset = self.table.len();
            return None;
        }
        let entry = self.table.get(self.offset..end)?;
        self.offset = end;
        Some((entry_type, entry))
    }
}

impl core::fmt::Display for MadtError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Truncated { needed, available } => {
                write!(f, "MADT truncated: {available} bytes, {needed} needed")
            }
            Self::BadSignature(sig) => write!(f, "not a MADT: signature {:?}", sig.escape_ascii()),
            Self::BadLength(len) => write!(f, "MADT length {len} is below its fixed part"),
            Self::BadChecksum => f.write_str("MADT checksum mismatch"),
            Self::BadEntry {
                offset,
                entry_type,
                length,
            } => write!(
                f,
                "malformed MADT entry at offset {offset}: type {entry_type:#x}, length {length}"
            ),
        }
    }
}

impl core::error::Error for MadtError {}

impl core::fmt::Display for WakeupUnusable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Missing => f.write_str("the MADT has no multiprocessor wakeup entry"),
            Self::Duplicate => {
                f.write_str("the MADT has more than one multiprocessor wakeup entry")
            }
            Self::NullMailbox => f.write_str("the wakeup mailbox address is zero"),
            Self::MisalignedMailbox(a) => write!(f, "wakeup mailbox {a:#x} is not 4 KiB aligned"),
            Self::MailboxOverflows(a) => write!(f, "wakeup mailbox {a:#x} wraps the address space"),
        }
    }
}

impl core::error::Error for WakeupUnusable {}
