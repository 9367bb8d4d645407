//! An external interrupt, end to end: the RTC's periodic interrupt (ISA IRQ 8) through the
//! IOAPIC redirection entry the kernel programs, to its own x2APIC, taken on [`VECTOR`] and
//! ended with an x2APIC EOI.
//!
//! TD only: it needs the TD's x2APIC (TCG offers no x2APIC to the plain-QEMU kernel). Every
//! device access is a #VE (CMOS ports, the IOAPIC through a shared mapping, the x2APIC
//! registers the TDX module does not virtualize); EOI and TPR are virtualized and take none.
//! Under tdx-sim the interrupt crosses the real machine: the emulated RTC raises IRQ 8 at the
//! machine's IOAPIC, tdx-sim takes it on the host and injects the TD's vector into the vCPU the
//! TD's redirection entry names; on real TDX, QEMU's IOAPIC posts it through KVM.

use crate::check;
use crate::ioapic::{IOAPIC_GPA, IOAPICVER, IoApic, RTE_MASKED, RTE_READ_ONLY};
use crate::paging;
use crate::platform::Platform;
use crate::x2apic;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use tdx_boot::mpwk::Madt;
use tdx_boot::tdcall::Hardware;
use tdx_boot::ve::Frame;
use x86_64::instructions::port::Port;

/// The vector the kernel routes IRQ 8 to.
pub const VECTOR: u8 = 0x40;
/// Interrupts to take before the check passes: more than one shows the line re-arms after
/// the handler acknowledged the RTC.
const WANTED: u32 = 3;
/// How long to wait for the first (the RTC ticks every 976 us at the rate set below).
const TIMEOUT_MS: u64 = 2_000;
/// Halts allowed for the others: each wakes on some interrupt, a stray one among them.
const MAX_HALTS: u32 = 64;

/// ISA IRQ of the RTC.
const RTC_IRQ: u8 = 8;
const CMOS_INDEX: u16 = 0x70;
const CMOS_DATA: u16 = 0x71;
const RTC_A: u8 = 0x0a;
const RTC_B: u8 = 0x0b;
const RTC_C: u8 = 0x0c;
/// Register A's rate select for 1024 Hz.
const RATE_1024_HZ: u8 = 6;
/// Register B: periodic interrupt enable.
const RTC_B_PIE: u8 = 1 << 6;
/// Register C: periodic interrupt flag.
const RTC_C_PF: u8 = 1 << 6;

/// MADT entry types.
const MADT_IOAPIC: u8 = 1;
const MADT_INTERRUPT_OVERRIDE: u8 = 2;

static TAKEN: AtomicU32 = AtomicU32::new(0);
static PERIODIC_FLAGS: AtomicU32 = AtomicU32::new(0);
static STRAY: AtomicU64 = AtomicU64::new(0);

fn cmos_read(register: u8) -> u8 {
    // SAFETY: CMOS index/data port accesses only select and read an RTC register.
    unsafe {
        Port::<u8>::new(CMOS_INDEX).write(register);
        Port::<u8>::new(CMOS_DATA).read()
    }
}

fn cmos_write(register: u8, value: u8) {
    // SAFETY: the registers written here (A's rate, B's interrupt enables) only change when
    // the RTC interrupts.
    unsafe {
        Port::<u8>::new(CMOS_INDEX).write(register);
        Port::<u8>::new(CMOS_DATA).write(value);
    }
}

/// The handler of [`VECTOR`]: acknowledges the RTC (reading register C clears its flags and
/// lowers IRQ 8, so the next period makes a new edge) and sends EOI.
pub extern "C" fn on_interrupt(_frame: &mut Frame, _vector: u64) {
    let flags = cmos_read(RTC_C);
    PERIODIC_FLAGS.fetch_or(u32::from(flags), Ordering::Relaxed);
    TAKEN.fetch_add(1, Ordering::Relaxed);
    x2apic::end_of_interrupt();
}

/// An external vector the kernel did not route (a firmware timer left pending, say): counted
/// and retired, so the check can say so instead of dying on it.
pub fn on_stray_interrupt() {
    STRAY.fetch_add(1, Ordering::Relaxed);
    x2apic::end_of_interrupt();
}

/// Where ISA IRQ 8 arrives, from the MADT: the first IOAPIC's address and GSI base, IRQ 8's
/// GSI and its MPS flags (an interrupt source override, or identity and bus defaults).
fn rtc_route(madt: &Madt) -> Option<(u64, u32, u32, u16)> {
    let mut ioapic = None;
    let mut gsi = u32::from(RTC_IRQ);
    let mut flags = 0u16;
    for (kind, entry) in madt.entries() {
        match kind {
            MADT_IOAPIC if ioapic.is_none() && entry.len() >= 12 => {
                let address = u32::from_le_bytes(entry[4..8].try_into().ok()?);
                let base = u32::from_le_bytes(entry[8..12].try_into().ok()?);
                ioapic = Some((u64::from(address), base));
            }
            // Bus 0 (ISA), source IRQ 8.
            MADT_INTERRUPT_OVERRIDE
                if entry.len() >= 10 && entry[2] == 0 && entry[3] == RTC_IRQ =>
            {
                gsi = u32::from_le_bytes(entry[4..8].try_into().ok()?);
                flags = u16::from_le_bytes(entry[8..10].try_into().ok()?);
            }
            _ => {}
        }
    }
    let (address, base) = ioapic?;
    Some((address, base, gsi, flags))
}

