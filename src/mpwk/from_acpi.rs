//! From the [`acpi`] crate's tables to tdx-boot's validated [`Madt`] and mailbox (feature `acpi`).
//!
//! A kernel that found its ACPI tables with the rust-osdev `acpi` crate (its `Handler` maps the
//! tables, `AcpiTables::from_rsdp` walks the XSDT) gets what [`MpWaker`](super::MpWaker) needs
//! in one call: [`MappedMadt::find`] from the `AcpiTables`, or [`madt_from_mapping`] from a
//! `PhysicalMapping` of the MADT the kernel already holds. The bytes are the ones `acpi` mapped;
//! tdx-boot's [`Madt::parse`] validates them and [`Madt::wakeup`] checks the mailbox.
//!
//! The version is `acpi` 7.0.0-pre1 without default features: it builds on stable Rust (6.x
//! enables `#![feature(allocator_api)]` unconditionally; 7.0's `#![feature(allocator_ext)]` comes
//! only with its `alloc` feature). Without `alloc` the crate has tables and raw structures but
//! no `AcpiPlatform`, so no wake-up code at all.
//!
//! # Why tdx-boot reads the MADT and wakes APs itself
//!
//! Everything in the MADT and the mailbox comes from the VMM or the firmware, and `acpi` trusts
//! it. Read in `acpi` 7.0.0-pre1 (and 5.2.0 where stated):
//!
//! - **A zero-length entry never ends** (every version): `MadtEntryIter::next` advances by the
//!   entry's length byte and subtracts it from what remains. With length 0 neither changes:
//!   an entry of a known type is returned again on every call (a `for` loop over `entries()`
//!   never ends), one of a reserved type (0x11..=0xFF) makes `next` itself spin for ever.
//!   [`Madt::parse`] refuses any entry shorter than 2 bytes ([`MadtError::BadEntry`]).
//! - **Entries shorter than their type are read anyway**: `next` casts the pointer to the
//!   entry's full structure whatever its length, so a 2-byte local APIC entry is read as 8 bytes,
//!   from the next entry or past the table. tdx-boot checks each type's minimum length.
//! - **5.2 underflows on a MADT shorter than its header**: `Madt::entries` computes
//!   `header.length - size_of::<Madt>()` and `next` does `remaining_length -= header.length`
//!   for an entry that runs past the end, both unchecked `u32` subtractions (a panic in a debug
//!   build, gigabytes of "entries" past the table in release). 7.0 saturates both.
//! - **No checksum**: `AcpiTables::find_table` matches the signature and maps the header's
//!   length; `entries` never validates. [`Madt::parse`] checks the checksum.
//! - **The wake-up** (`AcpiPlatform::wake_aps` in 7.0, `platform::wakeup_aps` in 5.2, both behind
//!   `alloc`) writes the APIC ID and the wakeup vector with plain stores between two volatile
//!   stores of the command: volatile orders only against other volatile accesses, so the compiler
//!   may sink the plain stores past the WAKEUP store and an AP may read a stale vector. It then
//!   spins a caller-given number of loop iterations (a count, not a time, so how long it waits
//!   depends on the CPU), and converts the command it reads back with
//!   `MpProtectedModeWakeupCommand::from`, which panics on any value but 0..=3: firmware memory
//!   decides whether the kernel panics. On a timeout it returns with WAKEUP still posted, and
//!   the next call overwrites the mailbox while the late AP may be reading it. It also takes the
//!   first wakeup entry without looking at its version or address. tdx-boot's
//!   [`MpWaker`](super::MpWaker) posts with release atomics, waits with a caller-supplied
//!   budget, treats an unknown command as a typed error and never reuses a mailbox after a
//!   timeout.
//!
//! ```no_run
//! use acpi::{AcpiTables, Handler};
//! use tdx_boot::mpwk::from_acpi::MappedMadt;
//!
//! fn wakeup_mailbox<H: Handler>(tables: &AcpiTables<H>) -> Option<u64> {
//!     let madt = MappedMadt::find(tables).ok()?; // validated, mailbox checked
//!     let _aps: usize = madt.madt().apic_ids().count();
//!     Some(madt.wakeup().mailbox_address) // then check_mailbox_placement, MpWaker::wake_all
//! }
//! ```

use acpi::sdt::madt::Madt as AcpiMadt;
use acpi::{AcpiTables, Handler, PhysicalMapping};

use super::{Madt, MadtError, MpWakeup, WakeupUnusable};

/// Why the `acpi` crate's tables do not give a usable MADT and mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FromAcpiError {
    /// The XSDT/RSDT lists no table with the signature "APIC".
    NoMadt,
    /// The MADT's bytes are not a valid MADT.
    Madt(MadtError),
    /// The MADT is valid but its wakeup entry cannot be used.
    Wakeup(WakeupUnusable),
}

