//! An IOAPIC driver written as rust-osdev drivers are: volatile accesses to a `#[repr(C)]`
//! register block (IOREGSEL at +0x00, IOWIN at +0x10, each a 32-bit register: the IOAPIC takes
//! only 32-bit accesses). In a TD every access is a #VE that tdx-boot emulates.

use volatile::{VolatilePtr, map_field};

/// Where the IOAPIC sits in a PC (and in QEMU's q35 machine).
pub const IOAPIC_GPA: u64 = 0xfec0_0000;
/// The IOAPIC's index register (which register IOWIN shows).
pub const IOREGSEL: usize = 0x00;
/// The IOAPIC's data window.
pub const IOWIN: usize = 0x10;
/// The index of the version register: version in bits 7..0, the highest redirection entry's
/// index in bits 23..16.
pub const IOAPICVER: u32 = 0x01;
/// The index of redirection entry 0's low half; entry `n` is at `0x10 + 2n` and `0x11 + 2n`.
const REDIRECTION_TABLE: u32 = 0x10;

/// A redirection entry's mask bit.
pub const RTE_MASKED: u64 = 1 << 16;
/// A redirection entry's read-only bits: delivery status (12) and remote IRR (14).
pub const RTE_READ_ONLY: u64 = 1 << 12 | 1 << 14;

#[repr(C)]
struct IoApicRegisters {
    ioregsel: u32,
    _reserved: [u32; 3],
    iowin: u32,
}

static_assertions::const_assert_eq!(core::mem::offset_of!(IoApicRegisters, ioregsel), IOREGSEL);
static_assertions::const_assert_eq!(core::mem::offset_of!(IoApicRegisters, iowin), IOWIN);

/// An IOAPIC's register window.
pub struct IoApic {
    registers: VolatilePtr<'static, IoApicRegisters>,
}

impl IoApic {
    /// # Safety
    ///
    /// `registers` is the start of an IOAPIC register page mapped shared and uncached (or,
    /// without TDX, a shared mapping the #PF handler turns into #VE) for the rest of the run,
    /// and nothing else uses the window while this driver lives.
    pub unsafe fn new(registers: *mut u8) -> Option<Self> {
        let registers = core::ptr::NonNull::new(registers.cast::<IoApicRegisters>())?;
        // SAFETY: the caller's contract: a live device mapping, used by no one else.
        let registers = unsafe { VolatilePtr::new(registers) };
        Some(Self { registers })
    }

    /// Reads register `index`: select it in IOREGSEL, read it from IOWIN (two #VEs in a TD).
    pub fn read(&mut self, index: u32) -> u32 {
        let registers = self.registers;
        map_field!(registers.ioregsel).write(index);
        map_field!(registers.iowin).read()
    }

    /// Writes register `index`.
    pub fn write(&mut self, index: u32, value: u32) {
        let registers = self.registers;
        map_field!(registers.ioregsel).write(index);
        map_field!(registers.iowin).write(value);
    }

    /// Redirection entry `pin`, both halves.
    pub fn redirection(&mut self, pin: u8) -> u64 {
        let low = REDIRECTION_TABLE + 2 * u32::from(pin);
        u64::from(self.read(low)) | u64::from(self.read(low + 1)) << 32
    }

    /// Sets redirection entry `pin`: the high half (the destination) first, so the entry is
    /// never unmasked towards a stale destination.
    pub fn set_redirection(&mut self, pin: u8, entry: u64) {
        let low = REDIRECTION_TABLE + 2 * u32::from(pin);
        self.write(low + 1, (entry >> 32) as u32);
        self.write(low, entry as u32);
    }
}
