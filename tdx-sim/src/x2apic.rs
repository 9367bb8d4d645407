//! A software x2APIC for one TD vCPU: the MSR interface 0x800-0x8FF, interrupt acceptance and
//! priority, EOI, the timer, and IPIs handed to the caller.
//!
//! # Rules (Intel SDM vol. 3, chapter 11 "Advanced Programmable Interrupt Controller",
//! 11.12 "Extended XAPIC (x2APIC)"; KVM `arch/x86/kvm/lapic.c` where the SDM leaves a choice)
//! - Registers: ID, version, TPR, PPR, EOI, LDR, SVR, ISR/TMR/IRR (eight 32-bit banks each),
//!   ESR, LVT CMCI/timer/thermal/performance/LINT0/LINT1/error, ICR (one 64-bit MSR), timer
//!   initial and current count, divide configuration, SELF IPI. Any other MSR in 0x800-0x8FF
//!   (including the xAPIC-only ICR high half, DFR and arbitration priority) is #GP.
//! - #GP as hardware raises it: RDMSR of a write-only register (EOI, SELF IPI), WRMSR of a
//!   read-only one (ID, version, PPR, LDR, ISR, TMR, IRR, current count), a non-zero value
//!   written to EOI or ESR, bits 63:32 set for any register but ICR, reserved ICR bits (31:20,
//!   17:16, 13, KVM's `X2APIC_ICR_RESERVED_BITS`). Other reserved bits are ignored on write
//!   (KVM masks them).
//! - LDR is derived from the ID: cluster `ID[31:4]` in bits 31:16, `1 << ID[3:0]` in bits 15:0.
//! - PPR is TPR if `TPR[7:4] >= ISRV[7:4]` (ISRV the highest in-service vector), else
//!   `ISRV & 0xF0`. A pending vector is delivered only if its class `vector[7:4]` exceeds
//!   `PPR[7:4]`; the highest such IRR vector moves to ISR when the CPU takes it.
//! - EOI retires the highest in-service vector; a level-triggered one (TMR set) is reported so
//!   the caller can EOI the IOAPIC.
//! - Vectors 0-15 are illegal: sending one sets ESR bit 5 and sends nothing, receiving one
//!   sets ESR bit 6 and drops it; an unmasked LVT error entry then raises its vector. A write to
//!   ESR moves the errors gathered since into the readable register.
//! - While the APIC is software-disabled (SVR bit 8 clear, the reset state) every LVT entry
//!   stays masked and fixed interrupts are not accepted (KVM `__apic_accept_irq`).
//! - The timer counts down at the caller's clock divided by `ticks_per_count` and by the
//!   divide configuration (2, 4, ..., 128 or 1), one-shot or periodic; in TSC-deadline mode
//!   (when offered) IA32_TSC_DEADLINE arms it and the initial count is ignored. Switching to or
//!   from TSC-deadline mode disarms the timer (KVM). There is no clock inside: every call takes
//!   `now`, a non-decreasing time in the caller's unit (the TSC), and [`X2Apic::next_event`]
//!   says when to call [`X2Apic::advance`] again.
//! - ICR writes become an [`IpiRequest`] for the caller to deliver. INIT, SIPI and SMI are
//!   refused (a TD has no INIT-SIPI: all vCPUs start at the reset vector; KVM's TDX support
//!   ignores them).

/// First x2APIC MSR.
pub const X2APIC_MSR_FIRST: u32 = 0x800;
/// Last x2APIC MSR.
pub const X2APIC_MSR_LAST: u32 = 0x8ff;
/// IA32_TSC_DEADLINE.
pub const IA32_TSC_DEADLINE: u32 = 0x6e0;

