//! The TD: its vCPUs, its memory as the nested tables map it, the TDX module (tdx-boot's
//! model) and what tdx-sim counts. [`Td::run`] schedules the vCPUs on this CPU until the TD
//! ends.

use crate::exits::{self, Outcome, Stop};
use crate::host_timer;
use crate::layout::{Layout, SHARED_BIT};
use crate::npt::Npt;
use crate::svm::{self, FxArea};
use crate::vcpu::{RunState, Tables, Vcpu};
use crate::vmcb::{Vmcb, control};
use alloc::boxed::Box;
use alloc::vec::Vec;
use tdx_boot::model::{PageState, TdxModule};

/// What tdx-sim counts for its final line.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    /// VM exits.
    pub exits: u64,
    /// TDCALLs served.
    pub tdcalls: u64,
    /// TDG.MEM.PAGE.ACCEPT calls.
    pub accepts: u64,
    /// TDG.VP.VMCALL calls.
    pub vmcalls: u64,
    /// #VE injected.
    pub ve_injected: u64,
    /// The machine's device interrupts delivered to a TD APIC.
    pub device_interrupts: u64,
    /// EPT-violation #VEs injected.
    pub ept_ve: u64,
    /// Those of them that carried a valid guest linear address.
    pub ept_ve_with_linear_address: u64,
    /// The last TDG.VP.VMCALL's sub-function and R12-R14 (where a TD spends its time).
    pub last_vmcall: [u64; 4],
}

/// The points of a boot tdx-sim reports once each, in order of a TDVF boot; `cargo xtask`
/// checks for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Milestone {
    /// TDVF's reset vector ran to its first TDCALL (TDG.VP.INFO in SEC).
    FirstTdcall,
    /// The TD took its first interrupt: DXE's local APIC timer runs.
    FirstInterrupt,
    /// Every AP sits in TDVF's relocated mailbox loop (TdxDxe).
    ApsInMailboxLoop,
}

impl Milestone {
    /// The name printed in the milestone line.
    pub const fn name(self) -> &'static str {
        match self {
            Self::FirstTdcall => "first TDCALL",
            Self::FirstInterrupt => "first interrupt",
            Self::ApsInMailboxLoop => "APs in the mailbox loop",
        }
    }
}

/// The devices tdx-sim itself looks at while the TD runs (the model holds clones of them).
pub struct TdDevices {
    /// The debug-exit port.
    pub debug_exit: crate::devices::DebugExit,
    /// The vCPUs' local APICs.
    pub apics: crate::apic_bank::ApicBank,
    /// The TD's IOAPIC.
    pub ioapic: crate::devices::TdIoApicDevice,
    /// COM1.
    pub serial: crate::devices::SerialTap,
}

/// How often a progress line is printed.
const PROGRESS_MS: u64 = 5_000;
/// How long a TD may go without a TDCALL before it counts as hung.
const HANG_MS: u64 = 20_000;

/// What the watchdog remembers.
#[derive(Clone, Copy, Debug, Default)]
struct Watch {
    tdcalls: u64,
    last_tdcall_ms: u64,
    next_progress_ms: u64,
}

/// A page-aligned permission map of `N` bytes.
#[repr(C, align(4096))]
struct PermissionMap<const N: usize>([u8; N]);

