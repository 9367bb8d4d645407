//! GetQuote: the host's quoting service.
//!
//! By default the quote is in the buffer when the TDVMCALL returns. A real host answers
//! asynchronously: it marks the buffer in flight (status 0xFFFF_FFFF_FFFF_FFFF), returns, and
//! writes the quote later, then raises the event-notify interrupt if one is set up.
//! [`TdxModule::set_quote_deferred`] makes the model do the same, and
//! [`TdxModule::complete_quotes`] is "later".
//!
//! Checks as QEMU makes them: a non-empty buffer at a shared GPA (else INVALID_OPERAND), 4 KiB
//! aligned (else ALIGN_ERROR), header version 1, at most 128 KiB, `in_len` fitting in the
//! buffer (else INVALID_OPERAND).
//!
//! The buffer starts with the GHCI header
//! `{ u64 version, u64 status, u32 in_len, u32 out_len }` followed by the data: a TDREPORT of
//! `in_len` bytes on input, the quote of `out_len` bytes on output. The quote is a real
//! version-4 TDX quote from the model's quoting enclave ([`super::quoting_enclave`]), signed
//! with test keys; a request whose data is not a TDREPORT of this module's making is answered
//! with [`QUOTE_STATUS_ERROR`], as a real quoting enclave refuses a report it cannot verify.

use super::memory::PAGE_4K;
use super::quoting_enclave::quote_for;
use super::vmcall::{R12, R13, VmmRegs, VmmReply};
use super::{PageState, TdxModule};
use crate::tdcall::VmcallStatus;
use alloc::vec;
use alloc::vec::Vec;

/// The size of the GetQuote header.
pub(crate) const QUOTE_HEADER_SIZE: usize = 24;
/// Buffer status: the quote is ready.
pub const QUOTE_STATUS_SUCCESS: u64 = 0;
/// Buffer status: the request is malformed (bad lengths).
pub const QUOTE_STATUS_ERROR: u64 = 0x8000_0000_0000_0000;
/// Buffer status: the host is working on the request.
pub const QUOTE_STATUS_IN_FLIGHT: u64 = u64::MAX;
/// Buffer status: the host has no quoting service.
pub const QUOTE_STATUS_SERVICE_UNAVAILABLE: u64 = 0x8000_0000_0000_0001;
/// The only header version (`structure_version`).
const QUOTE_VERSION: u64 = 1;
/// The largest buffer the host accepts (QEMU's limit).
const QUOTE_MAX_BUFFER: u64 = 128 * 1024;

impl TdxModule {
    pub(super) fn vmm_get_quote(&self, seen: &VmmRegs) -> VmmReply {
        let gpa = seen.get(R12).copied().unwrap_or(0);
        let len = seen.get(R13).copied().unwrap_or(0);
        let shared_bit = self.shared_bit();
        if len == 0 || gpa & shared_bit == 0 {
            return VmmReply::invalid();
        }
        if gpa % PAGE_4K != 0 || len % PAGE_4K != 0 {
            return VmmReply::status(VmcallStatus::ALIGN_ERROR_RAW);
        }
        let start = gpa & !shared_bit;
        let Some(end) = start.checked_add(len) else {
            return VmmReply::invalid();
        };
        if !self.config.gpa_in_range(gpa | (end - 1))
            || self.memory.lock().states.uniform(start, end) != Some(PageState::Shared)
            || self.backing.lock().whole(start, len).is_none()
        {
            return VmmReply::invalid();
        }
        let mut header = [0u8; QUOTE_HEADER_SIZE];
        if !self.read_guest(start, &mut header) {
            return VmmReply::invalid();
        }
        let version = header
            .first_chunk::<8>()
            .map_or(0, |b| u64::from_le_bytes(*b));
        let in_len = header
            .get(16..20)
            .and_then(|b| b.try_into().ok())
            .map_or(0, |b: [u8; 4]| u64::from(u32::from_le_bytes(b)));
        if version != QUOTE_VERSION
            || len > QUOTE_MAX_BUFFER
            || in_len > len - QUOTE_HEADER_SIZE as u64
        {
            return VmmReply::invalid();
        }
        let vmm = self.vmm.lock();
        let (deferred, service) = (vmm.quote_deferred, vmm.quote_service);
        drop(vmm);
        if !service {
            self.write_guest(start + 8, &QUOTE_STATUS_SERVICE_UNAVAILABLE.to_le_bytes());
        } else if deferred {
            self.write_guest(start + 8, &QUOTE_STATUS_IN_FLIGHT.to_le_bytes());
            self.vmm.lock().pending_quotes.push((start, len));
        } else {
            self.complete_quote(start, len);
        }
        VmmReply::success()
    }

