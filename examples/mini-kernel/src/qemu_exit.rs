//! Leaving QEMU with a status the host can read: the `isa-debug-exit` device.
//!
//! QEMU exits with status `(value << 1) | 1` when `value` is written to its port (0xf4, as
//! `cargo xtask` configures it). On a machine without the device the write is ignored and the
//! CPUs halt instead.
//!
//! In a TD the write is a TDVMCALL `Instruction.IO` rather than an `out`: KVM hands it to QEMU
//! as the same port write an `out` would have become (through #VE and tdx-boot's handler), so
//! the device and the exit status work unchanged, but without a #VE, which matters because
//! [`exit`] also runs from fatal paths inside the #VE handler. Halting likewise asks the VMM
//! with TDVMCALL `Instruction.HLT` (interrupts blocked) instead of executing HLT.

use crate::platform::in_td;
use tdx_boot::tdcall::Hardware;
use tdx_boot::tdcall::vmcall::{self, IoSize};
use x86_64::instructions::port::Port;

/// The port `cargo xtask` gives the `isa-debug-exit` device.
const DEBUG_EXIT_PORT: u16 = 0xf4;

/// What the boot concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    /// Every check passed: QEMU exits with status 33.
    Success = 0x10,
    /// A check failed or the kernel panicked: QEMU exits with status 35.
    Failure = 0x11,
}

/// Ends the run: stops the APs, exits QEMU, or halts forever where there is no exit device.
pub fn exit(code: ExitCode) -> ! {
    crate::smp::stop_aps();
    if in_td() {
        // Nothing is left to do if the VMM refuses: the halt below is the fallback either way.
        let _ = vmcall::io_write(&Hardware, DEBUG_EXIT_PORT, IoSize::U32, code as u32);
    } else {
        let mut port = Port::<u32>::new(DEBUG_EXIT_PORT);
        // SAFETY: the port belongs to QEMU's debug-exit device; elsewhere it is unassigned and
        // the write has no effect.
        unsafe { port.write(code as u32) };
    }
    halt_forever()
}

/// Stops this CPU for good, with interrupts disabled.
pub fn halt_forever() -> ! {
    x86_64::instructions::interrupts::disable();
    loop {
        if in_td() {
            // Interrupts are blocked, so only an NMI-like event ends the halt; then halt again.
            let _ = vmcall::hlt(&Hardware, true);
        } else {
            x86_64::instructions::hlt();
        }
    }
}
