//! Interrupts and exceptions: the IDT, the entry stubs, and where each vector goes.
//!
//! #UD is how TDCALL reaches the software TDX module outside a TD; #VE (vector 20) goes to
//! tdx-boot's handler; without TDX, a #PF on a shared MMIO mapping becomes the #VE a TD would
//! take ([`crate::model_ept`]); everything else is unexpected and ends the run with a report.

pub mod idt;
mod stubs;

use crate::qemu_exit::{ExitCode, exit};
use tdx_boot::tdcall::Hardware;
use tdx_boot::ve::Frame;

/// The vector number the shared stub of vectors 32..=255 reports.
pub const EXTERNAL: u64 = 0x100;
/// The x2APIC's spurious vector (its SVR's, as the kernel sets it).
pub const SPURIOUS: u8 = 0xff;

/// Called by the kernel's entry stubs: in a TD an external vector the kernel did not route is
/// counted and retired, and a spurious interrupt ignored (it is never in service, so an EOI
/// would retire another vector); every other vector that reaches it is unexpected.
extern "C" fn dispatch(frame: &mut Frame, vector: u64) {
    if crate::platform::in_td() {
        match vector {
            EXTERNAL => return crate::external_interrupt::on_stray_interrupt(),
            v if v == u64::from(SPURIOUS) => return,
            _ => {}
        }
    }
    unexpected(frame, vector)
}

fn unexpected(frame: &Frame, vector: u64) -> ! {
    crate::serial::emergency_print(format_args!(
        "mini-kernel: unexpected exception {vector} at RIP {:#x} (RSP {:#x}, RAX {:#x})\n",
        frame.rip, frame.rsp, frame.rax
    ));
    exit(ExitCode::Failure)
}

/// #UD: a TDCALL outside a TD is answered by the model; any other #UD is a bug.
extern "C" fn on_invalid_opcode(frame: &mut Frame) {
    if !crate::ud_tdcall::handle(frame) {
        unexpected(frame, 6);
    }
}

/// #PF: without TDX, an access through a shared mapping is delivered as a #VE; any other page
/// fault is a bug.
extern "C" fn on_page_fault(frame: &mut Frame, _vector: u64, error_code: u64) {
    if !crate::model_ept::deliver_as_ve(frame, error_code) {
        let cr2 = x86_64::registers::control::Cr2::read_raw();
        crate::serial::emergency_print(format_args!(
            "mini-kernel: page fault (error {error_code:#x}) at RIP {:#x}, CR2 {cr2:#x}\n",
            frame.rip
        ));
        exit(ExitCode::Failure);
    }
}

/// #VE: tdx-boot's handler on the TDX module (the real one, or the model behind #UD). An
/// error ends the run: reported to the VMM in a TD, printed in plain QEMU.
///
/// For interrupt entry paths only: tdx-boot's `ve_entry` (registered with `install_handler`)
/// and, without TDX, [`crate::model_ept`] from the #PF handler. Both pass the frame their stub
/// built for the interrupted kernel code.
pub fn on_virtualization_exception(frame: &mut Frame) {
    // SAFETY: the only callers (above) pass the interrupted kernel context, whose RIP is the
    // instruction the CPU was executing: kernel text, mapped and readable, in this address
    // space.
    if let Err(error) = unsafe { tdx_boot::ve::handle(&Hardware, frame) } {
        crate::serial::emergency_print(format_args!(
            "mini-kernel: #VE at {:#x}: {error}\n",
            frame.rip
        ));
        if crate::platform::in_td() {
            tdx_boot::ve::report_and_stop(&Hardware, &error, frame);
        }
        exit(ExitCode::Failure);
    }
}

/// Builds and loads the IDT on this CPU and routes #VE to [`on_virtualization_exception`].
pub fn init() {
    // SAFETY: the handler resumes only as `ve::handle` leaves the frame (RIP past the emulated
    // instruction) and otherwise stops the TD or exits QEMU; it raises no #VE (its console
    // output goes through the TDVMCALL/emergency path) and takes no lock.
    unsafe { tdx_boot::ve::install_handler(on_virtualization_exception) };
    idt::load();
}

/// Called by the stubs of exceptions with an error code but #PF: always fatal here.
extern "C" fn fatal_with_error_code(frame: &mut Frame, vector: u64, error: u64) {
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    crate::serial::emergency_print(format_args!(
        "mini-kernel: exception {vector} error {error:#x} at RIP {:#x} (RSP {:#x}, CR2 {cr2:#x})\n",
        frame.rip, frame.rsp
    ));
    exit(ExitCode::Failure)
}
