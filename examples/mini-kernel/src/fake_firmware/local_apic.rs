//! The local APIC, for the one thing the fake firmware needs: INIT-SIPI-SIPI to an AP.
//!
//! Works in xAPIC mode (MMIO at the APIC base) and x2APIC mode (MSRs), whichever the firmware
//! left enabled. Only without TDX: a TD's APs are started by TDVF and woken through its
//! mailbox, and a TD's local APIC is virtualized in x2APIC mode, where INIT and SIPI are not
//! delivered and the xAPIC page does not exist.

use crate::tsc;
use core::ptr::NonNull;
use volatile::VolatilePtr;
use x86_64::registers::model_specific::Msr;

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const X2APIC_ICR: u32 = 0x830;
const XAPIC_ICR_LOW: u64 = 0x300;
const XAPIC_ICR_HIGH: u64 = 0x310;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;
/// INIT, level assert, physical destination.
const ICR_INIT: u32 = 0x4500;
/// STARTUP, level assert, physical destination (vector in the low byte).
const ICR_STARTUP: u32 = 0x4600;

/// Sends one interrupt command to `apic_id` and waits until it is delivered.
fn send(apic_id: u32, command: u32) {
    // SAFETY: reading IA32_APIC_BASE has no side effects.
    let base = unsafe { Msr::new(IA32_APIC_BASE).read() };
    if base & APIC_BASE_X2APIC != 0 {
        // SAFETY: writing the x2APIC ICR sends the IPI; x2APIC has no delivery-pending bit.
        unsafe { Msr::new(X2APIC_ICR).write((u64::from(apic_id) << 32) | u64::from(command)) };
        return;
    }
    let mmio = base & 0x000f_ffff_ffff_f000;
    let register = |offset: u64| {
        let pointer = NonNull::new((mmio + offset) as *mut u32)?;
        // SAFETY: the xAPIC registers are identity-mapped MMIO (firmware page tables), 16-byte
        // aligned 32-bit registers that only this CPU's fake firmware uses.
        Some(unsafe { VolatilePtr::new(pointer) })
    };
    let (Some(icr_high), Some(icr_low)) = (register(XAPIC_ICR_HIGH), register(XAPIC_ICR_LOW))
    else {
        return;
    };
    // Writing the high half then the low half of the ICR sends the IPI.
    icr_high.write(apic_id << 24);
    icr_low.write(command);
    for _ in 0..1_000_000 {
        if icr_low.read() & ICR_DELIVERY_PENDING == 0 {
            break;
        }
        core::hint::spin_loop();
    }
}

/// Starts the AP `apic_id` at real-mode address `vector << 12` (the INIT-SIPI-SIPI sequence).
pub fn start_ap(apic_id: u32, vector: u8) {
    send(apic_id, ICR_INIT);
    tsc::delay_us(10_000);
    for _ in 0..2 {
        send(apic_id, ICR_STARTUP | u32::from(vector));
        tsc::delay_us(200);
    }
}