/// The redirection entry for `vector` to x2APIC `apic_id` (physical mode: the IOAPIC's 8-bit
/// destination), fixed delivery, with the polarity and trigger of MPS `flags` (ISA defaults:
/// active high, edge).
fn redirection_entry(vector: u8, apic_id: u32, flags: u16) -> u64 {
    let active_low = flags & 0b11 == 0b11;
    let level = (flags >> 2) & 0b11 == 0b11;
    u64::from(vector)
        | u64::from(active_low) << 13
        | u64::from(level) << 15
        | u64::from(apic_id & 0xff) << 56
}

/// Routes IRQ 8 to this CPU, lets the RTC tick, and checks that its interrupts arrive, more
/// than once, on [`VECTOR`].
pub fn check(platform: &Platform, madt: &Madt, shared_mask: u64) {
    if !matches!(platform, Platform::Td) {
        return;
    }
    let name = "external interrupt";
    let Some((address, gsi_base, gsi, flags)) = rtc_route(madt) else {
        return check!(name, false, "the MADT has no IOAPIC");
    };
    if address != IOAPIC_GPA {
        return check!(
            name,
            false,
            "IOAPIC at {address:#x}, expected {IOAPIC_GPA:#x}"
        );
    }
    let registers = match paging::map_device_shared(address, shared_mask) {
        Ok(registers) => registers,
        Err(e) => return check!(name, false, "mapping the IOAPIC: {}", e.reason),
    };
    // SAFETY: the page is mapped shared and uncached for good; interrupts are off and the APs
    // are not running yet, so nothing else uses the window.
    let Some(mut ioapic) = (unsafe { IoApic::new(registers) }) else {
        return check!(name, false, "the IOAPIC mapping is null");
    };
    let entries = ((ioapic.read(IOAPICVER) >> 16) & 0xff) + 1;
    let Some(pin) = gsi.checked_sub(gsi_base).filter(|&p| p < entries) else {
        return check!(
            name,
            false,
            "GSI {gsi} is not on the IOAPIC (base {gsi_base}, {entries} pins)"
        );
    };
    let pin = pin as u8;
    let apic_id = crate::percpu::apic_id_from_cpuid();
    if apic_id > 0xff {
        return check!(
            name,
            false,
            "x2APIC ID {apic_id} needs interrupt remapping to be an IOAPIC destination"
        );
    }
    let entry = redirection_entry(VECTOR, apic_id, flags);

    // Interrupts stay disabled until the routing is in place.
    x2apic::enable();
    ioapic.set_redirection(pin, entry);
    let read_back = ioapic.redirection(pin) & !RTE_READ_ONLY;

    cmos_read(RTC_C);
    let rate = cmos_read(RTC_A);
    cmos_write(RTC_A, (rate & 0xf0) | RATE_1024_HZ);
    let enables = cmos_read(RTC_B);
    cmos_write(RTC_B, enables | RTC_B_PIE);
    let start = crate::tsc::now();
    // The first interrupt by polling, so that a route that does not work fails within the
    // timeout; then, the RTC seen ticking, the others by halting (TDVMCALL<HLT> with interrupts
    // enabled), which the device interrupt must wake.
    x86_64::instructions::interrupts::enable();
    while TAKEN.load(Ordering::Relaxed) == 0
        && crate::tsc::ms(crate::tsc::now() - start) < TIMEOUT_MS
    {
        core::hint::spin_loop();
    }
    let mut halts = 0u32;
    let mut halt_error = None;
    while (1..WANTED).contains(&TAKEN.load(Ordering::Relaxed)) && halts < MAX_HALTS {
        halts += 1;
        // SAFETY: the IDT is loaded and every vector that can arrive has a handler; the
        // kernel is ready to be interrupted here.
        if let Err(e) = unsafe { tdx_boot::ve::safe_halt(&Hardware) } {
            halt_error = Some(e);
            break;
        }
    }
    x86_64::instructions::interrupts::disable();
    let waited = crate::tsc::ms(crate::tsc::now() - start);
    cmos_write(RTC_B, enables & !RTC_B_PIE);
    cmos_write(RTC_A, rate);
    cmos_read(RTC_C);
    ioapic.set_redirection(pin, entry | RTE_MASKED);

    let taken = TAKEN.load(Ordering::Relaxed);
    let periodic = PERIODIC_FLAGS.load(Ordering::Relaxed) & u32::from(RTC_C_PF) != 0;
    check!(
        name,
        taken >= WANTED && periodic && read_back == entry && halt_error.is_none(),
        "RTC IRQ 8 -> GSI {gsi} (IOAPIC pin {pin}, entry {entry:#x}, read back {read_back:#x}) -> \
         x2APIC {apic_id} vector {VECTOR:#x}: {taken} taken in {waited} ms, the first polled, \
         then {halts} halts woken (periodic flag {periodic}, halt error {halt_error:?}), {} stray",
        STRAY.load(Ordering::Relaxed)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirection_entries_follow_the_mps_flags() {
        assert_eq!(
            redirection_entry(0x40, 0, 0),
            0x40,
            "ISA defaults: high, edge"
        );
        assert_eq!(
            redirection_entry(0x41, 3, 0b0101),
            0x41 | 3 << 56,
            "explicit high, edge"
        );
        assert_eq!(
            redirection_entry(0x42, 1, 0b1111),
            0x42 | 1 << 13 | 1 << 15 | 1 << 56,
            "low, level (a PCI line)"
        );
        assert_eq!(
            redirection_entry(0x40, 0x1_02, 0) >> 56,
            0x02,
            "the IOAPIC destination is 8 bits"
        );
    }
}
