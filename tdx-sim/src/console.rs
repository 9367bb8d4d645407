//! tdx-sim's console: COM1 of the emulated machine, which the TD's own console (TDVMCALL IO to
//! COM1, passed through) shares, so one serial log shows both in order.

use core::fmt::{self, Write};
use metal::uart::{COM1, Uart};
use spin::Mutex;

static CONSOLE: Mutex<Uart> = Mutex::new(Uart::new(COM1));

/// Programs the UART.
pub fn init() {
    CONSOLE.lock().init();
}

/// Writes formatted text.
pub fn print(args: fmt::Arguments<'_>) {
    let _ = CONSOLE.lock().write_fmt(args);
}

/// Writes without the lock, for fatal paths that may have interrupted a print.
pub fn emergency_print(args: fmt::Arguments<'_>) {
    let _ = Uart::new(COM1).write_fmt(args);
}

/// Prints a line.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::console::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
