//! Lazy acceptance: a bitmap of unaccepted units that any number of CPUs consult and update.
//!
//! Each unit (2 MiB by default, any power of two from 4 KiB) has two bits in the caller's
//! `&[AtomicU64]`, 32 units per word:
//!
//! | pending | claimed | meaning                                                       |
//! |---------|---------|---------------------------------------------------------------|
//! | 0       | 0       | accepted (or never tracked): usable                           |
//! | 1       | 0       | unaccepted: the first CPU to set `claimed` accepts it         |
//! | 1       | 1       | a CPU is accepting it; it clears both bits when done          |
//!
//! Accepted is all-zero, and a count of the pending units sits beside the words, so the fast
//! path of [`UnacceptedBitmap::ensure_accepted`] is one load of the count once everything is
//! accepted (most of a TD's life), and otherwise one more load and a mask test for a range
//! within one unit (the common case, tested with a compare rather than a second shift) or
//! one word (32 units, 64 MiB with 2 MiB units). A CPU claims with one
//! compare-and-swap every unaccepted unit of a word that nobody holds, accepts what it claimed
//! (consecutive units as one range, so 2 MiB ACCEPTs stay possible with small units) before
//! claiming the next word's, releases the units with a release `fetch_and`, and only then
//! waits for units that other CPUs hold. A unit is therefore accepted by exactly one CPU (the
//! claim is one atomic read-modify-write), no CPU waits while there is work it could do
//! itself, and no CPU sits on more than a word of claimed units it is not yet working on. If
//! accepting fails, the units not accepted go back to unaccepted so that another caller may
//! try again.
//!
//! # Memory ordering
//!
//! That a unit is claimed once needs only the atomicity of the compare-and-swap, and it has no
//! ABA hazard: the new value is computed from the whole word it replaces, so a word that
//! changed and changed back yields the same claim, still valid. The orderings carry the ACCEPT
//! itself from the CPU that did it to the CPUs that use the memory: clearing a unit's bits is
//! a release, every load that can see a unit accepted is an acquire, so the module's zeroing
//! happens-before any access through [`UnacceptedBitmap::ensure_accepted`]'s return. Giving
//! a unit back after a failure is a release and the claim an acquire, so a partial ACCEPT by
//! the failed CPU is ordered before whatever the next holder publishes.
//!
//! The count is raised before a unit's pending bit is set and lowered (a release) only after
//! the bit is cleared, so it is never below the number of pending units; a count read as zero
//! (an acquire) therefore means every unit is accepted, and the release sequence of the
//! decrements orders every CPU's ACCEPT before the reader's access, as the word's own
//! acquire would. A reader that sees a stale non-zero count only takes the word path.
//!
//! # Soundness: who promises what
//!
//! Accepting a page that holds live data zeroes it if the host has swapped it for a pending
//! one (see [`super::accept_range`]). The bitmap accepts only units it was told are
//! unaccepted, and tells it with `unsafe` calls: [`UnacceptedBitmap::from_ranges`],
//! [`UnacceptedBitmap::from_memory_map`], [`UnacceptedBitmap::from_efi_table`] and
//! [`UnacceptedBitmap::mark_unaccepted`], whose callers promise that the memory is unaccepted
//! (or given up), that nothing in use lies in it, and that nothing will use it before the
//! bitmap has accepted it. Every other method is safe on the strength of that promise: a
//! unit is accepted by one CPU, once (the claim protocol), its bits are cleared after that
//! ACCEPT, and no safe method sets them again, so the bitmap never accepts a GPA after it has
//! handed it out, whatever the host does. A page the host takes away after that merely
//! faults on access (a denial of service, which the host can always inflict).
//!
//! # Waiting
//!
//! Waiting is spinning on the word (never sleeping, so there is no wake-up to lose). A CPU
//! waits only for units another CPU has claimed, and a holder always lets go: its ACCEPTs end
//! (busy pages are retried [`super::MAX_BUSY_RETRIES`] times, any other refusal gives the
//! units back). The wait is therefore unbounded on purpose: the holder stops only if
//! its vCPU stops, i.e. the host does not schedule it (the host can stall the whole TD anyway;
//! a timeout would turn that into spurious errors, and taking the unit over would break
//! "accepted once"), an interrupt handler on it waits for it (forbidden below), or it panicked
//! in the middle of an ACCEPT (and the kernel with it).
//!
//! # Interrupts
//!
//! [`UnacceptedBitmap::ensure_accepted`] waits for units other CPUs are accepting. If an
//! interrupt handler on a CPU called it while that same CPU was interrupted in the middle of
//! accepting a unit the handler needs, the handler would wait for itself forever. Either call
//! it with interrupts disabled (as Linux does, under a spinlock with IRQs off), or never from
//! interrupt, NMI or #VE context (a page allocator that hands out memory from interrupt context
//! must accept it beforehand, e.g. at free or refill time). ACCEPT itself may be interrupted and
//! resumed by the TDX module; that needs nothing from the guest. Waiting spins with `PAUSE`:
//! a unit takes about a millisecond (512 zeroed 4 KiB pages) to accept.
//!
//! # The guard unit
//!
//! A read that straddles the end of a range (Linux's `load_unaligned_zeropad`, or any
//! word-at-a-time string routine) touches the next page. Into unaccepted memory that is not a
//! recoverable fault but the end of the TD. So, as Linux does, when a range ends exactly on a
//! unit boundary, [`UnacceptedBitmap::ensure_accepted`] also accepts the unit that follows.

