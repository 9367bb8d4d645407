//! Leaving QEMU with a status the host can read: the `isa-debug-exit` device.
//!
//! QEMU exits with status `(value << 1) | 1` when `value` is written to its port (0xf4, as
//! `cargo xtask` configures it). On a machine without the device (a real TDX host) the write is
//! ignored and the CPU halts instead.

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

/// Ends the run: exits QEMU, or halts forever where there is no exit device.
pub fn exit(code: ExitCode) -> ! {
    let mut port = Port::<u32>::new(DEBUG_EXIT_PORT);
    // SAFETY: the port belongs to QEMU's debug-exit device; elsewhere it is unassigned and the
    // write has no effect.
    unsafe { port.write(code as u32) };
    halt_forever()
}

/// Stops this CPU for good.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
