//! The #VE entry point: [`ve_entry`], the handler it calls and the default reaction to errors.

use super::{Frame, VeContext, VeError, handle};
use crate::early::FatalMessage;
use crate::tdcall::vmcall;
use crate::tdcall::{Hardware, TdCall};
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

/// The handler [`ve_entry`] calls; null until [`install_handler`] runs.
static HANDLER: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

crate::entry_stub!(
    /// The IDT entry point for vector 20 (#VE). It calls the handler registered with
    /// [`install_handler`], or [`default_handler`] if none is.
    pub fn ve_entry => dispatch_ve
);

/// Makes [`ve_entry`] call `handler` for every #VE. A kernel that runs its TD paths on the model
/// installs a function that calls [`handle`] with its model vCPU; one that wants to inject #GP
/// for refused MSRs or to log errors installs its own reaction around [`handle`].
///
/// `handler` receives the real interrupted context, so it may pass it to the unsafe [`handle`].
/// It runs in exception context on the #VE stack: it must not cause a #VE itself (no port IO,
/// CPUID, HLT, MSR or MMIO instructions: use the `vmcall` functions instead).
///
/// ```no_run
/// use tdx_boot::tdcall::Hardware;
/// use tdx_boot::ve::{Frame, handle, install_handler, report_and_stop};
///
/// fn on_ve(frame: &mut Frame) {
///     // SAFETY: `ve_entry` passes the interrupted context of this #VE.
///     match unsafe { handle(&Hardware, frame) } {
///         Ok(()) => {}
///         Err(e) if e.should_inject_gp() => { /* deliver #GP to the interrupted code */ }
///         Err(e) => report_and_stop(&Hardware, &e, frame),
///     }
/// }
///
/// // SAFETY: `on_ve` resumes the interrupted code only as `handle` leaves the frame (RIP past
/// // the emulated instruction, its results in registers) and stops the TD otherwise; it raises
/// // no #VE and takes no lock.
/// unsafe { install_handler(on_ve) };
/// ```
///
/// # Safety
///
/// The CPU resumes the interrupted code exactly as `handler` leaves the [`Frame`]: `iretq`
/// jumps to its RIP with its RSP, CS, SS and RFLAGS, and the stub restores its general-purpose
/// registers. A safe `fn(&mut Frame)` can write anything there, and a handler that, say,
/// trusts a value from the VMM for RIP or RSP would let the host redirect the kernel. So
/// the caller promises that, for every #VE, `handler`:
///
/// - leaves RIP, RSP, CS, SS and RFLAGS as the interrupted code can continue from (unchanged,
///   or RIP advanced past the instruction that raised the #VE, as [`handle`] does), or
///   diverts to a kernel path built for it (e.g. delivering #GP), and changes only registers
///   the emulated instruction would have written;
/// - is sound to run in exception context at any instruction boundary of the kernel: it
///   raises no #VE itself, takes no lock the interrupted code may hold, and does not
///   unwind.
pub unsafe fn install_handler(handler: fn(&mut Frame)) {
    HANDLER.store(handler as *mut (), Ordering::Release);
}

extern "C" fn dispatch_ve(frame: &mut Frame) {
    let handler = HANDLER.load(Ordering::Acquire);
    if handler.is_null() {
        // SAFETY: `ve_entry` passes the interrupted context of the #VE it was entered for.
        unsafe { default_handler(frame) };
    } else {
        // SAFETY: the only non-null value ever stored is a `fn(&mut Frame)` cast to a pointer by
        // `install_handler`; casting it back yields that function.
        let handler = unsafe { core::mem::transmute::<*mut (), fn(&mut Frame)>(handler) };
        handler(frame);
    }
}

/// The hardware TD's GPAW once [`default_handler`] has read it (0: not yet). A kernel runs in
/// exactly one TD, whose GPAW never changes.
static HARDWARE_GPAW: AtomicU8 = AtomicU8::new(0);

/// [`handle`] on the hardware TDX module (with a [`VeContext`] read once and cached); any error
/// is reported to the VMM with [`report_and_stop`] (the TD does not continue).
///
/// # Safety
///
/// `frame` is the interrupted context of the #VE being handled, as [`ve_entry`] (or an
/// equivalent stub) passes it: [`handle`]'s contract.
pub unsafe fn default_handler(frame: &mut Frame) {
    let result = match cached_hardware_context() {
        // SAFETY: the caller passes the real interrupted context (this function's contract).
        Some(context) => unsafe { context.handle(&Hardware, frame) },
        // SAFETY: as above.
        None => unsafe { handle(&Hardware, frame) },
    };
    if let Err(error) = result {
        report_and_stop(&Hardware, &error, frame);
    }
}

fn cached_hardware_context() -> Option<VeContext> {
    let gpaw = HARDWARE_GPAW.load(Ordering::Relaxed);
    if gpaw != 0 {
        return Some(VeContext::from_gpaw(gpaw));
    }
    // VP.INFO is a TDCALL: it cannot raise #VE, so it may run before VEINFO.GET.
    let context = VeContext::query(&Hardware).ok()?;
    HARDWARE_GPAW.store(context.gpaw(), Ordering::Relaxed);
    Some(context)
}

/// The error code [`report_and_stop`] sends with ReportFatalError: "#VE" in ASCII.
pub const VE_FATAL_ERROR_CODE: u32 = 0x0045_5623;

/// Reports `error` and the interrupted RIP to the VMM with ReportFatalError (code
/// [`VE_FATAL_ERROR_CODE`], message `#VE at <rip>: <error>`, cut at 64 bytes). Returns only if
/// the VMM lets the TD continue, with what it answered; see [`report_and_stop`].
pub fn report_fatal(tdx: &impl TdCall, error: &VeError, frame: &Frame) -> vmcall::VmcallError {
    // Truncation is fine: the first 64 bytes are what fit in the registers anyway.
    let message = FatalMessage::format(format_args!("#VE at {:#x}: {error}", frame.rip));
    vmcall::report_fatal_error(tdx, VE_FATAL_ERROR_CODE, message.as_bytes())
}

/// [`report_fatal`], then halts forever with interrupts blocked (through TDVMCALL: a HLT
/// instruction would itself raise #VE).
pub fn report_and_stop(tdx: &impl TdCall, error: &VeError, frame: &Frame) -> ! {
    let _ = report_fatal(tdx, error, frame);
    loop {
        let _ = vmcall::hlt(tdx, true);
    }
}
