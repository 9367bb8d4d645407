//! The TDVMCALL serial console against the model's UART, including a VMM whose UART never gets
//! ready and one that refuses port IO.
#![cfg(feature = "model")]

mod early_support;

use core::fmt::Write;
use early_support::Intercept;
use proptest::prelude::*;
use std::sync::{Arc, Mutex};
use tdx_boot::early::{COM1, ConsoleError, LSR_POLL_LIMIT, TdxSerial};
use tdx_boot::model::{FOREVER, ModelConfig, PortDevice, TdxModule};
use tdx_boot::tdcall::vmcall::{VmcallError, function};
use tdx_boot::tdcall::{Regs, VmcallStatus, leaf};

fn model() -> TdxModule {
    TdxModule::new(ModelConfig::default())
}

/// A port device that records writes and reads as `lsr` at offset 5.
struct Recorder {
    writes: Arc<Mutex<Vec<(u16, u32)>>>,
    lsr: u32,
}

impl PortDevice for Recorder {
    fn read(&mut self, offset: u16, _size: u8) -> u32 {
        if offset == 5 { self.lsr } else { 0 }
    }
    fn write(&mut self, offset: u16, _size: u8, value: u32) {
        self.writes.lock().unwrap().push((offset, value));
    }
}

fn recorder(model: &TdxModule, base: u16, count: u16, lsr: u32) -> Arc<Mutex<Vec<(u16, u32)>>> {
    let writes = Arc::new(Mutex::new(Vec::new()));
    model.add_port_device(
        base,
        count,
        Box::new(Recorder {
            writes: writes.clone(),
            lsr,
        }),
    );
    writes
}

#[test]
fn formatted_text_reaches_the_uart_with_crlf() {
    let model = model();
    let vcpu = model.vcpu(0);
    let mut console = TdxSerial::new(&vcpu);
    writeln!(console, "hello {} from {:#x}", 42, 0xfeed).unwrap();
    write!(console, "no newline").unwrap();
    assert_eq!(
        model.uart_output(),
        b"hello 42 from 0xfeed\r\nno newline".to_vec()
    );
    // Each byte: one LSR read (ready at once) and one write; nothing else.
    let bytes = model.uart_output().len() as u64;
    assert_eq!(model.vmcall_count(function::IO), 2 * bytes);
    assert_eq!(model.tdcall_count(leaf::VP_VMCALL), 2 * bytes);
    assert!(!console.lsr_unresponsive());
}

#[test]
fn a_uart_that_never_gets_ready_costs_one_bounded_wait() {
    let model = model();
    // The line-status register claims "busy" forever; the data port is still the model's UART.
    recorder(&model, COM1 + 5, 1, 0);
    let vcpu = model.vcpu(0);
    let mut console = TdxSerial::new(&vcpu);
    console.write_bytes(b"abc").unwrap();
    assert_eq!(model.uart_output(), b"abc".to_vec());
    assert!(console.lsr_unresponsive());
    // LSR_POLL_LIMIT reads for the first byte, none after; three data writes.
    assert_eq!(
        model.vmcall_count(function::IO),
        u64::from(LSR_POLL_LIMIT) + 3
    );
}

#[test]
fn failing_lsr_reads_do_not_hang() {
    let model = model();
    // The VMM refuses every port read (R13 = 0 is "in"), answers writes.
    let refusing = Intercept {
        inner: model.vcpu(0),
        after: |input: &Regs, out: &mut Regs| {
            if input.rax == leaf::VP_VMCALL && input.r11 == function::IO && input.r13 == 0 {
                out.r10 = VmcallStatus::INVALID_OPERAND_RAW;
            }
        },
    };
    let mut console = TdxSerial::new(&refusing);
    console.write_bytes(b"xy").unwrap();
    assert_eq!(model.uart_output(), b"xy".to_vec());
    assert!(console.lsr_unresponsive());
}

#[test]
fn refused_writes_are_errors() {
    let model = model();
    model.refuse_vmcall(function::IO, VmcallStatus::INVALID_OPERAND_RAW, FOREVER);
    let vcpu = model.vcpu(0);
    let mut console = TdxSerial::new(&vcpu);
    assert_eq!(
        console.write_bytes(b"x"),
        Err(ConsoleError::Io(VmcallError::Vmm(
            VmcallStatus::InvalidOperand
        )))
    );
    assert!(write!(console, "y").is_err());
    assert_eq!(
        console.last_error(),
        Some(VmcallError::Vmm(VmcallStatus::InvalidOperand))
    );
    assert!(model.uart_output().is_empty());
}

