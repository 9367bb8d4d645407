//! A serial console on a 16550 UART reached through TDVMCALL Instruction.IO.
//!
//! Inside a TD an `in`/`out` instruction raises #VE, so a console built on them needs the #VE
//! handler first. This one asks the VMM directly, and so works from the first instruction of the
//! kernel, in the #VE handler itself, and in a panic.
//!
//! Every register access is a VM exit, so the console makes as few as it can: once the line-status
//! register says the transmitter is empty, a UART whose 16-byte FIFO is known to be on
//! ([`TdxSerial::configure`] enables and verifies it) takes 16 bytes without another look.
//!
//! The VMM is untrusted, also here: the line-status register is polled a bounded number of times
//! ([`LSR_POLL_LIMIT`]); a VMM that never reports the transmitter ready gets the bytes anyway, and
//! after the first such timeout the console stops polling altogether, so a hostile or broken
//! UART costs neither a hang nor a VM exit storm. A VMM that lies about its FIFO can only lose
//! console bytes.

use crate::tdcall::TdCall;
use crate::tdcall::vmcall::{IoSize, VmcallError, io_read, io_write};
use core::fmt;
use core::sync::atomic::{AtomicU16, Ordering};

/// The I/O base of the first PC serial port.
pub const COM1: u16 = 0x3F8;

/// How many times the line-status register is read before a byte is sent without waiting.
///
/// Every read is a TDVMCALL (a VM exit); 256 of them last well over the 87 µs a byte takes at
/// 115200 baud, and an emulated UART is normally ready on the first read.
pub const LSR_POLL_LIMIT: u32 = 256;

/// Register offsets from the UART's base port.
mod reg {
    /// Transmit holding register (write) / divisor latch low (DLAB = 1).
    pub const DATA: u16 = 0;
    /// Interrupt enable / divisor latch high (DLAB = 1).
    pub const IER: u16 = 1;
    /// FIFO control.
    pub const FCR: u16 = 2;
    /// Line control.
    pub const LCR: u16 = 3;
    /// Modem control.
    pub const MCR: u16 = 4;
    /// Line status.
    pub const LSR: u16 = 5;
    /// Interrupt identification (read) at the FIFO control register's offset.
    pub const IIR: u16 = 2;
    /// The highest offset a 16550 decodes.
    pub const LAST: u16 = 7;
}

/// LSR bit 5: the transmit holding register can take a byte.
const LSR_THR_EMPTY: u32 = 1 << 5;
/// LCR: 8 data bits, no parity, one stop bit.
const LCR_8N1: u32 = 0x03;
/// LCR bit 7: the divisor latch is visible at DATA/IER.
const LCR_DLAB: u32 = 0x80;
/// FCR: enable and clear both FIFOs.
const FCR_ENABLE_CLEAR: u32 = 0x07;
/// MCR: DTR and RTS asserted.
const MCR_DTR_RTS: u32 = 0x03;
/// The divisor of 115200 baud from the UART's 1.8432 MHz clock.
const DIVISOR_115200: u32 = 1;
/// IIR bits 7:6: both set when the FIFOs are enabled (a 16550A).
const IIR_FIFO_ENABLED: u32 = 0xC0;
/// The transmit FIFO depth of a 16550A.
const FIFO_DEPTH: u8 = 16;

/// What a console has learned about its UART, kept across short-lived [`TdxSerial`]s (the global
/// console and the logger build one per message).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct SerialState {
    /// The line-status register once timed out: bytes go out without polling.
    pub(super) lsr_unresponsive: bool,
    /// Bytes the transmitter takes after reporting empty: 16 with a verified FIFO, 1 otherwise.
    pub(super) fifo_depth: u8,
}

impl SerialState {
    /// Nothing learned yet: poll before every byte.
    pub(super) const INITIAL: Self = Self {
        lsr_unresponsive: false,
        fifo_depth: 1,
    };

    /// Packs the state into a `u16` for an atomic.
    pub(super) const fn pack(self) -> u16 {
        (self.lsr_unresponsive as u16) << 8 | self.fifo_depth as u16
    }

    /// The inverse of [`SerialState::pack`]; a depth of 0 (never packed) reads as 1.
    pub(super) const fn unpack(raw: u16) -> Self {
        let depth = raw as u8;
        Self {
            lsr_unresponsive: raw >> 8 & 1 != 0,
            fifo_depth: if depth == 0 { 1 } else { depth },
        }
    }
}

/// Why the console could not write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleError {
    /// The VMM (or the module) refused a port write.
    Io(VmcallError),
    /// [`print`] was called before [`install_console`].
    NotInstalled,
}

