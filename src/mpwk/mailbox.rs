//! The multiprocessor wakeup mailbox: one 4 KiB page shared by the OS and the firmware's AP loop.
//!
//! Layout (ACPI 6.4+ §5.2.12.19): `u16 command`, `u16 reserved`, `u32 APIC ID`, `u64 wakeup
//! vector`, 2032 bytes for the OS, 2048 bytes for the firmware. Every access goes through atomics:
//! the page is written by other CPUs (the parked APs) at any time, so no plain Rust reference to
//! its bytes is ever formed, and the OS never touches the firmware half.
//!
//! The page is untrusted (the VMM can write it): values read back are only compared, never used
//! as addresses.
//!
//! The first eight bytes (command, reserved, APIC ID) are one `AtomicU64`. TDVF's AP loop compares
//! the command as a *dword* (so the reserved half must be zero, or WAKEUP is ignored) and
//! acknowledges by zeroing the whole *qword* (command and APIC ID) [edk2
//! OvmfPkg/TdxDxe/X64/ApRunLoop.nasm]. Posting is one aligned 8-byte release store of
//! `APIC ID << 32 | command`: the APIC ID can never be seen after the command, the reserved half is
//! always written as zero, and the OS never tears its own write.
//!
//! TEST (command 2) is posted only through a mailbox bound to a wakeup entry that implements it
//! ([`Mailbox::for_entry`] with [`MpWakeup::supports_test`]): edk2 2022.11 to 2025.05 read command
//! 2 as "sleep" (`jmp $`, never acknowledged), so a TEST there would lose the AP for good.

use core::sync::atomic::{AtomicU64, Ordering};

use super::madt::MpWakeup;

/// Size (and alignment) of the mailbox page.
pub const MAILBOX_SIZE: usize = 4096;
/// Bytes of the OS section after the command, APIC ID and wakeup vector.
pub const MAILBOX_OS_AREA_LEN: usize = 2032;
/// Bytes of the firmware section.
pub const MAILBOX_FIRMWARE_AREA_LEN: usize = 2048;

/// Mailbox commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Command {
    /// Nothing to do; also the AP's acknowledgement.
    Noop = 0,
    /// Wake the AP whose APIC ID is in the mailbox at the wakeup vector.
    Wakeup = 1,
    /// Version 1 with a reset vector (edk2 2025.08 and later): ask the AP to prove it is back in
    /// a firmware loop. Older firmware parks an AP that sees it for ever; see [`Mailbox::post`].
    Test = 2,
}

/// What [`Mailbox::firmware_serve`] found for the polling AP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirmwareRequest {
    /// Nothing for this AP.
    None,
    /// WAKEUP, acknowledged: jump to this vector.
    Wakeup(u64),
    /// TEST, acknowledged: keep looping.
    Tested,
}

/// Why [`Mailbox::post`] refused a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostError {
    /// TEST through a mailbox not bound to a version-1 entry with a reset vector.
    TestUnsupported,
}

impl core::fmt::Display for PostError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TestUnsupported => f.write_str(
                "TEST needs a version-1 wakeup entry with a reset vector: older firmware parks the AP for good",
            ),
        }
    }
}

impl core::error::Error for PostError {}

/// APIC ID that TDVF reads as "no AP"; never a valid target.
pub const APIC_ID_INVALID: u32 = 0xFFFF_FFFF;
/// APIC ID that TDVF reads as "every AP at once"; never used here (one AP at a time).
pub const APIC_ID_BROADCAST: u32 = 0xFFFF_FFFE;

/// The mailbox page, as memory. Used directly as `static` storage by tests and by kernels that
/// play the firmware; real firmware's page is reached through [`Mailbox::from_address`].
#[repr(C, align(4096))]
pub struct MailboxPage {
    /// Bits 15:0 command, 31:16 reserved (zero), 63:32 APIC ID.
    head: AtomicU64,
    wakeup_vector: AtomicU64,
    os_area: [AtomicU64; MAILBOX_OS_AREA_LEN / 8],
    firmware_area: [AtomicU64; MAILBOX_FIRMWARE_AREA_LEN / 8],
}