const ID: u32 = 0x802;
const VERSION: u32 = 0x803;
const TPR: u32 = 0x808;
const PPR: u32 = 0x80a;
const EOI: u32 = 0x80b;
const LDR: u32 = 0x80d;
const SVR: u32 = 0x80f;
const ISR0: u32 = 0x810;
const TMR0: u32 = 0x818;
const IRR0: u32 = 0x820;
const ESR: u32 = 0x828;
const LVT_CMCI: u32 = 0x82f;
const ICR: u32 = 0x830;
const LVT_TIMER: u32 = 0x832;
const LVT_ERROR: u32 = 0x837;
const TIMER_INITIAL: u32 = 0x838;
const TIMER_CURRENT: u32 = 0x839;
const TIMER_DIVIDE: u32 = 0x83e;
const SELF_IPI: u32 = 0x83f;

/// Version register: version 0x14, seven LVT entries (max LVT index 6), no EOI-broadcast
/// suppression.
pub const VERSION_VALUE: u32 = 0x14 | 6 << 16;
/// SVR bit 8.
pub const SVR_APIC_ENABLED: u32 = 1 << 8;
/// LVT bit 16.
pub const LVT_MASKED: u32 = 1 << 16;
/// ESR bit 5.
pub const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
/// ESR bit 6.
pub const ESR_RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;
/// Bits of ICR that must be zero in x2APIC mode.
pub const ICR_RESERVED: u64 = 0xfff0_0000 | 0x3_0000 | 1 << 13;

/// The LVT entries, in MSR order of their index.
const LVT_COUNT: usize = 7;
const LVT_INDEX_CMCI: usize = 0;
const LVT_INDEX_TIMER: usize = 1;
const LVT_INDEX_ERROR: usize = 6;
/// Writable bits of each LVT entry (CMCI, timer, thermal, perf, LINT0, LINT1, error).
const LVT_WRITABLE: [u32; LVT_COUNT] = [
    0x1_07ff, 0x7_00ff, 0x1_07ff, 0x1_07ff, 0x1_a7ff, 0x1_a7ff, 0x1_00ff,
];

/// Why an access faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicFault {
    /// #GP(0) for the RDMSR/WRMSR.
    GeneralProtection,
}

/// How an IPI is delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryMode {
    /// Fixed: the vector to every destination.
    Fixed,
    /// Lowest priority: the vector to one of the destinations (the caller picks).
    LowestPriority,
    /// NMI.
    Nmi,
}

/// Who receives an IPI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Destination {
    /// Physical mode: the APIC with this x2APIC ID (0xFFFF_FFFF: all).
    Physical(u32),
    /// Logical mode: cluster in bits 31:16, member bitmap in bits 15:0.
    Logical(u32),
    /// Shorthand "self".
    ToSelf,
    /// Shorthand "all including self".
    AllIncludingSelf,
    /// Shorthand "all excluding self".
    AllExcludingSelf,
}

/// An IPI the caller should deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpiRequest {
    /// The sender's x2APIC ID.
    pub source: u32,
    /// Vector (meaningless for NMI).
    pub vector: u8,
    /// Delivery mode.
    pub mode: DeliveryMode,
    /// Destination.
    pub destination: Destination,
    /// Level-triggered (ICR bit 15).
    pub level_triggered: bool,
}

impl IpiRequest {
    /// Whether the APIC with x2APIC ID `apic_id` is among the destinations.
    pub fn reaches(&self, apic_id: u32) -> bool {
        match self.destination {
            Destination::Physical(id) => id == u32::MAX || id == apic_id,
            Destination::Logical(dest) => {
                let ldr = logical_id(apic_id);
                dest == u32::MAX || (dest >> 16 == ldr >> 16 && dest & ldr & 0xffff != 0)
            }
            Destination::ToSelf => apic_id == self.source,
            Destination::AllIncludingSelf => true,
            Destination::AllExcludingSelf => apic_id != self.source,
        }
    }
}

/// Delivery modes a TD cannot send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefusedIpi {
    /// SMI (mode 2).
    Smi,
    /// INIT (mode 5).
    Init,
    /// Start-up (mode 6).
    StartUp,
    /// Modes 3 and 7 (reserved).
    Reserved(u8),
}