impl fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "serial console: {e}"),
            Self::NotInstalled => f.write_str("serial console: none installed"),
        }
    }
}

impl core::error::Error for ConsoleError {}

impl From<VmcallError> for ConsoleError {
    fn from(e: VmcallError) -> Self {
        Self::Io(e)
    }
}

/// A 16550 UART driven through TDVMCALL port IO.
///
/// `"\n"` is sent as `"\r\n"`, as terminals expect. Implements [`fmt::Write`].
pub struct TdxSerial<'a, T: TdCall + ?Sized> {
    tdx: &'a T,
    base: u16,
    state: SerialState,
    /// Bytes that may still be written before the line-status register must be read again.
    tx_room: u8,
    last_error: Option<VmcallError>,
}

impl<'a, T: TdCall + ?Sized> TdxSerial<'a, T> {
    /// A console on [`COM1`]. Assumes firmware configured the UART, as TDVF does; see
    /// [`TdxSerial::configure`] otherwise.
    ///
    /// Safe, as is everything the console does: it writes bytes to the VMM through port-IO
    /// TDVMCALLs (which cannot reach private memory; see [`crate::tdcall::vmcall`]) and reads
    /// back only line-status values, which it bounds: a VMM that never reports room costs a
    /// bounded number of polls per byte, not a hang. The bytes written are exposed to the host
    /// by design: write nothing secret to a console.
    pub const fn new(tdx: &'a T) -> Self {
        Self {
            tdx,
            base: COM1,
            state: SerialState::INITIAL,
            tx_room: 0,
            last_error: None,
        }
    }

    /// A console on the UART at I/O port `base`; `None` if its registers would run past port
    /// 0xFFFF.
    pub const fn with_port(tdx: &'a T, base: u16) -> Option<Self> {
        if base.checked_add(reg::LAST).is_none() {
            return None;
        }
        Some(Self {
            tdx,
            base,
            state: SerialState::INITIAL,
            tx_room: 0,
            last_error: None,
        })
    }

    /// The UART's base port.
    pub const fn base(&self) -> u16 {
        self.base
    }

    /// Whether the line-status register once failed to report ready within [`LSR_POLL_LIMIT`]
    /// reads, so that bytes are now sent without polling.
    pub const fn lsr_unresponsive(&self) -> bool {
        self.state.lsr_unresponsive
    }

    /// How many bytes the UART takes each time it reports its transmitter empty: 16 once
    /// [`TdxSerial::configure`] found the FIFO enabled, 1 before.
    pub const fn fifo_depth(&self) -> u8 {
        self.state.fifo_depth
    }

    /// What this console learned about its UART.
    pub(super) const fn state(&self) -> SerialState {
        self.state
    }

    /// Starts from what an earlier console on the same UART learned.
    pub(super) fn set_state(&mut self, state: SerialState) {
        self.state = state;
    }

    /// The error that made the last [`fmt::Write`] call fail, if any.
    pub const fn last_error(&self) -> Option<VmcallError> {
        self.last_error
    }

    /// Programs the UART: 115200 baud, 8N1, FIFOs on, interrupts off, DTR and RTS asserted.
    /// Then reads IIR: if it confirms the FIFOs are on (a 16550A), later writes send 16 bytes
    /// per line-status read instead of one.
    pub fn configure(&mut self) -> Result<(), ConsoleError> {
        let steps = [
            (reg::IER, 0),
            (reg::LCR, LCR_DLAB),
            (reg::DATA, DIVISOR_115200 & 0xff),
            (reg::IER, DIVISOR_115200 >> 8),
            (reg::LCR, LCR_8N1),
            (reg::FCR, FCR_ENABLE_CLEAR),
            (reg::MCR, MCR_DTR_RTS),
        ];
        for (offset, value) in steps {
            self.out(offset, value)?;
        }
        let iir = io_read(&self.tdx, self.port(reg::IIR), IoSize::U8)?;
        self.state.fifo_depth = if iir & IIR_FIFO_ENABLED == IIR_FIFO_ENABLED {
            FIFO_DEPTH
        } else {
            1
        };
        self.tx_room = 0;
        Ok(())
    }

