//! GetQuote: the host's quoting service, answering synchronously.
//!
//! The buffer (a shared GPA, 4 KiB aligned) starts with the GHCI header
//! `{ u64 version, u64 status, u32 in_len, u32 out_len }` followed by the data: a TDREPORT of
//! `in_len` bytes on input, the quote of `out_len` bytes on output. The model's "quote" is
//! recognisable and checkable: the tag `TDX-BOOT-MODEL-QUOTE`, then the TDREPORT as given.

use super::memory::PAGE_4K;
use super::vmcall::{R12, R13, VmmRegs, VmmReply};
use super::{PageState, TdxModule};
use alloc::vec;
use alloc::vec::Vec;

/// The size of the GetQuote header.
pub(crate) const QUOTE_HEADER_SIZE: usize = 24;
/// The tag the model's quotes start with.
pub const MODEL_QUOTE_TAG: &[u8] = b"TDX-BOOT-MODEL-QUOTE";
/// Buffer status: the quote is ready.
pub const QUOTE_STATUS_SUCCESS: u64 = 0;
/// Buffer status: the request is malformed (bad lengths).
pub const QUOTE_STATUS_ERROR: u64 = 0x8000_0000_0000_0000;

impl TdxModule {
    pub(super) fn vmm_get_quote(&self, seen: &VmmRegs) -> VmmReply {
        let gpa = seen.get(R12).copied().unwrap_or(0);
        let len = seen.get(R13).copied().unwrap_or(0);
        let shared_bit = self.shared_bit();
        if gpa % PAGE_4K != 0 || len % PAGE_4K != 0 || len == 0 || gpa & shared_bit == 0 {
            return VmmReply::invalid();
        }
        let start = gpa & !shared_bit;
        let Some(end) = start.checked_add(len) else {
            return VmmReply::invalid();
        };
        if !self.config.gpa_in_range(gpa | (end - 1))
            || self.memory.lock().states.uniform(start, end) != Some(PageState::Shared)
        {
            return VmmReply::invalid();
        }
        let Ok(buffer_len) = usize::try_from(len) else {
            return VmmReply::invalid();
        };
        let mut buffer = vec![0u8; buffer_len];
        if !self.read_guest(start, &mut buffer) {
            return VmmReply::invalid();
        }
        let quote = Self::quote_from(&buffer);
        if !self.write_guest(start, &quote) {
            return VmmReply::invalid();
        }
        VmmReply::success()
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
        let quote_len = MODEL_QUOTE_TAG.len() + in_len;
        let (status, quote) = match report {
            Some(report) if QUOTE_HEADER_SIZE + quote_len <= buffer.len() && in_len > 0 => {
                let mut quote = MODEL_QUOTE_TAG.to_vec();
                quote.extend_from_slice(report);
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
