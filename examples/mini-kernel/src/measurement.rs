//! Measured boot: an RTMR extended with an event, and a TDREPORT that shows it.

use crate::check;
use crate::platform::Platform;
use tdx_boot::early::{self, IdentityMapped};
use tdx_boot::tdcall::Hardware;

/// RTMR extend and TDREPORT with the measured-boot helpers of `early`; without TDX the report's
/// RTMR[2] must also be the model's.
pub fn check(platform: &Platform) {
    // SAFETY: the kernel runs on its identity map (VA = GPA), and its stack and heap are private.
    let phys = unsafe { IdentityMapped::new() };
    let event = b"mini-kernel: booted";
    let extended = early::extend_rtmr(&Hardware, 2, event, &phys);
    let report = early::tdreport(&Hardware, &[0x5a; 64], &phys);
    match (extended, report) {
        (Ok(digest), Ok(report)) => {
            let rtmr = report.rtmr(2).copied().unwrap_or([0; 48]);
            let module_agrees = match platform {
                Platform::Model(module) => module.rtmr(2) == rtmr,
                Platform::Td => true,
            };
            check!(
                "RTMR extend and TDREPORT",
                rtmr != [0; 48] && module_agrees,
                "RTMR[2] extended with SHA-384 {:02x}{:02x}{:02x}{:02x}..; TDREPORT type {:?}, RTMR[2] {:02x}{:02x}{:02x}{:02x}..",
                digest[0],
                digest[1],
                digest[2],
                digest[3],
                report.report_type(),
                rtmr[0],
                rtmr[1],
                rtmr[2],
                rtmr[3]
            );
        }
        (extended, report) => check!(
            "RTMR extend and TDREPORT",
            false,
            "extend {:?}, report {:?}",
            extended.err(),
            report.err()
        ),
    }
}