impl core::fmt::Display for FromAcpiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoMadt => f.write_str("the ACPI tables have no MADT"),
            Self::Madt(e) => write!(f, "MADT: {e}"),
            Self::Wakeup(e) => write!(f, "MADT wakeup entry: {e}"),
        }
    }
}

impl core::error::Error for FromAcpiError {}

/// The bytes `acpi` mapped for a MADT: exactly the length the mapping was made with (for
/// `find_table`, the header's length, however short or long the VMM made it).
fn mapped_bytes<H: Handler>(mapping: &PhysicalMapping<H, AcpiMadt>) -> &[u8] {
    let raw = mapping.raw();
    // SAFETY: a `PhysicalMapping` is built from a `RawPhysicalMapping`, whose creator (the
    // kernel's `Handler`, through the unsafe `RawPhysicalMapping::new`) vouches that
    // `region_length` bytes at `virtual_start` are mapped and readable until the mapping is
    // dropped, which the borrow of `mapping` prevents. Only shared access is made, and `&self`
    // on the mapping excludes its `DerefMut`.
    unsafe {
        core::slice::from_raw_parts(
            raw.virtual_start().as_ptr().cast::<u8>(),
            raw.region_length(),
        )
    }
}

/// Validates the MADT `acpi` mapped and its wakeup mailbox: tdx-boot's [`Madt`] borrowing the
/// mapping, and the usable [`MpWakeup`].
pub fn madt_from_mapping<H: Handler>(
    mapping: &PhysicalMapping<H, AcpiMadt>,
) -> Result<(Madt<'_>, MpWakeup), FromAcpiError> {
    let madt = Madt::parse(mapped_bytes(mapping)).map_err(FromAcpiError::Madt)?;
    let wakeup = madt.wakeup().map_err(FromAcpiError::Wakeup)?;
    Ok((madt, wakeup))
}

/// A MADT mapped by `acpi` and validated by tdx-boot, with its usable wakeup mailbox; the
/// mapping is kept (and unmapped by the `Handler` when this is dropped).
pub struct MappedMadt<H: Handler> {
    /// Borrows the mapped memory, not `mapping` itself: the pointer stays valid while `mapping`
    /// lives, wherever this struct moves.
    madt: Madt<'static>,
    wakeup: MpWakeup,
    mapping: PhysicalMapping<H, AcpiMadt>,
}

impl<H: Handler> MappedMadt<H> {
    /// Finds the MADT in `tables` and validates it and its wakeup entry (the first MADT; ACPI
    /// allows one).
    pub fn find(tables: &AcpiTables<H>) -> Result<Self, FromAcpiError> {
        let mapping = tables
            .find_table::<AcpiMadt>()
            .ok_or(FromAcpiError::NoMadt)?;
        Self::new(mapping)
    }

    /// Validates a MADT mapping the kernel already holds, keeping it.
    pub fn new(mapping: PhysicalMapping<H, AcpiMadt>) -> Result<Self, FromAcpiError> {
        let bytes = mapped_bytes(&mapping);
        // SAFETY: the bytes are mapped memory (see `mapped_bytes`), not part of `mapping`'s own
        // storage, and stay mapped until `mapping` is dropped, which happens only when `self` is;
        // `madt` is never handed out for longer than a borrow of `self`.
        let bytes: &'static [u8] =
            unsafe { core::slice::from_raw_parts(bytes.as_ptr(), bytes.len()) };
        let madt = Madt::parse(bytes).map_err(FromAcpiError::Madt)?;
        let wakeup = madt.wakeup().map_err(FromAcpiError::Wakeup)?;
        Ok(Self {
            madt,
            wakeup,
            mapping,
        })
    }

    /// The validated MADT (APIC IDs, entries), borrowing the mapping.
    pub fn madt(&self) -> Madt<'_> {
        self.madt
    }

    /// The wakeup mailbox, checked usable by [`Madt::wakeup`].
    pub fn wakeup(&self) -> MpWakeup {
        self.wakeup
    }

    /// The `acpi` mapping, e.g. for the crate's own view of the other entries.
    pub fn mapping(&self) -> &PhysicalMapping<H, AcpiMadt> {
        &self.mapping
    }

    /// Gives the mapping back (tdx-boot's view ends here).
    pub fn into_mapping(self) -> PhysicalMapping<H, AcpiMadt> {
        self.mapping
    }
}

impl<H: Handler> core::fmt::Debug for MappedMadt<H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MappedMadt")
            .field("madt", &self.madt)
            .field("wakeup", &self.wakeup)
            .finish_non_exhaustive()
    }
}
