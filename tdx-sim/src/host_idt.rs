//! The host's descriptor tables (metal's GDT with IST stacks and raw IDT, stubs made with
//! tdx-boot's `entry_stub!`, as the mini-kernel's): exceptions in tdx-sim itself are reported
//! on the console and end the run (there is nothing to return to); the APIC timer ends time
//! slices; the machine's device interrupts are noted for the TD ([`crate::host_device_irq`]).
//!
//! Every gate switches to an IST stack: after `stgi` the host takes interrupts anywhere in its
//! own code, whose precompiled `core` may keep data in the red zone below RSP.

use crate::{host_device_irq, host_timer};
use metal::idt::{Entry, Idt};
use tdx_boot::entry_stub;
use tdx_boot::ve::Frame;

/// IST slots.
mod ist {
    pub const DOUBLE_FAULT: u8 = 1;
    pub const NMI: u8 = 2;
    pub const MACHINE_CHECK: u8 = 3;
    pub const EXCEPTION: u8 = 4;
    pub const INTERRUPT: u8 = 5;
}
const IST_STACK_SIZE: usize = 16 * 1024;

/// The vector `other` reports for the vectors without a stub of their own.
const UNKNOWN_VECTOR: u64 = 0x100;

static IDT: spin::Once<Idt> = spin::Once::new();

extern "C" fn exception(frame: &mut Frame, vector: u64) {
    exception_with_error_code(frame, vector, 0);
}

extern "C" fn exception_with_error_code(frame: &mut Frame, vector: u64, error: u64) {
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    crate::fatal(format_args!(
        "tdx-sim itself took exception {vector} (error code {error:#x}) at RIP {:#x} (RSP {:#x}, CR2 {cr2:#x})",
        frame.rip, frame.rsp
    ));
}

extern "C" fn timer(_frame: &mut Frame, _vector: u64) {
    host_timer::on_interrupt();
}

extern "C" fn device(_frame: &mut Frame, pin: u64) {
    host_device_irq::record(pin);
}

extern "C" fn other(_frame: &mut Frame, _vector: u64) {
    host_timer::end_of_interrupt();
}

extern "C" fn spurious(_frame: &mut Frame, _vector: u64) {}

macro_rules! stubs {
    ($handler:path: $($name:ident = $vector:expr),* $(,)?) => {
        $(entry_stub!(
            /// A host entry point.
            fn $name => $handler, vector = $vector
        );)*
    };
    ($handler:path, error_code: $($name:ident = $vector:expr),* $(,)?) => {
        $(entry_stub!(
            /// A host entry point.
            fn $name => $handler, vector = $vector, error_code
        );)*
    };
}

stubs!(exception: de = 0, db = 1, nmi = 2, bp = 3, of = 4, br = 5, ud = 6, nm = 7, mf = 16,
    mc = 18, xm = 19, ve = 20);
stubs!(exception_with_error_code, error_code: df = 8, ts = 10, np = 11, ss = 12, gp = 13,
    pf = 14, ac = 17, cp = 21, vc = 29, sx = 30);
stubs!(timer: timer_stub = host_timer::VECTOR);
stubs!(spurious: spurious_stub = host_timer::SPURIOUS_VECTOR);
stubs!(other: other_stub = UNKNOWN_VECTOR);
// One stub per machine IOAPIC pin the TD can use (QEMU's IOAPIC has 24), on the host vectors
// `host_device_irq::FIRST_VECTOR + pin`.
stubs!(device: pin0 = 0, pin1 = 1, pin2 = 2, pin3 = 3, pin4 = 4, pin5 = 5, pin6 = 6, pin7 = 7,
    pin8 = 8, pin9 = 9, pin10 = 10, pin11 = 11, pin12 = 12, pin13 = 13, pin14 = 14, pin15 = 15,
    pin16 = 16, pin17 = 17, pin18 = 18, pin19 = 19, pin20 = 20, pin21 = 21, pin22 = 22,
    pin23 = 23);

const DEVICE_STUBS: [unsafe extern "C" fn(); host_device_irq::PINS] = [
    pin0, pin1, pin2, pin3, pin4, pin5, pin6, pin7, pin8, pin9, pin10, pin11, pin12, pin13, pin14,
    pin15, pin16, pin17, pin18, pin19, pin20, pin21, pin22, pin23,
];

/// The stub and IST slot of `vector`.
fn entry(vector: u8) -> Entry {
    let exceptions: [unsafe extern "C" fn(); 22] = [
        de, db, nmi, bp, of, br, ud, nm, df, other_stub, ts, np, ss, gp, pf, other_stub, mf, ac,
        mc, xm, ve, cp,
    ];
    let device_vectors =
        host_device_irq::FIRST_VECTOR..host_device_irq::FIRST_VECTOR + host_device_irq::PINS as u8;
    let (stub, ist): (unsafe extern "C" fn(), u8) = match vector {
        2 => (nmi, ist::NMI),
        8 => (df, ist::DOUBLE_FAULT),
        18 => (mc, ist::MACHINE_CHECK),
        0..22 => (exceptions[usize::from(vector)], ist::EXCEPTION),
        29 => (vc, ist::EXCEPTION),
        30 => (sx, ist::EXCEPTION),
        22..32 => (other_stub, ist::EXCEPTION),
        host_timer::VECTOR => (timer_stub, ist::INTERRUPT),
        host_timer::SPURIOUS_VECTOR => (spurious_stub, ist::INTERRUPT),
        v if device_vectors.contains(&v) => (
            DEVICE_STUBS[usize::from(v - host_device_irq::FIRST_VECTOR)],
            ist::INTERRUPT,
        ),
        _ => (other_stub, ist::INTERRUPT),
    };
    Entry {
        stub: stub as *const () as usize,
        ist,
    }
}

/// Loads the host GDT (with a TSS and its IST stacks) and IDT.
pub fn init() {
    metal::gdt::init([
        IST_STACK_SIZE,
        IST_STACK_SIZE,
        IST_STACK_SIZE,
        IST_STACK_SIZE,
        IST_STACK_SIZE,
        0,
        0,
    ]);
    let table = IDT.call_once(|| Idt::new(entry));
    // SAFETY: `entry` gives the error-code form to exactly the vectors that push an error code
    // (8, 10-14, 17, 21, 29, 30; the others up to 31 push none), every stub returns with
    // `iretq` or ends the run, and slots 1-5 exist in the TSS just loaded.
    unsafe { table.load() };
}