/// What a WRMSR did besides changing registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WriteEffect {
    /// Nothing for the caller.
    None,
    /// Deliver this IPI.
    Ipi(IpiRequest),
    /// The ICR asked for something a TD cannot do; nothing was sent.
    IpiRefused(RefusedIpi),
    /// A level-triggered vector was retired: EOI it at the IOAPIC.
    LevelEoi(u8),
}

/// The x2APIC logical ID (LDR) of APIC `apic_id`.
pub const fn logical_id(apic_id: u32) -> u32 {
    (apic_id >> 4) << 16 | 1 << (apic_id & 0xf)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimerState {
    Idle,
    /// `remaining` counts left at time `at`, this many clock units per count.
    Counting {
        at: u64,
        remaining: u64,
        units_per_count: u64,
    },
    /// TSC-deadline armed at this time.
    Deadline(u64),
}

/// One vCPU's x2APIC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct X2Apic {
    id: u32,
    tsc_deadline_supported: bool,
    ticks_per_count: u64,
    tpr: u32,
    svr: u32,
    isr: [u32; 8],
    tmr: [u32; 8],
    irr: [u32; 8],
    esr: u32,
    pending_errors: u32,
    lvt: [u32; LVT_COUNT],
    icr: u64,
    timer_initial: u32,
    timer_divide: u32,
    timer: TimerState,
}

impl X2Apic {
    /// The reset state of the x2APIC with ID `id` (software-disabled, every LVT masked). The
    /// timer counts once per `ticks_per_count` units of `now` before the divider (at least 1);
    /// `tsc_deadline` offers TSC-deadline mode (CPUID.1:ECX bit 24).
    pub fn new(id: u32, ticks_per_count: u64, tsc_deadline: bool) -> Self {
        X2Apic {
            id,
            tsc_deadline_supported: tsc_deadline,
            ticks_per_count: ticks_per_count.max(1),
            tpr: 0,
            svr: 0xff,
            isr: [0; 8],
            tmr: [0; 8],
            irr: [0; 8],
            esr: 0,
            pending_errors: 0,
            lvt: [LVT_MASKED; LVT_COUNT],
            icr: 0,
            timer_initial: 0,
            timer_divide: 0,
            timer: TimerState::Idle,
        }
    }

    /// The x2APIC ID.
    pub fn id(&self) -> u32 {
        self.id
    }

    fn enabled(&self) -> bool {
        self.svr & SVR_APIC_ENABLED != 0
    }

    /// RDMSR of an x2APIC register at time `now`.
    pub fn read(&self, msr: u32, now: u64) -> Result<u64, ApicFault> {
        let gp = Err(ApicFault::GeneralProtection);
        let value = match msr {
            ID => self.id,
            VERSION => VERSION_VALUE,
            TPR => self.tpr,
            PPR => self.ppr(),
            LDR => logical_id(self.id),
            SVR => self.svr,
            ISR0..=0x817 => self.isr[(msr - ISR0) as usize],
            TMR0..=0x81f => self.tmr[(msr - TMR0) as usize],
            IRR0..=0x827 => self.irr[(msr - IRR0) as usize],
            ESR => self.esr,
            LVT_CMCI => self.lvt[LVT_INDEX_CMCI],
            ICR => return Ok(self.icr),
            LVT_TIMER..=LVT_ERROR => self.lvt[(msr - LVT_TIMER) as usize + 1],
            TIMER_INITIAL => self.timer_initial,
            TIMER_CURRENT => self.current_count(now),
            TIMER_DIVIDE => self.timer_divide,
            _ => return gp,
        };
        Ok(u64::from(value))
    }

