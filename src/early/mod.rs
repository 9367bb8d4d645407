//! The first things a TD kernel does: find out that it runs in a TD, learn the TD's shape, refuse
//! a configuration it cannot defend, and get a console and a way to die loudly.
//!
//! Everything here works before the kernel has an IDT: CPUID leaf 0x21 is answered by the TDX
//! module itself, and the console and the fatal-error path use TDVMCALLs rather than `in`/`out`
//! instructions (which would raise #VE).
//!
//! ```no_run
//! use tdx_boot::early::{self, Policy, TdxSerial};
//! use tdx_boot::tdcall::Hardware;
//! use core::fmt::Write;
//!
//! early::detect().expect("not an Intel TDX guest");
//! let td = match early::init(&Hardware, Policy::default()) {
//!     Ok(td) => td,
//!     Err(e) => early::fatal(&Hardware, early::INIT_ERROR_CODE, format_args!("{e}")),
//! };
//! let mut console = TdxSerial::new(&Hardware);
//! writeln!(console, "TD with {} vCPUs, shared bit {:#x}", td.info().num_vcpus, td.shared_mask()).ok();
//! ```
//!
//! - [`detect`]: CPUID-based TD detection (also [`detect_with`] for any CPUID source).
//! - [`init`] and [`Td`]: TDG.VP.INFO read once, the attribute [`Policy`], SEPT #VE and REDUCE_VE
//!   controls, and the published [`shared_mask`].
//! - [`TdxSerial`] and the global console ([`install_console`], [`print`]): COM1 over TDVMCALL.
//! - `TdxLogger` (feature `log`): a `log::Log` over the same console.
//! - [`report_fatal`] and [`fatal`]: ReportFatalError with a formatted message; [`fatal_panic`]
//!   for a `#[panic_handler]`.
//! - [`extend_rtmr`] and [`tdreport`]: measured boot, given a [`PhysAddrOf`] translation.

mod console;
mod detect;
mod fatal;
#[cfg(feature = "log")]
mod logger;
mod measure;
mod policy;
mod td;

pub use console::{
    COM1, ConsoleError, LSR_POLL_LIMIT, TdxSerial, configure_console, install_console,
    installed_console, print,
};
pub use detect::{DetectError, TDX_SIGNATURE, detect, detect_with};
pub use fatal::{
    FatalMessage, INIT_ERROR_CODE, PANIC_ERROR_CODE, fatal, fatal_panic, halt_forever, report_fatal,
};
#[cfg(feature = "log")]
pub use logger::TdxLogger;
pub use measure::{
    IdentityMapped, MeasureError, PhysAddrOf, RTMR_COUNT, TranslateWith, extend_rtmr,
    extend_rtmr_digest, tdreport, tdreport_into,
};
pub use policy::{Policy, ReduceVe, SeptVe};
pub use td::{EarlyError, Td, init, shared_mask};