/// The TD.
pub struct Td {
    /// Its memory.
    pub layout: Layout,
    /// Its guest-physical address space.
    pub npt: Npt,
    /// The TDX module and the VMM's tables behind TDG.VP.VMCALL.
    pub module: TdxModule,
    /// Its vCPUs, by VCPU_INDEX.
    pub vcpus: Vec<Vcpu>,
    /// What happened so far.
    pub counters: Counters,
    /// COM1, where the kernel's final line is read.
    pub serial: crate::devices::SerialTap,
    /// The vCPUs' local APICs.
    pub apics: crate::apic_bank::ApicBank,
    /// The TD's IOAPIC, which routes the machine's device interrupts.
    pub ioapic: crate::devices::TdIoApicDevice,
    /// The debug-exit port, as the TD writes it.
    pub debug_exit: crate::devices::DebugExit,
    watch: Watch,
    /// #VEs in a row at one RIP.
    pub ve_storm: crate::ve_storm::VeStorm,
    /// The milestones reported so far, one bit each.
    milestones: u8,
    /// The APs seen in TDVF's mailbox loop, one bit per VCPU_INDEX.
    pub parked_aps: u64,
    /// Set when the nested tables lost a mapping: every vCPU flushes its TLB at its next run.
    flush_pending: Vec<bool>,
    host_vmcb: Box<Vmcb>,
    host_fx: Box<FxArea>,
    _iopm: Box<PermissionMap<{ 3 * 4096 }>>,
    _msrpm: Box<PermissionMap<{ 2 * 4096 }>>,
}

impl Td {
    /// A TD of `num_vcpus` vCPUs in the TDX initial state with the TD HOB at `td_hob`.
    pub fn new(
        layout: Layout,
        npt: Npt,
        module: TdxModule,
        devices: TdDevices,
        num_vcpus: u32,
        td_hob: u64,
    ) -> Self {
        let iopm = Box::new(PermissionMap([0xff; 3 * 4096]));
        let msrpm = Box::new(PermissionMap([0xff; 2 * 4096]));
        let tables = Tables {
            iopm: &*iopm as *const _ as u64,
            msrpm: &*msrpm as *const _ as u64,
            nested_cr3: npt.root(),
        };
        let vcpus = (0..num_vcpus)
            .map(|i| Vcpu::new(i, td_hob, &tables))
            .collect();
        Self {
            layout,
            npt,
            module,
            vcpus,
            counters: Counters::default(),
            debug_exit: devices.debug_exit,
            apics: devices.apics,
            ioapic: devices.ioapic,
            serial: devices.serial,
            watch: Watch::default(),
            ve_storm: crate::ve_storm::VeStorm::default(),
            milestones: 0,
            parked_aps: 0,
            flush_pending: alloc::vec![false; num_vcpus as usize],
            host_vmcb: Box::new(Vmcb::zeroed()),
            host_fx: Box::new(FxArea::initial()),
            _iopm: iopm,
            _msrpm: msrpm,
        }
    }

    /// Makes every vCPU flush its TLB before it runs again.
    pub fn flush_all_tlbs(&mut self) {
        self.flush_pending.iter_mut().for_each(|f| *f = true);
    }

    /// Brings the nested tables of `[start, end)` (GPAs without the shared bit) in line with
    /// the module's page states: accepted private pages mapped at their GPA, shared pages at
    /// their shared alias, everything else unmapped.
    pub fn sync_mappings(&mut self, start: u64, end: u64) {
        let mut lost_mapping = false;
        for (run_start, run_end, state) in self.module.page_runs(start, end) {
            for gpa in (run_start..run_end).step_by(4096) {
                let host = self.layout.host_of(gpa, 4096);
                let (private, shared) = match (state, host) {
                    (PageState::Private, Some(h)) => (Some(h), None),
                    (PageState::Shared, Some(h)) => (None, Some(h)),
                    _ => (None, None),
                };
                lost_mapping |= self.set_mapping(gpa, private);
                lost_mapping |= self.set_mapping(gpa | SHARED_BIT, shared);
            }
        }
        if lost_mapping {
            self.flush_all_tlbs();
        }
    }

    /// Maps `gpa` to `host` or unmaps it; true if a mapping went away or changed.
    fn set_mapping(&mut self, gpa: u64, host: Option<u64>) -> bool {
        let before = self.npt.lookup(gpa);
        if before == host {
            return false;
        }
        match host {
            // Out of heap for tables: the TD will fault there and end with that message.
            Some(h) => {
                let _ = self.npt.map(gpa, h);
            }
            None => self.npt.unmap(gpa),
        }
        before.is_some()
    }

