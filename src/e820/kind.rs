//! What a range of physical memory is, and which claim wins when sources disagree.

/// The kind of a range of guest-physical memory.
///
/// # Precedence
///
/// When two sources describe the same bytes differently, [`MemoryMap`](super::MemoryMap) keeps the
/// more restrictive kind, so memory is never handed out as usable because one source forgot a
/// restriction another source stated. From weakest to strongest:
///
/// 1. [`Usable`](Self::Usable): accepted RAM the kernel may use.
/// 2. [`Unaccepted`](Self::Unaccepted): RAM that must be accepted (TDG.MEM.PAGE.ACCEPT) first;
///    touching it before that kills the TD, so it beats `Usable`.
/// 3. [`AcpiReclaimable`](Self::AcpiReclaimable): holds ACPI tables until the OS has read them.
/// 4. [`Persistent`](Self::Persistent): RAM whose contents outlive a reboot; not general memory.
/// 5. [`AcpiNvs`](Self::AcpiNvs): firmware state that must be preserved forever.
/// 6. [`Reserved`](Self::Reserved): firmware-owned, purpose unknown; never touch.
/// 7. [`Unusable`](Self::Unusable): RAM with errors; never touch.
/// 8. [`Mmio`](Self::Mmio): not RAM at all; accepting it or using it as RAM is always wrong.
///
/// Every kind above `Unaccepted` beats both RAM kinds, as the contract requires; the order among
/// the restrictive kinds only decides which label a conflicting range keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegionKind {
    /// Accepted RAM, free for the kernel after firmware hand-off.
    Usable,
    /// Private RAM not yet accepted by the TD (UEFI type 15, HOB resource type 7).
    Unaccepted,
    /// Reserved by firmware or the platform.
    Reserved,
    /// ACPI tables; usable once the kernel no longer needs them.
    AcpiReclaimable,
    /// ACPI non-volatile storage; must be preserved.
    AcpiNvs,
    /// Memory-mapped I/O (device registers), not RAM.
    Mmio,
    /// RAM reported as defective.
    Unusable,
    /// Persistent (non-volatile) memory.
    Persistent,
}

impl RegionKind {
    /// Every kind, weakest first (the precedence order documented on the type).
    pub const ALL_BY_PRECEDENCE: [RegionKind; 8] = [
        RegionKind::Usable,
        RegionKind::Unaccepted,
        RegionKind::AcpiReclaimable,
        RegionKind::Persistent,
        RegionKind::AcpiNvs,
        RegionKind::Reserved,
        RegionKind::Unusable,
        RegionKind::Mmio,
    ];

    /// Rank in the precedence order: a higher rank wins an overlap.
    pub const fn precedence(self) -> u8 {
        match self {
            RegionKind::Usable => 0,
            RegionKind::Unaccepted => 1,
            RegionKind::AcpiReclaimable => 2,
            RegionKind::Persistent => 3,
            RegionKind::AcpiNvs => 4,
            RegionKind::Reserved => 5,
            RegionKind::Unusable => 6,
            RegionKind::Mmio => 7,
        }
    }

    /// The kind that wins when `self` and `other` describe the same bytes.
    pub const fn stronger(self, other: RegionKind) -> RegionKind {
        if other.precedence() > self.precedence() {
            other
        } else {
            self
        }
    }

    /// True for RAM the kernel may eventually use as ordinary memory (`Usable`, `Unaccepted`).
    pub const fn is_ram(self) -> bool {
        matches!(self, RegionKind::Usable | RegionKind::Unaccepted)
    }
}

#[cfg(test)]
mod tests {
    use super::RegionKind;

    #[test]
    fn precedence_matches_the_documented_order() {
        for (rank, kind) in RegionKind::ALL_BY_PRECEDENCE.iter().enumerate() {
            assert_eq!(usize::from(kind.precedence()), rank, "{kind:?}");
        }
    }

    #[test]
    fn restrictive_kinds_beat_ram_and_unaccepted_beats_usable() {
        use RegionKind::*;
        for strong in [
            Reserved,
            AcpiReclaimable,
            AcpiNvs,
            Mmio,
            Unusable,
            Persistent,
        ] {
            assert_eq!(Usable.stronger(strong), strong);
            assert_eq!(strong.stronger(Usable), strong);
            assert_eq!(Unaccepted.stronger(strong), strong);
            assert_eq!(strong.stronger(Unaccepted), strong);
        }
        assert_eq!(Usable.stronger(Unaccepted), Unaccepted);
        assert_eq!(Unaccepted.stronger(Usable), Unaccepted);
    }
}
