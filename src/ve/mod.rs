//! #VE handling: CPUID, HLT, port IO, MSRs and MMIO become TDVMCALLs.
//!
//! In a TD these instructions (and any access to shared, VMM-emulated memory) raise a virtualization
//! exception, vector 20. This module makes them work transparently for a kernel:
//!
//! - [`ve_entry`] is the IDT entry for vector 20: it saves the interrupted registers in a
//!   [`Frame`], calls the handler registered with [`install_handler`] (by default
//!   [`default_handler`]: [`handle`] on the hardware, fatal on error) and returns with `iretq`.
//!   [`entry_stub!`](crate::entry_stub) makes the same stub for other vectors (e.g. #UD).
//! - [`handle`] / [`handle_with_code`] do the work: TDG.VP.VEINFO.GET first, then by exit reason
//!   CPUID (hypervisor leaves only), HLT (honouring RFLAGS.IF), IN/OUT, RDMSR/WRMSR, and EPT
//!   violations on shared GPAs, which [`mmio::decode`] turns into #VE.RequestMMIO; RIP advances
//!   past every emulated instruction. Failures are [`VeError`]s, never panics.
//! - [`safe_halt`] is the idle loop's `sti; hlt` (HLT through #VE would lose wake-ups).
//! - [`mmio_access`] has single-instruction MMIO reads and writes that the decoder is guaranteed
//!   to understand.
//!
//! ```no_run
//! # fn install(addr: u64) {}
//! // Kernel setup: register the stub at vector 20 on an IST stack.
//! install(tdx_boot::ve::ve_entry as usize as u64);
//! ```

mod context;
mod cpuid;
mod entry;
mod ept;
mod error;
mod frame;
mod handler;
mod hlt;
mod io_port;
pub mod mmio;
pub mod mmio_access;
mod msr;
mod stub;

pub use context::VeContext;
pub use entry::{
    VE_FATAL_ERROR_CODE, default_handler, install_handler, report_and_stop, report_fatal, ve_entry,
};
pub use error::VeError;
pub use frame::{Frame, RFLAGS_IF};
pub use handler::{handle, handle_with_code};
pub use hlt::safe_halt;
