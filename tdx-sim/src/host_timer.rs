//! Time slices: the outer CPU's local APIC timer (xAPIC, at its MMIO base) ends each vCPU's
//! slice. Its interrupt makes the guest exit (physical interrupts are intercepted); tdx-sim
//! then opens the global interrupt flag, the host IDT's handler takes the interrupt, notes the
//! expiry and sends EOI, and the scheduler moves to the next vCPU.
//!
//! TDVF's waiting APs spin without PAUSE (SEC's arrival and command loops, the mailbox loop),
//! so nothing but a timer takes the CPU back from them.

use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::registers::model_specific::Msr;

/// The timer's vector in the host IDT.
pub const VECTOR: u8 = 0xf0;
/// The APIC's spurious vector.
pub const SPURIOUS_VECTOR: u8 = 0xff;
/// The timer ticks periodically (a one-shot timer that expires while tdx-sim itself runs would
/// be taken by the host and leave the next guest running for ever). QEMU's APIC timer counts
/// nanoseconds at divide-by-1: one tick is 1 ms.
const TICK_NS: u32 = 1_000_000;
/// Slice lengths in ticks. The BSP gets most of the CPU: TDVF's APs only wait until woken.
pub const BSP_SLICE: u64 = 10;
/// An AP's slice.
pub const AP_SLICE: u64 = 1;
const LVT_PERIODIC: u32 = 1 << 17;

const IA32_APIC_BASE: u32 = 0x1b;
const ID: usize = 0x20;
const EOI: usize = 0xb0;
const SVR: usize = 0xf0;
const LVT_TIMER: usize = 0x320;
const INITIAL_COUNT: usize = 0x380;
const DIVIDE: usize = 0x3e0;
const LVT_LINT0: usize = 0x350;
const LVT_LINT1: usize = 0x360;
const LVT_MASKED: u32 = 1 << 16;

/// Ticks since boot, and the tick at which the current slice ends.
static TICKS: AtomicU64 = AtomicU64::new(0);
static SLICE_END: AtomicU64 = AtomicU64::new(0);

fn apic_base() -> usize {
    // SAFETY: reading IA32_APIC_BASE has no side effects.
    let base = unsafe { Msr::new(IA32_APIC_BASE).read() };
    (base & 0xf_ffff_f000) as usize
}

/// This CPU's local APIC ID (xAPIC ID register, bits 31:24).
pub fn apic_id() -> u8 {
    // SAFETY: as for `write`; reading the ID register has no side effects.
    let id = unsafe { ((apic_base() + ID) as *const u32).read_volatile() };
    (id >> 24) as u8
}

fn write(register: usize, value: u32) {
    // SAFETY: the xAPIC page is identity-mapped by the outer firmware; each register is an
    // aligned u32, and writing the timer, LVT, SVR and EOI registers only affects interrupts.
    unsafe { ((apic_base() + register) as *mut u32).write_volatile(value) };
}

/// Enables the APIC with the spurious vector, masks LINT0/LINT1 and the legacy PICs (the
/// firmware's timer must not interrupt tdx-sim) and starts the periodic tick.
pub fn init() {
    // SAFETY: masking every line of both 8259s only stops legacy interrupts.
    unsafe {
        x86_64::instructions::port::Port::<u8>::new(0x21).write(0xff);
        x86_64::instructions::port::Port::<u8>::new(0xa1).write(0xff);
    }
    write(SVR, 0x100 | u32::from(SPURIOUS_VECTOR));
    write(LVT_LINT0, LVT_MASKED);
    write(LVT_LINT1, LVT_MASKED);
    write(DIVIDE, 0xb);
    write(LVT_TIMER, u32::from(VECTOR) | LVT_PERIODIC);
    write(INITIAL_COUNT, TICK_NS);
}

/// Starts a slice of `ticks` ticks.
pub fn start_slice(ticks: u64) {
    SLICE_END.store(TICKS.load(Ordering::Relaxed) + ticks, Ordering::Relaxed);
}

/// Called by the host IDT's timer handler.
pub fn on_interrupt() {
    TICKS.fetch_add(1, Ordering::Relaxed);
    write(EOI, 0);
}

/// Acknowledges an APIC interrupt that is not the timer's.
pub fn end_of_interrupt() {
    write(EOI, 0);
}

/// After a VM exit: lets a pending host interrupt in (GIF is clear after #VMEXIT) and says
/// whether the slice has ended.
pub fn take_expiry() -> bool {
    // SAFETY: STGI sets the global interrupt flag; with RFLAGS.IF set the pending timer
    // interrupt is delivered to the host IDT right here, whose handler only sets a flag.
    unsafe { core::arch::asm!("stgi", "nop", options(nomem, nostack)) };
    TICKS.load(Ordering::Relaxed) >= SLICE_END.load(Ordering::Relaxed)
}
