//! The console: COM1, a 16550 UART at port 0x3f8.
//!
//! In plain QEMU the kernel drives the UART with `in`/`out`. In a TD those instructions would
//! each raise a #VE, and the first lines are printed before the kernel's #VE handler exists (by
//! the firmware's handler while boot services run, by nobody between ExitBootServices and the
//! kernel's IDT), and fatal paths print from inside the #VE handler itself, whose IST stack a
//! nested #VE would reuse. So in a TD every line goes through tdx-boot's TDVMCALL console
//! (`Instruction.IO` requests to the VMM's UART), which never raises #VE.

use crate::platform::in_td;
use core::fmt::{self, Write};
use metal::uart::{COM1, Uart};
use spin::Mutex;
use tdx_boot::early::{self, TdxSerial};
use tdx_boot::tdcall::Hardware;

static CONSOLE: Mutex<Uart> = Mutex::new(Uart::new(COM1));

/// Programs the UART: through TDVMCALLs in a TD (after [`crate::platform::set_in_td`]), with
/// `out` otherwise. Printing works before this too, with the firmware's settings.
pub fn init() {
    if in_td() {
        early::install_console(&Hardware);
        // A UART that does not answer still takes bytes; the console copes (bounded polling).
        let _ = early::configure_console();
    } else {
        CONSOLE.lock().init();
    }
}

/// Writes formatted text to the console; the whole message is written under one lock so lines
/// from different CPUs do not interleave.
pub fn print(args: fmt::Arguments<'_>) {
    if in_td() {
        // tdx-boot's console keeps lines apart with a lock of its own.
        let _ = early::print(args);
    } else {
        let _ = CONSOLE.lock().write_fmt(args);
    }
}

/// Prints a line on the serial console.
#[macro_export]
macro_rules! kprintln {
    ($($arg:tt)*) => {
        $crate::serial::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Prints without taking the console lock: for fatal paths, where the interrupted code may hold
/// it. Output from other CPUs may interleave.
pub fn emergency_print(args: fmt::Arguments<'_>) {
    if in_td() {
        let _ = TdxSerial::new(&Hardware).write_fmt(args);
    } else {
        let _ = Uart::new(COM1).write_fmt(args);
    }
}