    /// WRMSR of an x2APIC register at time `now`.
    pub fn write(&mut self, msr: u32, value: u64, now: u64) -> Result<WriteEffect, ApicFault> {
        let gp = Err(ApicFault::GeneralProtection);
        if msr == ICR {
            return self.write_icr(value);
        }
        if !(X2APIC_MSR_FIRST..=X2APIC_MSR_LAST).contains(&msr) || value >> 32 != 0 {
            return gp;
        }
        let value = value as u32;
        match msr {
            TPR => self.tpr = value & 0xff,
            EOI if value != 0 => return gp,
            EOI => return Ok(self.eoi()),
            SVR => {
                self.svr = value & 0x3ff;
                if !self.enabled() {
                    for entry in &mut self.lvt {
                        *entry |= LVT_MASKED;
                    }
                }
            }
            ESR if value != 0 => return gp,
            ESR => {
                self.esr = self.pending_errors;
                self.pending_errors = 0;
            }
            LVT_CMCI => self.write_lvt(LVT_INDEX_CMCI, value, now),
            LVT_TIMER..=LVT_ERROR => self.write_lvt((msr - LVT_TIMER) as usize + 1, value, now),
            TIMER_INITIAL => {
                if self.timer_mode() != TimerMode::TscDeadline {
                    self.timer_initial = value;
                    self.timer = if value == 0 {
                        TimerState::Idle
                    } else {
                        TimerState::Counting {
                            at: now,
                            remaining: u64::from(value),
                            units_per_count: self.units_per_count(),
                        }
                    };
                }
            }
            TIMER_DIVIDE => {
                let current = self.current_count(now);
                self.timer_divide = value & 0b1011;
                if let TimerState::Counting { .. } = self.timer {
                    // Keep the count reached and go on at the new rate.
                    self.rebase(current, now);
                }
            }
            SELF_IPI => {
                self.receive((value & 0xff) as u8, false);
            }
            _ => return gp,
        }
        Ok(WriteEffect::None)
    }

    /// RDMSR(IA32_TSC_DEADLINE): the armed deadline, 0 when none or not in TSC-deadline mode.
    pub fn read_tsc_deadline(&self) -> Result<u64, ApicFault> {
        if !self.tsc_deadline_supported {
            return Err(ApicFault::GeneralProtection);
        }
        Ok(match self.timer {
            TimerState::Deadline(t) if self.timer_mode() == TimerMode::TscDeadline => t,
            _ => 0,
        })
    }

    /// WRMSR(IA32_TSC_DEADLINE): arms the timer for `deadline` (0 disarms) in TSC-deadline
    /// mode; ignored in the other modes (SDM 11.5.4.1).
    pub fn write_tsc_deadline(&mut self, deadline: u64, now: u64) -> Result<(), ApicFault> {
        if !self.tsc_deadline_supported {
            return Err(ApicFault::GeneralProtection);
        }
        if self.timer_mode() == TimerMode::TscDeadline {
            self.timer = if deadline == 0 {
                TimerState::Idle
            } else {
                TimerState::Deadline(deadline)
            };
            self.advance(now);
        }
        Ok(())
    }

    /// Accepts an interrupt from outside (IOAPIC, MSI, another vCPU's IPI): fixed or
    /// lowest-priority delivery of `vector`, edge or level.
    pub fn receive(&mut self, vector: u8, level_triggered: bool) {
        if vector < 16 {
            self.record_error(ESR_RECEIVE_ILLEGAL_VECTOR);
            return;
        }
        if !self.enabled() {
            return;
        }
        set_bit(&mut self.irr, vector);
        if level_triggered {
            set_bit(&mut self.tmr, vector);
        } else {
            clear_bit(&mut self.tmr, vector);
        }
    }

    /// The vector the CPU would take now (interrupts enabled), if any.
    pub fn pending_vector(&self) -> Option<u8> {
        let irr = highest(&self.irr)?;
        (irr >> 4 > (self.ppr() >> 4) as u8).then_some(irr)
    }