use super::range::{AcceptError, HostMappingGuess, accept_range_with};
use super::sync::{AtomicU64, Ordering, spin_wait};
use crate::e820::{MemoryMap, RegionKind};
use crate::tdcall::{PageLevel, TdCall};
use core::fmt;

/// Units tracked by one storage word (two bits each).
pub const UNITS_PER_WORD: u64 = 32;

/// The default unit: 2 MiB, the largest page ACCEPT takes, and Linux's EFI table unit.
pub const DEFAULT_UNIT_SIZE: u64 = 0x20_0000;

const PENDING_BITS: u64 = 0x5555_5555_5555_5555;
/// `UNITS_FROM[i]`: both bits of units `i..32` of a word.
const UNITS_FROM: [u64; 32] = {
    let mut table = [0; 32];
    let mut i = 0;
    while i < 32 {
        table[i] = u64::MAX << (2 * i);
        i += 1;
    }
    table
};
/// `UNIT_BITS[i]`: both bits of unit `i` of a word.
const UNIT_BITS: [u64; 32] = {
    let mut table = [0; 32];
    let mut i = 0;
    while i < 32 {
        table[i] = 3 << (2 * i);
        i += 1;
    }
    table
};
/// `UNITS_UP_TO[i]`: both bits of units `0..=i` of a word.
const UNITS_UP_TO: [u64; 32] = {
    let mut table = [0; 32];
    let mut i = 0;
    while i < 32 {
        table[i] = u64::MAX >> (62 - 2 * i);
        i += 1;
    }
    table
};
const CLAIM_BITS: u64 = PENDING_BITS << 1;
const PAGE_SIZE: u64 = 0x1000;
/// The largest page one ACCEPT takes: claimed runs are kept whole up to its boundaries.
const LARGEST_ACCEPT: u64 = PageLevel::Size2M.bytes();

/// Why a bitmap could not be built or a range not recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitmapError {
    /// The unit size is not a power of two of at least 4 KiB.
    BadUnitSize(u64),
    /// The base is not aligned to the unit size.
    UnalignedBase(u64),
    /// The storage covers more than the 64-bit address space from `base`.
    CoverageOverflow,
    /// An unaccepted range is not 4 KiB aligned or ends before it starts.
    BadRange {
        /// The range's start.
        start: u64,
        /// The range's end (exclusive).
        end: u64,
    },
    /// An unaccepted range extends beyond what the storage covers (give more storage).
    OutsideCoverage {
        /// The range's start.
        start: u64,
        /// The range's end (exclusive).
        end: u64,
    },
    /// Accepting the part of a range that does not fill whole units failed.
    Accept(AcceptError),
}

impl fmt::Display for BitmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadUnitSize(u) => write!(f, "unit size {u:#x} is not a power of two >= 4 KiB"),
            Self::UnalignedBase(b) => write!(f, "bitmap base {b:#x} is not unit aligned"),
            Self::CoverageOverflow => f.write_str("bitmap coverage overflows the address space"),
            Self::BadRange { start, end } => {
                write!(f, "unaccepted range {start:#x}..{end:#x} is malformed")
            }
            Self::OutsideCoverage { start, end } => {
                write!(
                    f,
                    "unaccepted range {start:#x}..{end:#x} is outside the bitmap"
                )
            }
            Self::Accept(e) => write!(f, "accepting a partial unit: {e}"),
        }
    }
}

impl core::error::Error for BitmapError {}

impl From<AcceptError> for BitmapError {
    fn from(e: AcceptError) -> Self {
        Self::Accept(e)
    }
}

/// The bitmap of unaccepted memory, in storage the caller supplies (no allocator needed).
///
/// Memory outside `[base, base + words * 32 * unit_size)` and memory never marked unaccepted
/// counts as accepted.
pub struct UnacceptedBitmap<'a> {
    words: &'a [AtomicU64],
    /// At least the number of pending units (see the module documentation); zero only when
    /// every unit is accepted.
    pending_units: AtomicU64,
    base: u64,
    /// `1 << unit_shift`, kept so that the fast path compares instead of shifting by a
    /// variable count (two or three micro-ops on x86 without BMI2).
    unit_size: u64,
    unit_shift: u32,
    guess: HostMappingGuess,
}

