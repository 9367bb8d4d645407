//! Measured boot and attestation: the CC event log (ACPI CCEL), its replay, the kernel's own
//! records, GetQuote, and the quote a verifier checks.
//!
//! What a TD's evidence consists of, and how each part is checked:
//! - **The quote** ([`Quote`]), from GetQuote ([`QuoteBuffer`]): signed by the platform's quoting
//!   enclave; it carries MRTD (the firmware image, measured by the TDX module), RTMR[0..3] and the
//!   64 bytes of REPORTDATA the TD chose.
//! - **The event log** ([`EventLog`]): every extension of an RTMR with what was measured.
//!   TDVF writes RTMR\[0\] (its configuration, the TD HOB, ACPI tables) and RTMR\[1\] (the boot
//!   loader or kernel image); the kernel writes RTMR\[2\] (and RTMR\[3\] if it wants). The firmware's
//!   part is in the area the ACPI CCEL table ([`Ccel`]) points to; the kernel's part is appended
//!   by [`EventLogWriter`] to a copy of it in the kernel's own memory ([`log_writer`] says why).
//!
//! A verifier checks the quote's signature chain to Intel (DCAP), then [`EventLog::replay`]s the
//! log and compares the result with the quote's RTMRs: equal values mean the log is the complete
//! story of those registers, and only then are the records' contents worth judging.
//!
//! Everything here parses untrusted bytes without panicking, without allocating and in time
//! linear in the input; `fuzz/fuzz_targets/attest.rs` holds it to that.

pub mod algorithm;
mod ccel;
mod event;
mod event_log;
pub mod event_type;
mod get_quote;
pub mod log_writer;
mod measure_event;
mod quote;
mod spec_id;

pub use ccel::{CC_TYPE_TDX, CCEL_SIGNATURE, CCEL_TABLE_LEN, Ccel, CcelError};
pub use event::{Event, LogEnd, MR_INDEX_MRTD, MR_INDEX_RTMR0};
pub use event_log::{EventLog, EventLogError, ReplayError};
pub use get_quote::{
    GET_QUOTE_ERROR, GET_QUOTE_IN_FLIGHT, GET_QUOTE_SERVICE_UNAVAILABLE, GET_QUOTE_SUCCESS,
    GetQuoteError, LINUX_POLL_INTERVAL_MS, LINUX_POLL_LIMIT, QUOTE_BUFFER_HEADER_LEN,
    QUOTE_BUFFER_VERSION, QuoteBuffer,
};
pub use log_writer::{Digests, EventLogWriter, LogWriteError};
pub use measure_event::{MeasureEventError, measure_event};
pub use quote::{
    ATTESTATION_KEY_ECDSA_P256, BODY_TYPE_TD10, BODY_TYPE_TD15, QUOTE_HEADER_LEN, Quote,
    QuoteError, TD_REPORT_BODY_V10_LEN, TD_REPORT_BODY_V15_LEN, TEE_TYPE_TDX,
};
pub use spec_id::{AlgorithmSize, MAX_ALGORITHMS, SPEC_ID_SIGNATURE, SpecIdEvent};