    /// The CPU takes the interrupt [`pending_vector`](Self::pending_vector) names: it moves from
    /// IRR to ISR. Returns the vector to inject.
    pub fn acknowledge(&mut self) -> Option<u8> {
        let vector = self.pending_vector()?;
        clear_bit(&mut self.irr, vector);
        set_bit(&mut self.isr, vector);
        Some(vector)
    }

    /// Fires the timer if it expired by `now`; returns whether it did (the LVT vector is then
    /// pending unless masked).
    pub fn advance(&mut self, now: u64) -> bool {
        let Some(expiry) = self.next_event() else {
            return false;
        };
        if now < expiry {
            return false;
        }
        match self.timer {
            TimerState::Counting {
                units_per_count, ..
            } => {
                if self.timer_mode() == TimerMode::Periodic {
                    let period = u64::from(self.timer_initial)
                        .saturating_mul(units_per_count)
                        .max(1);
                    let periods = (now - expiry) / period;
                    self.timer = TimerState::Counting {
                        at: expiry.saturating_add(periods.saturating_mul(period)),
                        remaining: u64::from(self.timer_initial),
                        units_per_count,
                    };
                } else {
                    self.timer = TimerState::Idle;
                }
            }
            TimerState::Deadline(_) => self.timer = TimerState::Idle,
            TimerState::Idle => return false,
        }
        let lvt = self.lvt[LVT_INDEX_TIMER];
        if lvt & LVT_MASKED == 0 {
            self.local_interrupt(lvt);
        }
        true
    }

    /// When the timer next expires (in `now` units), if it is armed.
    pub fn next_event(&self) -> Option<u64> {
        match self.timer {
            TimerState::Idle => None,
            TimerState::Deadline(t) => Some(t),
            TimerState::Counting {
                at,
                remaining,
                units_per_count,
            } => Some(at.saturating_add(remaining.saturating_mul(units_per_count))),
        }
    }

    fn write_icr(&mut self, value: u64) -> Result<WriteEffect, ApicFault> {
        if value & ICR_RESERVED != 0 {
            return Err(ApicFault::GeneralProtection);
        }
        self.icr = value;
        let vector = (value & 0xff) as u8;
        let mode = match (value >> 8) & 7 {
            0 => DeliveryMode::Fixed,
            1 => DeliveryMode::LowestPriority,
            2 => return Ok(WriteEffect::IpiRefused(RefusedIpi::Smi)),
            4 => DeliveryMode::Nmi,
            5 => return Ok(WriteEffect::IpiRefused(RefusedIpi::Init)),
            6 => return Ok(WriteEffect::IpiRefused(RefusedIpi::StartUp)),
            other => return Ok(WriteEffect::IpiRefused(RefusedIpi::Reserved(other as u8))),
        };
        if mode != DeliveryMode::Nmi && vector < 16 {
            self.record_error(ESR_SEND_ILLEGAL_VECTOR);
            return Ok(WriteEffect::None);
        }
        let target = (value >> 32) as u32;
        let destination = match (value >> 18) & 3 {
            0 if value & 1 << 11 != 0 => Destination::Logical(target),
            0 => Destination::Physical(target),
            1 => Destination::ToSelf,
            2 => Destination::AllIncludingSelf,
            _ => Destination::AllExcludingSelf,
        };
        Ok(WriteEffect::Ipi(IpiRequest {
            source: self.id,
            vector,
            mode,
            destination,
            level_triggered: value & 1 << 15 != 0,
        }))
    }

