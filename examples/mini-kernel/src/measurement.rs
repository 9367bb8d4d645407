//! What the kernel measures: its configuration and its arrival, into RTMR[2] (CC index 3, the
//! register TDVF leaves to the OS), each extension recorded in the kernel's event log.

use crate::platform::Platform;
use tdx_boot::attest::event_type::{EV_EVENT_TAG, EV_IPL};
use tdx_boot::attest::{EventLogWriter, MeasureEventError, measure_event};
use tdx_boot::early::IdentityMapped;
use tdx_boot::tdcall::Hardware;

/// The RTMR the kernel extends.
pub const KERNEL_RTMR: u8 = 2;

/// Measures the kernel's events into RTMR[2] and `log`; returns how many.
pub fn measure_kernel(
    log: &mut EventLogWriter<'_>,
    platform: &Platform,
) -> Result<usize, MeasureEventError> {
    // SAFETY: the kernel runs on its identity map (VA = GPA), and its stack is private.
    let phys = unsafe { IdentityMapped::new() };
    let configuration: &[u8] = match platform {
        Platform::Td => b"mini-kernel 0.0.0: policy=default platform=td",
        Platform::Model(_) => b"mini-kernel 0.0.0: policy=default platform=model",
    };
    let booted = b"mini-kernel: booted";
    let events: [(u32, &[u8]); 2] = [(EV_IPL, configuration), (EV_EVENT_TAG, booted)];
    for (event_type, data) in events {
        measure_event(&Hardware, log, KERNEL_RTMR, event_type, data, data, &phys)?;
    }
    Ok(events.len())
}
