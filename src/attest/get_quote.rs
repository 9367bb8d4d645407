//! GetQuote: the TDREPORT into a shared buffer, `TDG.VP.VMCALL<GetQuote>`, the wait, the quote out.
//!
//! The buffer is the one Linux's tdx-guest driver and QEMU use (GHCI "`TDG.VP.VMCALL<GetQuote>`"):
//! `u64 version (1), u64 status, u32 in_len, u32 out_len, u8 data[]`. The TD writes the TDREPORT
//! as `data` with `in_len` 1024; the VMM sets `status` to 0xFFFF_FFFF_FFFF_FFFF while it works,
//! then writes the quote over `data`, `out_len`, and the final status. Completion is signalled
//! by the SetupEventNotifyInterrupt vector if the TD set one up; Linux waits for it, polling once
//! a second for at most 30 s. Here the caller's `wait` decides: it returns after one interval
//! (sleeping, or halting until the vector fires) and says whether to keep waiting.
//!
//! The buffer is shared: the VMM may rewrite any byte at any time. Every access is volatile,
//! `out_len` is read once and checked against the buffer, and the quote is copied out to private
//! memory before anything parses it.

use super::quote::{Quote, QuoteError};
use crate::tdcall::vmcall::{VmcallError, get_quote};
use crate::tdcall::{TDREPORT_SIZE, TdCall, TdReport};
use core::fmt;

/// The buffer header's version.
pub const QUOTE_BUFFER_VERSION: u64 = 1;
/// Bytes of the buffer header.
pub const QUOTE_BUFFER_HEADER_LEN: usize = 24;
/// Status: the quote is in the buffer.
pub const GET_QUOTE_SUCCESS: u64 = 0;
/// Status: the VMM is still working.
pub const GET_QUOTE_IN_FLIGHT: u64 = u64::MAX;
/// Status: the request failed.
pub const GET_QUOTE_ERROR: u64 = 0x8000_0000_0000_0000;
/// Status: the host has no quoting service.
pub const GET_QUOTE_SERVICE_UNAVAILABLE: u64 = 0x8000_0000_0000_0001;
/// How often Linux looks at an unsignalled request (milliseconds)...
pub const LINUX_POLL_INTERVAL_MS: u64 = 1_000;
/// ...and how many times before it gives up.
pub const LINUX_POLL_LIMIT: u32 = 30;

/// A page-aligned shared buffer for GetQuote.
#[derive(Debug)]
pub struct QuoteBuffer {
    va: *mut u8,
    shared_gpa: u64,
    len: usize,
}

/// Why no quote came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetQuoteError {
    /// The buffer is not whole pages, or too small for the header and a TDREPORT.
    BadBuffer,
    /// The TDVMCALL failed.
    Vmcall(VmcallError),
    /// Still in flight when `wait` gave up: the VMM owns the buffer until the status changes.
    Timeout,
    /// The host reported an error.
    HostError,
    /// The host has no quoting service.
    ServiceUnavailable,
    /// A status the GHCI does not define.
    UnknownStatus(u64),
    /// `out_len` is larger than the buffer (or than `out`).
    BadLength(u32),
    /// The bytes are not a quote.
    Quote(QuoteError),
}

impl QuoteBuffer {
    /// Wraps the shared buffer at `va`, whose GPA (with the shared bit) is `shared_gpa`.
    ///
    /// # Safety
    ///
    /// `[va, va + len)` must be mapped shared (for the VMM to read and write) at `shared_gpa`,
    /// owned by the caller for as long as the value lives, and not accessed otherwise meanwhile.
    /// After a [`GetQuoteError::Timeout`] the VMM may still write it: the caller must not give
    /// the memory back (or make it private) until its status is no longer in flight.
    pub unsafe fn new(va: *mut u8, shared_gpa: u64, len: usize) -> Result<Self, GetQuoteError> {
        let pages = va.addr().is_multiple_of(4096)
            && shared_gpa.is_multiple_of(4096)
            && len.is_multiple_of(4096);
        if !pages || len < QUOTE_BUFFER_HEADER_LEN + TDREPORT_SIZE || u32::try_from(len).is_err() {
            return Err(GetQuoteError::BadBuffer);
        }
        Ok(Self {
            va,
            shared_gpa,
            len,
        })
    }

