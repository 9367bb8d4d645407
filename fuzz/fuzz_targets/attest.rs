#![no_main]
//! The attestation parsers on arbitrary bytes: the CCEL table, the event log and its replay, the
//! quote. No input may panic, hang or read out of bounds, and what parses must be consistent.

use libfuzzer_sys::fuzz_target;
use tdx_boot::attest::{Ccel, EventLog, Quote};

fuzz_target!(|data: &[u8]| {
    if let Ok(ccel) = Ccel::parse(data) {
        assert!(ccel.log_area().start < ccel.log_area().end);
    }
    if let Ok(log) = EventLog::parse(data) {
        assert!(log.bytes().len() <= data.len());
        assert_eq!(log.events().count(), log.len());
        for event in log.events() {
            assert!(event.offset < log.bytes().len());
            assert!(event.rtmr_index().is_none_or(|i| i < 4));
        }
        let _ = log.replay();
    }
    if let Ok(quote) = Quote::parse(data) {
        assert!(quote.len() <= data.len());
        assert_eq!(quote.bytes().len(), quote.len());
        assert!(quote.signed_bytes().len() <= quote.len());
        let _ = (quote.mr_td(), quote.rtmr(3), quote.report_data());
    }
});