    /// Reports `milestone` (once) with the time and what it was.
    pub fn milestone(&mut self, milestone: Milestone, what: core::fmt::Arguments<'_>) {
        let bit = 1u8 << milestone as u8;
        if self.milestones & bit != 0 {
            return;
        }
        self.milestones |= bit;
        let now = crate::host_clock::now_ms();
        crate::println!(
            "tdx-sim: milestone: {} at {}.{:03} s, after {} VM exits: {what}",
            milestone.name(),
            now / 1000,
            now % 1000,
            self.counters.exits
        );
    }

    /// A line about where every vCPU is, for progress reports and for a TD that hangs.
    pub fn progress_line(&self, now_ms: u64) {
        let mut line = alloc::string::String::new();
        for v in &self.vcpus {
            let _ = core::fmt::Write::write_fmt(
                &mut line,
                format_args!(" vCPU {} {:?} RIP {:#x};", v.index, v.state, v.rip()),
            );
        }
        crate::println!(
            "tdx-sim: [{}.{:03} s] {} exits, {} TDCALLs ({} ACCEPT, {} VMCALL, last {:x?}), {} #VE, {} device interrupts;{line}",
            now_ms / 1000,
            now_ms % 1000,
            self.counters.exits,
            self.counters.tdcalls,
            self.counters.accepts,
            self.counters.vmcalls,
            self.counters.last_vmcall,
            self.counters.ve_injected,
            self.counters.device_interrupts
        );
    }

    /// Every [`PROGRESS_MS`] a progress line; a TD that has made no TDCALL for [`HANG_MS`] is
    /// declared hung.
    fn watchdog(&mut self, vcpu: usize) -> Option<Stop> {
        let now = crate::host_clock::now_ms();
        if self.counters.tdcalls != self.watch.tdcalls {
            self.watch.tdcalls = self.counters.tdcalls;
            self.watch.last_tdcall_ms = now;
        }
        if now >= self.watch.next_progress_ms {
            self.watch.next_progress_ms = now + PROGRESS_MS;
            self.progress_line(now);
        }
        if now - self.watch.last_tdcall_ms <= HANG_MS {
            return None;
        }
        let mut code = [0u8; 16];
        let readable = crate::exits::instruction_bytes(self, 0, &mut code);
        Some(Stop::Died {
            vcpu: vcpu as u32,
            rip: self.vcpus[vcpu].rip(),
            why: alloc::format!(
                "the TD made no TDCALL for {} s: it hangs (vCPU 0 at RIP {:#x}, bytes {})",
                HANG_MS / 1000,
                self.vcpus[0].rip(),
                if readable {
                    alloc::format!("{code:02x?}")
                } else {
                    "unmapped".into()
                }
            ),
        })
    }