    /// Makes the quoting service unavailable (`false`): GetQuote then succeeds but the buffer
    /// says [`QUOTE_STATUS_SERVICE_UNAVAILABLE`], as QEMU without a quote generation socket.
    pub fn set_quote_service(&self, available: bool) {
        self.vmm.lock().quote_service = available;
    }

    /// Makes GetQuote asynchronous (`true`): the buffer is marked in flight and the quote is
    /// written only by [`TdxModule::complete_quotes`]. `false` (the default) answers at once.
    pub fn set_quote_deferred(&self, deferred: bool) {
        self.vmm.lock().quote_deferred = deferred;
    }

    /// Completes every deferred GetQuote request; returns how many.
    pub fn complete_quotes(&self) -> usize {
        let pending = core::mem::take(&mut self.vmm.lock().pending_quotes);
        for &(start, len) in &pending {
            self.complete_quote(start, len);
        }
        pending.len()
    }

    /// How many completed quotes were signalled with the event-notify interrupt (one per
    /// completion while a vector is set up).
    pub fn event_notifications(&self) -> u64 {
        self.vmm.lock().event_notifications
    }

    /// Writes the quote for the request in `[start, start + len)` (no shared bit).
    fn complete_quote(&self, start: u64, len: u64) {
        let Ok(buffer_len) = usize::try_from(len) else {
            return;
        };
        let mut buffer = vec![0u8; buffer_len];
        if self.read_guest(start, &mut buffer) {
            self.write_guest(start, &Self::quote_from(&buffer));
        }
        let mut vmm = self.vmm.lock();
        if vmm.notify_vector.is_some() {
            vmm.event_notifications += 1;
        }
    }

    /// The buffer after the quoting service handled it.
    fn quote_from(buffer: &[u8]) -> Vec<u8> {
        let field = |at: usize, n: usize| -> u64 {
            let mut raw = [0u8; 8];
            if let (Some(dst), Some(src)) = (raw.get_mut(..n), buffer.get(at..at + n)) {
                dst.copy_from_slice(src);
            }
            u64::from_le_bytes(raw)
        };
        let version = field(0, 8);
        let in_len = field(16, 4) as usize;
        let mut out = buffer.to_vec();
        let report = buffer.get(QUOTE_HEADER_SIZE..QUOTE_HEADER_SIZE.saturating_add(in_len));
        let (status, quote) = match report.and_then(quote_for) {
            Some(quote) if QUOTE_HEADER_SIZE + quote.len() <= buffer.len() => {
                (QUOTE_STATUS_SUCCESS, quote)
            }
            _ => (QUOTE_STATUS_ERROR, Vec::new()),
        };
        let mut header = Vec::with_capacity(QUOTE_HEADER_SIZE);
        header.extend_from_slice(&version.to_le_bytes());
        header.extend_from_slice(&status.to_le_bytes());
        header.extend_from_slice(&(in_len as u32).to_le_bytes());
        header.extend_from_slice(&(quote.len() as u32).to_le_bytes());
        if let Some(dst) = out.get_mut(..QUOTE_HEADER_SIZE) {
            dst.copy_from_slice(&header);
        }
        if let Some(dst) = out.get_mut(QUOTE_HEADER_SIZE..QUOTE_HEADER_SIZE + quote.len()) {
            dst.copy_from_slice(&quote);
        }
        out
    }
}
