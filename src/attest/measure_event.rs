//! Measuring and recording in one step: the RTMR is extended only with a record that is sure to
//! fit, so the kernel's log never falls behind its registers.

use super::event::MR_INDEX_RTMR0;
use super::log_writer::{EventLogWriter, LogWriteError};
use crate::early::{MeasureError, PhysAddrOf, RTMR_COUNT, extend_rtmr_digest};
use crate::tdcall::TdCall;
use core::fmt;

/// Why a measured event failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MeasureEventError {
    /// Nothing was extended: the record could not be written.
    Log(LogWriteError),
    /// Nothing was recorded: the module refused the extension.
    Extend(MeasureError),
}

/// Extends RTMR `rtmr` (0..=3) with the SHA-384 of `measured` and appends the record (event type
/// `event_type`, data `event_data`) to `log`. Returns the SHA-384 digest.
///
/// The room for the record and every digest are computed first; only then is the register
/// extended, and only after the extension succeeds is the record appended. On error neither or
/// (if the module refused) only the unchanged log remains.
pub fn measure_event(
    tdx: &impl TdCall,
    log: &mut EventLogWriter<'_>,
    rtmr: u8,
    event_type: u32,
    measured: &[u8],
    event_data: &[u8],
    phys: &impl PhysAddrOf,
) -> Result<[u8; 48], MeasureEventError> {
    if rtmr >= RTMR_COUNT {
        return Err(MeasureEventError::Log(LogWriteError::BadRtmrIndex(rtmr)));
    }
    log.check_room(event_data).map_err(MeasureEventError::Log)?;
    let digests = log.digests_of(measured).map_err(MeasureEventError::Log)?;
    extend_rtmr_digest(tdx, rtmr, digests.sha384(), phys).map_err(MeasureEventError::Extend)?;
    log.append(
        MR_INDEX_RTMR0 + u32::from(rtmr),
        event_type,
        &digests,
        event_data,
    )
    .map_err(MeasureEventError::Log)?;
    Ok(*digests.sha384())
}

impl fmt::Display for MeasureEventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Log(e) => write!(f, "not measured: {e}"),
            Self::Extend(e) => write!(f, "not recorded: {e}"),
        }
    }
}

impl core::error::Error for MeasureEventError {}