    /// Runs the TD until it ends, scheduling its runnable vCPUs round robin: a vCPU runs until
    /// its time slice ends (the host timer) or it halts.
    pub fn run(&mut self) -> Stop {
        let mut current = 0usize;
        loop {
            self.route_device_interrupts();
            self.apics.advance();
            self.wake_halted();
            let Some(index) = self.next_runnable(current) else {
                if self.apics.quiet() && !self.ioapic.0.lock().may_deliver() {
                    // Every vCPU waits for an interrupt and nothing will ever send one.
                    return Stop::AllHalted;
                }
                // Wait for the next host tick, then look at the APIC timers again.
                x86_64::instructions::hlt();
                if let Some(stop) = self.watchdog(current) {
                    return stop;
                }
                continue;
            };
            current = index;
            host_timer::start_slice(if index == 0 {
                host_timer::BSP_SLICE
            } else {
                host_timer::AP_SLICE
            });
            loop {
                self.route_device_interrupts();
                self.offer_interrupt(current);
                let vcpu = &mut self.vcpus[current];
                if core::mem::take(&mut self.flush_pending[current]) {
                    vcpu.vmcb.write8(control::TLB_CONTROL, 1);
                }
                // SAFETY: the VMCBs are page-aligned boxes whose physical addresses are their
                // (identity-mapped) addresses; the permission maps and nested tables they
                // point to live as long as the TD; SVM was enabled before the TD was built.
                unsafe {
                    svm::run(
                        &mut vcpu.gprs,
                        &*vcpu.vmcb as *const Vmcb as u64,
                        &*self.host_vmcb as *const Vmcb as u64,
                        &mut vcpu.fx,
                        &mut self.host_fx,
                    );
                }
                vcpu.vmcb.write8(control::TLB_CONTROL, 0);
                // An event whose delivery the exit interrupted is delivered again.
                let unfinished = vcpu.vmcb.read64(control::EXIT_INT_INFO);
                let reinject = if unfinished & (1 << 31) != 0 {
                    unfinished
                } else {
                    0
                };
                vcpu.vmcb.write64(control::EVENT_INJECTION, reinject);
                self.counters.exits += 1;
                let expired = host_timer::take_expiry();
                if expired && let Some(stop) = self.watchdog(current) {
                    return stop;
                }
                match exits::handle(self, current) {
                    Outcome::Continue if !expired => {}
                    Outcome::Continue | Outcome::Yield => break,
                    Outcome::Stop(stop) => return stop,
                }
            }
            current += 1;
        }
    }

    /// Hands the device interrupts the host took to the TD's IOAPIC, and what it sends on to
    /// the TD's APICs; then acknowledges them at the host APIC (see [`crate::host_device_irq`]).
    fn route_device_interrupts(&mut self) {
        // Before every VM entry: nothing to do is the rule, so no interrupt masking for it (one
        // taken after this look is routed before the next entry).
        if !crate::host_device_irq::any() {
            return;
        }
        x86_64::instructions::interrupts::without_interrupts(|| {
            let (pins, count) = crate::host_device_irq::take();
            if count == 0 {
                return;
            }
            // The IOAPIC's lock, then the APICs': the EOI path takes them one after the other.
            let mut ioapic = self.ioapic.0.lock();
            for pin in (0..crate::host_device_irq::PINS).filter(|pin| pins & (1 << pin) != 0) {
                let message = ioapic.interrupt(&mut crate::devices::MachineIoApic, pin);
                if message.is_some_and(|m| self.apics.deliver(&m)) {
                    self.counters.device_interrupts += 1;
                }
            }
            drop(ioapic);
            crate::host_device_irq::acknowledge(count);
        });
    }

    /// Halted vCPUs with an interrupt to take run again.
    fn wake_halted(&mut self) {
        for v in &mut self.vcpus {
            if v.state == RunState::Halted && self.apics.pending(v.index).is_some() {
                v.state = RunState::Runnable;
            }
        }
    }

    /// Injects `vcpu`'s APIC's highest pending interrupt if the vCPU can take it now.
    fn offer_interrupt(&mut self, vcpu: usize) {
        self.apics.advance();
        let v = &mut self.vcpus[vcpu];
        if !v.interruptible() || self.apics.pending(v.index).is_none() {
            return;
        }
        if let Some(vector) = self.apics.acknowledge(v.index) {
            v.inject_interrupt(vector);
            self.milestone(
                Milestone::FirstInterrupt,
                format_args!("vector {vector:#x} on vCPU {vcpu}"),
            );
        }
    }

    /// The first runnable vCPU from `from` on (wrapping).
    fn next_runnable(&self, from: usize) -> Option<usize> {
        let n = self.vcpus.len();
        (0..n)
            .map(|i| (from + i) % n)
            .find(|&i| self.vcpus[i].state == RunState::Runnable)
    }
}
