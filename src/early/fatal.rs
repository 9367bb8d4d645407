//! Dying loudly: the message goes to the console and, through ReportFatalError, to the host,
//! which usually records it and stops the TD.
//!
//! ReportFatalError carries 64 bytes in registers, so it needs no shared memory and no #VE
//! handler. The host may ignore it and return: a TD that keeps running after a fatal error is
//! unsafe, so [`fatal`] then halts forever with interrupts blocked.

use super::console::TdxSerial;
use crate::tdcall::TdCall;
use crate::tdcall::vmcall::{FATAL_MESSAGE_SIZE, VmcallError, hlt, report_fatal_error};
use core::fmt::{self, Write};
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

/// Set by the first [`fatal_panic`]: a second panic (one raised while formatting the first
/// message, or on another vCPU meanwhile) must not format again, or a panicking `Display` would
/// recurse until the stack overflows.
static PANICKING: AtomicBool = AtomicBool::new(false);

/// The error code reported for a Rust panic (Linux also reports its panics with code 0).
pub const PANIC_ERROR_CODE: u32 = 0;

/// The error code a kernel may use when [`init`](super::init) refuses the TD.
pub const INIT_ERROR_CODE: u32 = 1;

/// A message of at most 64 bytes, the size ReportFatalError carries, cut on a character boundary.
///
/// Implements [`fmt::Write`]: text past the 64th byte is dropped (never split inside a UTF-8
/// character) and writing never fails, so formatting into it always completes.
#[derive(Clone, Copy)]
pub struct FatalMessage {
    bytes: [u8; FATAL_MESSAGE_SIZE],
    len: usize,
    truncated: bool,
}

impl FatalMessage {
    /// An empty message.
    pub const fn new() -> Self {
        Self {
            bytes: [0; FATAL_MESSAGE_SIZE],
            len: 0,
            truncated: false,
        }
    }

    /// Formats `args` into a new message, truncated to 64 bytes.
    pub fn format(args: fmt::Arguments<'_>) -> Self {
        let mut message = Self::new();
        // `write_str` never fails; an error can only come from a `Display` impl, and then the
        // text written so far is the best message there is.
        let _ = message.write_fmt(args);
        message
    }

    /// The message bytes (valid UTF-8).
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }

    /// The message.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// Whether text was dropped to fit 64 bytes.
    pub const fn is_truncated(&self) -> bool {
        self.truncated
    }
}

impl Default for FatalMessage {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for FatalMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Write for FatalMessage {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.truncated {
            return Ok(());
        }
        let room = FATAL_MESSAGE_SIZE.saturating_sub(self.len);
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1; // Stops at 0 at the latest: offset 0 is always a boundary.
        }
        if let (Some(dst), Some(src)) = (
            self.bytes.get_mut(self.len..self.len + take),
            s.as_bytes().get(..take),
        ) {
            dst.copy_from_slice(src);
            self.len += take;
        }
        if take < s.len() {
            self.truncated = true;
        }
        Ok(())
    }
}

/// Reports a fatal error and returns what the VMM answered; the caller must stop afterwards.
///
/// The whole message goes to COM1 (prefixed with `fatal error {code:#x}: `); its first 64 bytes,
/// cut on a character boundary, go to the host with ReportFatalError. Console failures are
/// ignored: the report is what matters. Usable before any IDT and in any state the kernel is in,
/// as long as `tdx` works.
///
/// Returns the error: the host should not return from ReportFatalError, so even a "success"
/// status is reported as [`VmcallError::Vmm`].
pub fn report_fatal(tdx: &impl TdCall, code: u32, args: fmt::Arguments<'_>) -> VmcallError {
    let mut console = TdxSerial::new(tdx);
    let _ = writeln!(console, "fatal error {code:#x}: {args}");
    let message = FatalMessage::format(args);
    report_fatal_error(tdx, code, message.as_bytes())
}

/// Reports a fatal error (see [`report_fatal`]) and never returns.
pub fn fatal(tdx: &impl TdCall, code: u32, args: fmt::Arguments<'_>) -> ! {
    let _ = report_fatal(tdx, code, args);
    halt_forever(tdx)
}

/// Stops this vCPU for good: interrupts disabled, then HLT through the VMM in a loop, because the
/// VMM may wake the vCPU (or refuse to halt it) and nothing may run afterwards.
pub fn halt_forever(tdx: &impl TdCall) -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        let _ = hlt(tdx, true);
        core::hint::spin_loop();
    }
}

/// The body of a TD kernel's `#[panic_handler]`: reports the panic message and its location
/// with [`PANIC_ERROR_CODE`], then halts forever.
///
/// ```ignore
/// #[panic_handler]
/// fn panic(info: &core::panic::PanicInfo) -> ! {
///     tdx_boot::early::fatal_panic(&tdx_boot::tdcall::Hardware, info)
/// }
/// ```
///
/// The message comes first, so the 64 bytes the host sees hold as much of it as possible. A
/// second panic (nested, or on another vCPU) reports a fixed message without formatting.
pub fn fatal_panic(tdx: &impl TdCall, info: &PanicInfo<'_>) -> ! {
    if PANICKING.swap(true, Ordering::Relaxed) {
        let _ = report_fatal_error(tdx, PANIC_ERROR_CODE, b"second panic while panicking");
        halt_forever(tdx)
    }
    match info.location() {
        Some(at) => fatal(
            tdx,
            PANIC_ERROR_CODE,
            format_args!("{} at {}:{}", info.message(), at.file(), at.line()),
        ),
        None => fatal(tdx, PANIC_ERROR_CODE, format_args!("{}", info.message())),
    }
}