impl fmt::Debug for UnacceptedBitmap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnacceptedBitmap")
            .field("base", &self.base)
            .field("unit_size", &self.unit_size())
            .field("units", &self.units())
            .finish_non_exhaustive()
    }
}

/// What a unit index range `[first, end)` looks like inside one storage word.
struct WordSpan {
    word: usize,
    /// One bit per unit of the word that lies in the span.
    units: u32,
}

impl<'a> UnacceptedBitmap<'a> {
    /// How many storage words cover `[base, end)` with units of `unit_size` (0 if malformed).
    pub const fn words_needed(base: u64, end: u64, unit_size: u64) -> usize {
        if !unit_size.is_power_of_two() || end <= base {
            return 0;
        }
        let units = (end - base).div_ceil(unit_size);
        units.div_ceil(UNITS_PER_WORD) as usize
    }

    /// An empty bitmap (everything accepted) over `storage`, covering
    /// `storage.len() * 32` units of `unit_size` from `base`. Clears `storage`.
    ///
    /// The storage is borrowed exclusively for the bitmap's life: a second bitmap over the same
    /// words, with another base or unit size, would read the first one's marks as units of its
    /// own and accept GPAs nobody vouched for:
    ///
    /// ```compile_fail,E0499
    /// use core::sync::atomic::AtomicU64;
    /// use tdx_boot::accept::UnacceptedBitmap;
    /// let mut words = [AtomicU64::new(0)];
    /// let low = UnacceptedBitmap::new(&mut words, 0, 0x20_0000).unwrap();
    /// let high = UnacceptedBitmap::new(&mut words, 1 << 30, 0x20_0000).unwrap();
    /// # drop((low, high));
    /// ```
    pub fn new(
        storage: &'a mut [AtomicU64],
        base: u64,
        unit_size: u64,
    ) -> Result<Self, BitmapError> {
        if !unit_size.is_power_of_two() || unit_size < PAGE_SIZE {
            return Err(BitmapError::BadUnitSize(unit_size));
        }
        if !base.is_multiple_of(unit_size) {
            return Err(BitmapError::UnalignedBase(base));
        }
        let units = (storage.len() as u64)
            .checked_mul(UNITS_PER_WORD)
            .ok_or(BitmapError::CoverageOverflow)?;
        units
            .checked_mul(unit_size)
            .and_then(|bytes| base.checked_add(bytes))
            .ok_or(BitmapError::CoverageOverflow)?;
        // Relaxed: the bitmap reaches other CPUs only through however the caller shares it
        // (AP wake-up, a lock), which orders these stores before their first load.
        for word in storage.iter() {
            word.store(0, Ordering::Relaxed);
        }
        Ok(Self {
            words: storage,
            pending_units: AtomicU64::new(0),
            base,
            unit_size,
            unit_shift: unit_size.trailing_zeros(),
            guess: HostMappingGuess::new(),
        })
    }

    /// A bitmap recording the unaccepted `ranges` (from the UEFI memory map's type-15 regions,
    /// a TD HOB, or Linux's EFI unaccepted-memory table), as [`Self::new`] then
    /// [`Self::mark_unaccepted`] for each range.
    ///
    /// # Safety
    ///
    /// Every range meets [`Self::mark_unaccepted`]'s contract.
    pub unsafe fn from_ranges(
        tdx: &impl TdCall,
        storage: &'a mut [AtomicU64],
        base: u64,
        unit_size: u64,
        ranges: impl IntoIterator<Item = (u64, u64)>,
    ) -> Result<Self, BitmapError> {
        let bitmap = Self::new(storage, base, unit_size)?;
        for (start, end) in ranges {
            // SAFETY: the caller promises `mark_unaccepted`'s contract for every range.
            unsafe { bitmap.mark_unaccepted(tdx, start, end) }?;
        }
        Ok(bitmap)
    }

    /// A bitmap of the [`RegionKind::Unaccepted`] regions of a sanitized memory map, with
    /// units of `unit_size` from `base` (unit aligned, at or below the first such region).
    ///
    /// # Safety
    ///
    /// Every `Unaccepted` region of `map` meets [`Self::mark_unaccepted`]'s contract: the map
    /// is the firmware's report (e.g. [`crate::e820::read_uefi_memory_map`] or
    /// [`crate::e820::read_td_hob`]), not widened by the kernel, and nothing has accepted or
    /// used those regions since. A [`MemoryMap`] is plain data that safe code can fill with
    /// anything, so the map's type cannot vouch for it.
    pub unsafe fn from_memory_map<const N: usize>(
        tdx: &impl TdCall,
        storage: &'a mut [AtomicU64],
        base: u64,
        unit_size: u64,
        map: &MemoryMap<N>,
    ) -> Result<Self, BitmapError> {
        let unaccepted = map
            .regions()
            .iter()
            .filter(|r| r.kind == RegionKind::Unaccepted)
            .map(|r| (r.start, r.end));
        // SAFETY: the caller promises the contract for every unaccepted region.
        unsafe { Self::from_ranges(tdx, storage, base, unit_size, unaccepted) }
    }

