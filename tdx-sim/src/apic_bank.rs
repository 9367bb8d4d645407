//! The TD's local APICs: one software x2APIC ([`tdx_sim::x2apic`]) per vCPU, shared by the two
//! ways a TD reaches them: the registers the CPU virtualizes (EOI, TPR, ISR/IRR reads, self-IPI:
//! native RDMSR/WRMSR in the TD, served by tdx-sim's MSR exit) and the ones the TDX module
//! makes #VE so the TD asks the VMM with TDG.VP.VMCALL (SVR, LVTs, the timer, ICR, APIC base:
//! served through the model as an [`MsrDevice`]). Interrupts (timers, IPIs, the machine's
//! devices through the TD's IOAPIC) are then injected into the vCPU whose APIC has one pending;
//! the EOI of a level-triggered one goes back to the TD's IOAPIC.

use crate::devices::{MachineIoApic, TdIoApicDevice};
use alloc::sync::Arc;
use alloc::vec::Vec;
use spin::Mutex;
use tdx_boot::model::MsrDevice;
use tdx_sim::x2apic::{
    DeliveryMode, IpiRequest, WriteEffect, X2APIC_MSR_FIRST, X2APIC_MSR_LAST, X2Apic,
};

/// IA32_APIC_BASE.
pub const IA32_APIC_BASE: u32 = 0x1b;
/// The base a TD's APIC reports: the architectural address, enabled (bit 11), x2APIC (bit 10).
const APIC_BASE_X2APIC: u64 = 0xfee0_0000 | 1 << 11 | 1 << 10;
const APIC_BASE_BSP: u64 = 1 << 8;

/// Every vCPU's APIC, and the TD's IOAPIC that their level-triggered EOIs reach.
#[derive(Clone)]
pub struct ApicBank {
    apics: Arc<Mutex<Vec<X2Apic>>>,
    ioapic: TdIoApicDevice,
}

impl ApicBank {
    /// `n` APICs with IDs 0..n, their timers counting in nanoseconds.
    pub fn new(n: u32, ioapic: TdIoApicDevice) -> Self {
        Self {
            apics: Arc::new(Mutex::new(
                (0..n).map(|id| X2Apic::new(id, 1, false)).collect(),
            )),
            ioapic,
        }
    }

    /// Delivers an interrupt message (an IOAPIC's): a fixed one to every APIC it reaches, a
    /// lowest-priority one to the first (the lowest ID: TDX leaves the choice to the VMM).
    /// Returns whether an APIC took it.
    pub fn deliver(&self, message: &IpiRequest) -> bool {
        let mut apics = self.apics.lock();
        let mut reached = apics.iter_mut().filter(|a| message.reaches(a.id()));
        match message.mode {
            DeliveryMode::Fixed => {
                let mut any = false;
                for apic in reached {
                    apic.receive(message.vector, message.level_triggered);
                    any = true;
                }
                any
            }
            DeliveryMode::LowestPriority => reached.next().is_some_and(|apic| {
                apic.receive(message.vector, message.level_triggered);
                true
            }),
            // The TD's IOAPIC never sends NMIs.
            DeliveryMode::Nmi => false,
        }
    }

    /// RDMSR of an x2APIC register (or the APIC base) by `vcpu`.
    pub fn read(&self, vcpu: u32, index: u32) -> Option<u64> {
        if index == IA32_APIC_BASE {
            return Some(APIC_BASE_X2APIC | if vcpu == 0 { APIC_BASE_BSP } else { 0 });
        }
        let now = crate::host_clock::now_ns();
        self.apics.lock().get(vcpu as usize)?.read(index, now).ok()
    }

    /// WRMSR by `vcpu`; false for a #GP. IPIs are delivered to their targets at once.
    pub fn write(&self, vcpu: u32, index: u32, value: u64) -> bool {
        if index == IA32_APIC_BASE {
            // The x2APIC of a TD cannot be disabled or moved: only the same value is taken.
            return value & !APIC_BASE_BSP == APIC_BASE_X2APIC;
        }
        let now = crate::host_clock::now_ns();
        let mut apics = self.apics.lock();
        let Some(apic) = apics.get_mut(vcpu as usize) else {
            return false;
        };
        match apic.write(index, value, now) {
            Ok(WriteEffect::Ipi(ipi)) => {
                for target in apics.iter_mut().filter(|a| ipi.reaches(a.id())) {
                    target.receive(ipi.vector, false);
                }
                true
            }
            Ok(WriteEffect::LevelEoi(vector)) => {
                // Not under the APICs' lock: the IOAPIC is locked on its own.
                drop(apics);
                self.ioapic
                    .0
                    .lock()
                    .end_of_interrupt(&mut MachineIoApic, vector);
                true
            }
            Ok(_) => true,
            Err(_) => false,
        }
    }

    /// Runs every APIC's timer up to now.
    pub fn advance(&self) {
        let now = crate::host_clock::now_ns();
        for apic in self.apics.lock().iter_mut() {
            apic.advance(now);
        }
    }

    /// Whether `vcpu` has an interrupt to take.
    pub fn pending(&self, vcpu: u32) -> Option<u8> {
        self.apics.lock().get(vcpu as usize)?.pending_vector()
    }

    /// Whether no APIC has an interrupt pending or a timer armed: halted vCPUs would wait for
    /// ever.
    pub fn quiet(&self) -> bool {
        self.apics
            .lock()
            .iter()
            .all(|a| a.pending_vector().is_none() && a.next_event().is_none())
    }

    /// Moves `vcpu`'s highest pending interrupt in service and returns its vector.
    pub fn acknowledge(&self, vcpu: u32) -> Option<u8> {
        self.apics.lock().get_mut(vcpu as usize)?.acknowledge()
    }
}

impl MsrDevice for ApicBank {
    fn claims(&self, index: u32) -> bool {
        index == IA32_APIC_BASE || (X2APIC_MSR_FIRST..=X2APIC_MSR_LAST).contains(&index)
    }

    fn read(&mut self, vcpu: u32, index: u32) -> Option<u64> {
        ApicBank::read(self, vcpu, index)
    }

    fn write(&mut self, vcpu: u32, index: u32, value: u64) -> bool {
        ApicBank::write(self, vcpu, index, value)
    }
}