    fn write(&mut self, at: usize, bytes: &[u8]) {
        for (i, byte) in bytes.iter().enumerate() {
            if at + i < self.len {
                // SAFETY: inside the buffer `new`'s caller gave us; volatile because the VMM
                // shares it.
                unsafe { self.va.add(at + i).write_volatile(*byte) };
            }
        }
    }

    fn read<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, byte) in out.iter_mut().enumerate() {
            if at + i < self.len {
                // SAFETY: as in `write`.
                *byte = unsafe { self.va.add(at + i).read_volatile() };
            }
        }
        out
    }

    /// The status field as the VMM left it.
    pub fn status(&self) -> u64 {
        u64::from_le_bytes(self.read(8))
    }

    /// Requests a quote of `report`, waits with `wait(attempt)` while it is in flight, copies
    /// the quote into `out` and returns its length there (what `Quote::parse` then says it
    /// occupies, never more than the VMM's `out_len`).
    pub fn request(
        &mut self,
        tdx: &impl TdCall,
        report: &TdReport,
        mut wait: impl FnMut(u32) -> bool,
        out: &mut [u8],
    ) -> Result<usize, GetQuoteError> {
        self.write(0, &QUOTE_BUFFER_VERSION.to_le_bytes());
        self.write(8, &0u64.to_le_bytes());
        self.write(16, &(TDREPORT_SIZE as u32).to_le_bytes());
        self.write(20, &0u32.to_le_bytes());
        self.write(QUOTE_BUFFER_HEADER_LEN, &report.bytes);
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        // SAFETY: `new`'s caller made the buffer shared and ours for the request.
        unsafe { get_quote(tdx, self.shared_gpa, self.len as u64) }
            .map_err(GetQuoteError::Vmcall)?;
        let mut attempt = 0;
        loop {
            match self.status() {
                GET_QUOTE_IN_FLIGHT => {
                    if !wait(attempt) {
                        return Err(GetQuoteError::Timeout);
                    }
                    attempt = attempt.saturating_add(1);
                }
                GET_QUOTE_SUCCESS => break,
                GET_QUOTE_ERROR => return Err(GetQuoteError::HostError),
                GET_QUOTE_SERVICE_UNAVAILABLE => return Err(GetQuoteError::ServiceUnavailable),
                other => return Err(GetQuoteError::UnknownStatus(other)),
            }
        }
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        let out_len = u32::from_le_bytes(self.read(20));
        let len = usize::try_from(out_len)
            .ok()
            .filter(|&n| n <= self.len - QUOTE_BUFFER_HEADER_LEN)
            .ok_or(GetQuoteError::BadLength(out_len))?;
        let copy = out
            .get_mut(..len)
            .ok_or(GetQuoteError::BadLength(out_len))?;
        for (i, byte) in copy.iter_mut().enumerate() {
            *byte = self.read::<1>(QUOTE_BUFFER_HEADER_LEN + i)[0];
        }
        let quote = Quote::parse(copy).map_err(GetQuoteError::Quote)?;
        Ok(quote.len())
    }
}

impl fmt::Display for GetQuoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadBuffer => f.write_str("GetQuote buffer is not whole shared pages"),
            Self::Vmcall(e) => write!(f, "GetQuote: {e}"),
            Self::Timeout => f.write_str("GetQuote still in flight when the wait ended"),
            Self::HostError => f.write_str("the host failed the GetQuote request"),
            Self::ServiceUnavailable => f.write_str("the host has no quoting service"),
            Self::UnknownStatus(s) => write!(f, "GetQuote status {s:#x}"),
            Self::BadLength(n) => write!(f, "GetQuote out_len {n} exceeds the buffer"),
            Self::Quote(e) => write!(f, "GetQuote returned no quote: {e}"),
        }
    }
}

impl core::error::Error for GetQuoteError {}