    /// A bitmap with the units and ranges of Linux's EFI unaccepted-memory table (as the EFI
    /// stub leaves it; parsed and validated by [`crate::e820::UnacceptedBitmap::parse`]): its
    /// base and unit size, its set bits as unaccepted ranges.
    ///
    /// # Safety
    ///
    /// Every range the table marks meets [`Self::mark_unaccepted`]'s contract: the table is the
    /// one the previous stage (EFI stub, previous kernel) left, and nothing has accepted or
    /// used its marked memory since. Parsing checks the table's shape, not its truth.
    pub unsafe fn from_efi_table(
        tdx: &impl TdCall,
        storage: &'a mut [AtomicU64],
        table: &crate::e820::UnacceptedBitmap<'_>,
    ) -> Result<Self, BitmapError> {
        let ranges = table.ranges().map(|r| (r.start, r.end));
        // SAFETY: the caller promises the contract for every marked range.
        unsafe { Self::from_ranges(tdx, storage, table.phys_base(), table.unit_size(), ranges) }
    }

    /// Records `[start, end)` (4 KiB aligned, from the firmware: validated) as unaccepted.
    ///
    /// The whole units inside the range are marked; the pieces at either end that share a unit
    /// with memory outside the range are accepted now, since that other memory may be in use
    /// or not be RAM at all (Linux's EFI stub does the same).
    ///
    /// Meant for building the bitmap: while other CPUs may call [`Self::ensure_accepted`] on
    /// the same units, only mark whole units (the eager edges would race with their ACCEPTs).
    ///
    /// # Safety
    ///
    /// Marked memory is accepted (by ACCEPT, which zeroes it if the host has swapped its pages
    /// for pending ones) on its next use through the bitmap, and the edges right now. So the
    /// caller promises that `[start, end)`:
    ///
    /// - is unaccepted (the firmware reported it unaccepted and nothing has accepted it
    ///   since) or has been given up by the kernel;
    /// - holds nothing anyone will read, and nothing (no CPU, device or other acceptance
    ///   path: another bitmap, an [`super::AcceptJob`], [`super::accept_range`]) reads, writes
    ///   or accepts it until this bitmap's [`Self::ensure_accepted`] (or a job or
    ///   [`super::BackgroundAcceptor`] over this bitmap) has accepted it;
    /// - is not memory the bitmap has already handed out: marking a unit again after its use
    ///   began is exactly the misuse that lets a hostile host zero it.
    pub unsafe fn mark_unaccepted(
        &self,
        tdx: &impl TdCall,
        start: u64,
        end: u64,
    ) -> Result<(), BitmapError> {
        if !start.is_multiple_of(PAGE_SIZE) || !end.is_multiple_of(PAGE_SIZE) || start > end {
            return Err(BitmapError::BadRange { start, end });
        }
        if start < self.base || end > self.coverage_end() {
            return Err(BitmapError::OutsideCoverage { start, end });
        }
        let unit = self.unit_size();
        // `end <= coverage_end`, itself a unit multiple that fits in u64: no overflow.
        let first_whole = start.next_multiple_of(unit);
        let end_whole = end - end % unit;
        if first_whole >= end_whole {
            // SAFETY: inside the range the caller promises is unaccepted and unused.
            unsafe { accept_range_with(tdx, start, end, &self.guess) }?;
            return Ok(());
        }
        // SAFETY: as above; both pieces lie inside `[start, end)`.
        unsafe {
            accept_range_with(tdx, start, first_whole, &self.guess)?;
            accept_range_with(tdx, end_whole, end, &self.guess)?;
        }
        let first = self.unit_of(first_whole);
        let last = self.unit_of(end_whole);
        for span in self.word_spans(first, last) {
            if let Some(word) = self.words.get(span.word) {
                let units = spread(span.units);
                // Count first, as if every unit were new, so the count never falls below the
                // pending units; then take back the units that were pending already.
                // Relaxed: a count raised early only sends readers down the word path.
                self.pending_units
                    .fetch_add(u64::from(span.units.count_ones()), Ordering::Relaxed);
                // Release, as every write of a word; marking publishes no memory of its own.
                let before = word.fetch_or(units, Ordering::Release);
                let already = u64::from((before & units).count_ones());
                if already != 0 {
                    self.pending_units.fetch_sub(already, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }

    /// The first GPA the bitmap covers.
    pub const fn base(&self) -> u64 {
        self.base
    }

    /// How many units the storage tracks.
    const fn units(&self) -> u64 {
        // Fits: `new` checked `len * 32 * unit_size` against the address space.
        self.words.len() as u64 * UNITS_PER_WORD
    }

    /// The size of one unit in bytes.
    pub const fn unit_size(&self) -> u64 {
        self.unit_size
    }

    /// The end (exclusive) of the covered GPA range.
    pub const fn coverage_end(&self) -> u64 {
        // Checked in `new`.
        self.base + (self.units() << self.unit_shift)
    }

    /// Bytes still unaccepted (units being accepted included).
    pub fn unaccepted_bytes(&self) -> u64 {
        let units: u64 = self
            .words
            .iter()
            // Relaxed: a figure for logs; nothing is accessed on the strength of it.
            .map(|w| u64::from((w.load(Ordering::Relaxed) & PENDING_BITS).count_ones()))
            .sum();
        units << self.unit_shift
    }

    /// Whether any unit `ensure_accepted(start, end)` would have to accept (guard unit
    /// included) is still unaccepted. A few atomic loads.
    #[inline]
    pub fn needs_accept(&self, start: u64, end: u64) -> bool {
        if start >= end || self.known_accepted(start, end) {
            return false;
        }
        match self.guarded_units(start, end) {
            Some((first, last)) => !self.all_accepted(first, last),
            None => false,
        }
    }

    /// Makes `[start, end)` usable: accepts every unaccepted unit it touches, plus the unit
    /// after it when `end` is unit aligned (the guard unit). Any byte range is allowed.
    ///
    /// Safe to call from many CPUs at once on overlapping ranges; see the module documentation
    /// for the protocol and for the rules on interrupts. Returns once every unit is accepted,
    /// by this CPU or another; if this CPU fails to accept a unit, the error names the GPA and
    /// the units it did not accept are left unaccepted for a later retry.
    ///
    /// Safe whatever the arguments and whatever the host does: it accepts only units the
    /// unsafe constructors or [`Self::mark_unaccepted`] marked, each once (see "Soundness" in
    /// the module documentation).
    ///
    /// Cost when nothing needs accepting: one load once the whole bitmap is accepted; two loads
    /// and a mask test for a range inside one unit or one storage word (a range inside one
    /// unit is the cheaper); a loop over the words otherwise.
    #[inline]
    pub fn ensure_accepted(
        &self,
        tdx: &impl TdCall,
        start: u64,
        end: u64,
    ) -> Result<(), AcceptError> {
        if start > end {
            return Err(AcceptError::Reversed { start, end });
        }
        if self.known_accepted(start, end) {
            return Ok(());
        }
        self.ensure_accepted_slow(tdx, start, end)
    }

    /// The fast path for `start <= end`: true when every unit is accepted or when the guarded
    /// units of `[start, end)` lie in one word and are accepted. False says nothing (the slow
    /// path decides).
    ///
    /// The guarded units are `unit_of(start) ..= unit_of(end)`: when `end` is unit aligned,
    /// `unit_of(end)` is the guard unit; otherwise it is the unit holding `end - 1`.
    #[inline(always)]
    fn known_accepted(&self, start: u64, end: u64) -> bool {
        // Acquire, pairing with the release decrements in `complete_units`: zero means every
        // ACCEPT happened-before this load (see the module documentation).
        if self.pending_units.load(Ordering::Acquire) == 0 {
            return true;
        }
        // Most allocations lie inside one unit (and do not end on its boundary, which would
        // guard the next). The base is unit aligned, so `start` and `end` share a unit exactly
        // when they differ only below the unit size: one compare instead of a second shift
        // and a second mask.
        if start ^ end < self.unit_size {
            // Wrapping: a start below the base gives a huge unit that no word holds.
            let unit = start.wrapping_sub(self.base) >> self.unit_shift;
            let Some(word) = usize::try_from(unit / UNITS_PER_WORD)
                .ok()
                .and_then(|index| self.words.get(index))
            else {
                return false;
            };
            // Acquire, as below.
            return word.load(Ordering::Acquire) & UNIT_BITS[(unit % UNITS_PER_WORD) as usize] == 0;
        }
        self.known_accepted_in_word(start, end)
    }

    /// [`Self::known_accepted`] for guarded units spanning more than one unit.
    #[inline(always)]
    fn known_accepted_in_word(&self, start: u64, end: u64) -> bool {
        // Wrapping: a start below the base gives a huge unit that fails the same-word test.
        let first = start.wrapping_sub(self.base) >> self.unit_shift;
        let last = end.wrapping_sub(self.base) >> self.unit_shift;
        if first ^ last >= UNITS_PER_WORD {
            return false;
        }
        let Some(word) = usize::try_from(last / UNITS_PER_WORD)
            .ok()
            .and_then(|index| self.words.get(index))
        else {
            return false;
        };
        // Both bits of units `first % 32 ..= last % 32`, from two tables rather than shifts by
        // a variable count (several micro-ops each on x86 without BMI2, which the crate cannot
        // assume).
        let in_word = |unit: u64| (unit % UNITS_PER_WORD) as usize;
        let mask = UNITS_FROM[in_word(first)] & UNITS_UP_TO[in_word(last)];
        // Acquire, pairing with `complete_units`: the ACCEPT of every unit seen accepted
        // happens-before the caller touches it.
        word.load(Ordering::Acquire) & mask == 0
    }

    /// Everything [`Self::ensure_accepted`] does past its fast path, out of line so that the
    /// fast path inlines into allocators.
    #[inline(never)]
    fn ensure_accepted_slow(
        &self,
        tdx: &impl TdCall,
        start: u64,
        end: u64,
    ) -> Result<(), AcceptError> {
        let Some((first, last)) = self.guarded_units(start, end) else {
            return Ok(());
        };
        if self.all_accepted(first, last) {
            return Ok(());
        }
        self.accept_and_wait(tdx, first, last)
    }

    /// Claims, accepts and waits until every unit of `[first, last)` is accepted.
    fn accept_and_wait(&self, tdx: &impl TdCall, first: u64, last: u64) -> Result<(), AcceptError> {
        loop {
            self.claim_and_accept(tdx, first, last)?;
            if self.all_accepted(first, last) {
                return Ok(());
            }
            // Every remaining unit is held by another CPU (or was just released by one that
            // failed, which the next round claims).
            spin_wait();
        }
    }

    /// Accepts the units in `[start, end)` that nobody holds, without waiting for the others
    /// and without the guard unit: the building block of background and parallel acceptance.
    /// Returns the bytes this call accepted. Safe for the reasons [`Self::ensure_accepted`]
    /// is: it accepts only marked units, through the same claims.
    pub fn accept_unclaimed(
        &self,
        tdx: &impl TdCall,
        start: u64,
        end: u64,
    ) -> Result<u64, AcceptError> {
        if start > end {
            return Err(AcceptError::Reversed { start, end });
        }
        let first = self.unit_of(start.max(self.base)).min(self.units());
        let last = if end <= self.base {
            0
        } else {
            self.unit_of_ceil(end.min(self.coverage_end()))
        };
        if first >= last {
            return Ok(0);
        }
        self.claim_and_accept(tdx, first, last)
    }

    /// The unit index range for `ensure_accepted(start, end)`: the units the bytes touch plus
    /// the guard unit, clamped to the coverage. `None` if empty.
    #[inline]
    fn guarded_units(&self, start: u64, end: u64) -> Option<(u64, u64)> {
        if start >= end || end <= self.base || start >= self.coverage_end() {
            return None;
        }
        let first = self.unit_of(start.max(self.base));
        let mut last = self.unit_of_ceil(end.min(self.coverage_end()));
        if end & (self.unit_size() - 1) == 0 {
            last = last.saturating_add(1);
        }
        Some((first, last.min(self.units())))
    }

    #[inline]
    fn unit_of(&self, gpa: u64) -> u64 {
        (gpa - self.base) >> self.unit_shift
    }

    #[inline]
    fn unit_of_ceil(&self, gpa: u64) -> u64 {
        // Shifts and masks, not a division: this is on the fast path.
        let offset = gpa - self.base;
        (offset >> self.unit_shift) + u64::from(offset & (self.unit_size() - 1) != 0)
    }

    fn gpa_of(&self, unit: u64) -> u64 {
        self.base + (unit << self.unit_shift)
    }

    /// The words of unit range `[first, last)` with the units of each that lie inside.
    #[inline]
    fn word_spans(&self, first: u64, last: u64) -> impl Iterator<Item = WordSpan> {
        let first_word = first / UNITS_PER_WORD;
        let last_word = last.div_ceil(UNITS_PER_WORD);
        (first_word..last_word).map(move |word| {
            let word_first = word * UNITS_PER_WORD;
            let lo = first.saturating_sub(word_first).min(UNITS_PER_WORD);
            let hi = (last - word_first).min(UNITS_PER_WORD);
            WordSpan {
                word: word as usize,
                units: unit_mask(lo, hi),
            }
        })
    }

    #[inline]
    fn all_accepted(&self, first: u64, last: u64) -> bool {
        // Both bits of every unit in the span: one contiguous bit range per word, so no
        // `spread` on the fast path.
        let mut unit = first;
        while unit < last {
            let word = unit / UNITS_PER_WORD;
            let word_first = word * UNITS_PER_WORD;
            let lo = 2 * (unit - word_first);
            let hi = 2 * (last - word_first).min(UNITS_PER_WORD);
            let below = |n: u64| if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
            let mask = below(hi) & !below(lo);
            // Acquire, pairing with `complete_units`: the ACCEPT of every unit seen accepted
            // happens-before the caller touches it.
            match self.words.get(word as usize) {
                Some(w) if w.load(Ordering::Acquire) & mask != 0 => return false,
                _ => {}
            }
            unit = word_first + UNITS_PER_WORD;
        }
        true
    }

    /// One pass over `[first, last)`: claims whatever is unaccepted and unheld, word by word,
    /// and accepts consecutive claimed units as one range. Returns the bytes accepted.
    fn claim_and_accept(
        &self,
        tdx: &impl TdCall,
        first: u64,
        last: u64,
    ) -> Result<u64, AcceptError> {
        let mut accepted = 0;
        // Claimed units not yet accepted, carried across words so runs spanning a word
        // boundary stay one range (2 MiB ACCEPTs with units below 2 MiB).
        let mut run: Option<(u64, u64)> = None;
        for span in self.word_spans(first, last) {
            let mut claimed = self.claim_in_word(span.word, span.units);
            let word_first = span.word as u64 * UNITS_PER_WORD;
            while claimed != 0 {
                let lo = claimed.trailing_zeros();
                let len = (!(claimed >> lo)).trailing_zeros().min(32 - lo);
                claimed &= !unit_mask(u64::from(lo), u64::from(lo + len));
                let piece = (word_first + u64::from(lo), word_first + u64::from(lo + len));
                match run {
                    Some((s, e)) if e == piece.0 => run = Some((s, piece.1)),
                    Some((s, e)) => {
                        if let Err(err) = self.accept_units(tdx, s, e, &mut accepted) {
                            self.release_units(piece.0, piece.1);
                            self.release_word(span.word, claimed);
                            return Err(err);
                        }
                        run = Some(piece);
                    }
                    None => run = Some(piece),
                }
            }
            // Accept the run now if it ends on a 2 MiB boundary rather than claim further
            // words first: a CPU then holds at most one word of units (32 units, or up to
            // 2 MiB of smaller ones) that it is not yet accepting, and a CPU needing a unit
            // further on claims it itself instead of waiting behind the whole range.
            if let Some((s, e)) = run
                && self.gpa_of(e).is_multiple_of(LARGEST_ACCEPT)
            {
                run = None;
                self.accept_units(tdx, s, e, &mut accepted)?;
            }
        }
        if let Some((s, e)) = run {
            self.accept_units(tdx, s, e, &mut accepted)?;
        }
        Ok(accepted)
    }

    /// Sets the claim bit of every unit in `units` that is pending and unclaimed; returns the
    /// units now held by this CPU.
    fn claim_in_word(&self, word: usize, units: u32) -> u32 {
        let Some(w) = self.words.get(word) else {
            return 0;
        };
        let mask = spread(units);
        // Relaxed: a stale value only fails the compare-and-swap below.
        let mut current = w.load(Ordering::Relaxed);
        loop {
            let claimable = current & mask & PENDING_BITS & !((current & CLAIM_BITS) >> 1);
            if claimable == 0 {
                return 0;
            }
            // Acquire on success, pairing with `release_word`: what a previous holder did to
            // the unit before giving it back comes before this CPU's ACCEPT. A claim publishes
            // nothing, so no release; a failed exchange just retries.
            match w.compare_exchange_weak(
                current,
                current | (claimable << 1),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return compact(claimable),
                Err(seen) => current = seen,
            }
        }
    }

    /// Accepts the claimed units `[first, last)` and releases them: accepted units become
    /// accepted, on failure the rest become unaccepted again.
    fn accept_units(
        &self,
        tdx: &impl TdCall,
        first: u64,
        last: u64,
        accepted: &mut u64,
    ) -> Result<(), AcceptError> {
        let (start, end) = (self.gpa_of(first), self.gpa_of(last));
        // SAFETY: this CPU holds the claim on units `[first, last)`, which were marked
        // unaccepted under `mark_unaccepted`'s contract (nothing uses them before they are
        // accepted) and are accepted only here, by their one claimant; their bits are cleared
        // only after this ACCEPT, so no one has been told they are usable.
        match unsafe { accept_range_with(tdx, start, end, &self.guess) } {
            Ok(_) => {
                self.complete_units(first, last);
                *accepted += end - start;
                Ok(())
            }
            Err(err) => {
                let failed_at = match err {
                    AcceptError::Busy { gpa, .. } | AcceptError::Refused { gpa, .. } => {
                        self.unit_of(gpa.clamp(start, end)).clamp(first, last)
                    }
                    AcceptError::Unaligned { .. }
                    | AcceptError::Reversed { .. }
                    | AcceptError::Overflow => first,
                };
                self.complete_units(first, failed_at);
                *accepted += self.gpa_of(failed_at) - start;
                self.release_units(failed_at, last);
                Err(err)
            }
        }
    }

    /// Marks claimed units accepted (release: the ACCEPT happens-before any CPU that sees it),
    /// then lowers the pending count by as many (release: the same, for readers of the count).
    fn complete_units(&self, first: u64, last: u64) {
        for span in self.word_spans(first, last) {
            if let Some(w) = self.words.get(span.word) {
                let units = spread(span.units);
                let before = w.fetch_and(!(units * 0b11), Ordering::Release);
                let cleared = u64::from((before & units).count_ones());
                self.pending_units.fetch_sub(cleared, Ordering::Release);
            }
        }
    }

    /// Gives claimed units back as unaccepted.
    fn release_units(&self, first: u64, last: u64) {
        for span in self.word_spans(first, last) {
            self.release_word(span.word, span.units);
        }
    }

    /// Clears the claim bits of `units` (release: see `claim_in_word`).
    fn release_word(&self, word: usize, units: u32) {
        if let Some(w) = self.words.get(word) {
            w.fetch_and(!(spread(units) << 1), Ordering::Release);
        }
    }
}

/// One bit per unit for units `[lo, hi)` of a word (`hi <= 32`).
#[inline]
fn unit_mask(lo: u64, hi: u64) -> u32 {
    let upto = |n: u64| if n >= 32 { u32::MAX } else { (1u32 << n) - 1 };
    upto(hi) & !upto(lo)
}

/// Moves bit `i` of `x` to bit `2 i` (the pending bit of unit `i`).
#[inline]
fn spread(x: u32) -> u64 {
    let mut x = u64::from(x);
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    (x | (x << 1)) & PENDING_BITS
}

/// The inverse of [`spread`]: bit `2 i` of `x` to bit `i`.
fn compact(x: u64) -> u32 {
    let mut x = x & PENDING_BITS;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x >> 16)) & 0x0000_0000_FFFF_FFFF;
    x as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_and_compact_are_inverse() {
        for x in [0u32, 1, 0x8000_0000, 0xFFFF_FFFF, 0x1234_5678, 0xA5A5_0F0F] {
            assert_eq!(compact(spread(x)), x);
            assert_eq!(spread(x) & CLAIM_BITS, 0);
            assert_eq!(spread(x).count_ones(), x.count_ones());
        }
        assert_eq!(spread(0b101), 0b010001);
    }

    #[test]
    fn unit_tables_hold_both_bits_of_their_units() {
        for i in 0..32u64 {
            let from: u64 = (i..32).map(|u| 0b11 << (2 * u)).sum();
            let up_to: u64 = (0..=i).map(|u| 0b11 << (2 * u)).sum();
            assert_eq!(UNITS_FROM[i as usize], from);
            assert_eq!(UNITS_UP_TO[i as usize], up_to);
        }
    }

    /// The count the fast path trusts equals the pending bits after marking (overlapping and
    /// repeated), accepting and a failure.
    #[cfg(feature = "model")]
    #[test]
    fn the_pending_count_matches_the_pending_bits() {
        use crate::model::{ModelConfig, PageState, TdxModule};
        use crate::tdcall::{TdxStatus, leaf};
        const M2: u64 = 0x20_0000;
        let tdx = TdxModule::new(ModelConfig::default());
        tdx.add_memory(0, 64 * M2, PageState::Unaccepted);
        let cpu = tdx.vcpu(0);
        let mut words: std::vec::Vec<AtomicU64> = (0..2).map(|_| AtomicU64::new(0)).collect();
        let bitmap = UnacceptedBitmap::new(&mut words, 0, M2).unwrap();
        let consistent = |bitmap: &UnacceptedBitmap<'_>| {
            bitmap.pending_units.load(Ordering::Relaxed) == bitmap.unaccepted_bytes() / M2
        };
        // SAFETY: unaccepted model memory that nothing uses.
        unsafe {
            bitmap.mark_unaccepted(&cpu, 30 * M2, 40 * M2).unwrap();
            bitmap.mark_unaccepted(&cpu, 35 * M2, 45 * M2).unwrap();
            bitmap.mark_unaccepted(&cpu, 30 * M2, 40 * M2).unwrap();
        }
        assert!(consistent(&bitmap));
        assert_eq!(bitmap.pending_units.load(Ordering::Relaxed), 15);
        bitmap.ensure_accepted(&cpu, 31 * M2, 33 * M2).unwrap();
        assert!(consistent(&bitmap));
        tdx.inject_tdcall_status(leaf::MEM_PAGE_ACCEPT, TdxStatus::EPT_WALK_FAILED, 1);
        assert!(bitmap.ensure_accepted(&cpu, 36 * M2, 37 * M2).is_err());
        assert!(consistent(&bitmap));
        bitmap.ensure_accepted(&cpu, 0, 64 * M2).unwrap();
        assert_eq!(bitmap.pending_units.load(Ordering::Relaxed), 0);
        assert!(bitmap.known_accepted(0, 64 * M2));
    }

    #[test]
    fn unit_masks_cover_half_open_ranges() {
        assert_eq!(unit_mask(0, 32), u32::MAX);
        assert_eq!(unit_mask(0, 0), 0);
        assert_eq!(unit_mask(3, 5), 0b11000);
        assert_eq!(unit_mask(31, 32), 0x8000_0000);
    }
}