#[test]
fn configure_programs_115200_8n1() {
    let model = model();
    let writes = recorder(&model, COM1, 8, 0x60);
    let vcpu = model.vcpu(0);
    let mut console = TdxSerial::new(&vcpu);
    console.configure().unwrap();
    let writes = writes.lock().unwrap().clone();
    // Replay the writes on a 16550's register semantics.
    let (mut dlab, mut divisor, mut lcr, mut fcr, mut mcr, mut ier) =
        (false, [None; 2], 0, 0, 0, None);
    for (offset, value) in writes {
        match (offset, dlab) {
            (0, true) => divisor[0] = Some(value),
            (1, true) => divisor[1] = Some(value),
            (1, false) => ier = Some(value),
            (2, _) => fcr = value,
            (3, _) => {
                lcr = value;
                dlab = value & 0x80 != 0;
            }
            (4, _) => mcr = value,
            other => panic!("unexpected write {other:?}"),
        }
    }
    assert_eq!(divisor, [Some(1), Some(0)], "115200 baud");
    assert_eq!(lcr, 0x03, "8N1, divisor latch closed");
    assert_eq!(ier, Some(0), "interrupts off");
    assert_eq!(fcr & 1, 1, "FIFO on");
    assert_eq!(mcr & 3, 3, "DTR and RTS");
}

/// A 16550A as QEMU emulates it, as far as transmission goes: IIR reports the FIFOs once FCR
/// enabled them; the transmitter is always empty. Counts line-status reads.
struct Uart16550a {
    fifo_on: bool,
    lsr_reads: Arc<Mutex<u32>>,
    sent: Arc<Mutex<Vec<u8>>>,
    dlab: bool,
}

impl PortDevice for Uart16550a {
    fn read(&mut self, offset: u16, _size: u8) -> u32 {
        match offset {
            2 if self.fifo_on => 0xc1,
            2 => 0x01,
            5 => {
                *self.lsr_reads.lock().unwrap() += 1;
                0x60
            }
            _ => 0,
        }
    }
    fn write(&mut self, offset: u16, _size: u8, value: u32) {
        match offset {
            0 if !self.dlab => self.sent.lock().unwrap().push(value as u8),
            2 => self.fifo_on = value & 1 != 0,
            3 => self.dlab = value & 0x80 != 0,
            _ => {}
        }
    }
}

#[test]
fn a_verified_fifo_takes_16_bytes_per_status_read() {
    let model = model();
    let lsr_reads = Arc::new(Mutex::new(0));
    let sent = Arc::new(Mutex::new(Vec::new()));
    model.add_port_device(
        COM1,
        8,
        Box::new(Uart16550a {
            fifo_on: false,
            lsr_reads: lsr_reads.clone(),
            sent: sent.clone(),
            dlab: false,
        }),
    );
    let vcpu = model.vcpu(0);
    let mut console = TdxSerial::new(&vcpu);
    assert_eq!(console.fifo_depth(), 1);
    console.write_bytes(&[b'a'; 4]).unwrap();
    assert_eq!(
        *lsr_reads.lock().unwrap(),
        4,
        "without a known FIFO: one read per byte"
    );

    console.configure().unwrap();
    assert_eq!(console.fifo_depth(), 16);
    *lsr_reads.lock().unwrap() = 0;
    let text: Vec<u8> = (0..40u8).map(|i| b'0' + i % 10).collect();
    console.write_bytes(&text).unwrap();
    assert_eq!(*lsr_reads.lock().unwrap(), 3, "40 bytes: 16 + 16 + 8");
    let sent = sent.lock().unwrap();
    assert_eq!(&sent[sent.len() - 40..], &text[..]);
}

#[test]
fn a_uart_that_does_not_confirm_its_fifo_is_polled_per_byte() {
    // The model's UART reports no FIFO in IIR: configure must not assume one.
    let model = model();
    let vcpu = model.vcpu(0);
    let mut console = TdxSerial::new(&vcpu);
    console.configure().unwrap();
    assert_eq!(console.fifo_depth(), 1);
    let before = model.vmcall_count(function::IO);
    console.write_bytes(b"abcd").unwrap();
    assert_eq!(model.vmcall_count(function::IO) - before, 8);
    assert_eq!(model.uart_output(), b"abcd".to_vec());
}

#[test]
fn another_port_and_impossible_ports() {
    let model = model();
    let writes = recorder(&model, 0x2f8, 8, 0x60);
    let vcpu = model.vcpu(0);
    let mut console = TdxSerial::with_port(&vcpu, 0x2f8).unwrap();
    console.write_bytes(b"\n").unwrap();
    assert_eq!(*writes.lock().unwrap(), vec![(0, 0x0d), (0, 0x0a)]);
    assert!(model.uart_output().is_empty());
    assert!(TdxSerial::with_port(&vcpu, 0xfff9).is_none());
    assert!(TdxSerial::with_port(&vcpu, 0xfff8).is_some());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Any bytes go out unchanged but for "\n" -> "\r\n".
    #[test]
    fn bytes_pass_through(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let model = model();
        let vcpu = model.vcpu(0);
        TdxSerial::new(&vcpu).write_bytes(&bytes).unwrap();
        let mut expected = Vec::new();
        for &b in &bytes {
            if b == b'\n' { expected.push(b'\r'); }
            expected.push(b);
        }
        prop_assert_eq!(model.uart_output(), expected);
    }
}