    fn write_lvt(&mut self, index: usize, value: u32, now: u64) {
        let mut value = value & LVT_WRITABLE[index];
        if !self.enabled() {
            value |= LVT_MASKED;
        }
        if index == LVT_INDEX_TIMER {
            if !self.tsc_deadline_supported {
                value &= !(1 << 18);
            }
            let old_mode = self.timer_mode();
            self.lvt[index] = value;
            let new_mode = self.timer_mode();
            if (old_mode == TimerMode::TscDeadline) != (new_mode == TimerMode::TscDeadline) {
                self.timer = TimerState::Idle;
                self.timer_initial = 0;
            } else if old_mode != new_mode {
                let current = self.current_count(now);
                self.rebase(current, now);
            }
        } else {
            self.lvt[index] = value;
        }
    }

    fn eoi(&mut self) -> WriteEffect {
        let Some(vector) = highest(&self.isr) else {
            return WriteEffect::None;
        };
        clear_bit(&mut self.isr, vector);
        if test_bit(&self.tmr, vector) {
            WriteEffect::LevelEoi(vector)
        } else {
            WriteEffect::None
        }
    }

    fn ppr(&self) -> u32 {
        let isrv = highest(&self.isr).map_or(0, u32::from);
        if (self.tpr >> 4) >= (isrv >> 4) {
            self.tpr
        } else {
            isrv & 0xf0
        }
    }

    fn record_error(&mut self, bit: u32) {
        self.pending_errors |= bit;
        let lvt = self.lvt[LVT_INDEX_ERROR];
        if lvt & LVT_MASKED == 0 && lvt & 0xff >= 16 {
            self.local_interrupt(lvt);
        }
    }

    /// A local (LVT) interrupt: fixed delivery of the entry's vector, edge-triggered.
    fn local_interrupt(&mut self, lvt: u32) {
        self.receive((lvt & 0xff) as u8, false);
    }

    fn timer_mode(&self) -> TimerMode {
        match (self.lvt[LVT_INDEX_TIMER] >> 17) & 3 {
            1 => TimerMode::Periodic,
            2 => TimerMode::TscDeadline,
            _ => TimerMode::OneShot,
        }
    }

    fn divisor(&self) -> u64 {
        let code = (self.timer_divide & 3) | ((self.timer_divide >> 1) & 4);
        if code == 7 { 1 } else { 2 << code }
    }

    fn units_per_count(&self) -> u64 {
        self.divisor().saturating_mul(self.ticks_per_count)
    }

    fn current_count(&self, now: u64) -> u32 {
        let TimerState::Counting {
            at,
            remaining,
            units_per_count,
        } = self.timer
        else {
            return 0;
        };
        let elapsed = now.saturating_sub(at) / units_per_count;
        let initial = u64::from(self.timer_initial);
        let count = if elapsed < remaining {
            remaining - elapsed
        } else if self.timer_mode() == TimerMode::Periodic && initial != 0 {
            initial - (elapsed - remaining) % initial
        } else {
            0
        };
        count as u32
    }

    /// Goes on counting from `current` at `now` at the present rate.
    fn rebase(&mut self, current: u32, now: u64) {
        self.timer = if current == 0 {
            TimerState::Idle
        } else {
            TimerState::Counting {
                at: now,
                remaining: u64::from(current),
                units_per_count: self.units_per_count(),
            }
        };
    }
}

/// The timer's mode (LVT timer bits 18:17).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimerMode {
    OneShot,
    Periodic,
    TscDeadline,
}

fn set_bit(bank: &mut [u32; 8], vector: u8) {
    bank[usize::from(vector >> 5)] |= 1 << (vector & 31);
}

fn clear_bit(bank: &mut [u32; 8], vector: u8) {
    bank[usize::from(vector >> 5)] &= !(1 << (vector & 31));
}

fn test_bit(bank: &[u32; 8], vector: u8) -> bool {
    bank[usize::from(vector >> 5)] & 1 << (vector & 31) != 0
}

fn highest(bank: &[u32; 8]) -> Option<u8> {
    (0..8)
        .rev()
        .find(|&i| bank[i] != 0)
        .map(|i| (i * 32 + 31 - bank[i].leading_zeros() as usize) as u8)
}

#[cfg(test)]
mod tests;
