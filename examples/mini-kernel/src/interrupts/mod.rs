//! Interrupts and exceptions: the IDT, the entry stubs, and where each vector goes.
//!
//! #UD is how TDCALL reaches the software TDX module outside a TD; #VE (vector 20) goes to
//! tdx-boot's handler; everything else is unexpected and ends the run with a report.

pub mod idt;
mod stubs;

use crate::qemu_exit::{ExitCode, exit};
use tdx_boot::ve::Frame;

/// The vector number the shared stub of vectors 32..=255 reports.
pub const EXTERNAL: u64 = 0x100;
/// #UD.
const INVALID_OPCODE: u64 = 6;
/// #VE.
const VIRTUALIZATION: u64 = 20;

/// Called by the entry stubs with the interrupted code's registers.
extern "sysv64" fn dispatch(frame: &mut Frame, vector: u64) {
    let handled = match vector {
        INVALID_OPCODE => crate::ud_tdcall::handle(frame),
        VIRTUALIZATION => crate::ve_demo::handle(frame),
        _ => false,
    };
    if !handled {
        crate::serial::emergency_print(format_args!(
            "mini-kernel: unexpected exception {vector} at RIP {:#x} (RSP {:#x}, RAX {:#x})\n",
            frame.rip, frame.rsp, frame.rax
        ));
        exit(ExitCode::Failure);
    }
}

/// The CPU-pushed part of an interrupt frame.
#[repr(C)]
struct HardwareFrame {
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

/// Called by the stubs of exceptions with an error code: always fatal here.
extern "sysv64" fn fatal_with_error_code(frame: &HardwareFrame, error: u64, vector: u64) -> ! {
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    crate::serial::emergency_print(format_args!(
        "mini-kernel: exception {vector} error {error:#x} at RIP {:#x} (RSP {:#x}, CR2 {cr2:#x})\n",
        frame.rip, frame.rsp
    ));
    exit(ExitCode::Failure)
}
