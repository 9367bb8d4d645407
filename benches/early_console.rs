//! The early console's cost, counted in what matters on hardware: TDVMCALLs (VM exits) per byte
//! sent, and time per byte against the model.
//!
//! Baseline: one bare port write per byte (no status reads), the least a console can do.
//! Compared: `TdxSerial` on a UART whose FIFO is unknown (one status read per byte, as before
//! `configure`) and on a 16550A whose FIFO `configure` verified (one status read per 16 bytes).
//! The model's TDVMCALL is far cheaper than a real VM exit (microseconds), so the exit ratio is
//! the figure to carry over to hardware.

use std::hint::black_box;
use std::time::Instant;
use tdx_boot::early::{COM1, TdxSerial};
use tdx_boot::model::{ModelConfig, PortDevice, TdxModule};
use tdx_boot::tdcall::vmcall::{IoSize, function, io_write};

const BYTES: usize = 64 * 1024;

/// A 16550A: IIR reports the FIFOs once FCR enables them; always ready; discards output.
struct Uart16550a {
    fifo_on: bool,
}

impl PortDevice for Uart16550a {
    fn read(&mut self, offset: u16, _size: u8) -> u32 {
        match offset {
            2 if self.fifo_on => 0xc1,
            2 => 0x01,
            5 => 0x60,
            _ => 0,
        }
    }
    fn write(&mut self, offset: u16, _size: u8, value: u32) {
        if offset == 2 {
            self.fifo_on = value & 1 != 0;
        }
    }
}

fn model() -> TdxModule {
    let model = TdxModule::new(ModelConfig::default());
    model.add_port_device(COM1, 8, Box::new(Uart16550a { fifo_on: false }));
    model
}

/// Rounds per variant; the fastest counts (the machine is shared, so slower rounds are noise).
const ROUNDS: usize = 7;

/// Runs `send` over the text and returns (nanoseconds per byte, TDVMCALLs per byte).
fn measure(model: &TdxModule, send: impl Fn(&[u8])) -> (f64, f64) {
    let text: Vec<u8> = (0..BYTES).map(|i| b' ' + (i % 90) as u8).collect();
    send(&text[..1024]); // warm up
    let mut best = f64::INFINITY;
    let mut calls = 0;
    for _ in 0..ROUNDS {
        let calls_before = model.vmcall_count(function::IO);
        let start = Instant::now();
        send(black_box(&text));
        best = best.min(start.elapsed().as_nanos() as f64);
        calls = model.vmcall_count(function::IO) - calls_before;
    }
    (best / BYTES as f64, calls as f64 / BYTES as f64)
}

fn main() {
    let bare_model = model();
    let vcpu = bare_model.vcpu(0);
    let (bare_ns, bare_exits) = measure(&bare_model, |bytes| {
        for &b in bytes {
            io_write(&vcpu, COM1, IoSize::U8, b.into()).unwrap();
        }
    });

    let unknown_model = model();
    let vcpu = unknown_model.vcpu(0);
    let (unknown_ns, unknown_exits) = measure(&unknown_model, |bytes| {
        TdxSerial::new(&vcpu).write_bytes(bytes).unwrap();
    });

    let fifo_model = model();
    let vcpu = fifo_model.vcpu(0);
    let mut configured = TdxSerial::new(&vcpu);
    configured.configure().unwrap();
    assert_eq!(configured.fifo_depth(), 16);
    let configured = std::cell::RefCell::new(configured);
    let (fifo_ns, fifo_exits) = measure(&fifo_model, |bytes| {
        configured.borrow_mut().write_bytes(bytes).unwrap();
    });

    println!(
        "early console, {BYTES} bytes through the model (no newlines), best of {ROUNDS} rounds"
    );
    println!("  baseline bare port writes: {bare_exits:.3} TDVMCALLs/byte, {bare_ns:.0} ns/byte");
    println!(
        "  TdxSerial, FIFO unknown:   {unknown_exits:.3} TDVMCALLs/byte ({:.2}x baseline), {unknown_ns:.0} ns/byte ({:.2}x)",
        unknown_exits / bare_exits,
        unknown_ns / bare_ns
    );
    println!(
        "  TdxSerial, FIFO verified:  {fifo_exits:.3} TDVMCALLs/byte ({:.2}x baseline), {fifo_ns:.0} ns/byte ({:.2}x)",
        fifo_exits / bare_exits,
        fifo_ns / bare_ns
    );
}
