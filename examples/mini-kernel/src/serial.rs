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
use spin::Mutex;
use tdx_boot::early::{self, TdxSerial};
use tdx_boot::tdcall::Hardware;
use x86_64::instructions::port::Port;

const COM1: u16 = 0x3f8;
/// Line status register bit: the transmit holding register is empty.
const LSR_THR_EMPTY: u8 = 1 << 5;

/// One 16550 UART.
pub struct Uart {
    base: u16,
}

impl Uart {
    /// Programs 115200 baud, 8N1, FIFOs on, interrupts off.
    fn init(&mut self) {
        let base = self.base;
        // SAFETY: the ports are the UART's own registers; programming them has no other effect.
        unsafe {
            Port::<u8>::new(base + 1).write(0x00); // no interrupts
            Port::<u8>::new(base + 3).write(0x80); // DLAB on
            Port::<u8>::new(base).write(0x01); // divisor 1 = 115200 baud
            Port::<u8>::new(base + 1).write(0x00);
            Port::<u8>::new(base + 3).write(0x03); // 8N1, DLAB off
            Port::<u8>::new(base + 2).write(0xc7); // FIFOs on and cleared
            Port::<u8>::new(base + 4).write(0x03); // DTR, RTS
        }
    }

    fn write_byte(&mut self, byte: u8) {
        // SAFETY: reading the line status and writing the data register only drive the UART.
        unsafe {
            // Bounded wait: a missing UART reads as 0xff, which looks "empty" and ends the loop.
            for _ in 0..100_000 {
                if Port::<u8>::new(self.base + 5).read() & LSR_THR_EMPTY != 0 {
                    break;
                }
            }
            Port::<u8>::new(self.base).write(byte);
        }
    }
}

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(byte);
        }
        Ok(())
    }
}

static CONSOLE: Mutex<Uart> = Mutex::new(Uart { base: COM1 });

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
        let _ = Uart { base: COM1 }.write_fmt(args);
    }
}