static_assertions::const_assert_eq!(core::mem::size_of::<MailboxPage>(), MAILBOX_SIZE);
static_assertions::const_assert_eq!(core::mem::align_of::<MailboxPage>(), MAILBOX_SIZE);
static_assertions::const_assert_eq!(core::mem::offset_of!(MailboxPage, wakeup_vector), 8);
static_assertions::const_assert_eq!(core::mem::offset_of!(MailboxPage, firmware_area), 2048);

impl MailboxPage {
    /// A zeroed page (command NOOP).
    pub const fn new() -> Self {
        MailboxPage {
            head: AtomicU64::new(0),
            wakeup_vector: AtomicU64::new(0),
            os_area: [const { AtomicU64::new(0) }; MAILBOX_OS_AREA_LEN / 8],
            firmware_area: [const { AtomicU64::new(0) }; MAILBOX_FIRMWARE_AREA_LEN / 8],
        }
    }
}

impl Default for MailboxPage {
    fn default() -> Self {
        Self::new()
    }
}

/// A handle on a mailbox page (the OS's view plus the firmware loop's, for test harnesses).
#[derive(Clone, Copy)]
pub struct Mailbox<'a> {
    page: &'a MailboxPage,
    /// The firmware behind the page implements TEST (set only by [`Mailbox::for_entry`]).
    supports_test: bool,
}

impl core::fmt::Debug for Mailbox<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Mailbox")
            .field("address", &(self.page as *const MailboxPage))
            .field("command", &self.command_raw())
            .field("apic_id", &self.apic_id())
            .field("supports_test", &self.supports_test)
            .finish()
    }
}

impl Mailbox<'static> {
    /// The mailbox at `address` (a virtual address at which the MADT's mailbox page is mapped).
    ///
    /// # Safety
    /// `address` must be non-null, 4 KiB aligned and map 4096 bytes of writable memory, cached as
    /// normal memory, for the rest of the program, that nothing else accesses except other CPUs
    /// following the mailbox protocol (firmware AP loops) and this crate's atomics. In a TD the
    /// mailbox is private memory in a firmware-reserved or ACPI NVS range: map it private, check
    /// it with [`super::check_mailbox_placement`].
    ///
    /// A real mailbox starts real CPUs: every wake posted through it (by the safe
    /// [`super::MpWaker`]) makes an AP execute the trampoline at the physical address given to
    /// [`super::install_trampoline`] and load the CR3, GDT, IDT, stack and entry of the
    /// [`super::ApBoot`] it is given. The caller therefore also guarantees that every trampoline
    /// used with this mailbox was installed at its true physical address, and that every
    /// `ApBoot` woken through it describes kernel state that is valid for that AP (page tables
    /// that map what the trampoline module lists, a stack used by no one else, an entry function
    /// that is sound to run on it), and that one [`super::MpWaker`] at a time wakes through this
    /// mailbox and through each trampoline (a waker remembers the AP that timed out still owning
    /// its trampoline's slot; a second waker over the same trampoline would not know, and could
    /// overwrite the slot under that AP). Nothing in the safe API can check these.
    pub unsafe fn from_address(address: u64) -> Mailbox<'static> {
        let pointer = address as usize as *const MailboxPage;
        // SAFETY: the caller guarantees a live, aligned, 4096-byte mapping for 'static; every
        // field of `MailboxPage` is an atomic, so a shared reference tolerates concurrent writes
        // by the firmware's CPUs.
        Mailbox {
            page: unsafe { &*pointer },
            supports_test: false,
        }
    }
}

impl<'a> Mailbox<'a> {
    /// A mailbox over memory the caller owns (tests, or a kernel playing the firmware).
    ///
    /// Safe, and so are [`Self::post`] and the firmware-side methods: they only read and write
    /// the page's atomics. A post starts a CPU only if firmware polls the page, and the
    /// firmware's page is reached only through the `unsafe` [`Mailbox::from_address`], whose
    /// contract covers every wake posted through it; a kernel loop that plays the firmware
    /// jumps to a posted vector in its own `unsafe` code, which must trust only its own posts.
    pub fn new(page: &'a MailboxPage) -> Self {
        Mailbox {
            page,
            supports_test: false,
        }
    }

    /// This mailbox as the one `wakeup` describes: TEST becomes available if the entry is
    /// version 1 with a reset vector ([`MpWakeup::supports_test`]). Without it the mailbox
    /// refuses TEST: the safe assumption for firmware whose entry is unknown.
    pub fn for_entry(self, wakeup: &MpWakeup) -> Self {
        Mailbox {
            page: self.page,
            supports_test: wakeup.supports_test(),
        }
    }

