//! A 16550 UART driven with `in`/`out` (COM1 in QEMU), for code that owns the machine's ports:
//! the mini-kernel outside a TD, and tdx-sim, which is the TD's host.

use core::fmt::{self, Write};
use x86_64::instructions::port::Port;

/// COM1's first port.
pub const COM1: u16 = 0x3f8;
/// Line status register bit: the transmit holding register is empty.
const LSR_THR_EMPTY: u8 = 1 << 5;

/// One 16550 UART at its first IO port.
pub struct Uart {
    base: u16,
}

impl Uart {
    /// The UART whose registers start at port `base`.
    pub const fn new(base: u16) -> Self {
        Self { base }
    }

    /// Programs 115200 baud, 8N1, FIFOs on, interrupts off.
    pub fn init(&mut self) {
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

    /// Sends one byte, waiting (bounded) for room in the transmitter.
    pub fn write_byte(&mut self, byte: u8) {
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