    /// Sends `bytes`, with `"\n"` expanded to `"\r\n"`.
    pub fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), ConsoleError> {
        for &byte in bytes {
            if byte == b'\n' {
                self.write_raw_byte(b'\r')?;
            }
            self.write_raw_byte(byte)?;
        }
        Ok(())
    }

    /// Sends one byte as is, after waiting (boundedly) for the transmitter if the FIFO may be
    /// full.
    pub fn write_raw_byte(&mut self, byte: u8) -> Result<(), ConsoleError> {
        if self.tx_room == 0 {
            self.wait_for_transmitter();
            self.tx_room = self.state.fifo_depth.max(1);
        }
        self.out(reg::DATA, byte.into())?;
        self.tx_room = self.tx_room.saturating_sub(1);
        Ok(())
    }

    fn wait_for_transmitter(&mut self) {
        if self.state.lsr_unresponsive {
            return;
        }
        for _ in 0..LSR_POLL_LIMIT {
            // A failed read counts as "not ready": the loop stays bounded either way.
            if let Ok(lsr) = io_read(&self.tdx, self.port(reg::LSR), IoSize::U8)
                && lsr & LSR_THR_EMPTY != 0
            {
                return;
            }
            core::hint::spin_loop();
        }
        self.state.lsr_unresponsive = true;
    }

    fn out(&self, offset: u16, value: u32) -> Result<(), ConsoleError> {
        io_write(&self.tdx, self.port(offset), IoSize::U8, value).map_err(ConsoleError::Io)
    }

    /// `base + offset`; cannot overflow because the constructors checked `base + reg::LAST`.
    fn port(&self, offset: u16) -> u16 {
        self.base.wrapping_add(offset)
    }
}

impl<T: TdCall + ?Sized> fmt::Write for TdxSerial<'_, T> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match self.write_bytes(s.as_bytes()) {
            Ok(()) => Ok(()),
            Err(ConsoleError::Io(e)) => {
                self.last_error = Some(e);
                Err(fmt::Error)
            }
            Err(ConsoleError::NotInstalled) => Err(fmt::Error),
        }
    }
}

/// The console shared by the whole kernel, for use where no `TdxSerial` can be passed down
/// (panic handlers, logging).
struct GlobalConsole {
    tdx: spin::Once<&'static (dyn TdCall + Sync)>,
    /// Keeps lines from different CPUs apart; never required for memory safety.
    lock: spin::Mutex<()>,
    /// The packed [`SerialState`].
    state: AtomicU16,
}

static CONSOLE: GlobalConsole = GlobalConsole {
    tdx: spin::Once::new(),
    lock: spin::Mutex::new(()),
    state: AtomicU16::new(SerialState::INITIAL.pack()),
};

/// How many times [`print`] tries the console lock before writing without it.
const LOCK_ATTEMPTS: u32 = 1 << 20;

/// Installs the global console on COM1 through `tdx`. Only the first call installs; the return
/// value says whether this one did.
pub fn install_console(tdx: &'static (dyn TdCall + Sync)) -> bool {
    let mut installed = false;
    CONSOLE.tdx.call_once(|| {
        installed = true;
        tdx
    });
    installed
}

/// The TDCALL implementation of the global console, if one is installed.
pub fn installed_console() -> Option<&'static (dyn TdCall + Sync)> {
    CONSOLE.tdx.get().copied()
}

/// Programs the global console's UART (see [`TdxSerial::configure`]) and remembers whether its
/// FIFO is on.
pub fn configure_console() -> Result<(), ConsoleError> {
    let tdx = installed_console().ok_or(ConsoleError::NotInstalled)?;
    let _guard = CONSOLE.lock.try_lock();
    let mut serial = TdxSerial::new(tdx);
    serial.set_state(SerialState::unpack(CONSOLE.state.load(Ordering::Relaxed)));
    serial.configure()?;
    CONSOLE
        .state
        .store(serial.state().pack(), Ordering::Relaxed);
    Ok(())
}

/// Writes `args` to the global console.
///
/// Takes the console lock if it can within a bounded number of attempts, and writes without it
/// otherwise: the holder may be this very CPU, interrupted by a panic or an NMI in the middle of
/// a line, and a garbled line is better than a deadlock that hides the panic message.
pub fn print(args: fmt::Arguments<'_>) -> Result<(), ConsoleError> {
    let tdx = installed_console().ok_or(ConsoleError::NotInstalled)?;
    let mut guard = None;
    for _ in 0..LOCK_ATTEMPTS {
        guard = CONSOLE.lock.try_lock();
        if guard.is_some() {
            break;
        }
        core::hint::spin_loop();
    }
    let mut serial = TdxSerial::new(tdx);
    serial.set_state(SerialState::unpack(CONSOLE.state.load(Ordering::Relaxed)));
    let result = fmt::write(&mut serial, args);
    CONSOLE
        .state
        .store(serial.state().pack(), Ordering::Relaxed);
    drop(guard);
    match (result, serial.last_error) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(e)) => Err(ConsoleError::Io(e)),
        // A formatting error from a `Display` impl, not the console's fault.
        (Err(_), None) => Ok(()),
    }
}