    /// Whether [`Mailbox::post`] sends TEST through this mailbox.
    pub fn supports_test(&self) -> bool {
        self.supports_test
    }

    /// Address of the page (as mapped).
    pub fn address(&self) -> u64 {
        self.page as *const MailboxPage as usize as u64
    }

    /// The command field as read (any value a VMM may have written).
    pub fn command_raw(&self) -> u16 {
        (self.page.head.load(Ordering::Acquire) & 0xFFFF) as u16
    }

    /// True when the command is NOOP: the last command was acknowledged.
    pub fn is_idle(&self) -> bool {
        self.command_raw() == Command::Noop as u16
    }

    /// The APIC ID field (TDVF zeroes it with its acknowledgement).
    pub fn apic_id(&self) -> u32 {
        (self.page.head.load(Ordering::Acquire) >> 32) as u32
    }

    /// The wakeup vector field.
    pub fn wakeup_vector(&self) -> u64 {
        self.page.wakeup_vector.load(Ordering::Acquire)
    }

    /// OS side: publishes the vector, then APIC ID and command in one release store, so an AP
    /// that sees the command also sees both fields. Does not wait; see [`super::MpWaker`].
    ///
    /// TEST is refused (nothing written) unless the mailbox was bound to an entry that
    /// implements it with [`Mailbox::for_entry`].
    pub fn post(
        &self,
        command: Command,
        apic_id: u32,
        wakeup_vector: u64,
    ) -> Result<(), PostError> {
        if command == Command::Test && !self.supports_test {
            return Err(PostError::TestUnsupported);
        }
        self.page
            .wakeup_vector
            .store(wakeup_vector, Ordering::Relaxed);
        let head = (u64::from(apic_id) << 32) | command as u64;
        self.page.head.store(head, Ordering::Release);
        Ok(())
    }

    /// Firmware side, as TDVF's AP loop does it: if the command dword is WAKEUP and the APIC ID is
    /// `my_apic_id`, read the vector, acknowledge by zeroing command and APIC ID, and return the
    /// vector to jump to.
    ///
    /// For test harnesses and test kernels that park APs the way TDVF does.
    pub fn firmware_poll(&self, my_apic_id: u32) -> Option<u64> {
        let head = self.page.head.load(Ordering::Acquire);
        if head & 0xFFFF_FFFF != Command::Wakeup as u64 || (head >> 32) as u32 != my_apic_id {
            return None;
        }
        let vector = self.page.wakeup_vector.load(Ordering::Relaxed);
        // The vector is read before the acknowledgement: after NOOP the OS may rewrite it.
        self.page.head.store(0, Ordering::Release);
        Some(vector)
    }

    /// Firmware side as edk2 2025.08's loop (version-1 entry with a reset vector) serves it: a
    /// WAKEUP for `my_apic_id` as [`Mailbox::firmware_poll`]; a TEST for `my_apic_id` is
    /// acknowledged (command and APIC ID zeroed) and the AP keeps looping. Anything else is left
    /// alone, never acknowledged.
    ///
    /// For test harnesses and test kernels that play that firmware.
    pub fn firmware_serve(&self, my_apic_id: u32) -> FirmwareRequest {
        let head = self.page.head.load(Ordering::Acquire);
        if (head >> 32) as u32 != my_apic_id {
            return FirmwareRequest::None;
        }
        if head & 0xFFFF_FFFF == Command::Test as u64 {
            self.page.head.store(0, Ordering::Release);
            return FirmwareRequest::Tested;
        }
        match self.firmware_poll(my_apic_id) {
            Some(vector) => FirmwareRequest::Wakeup(vector),
            None => FirmwareRequest::None,
        }
    }

    /// Firmware side without the wake-up: acknowledge whatever command is pending (models a
    /// firmware or VMM that answers without starting the AP).
    pub fn firmware_acknowledge(&self) {
        self.page.head.store(0, Ordering::Release);
    }

    /// Reads one `u64` of the OS area (`index` < 254), e.g. for diagnostics.
    pub fn os_area_word(&self, index: usize) -> Option<u64> {
        self.page
            .os_area
            .get(index)
            .map(|word| word.load(Ordering::Relaxed))
    }
}
