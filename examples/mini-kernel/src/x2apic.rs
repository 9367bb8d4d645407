//! This CPU's x2APIC in a TD (a TD's local APIC is x2APIC only): enabling it, EOI, and the
//! fixed IPIs the BSP uses to wake halted APs.
//!
//! The TDX module virtualizes EOI and TPR (no #VE); SVR, the LVTs and ICR are #VE, emulated by
//! tdx-boot's handler as TDVMCALL<WRMSR> to the VMM, which delivers the IPI.

use core::sync::atomic::{AtomicU32, Ordering};
use tdx_boot::ve::Frame;
use x86_64::registers::model_specific::Msr;

const TPR: u32 = 0x808;
const EOI: u32 = 0x80b;
const SVR: u32 = 0x80f;
const ICR: u32 = 0x830;
const LVT_TIMER: u32 = 0x832;
const APIC_ENABLED: u64 = 1 << 8;
const LVT_MASKED: u64 = 1 << 16;

/// The vector that wakes a halted AP.
pub const WAKE_VECTOR: u8 = 0x41;
/// CPUs whose wake IPIs are counted (by per-CPU index).
const COUNTED_CPUS: usize = 64;

static WAKE_IPIS: [AtomicU32; COUNTED_CPUS] = [const { AtomicU32::new(0) }; COUNTED_CPUS];

/// Enables this CPU's x2APIC with the kernel's spurious vector, masks its timer (a firmware
/// timer must not fire into the kernel) and opens TPR. Interrupts stay as they are.
pub fn enable() {
    // SAFETY: these writes only change how interrupts are delivered to this CPU.
    unsafe {
        Msr::new(SVR).write(APIC_ENABLED | u64::from(crate::interrupts::SPURIOUS));
        Msr::new(LVT_TIMER).write(LVT_MASKED);
        Msr::new(TPR).write(0);
    }
}

/// Retires the interrupt in service.
pub fn end_of_interrupt() {
    // SAFETY: writing 0 to the EOI register retires the highest in-service vector.
    unsafe { Msr::new(EOI).write(0) };
}

/// Sends `vector` to the CPU with x2APIC ID `apic_id` (fixed, physical destination).
pub fn send(apic_id: u32, vector: u8) {
    // SAFETY: a fixed IPI only makes `vector` pending at the destination, whose IDT has it.
    unsafe { Msr::new(ICR).write(u64::from(apic_id) << 32 | u64::from(vector)) };
}

/// The handler of [`WAKE_VECTOR`]: the wake-up itself is the point; count it and EOI.
pub extern "C" fn on_wake(_frame: &mut Frame, _vector: u64) {
    if let Some(count) = crate::percpu::current().and_then(|cpu| WAKE_IPIS.get(cpu.index as usize))
    {
        count.fetch_add(1, Ordering::Relaxed);
    }
    end_of_interrupt();
}

/// The wake IPIs CPU `index` has taken.
pub fn wake_ipis(index: u32) -> u32 {
    WAKE_IPIS
        .get(index as usize)
        .map_or(0, |count| count.load(Ordering::Relaxed))
}
