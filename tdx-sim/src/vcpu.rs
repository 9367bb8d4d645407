//! One TD vCPU on SVM: its VMCB, the registers the VMCB does not hold, its FPU state, and the
//! TDX initial state it starts in.

use crate::boot_paging::{self, INITIAL_CR0, INITIAL_CR4, Phase};
use crate::layout::GPAW;
use crate::svm::{FxArea, Gprs};
use crate::vmcb::{Vmcb, control, intercept1, intercept2, save};
use alloc::boxed::Box;

/// Where TDX starts every vCPU.
pub const RESET_RIP: u64 = 0xffff_fff0;
/// EFER.SVME: TCG's VMRUN refuses a guest EFER without it; the guest never sees it.
pub const EFER_SVME: u64 = 1 << 12;
const EFER_NXE: u64 = 1 << 11;
/// The architectural reset PAT.
const RESET_PAT: u64 = 0x0007_0406_0007_0406;

/// The CR writes intercepted until TDVF runs on its own page tables: CR0, CR3, CR4.
pub const CR_WRITE_INTERCEPTS: u32 = (1 << 16) | (1 << 19) | (1 << 20);

/// Whether a vCPU can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Runs when scheduled.
    Runnable,
    /// Waits for an interrupt (TDVMCALL HLT).
    Halted,
}

/// A TD vCPU.
pub struct Vcpu {
    /// VCPU_INDEX.
    pub index: u32,
    /// Its VMCB.
    pub vmcb: Box<Vmcb>,
    /// Its general registers outside the VMCB.
    pub gprs: Gprs,
    /// Its x87/SSE state.
    pub fx: Box<FxArea>,
    /// Where it is on the way to long mode.
    pub phase: Phase,
    /// Whether it can run.
    pub state: RunState,
    /// The MSRs the TD owns that the VMCB does not hold.
    pub native_msrs: alloc::collections::BTreeMap<u32, u64>,
}

/// Physical addresses the VMCB refers to.
pub struct Tables {
    /// The IO permission map (every port intercepted).
    pub iopm: u64,
    /// The MSR permission map (every MSR intercepted).
    pub msrpm: u64,
    /// The nested page tables' root.
    pub nested_cr3: u64,
}

impl Vcpu {
    /// vCPU `index` in the TDX initial state, with the TD HOB at `td_hob`.
    pub fn new(index: u32, td_hob: u64, tables: &Tables) -> Self {
        let mut vmcb = Box::new(Vmcb::zeroed());
        let v = &mut *vmcb;
        v.write32(control::CR_INTERCEPTS, CR_WRITE_INTERCEPTS);
        // #UD: TDCALL does not exist on this CPU, so each one faults and tdx-sim serves it.
        v.write32(control::EXCEPTION_INTERCEPTS, 1 << 6);
        v.write32(
            control::INTERCEPTS_1,
            intercept1::INTR
                | intercept1::NMI
                | intercept1::INIT
                | intercept1::CPUID
                | intercept1::INVD
                | intercept1::HLT
                | intercept1::IOIO
                | intercept1::MSR
                | intercept1::SHUTDOWN,
        );
        v.write32(
            control::INTERCEPTS_2,
            intercept2::VMRUN
                | intercept2::VMMCALL
                | intercept2::VMLOAD
                | intercept2::VMSAVE
                | intercept2::STGI
                | intercept2::CLGI
                | intercept2::SKINIT
                | intercept2::WBINVD
                | intercept2::MONITOR
                | intercept2::MWAIT,
        );
        v.write64(control::IOPM_BASE, tables.iopm);
        v.write64(control::MSRPM_BASE, tables.msrpm);
        // One ASID per vCPU: they share nested tables but not guest translations.
        v.write32(control::ASID, index + 1);
        v.write8(control::TLB_CONTROL, 1);
        // V_INTR_MASKING: the guest's IF masks only virtual interrupts; physical ones exit.
        v.write64(control::VIRTUAL_INTERRUPT, 1 << 24);
        v.write64(control::NESTED_CONTROL, 1);
        v.write64(control::NESTED_CR3, tables.nested_cr3);

        // Flat 32-bit segments (packed attributes: G, D/B, P, S, type).
        v.set_segment(save::CS, 0x08, 0xc9b, 0xffff_ffff, 0);
        for segment in [save::DS, save::ES, save::SS, save::FS, save::GS] {
            v.set_segment(segment, 0x10, 0xc93, 0xffff_ffff, 0);
        }
        v.set_segment(save::TR, 0, 0x08b, 0xffff, 0);
        v.set_segment(save::LDTR, 0, 0x082, 0xffff, 0);
        v.set_segment(save::GDTR, 0, 0, 0xffff, 0);
        v.set_segment(save::IDTR, 0, 0, 0xffff, 0);
        v.write64(save::CR0, INITIAL_CR0);
        v.write64(save::CR3, boot_paging::TABLES_GPA);
        v.write64(save::CR4, INITIAL_CR4);
        v.write64(save::EFER, EFER_SVME | EFER_NXE);
        v.write64(save::RFLAGS, 0x2);
        v.write64(save::RIP, RESET_RIP);
        v.write64(save::DR7, 0x400);
        v.write64(save::DR6, 0xffff_0ff0);
        v.write64(save::G_PAT, RESET_PAT);

        let gprs = Gprs {
            rbx: GPAW,
            rcx: td_hob,
            rsi: u64::from(index),
            r: [td_hob, 0, 0, 0, 0, 0, 0, 0],
            ..Gprs::default()
        };
        Self {
            index,
            vmcb,
            gprs,
            fx: Box::new(FxArea::initial()),
            phase: Phase::ResetVector { held_cr3: None },
            state: RunState::Runnable,
            native_msrs: alloc::collections::BTreeMap::new(),
        }
    }

    /// The guest's RIP.
    pub fn rip(&self) -> u64 {
        self.vmcb.read64(save::RIP)
    }

    /// Moves RIP past an instruction of `len` bytes and ends any interrupt shadow.
    pub fn skip(&mut self, len: u64) {
        let rip = self.rip().wrapping_add(len);
        self.vmcb.write64(save::RIP, rip);
        self.vmcb.write64(control::INTERRUPT_SHADOW, 0);
    }

    /// General register `n` (0 RAX .. 15 R15), RAX and RSP from the VMCB.
    pub fn gpr(&self, n: u8) -> u64 {
        match n {
            0 => self.vmcb.read64(save::RAX),
            1 => self.gprs.rcx,
            2 => self.gprs.rdx,
            3 => self.gprs.rbx,
            4 => self.vmcb.read64(save::RSP),
            5 => self.gprs.rbp,
            6 => self.gprs.rsi,
            7 => self.gprs.rdi,
            8..=15 => self.gprs.r[usize::from(n - 8)],
            _ => 0,
        }
    }

    /// Sets general register `n` (as [`Vcpu::gpr`]).
    pub fn set_gpr(&mut self, n: u8, value: u64) {
        match n {
            0 => self.vmcb.write64(save::RAX, value),
            1 => self.gprs.rcx = value,
            2 => self.gprs.rdx = value,
            3 => self.gprs.rbx = value,
            4 => self.vmcb.write64(save::RSP, value),
            5 => self.gprs.rbp = value,
            6 => self.gprs.rsi = value,
            7 => self.gprs.rdi = value,
            8..=15 => self.gprs.r[usize::from(n - 8)] = value,
            _ => {}
        }
    }

    /// Injects exception `vector` with error code `code` at the next VMRUN.
    pub fn inject_exception_with_code(&mut self, vector: u8, code: u32) {
        // Valid, error code valid (bit 11), type 3, the vector, the code in bits 63:32.
        self.vmcb.write64(
            control::EVENT_INJECTION,
            u64::from(code) << 32 | (1 << 31) | (1 << 11) | (3 << 8) | u64::from(vector),
        );
    }

    /// Whether external interrupt can be injected now: the guest's RFLAGS.IF is set, it is not
    /// in an interrupt shadow, and no other event is being injected at this VMRUN.
    ///
    /// (SVM's V_IRQ would let the CPU wait for the interrupt window itself, but QEMU 7.2's TCG
    /// asserts when VMRUN finds V_IRQ set; tdx-sim looks for the window at every exit instead,
    /// and the host tick makes one at least every millisecond.)
    pub fn interruptible(&self) -> bool {
        self.vmcb.read64(save::RFLAGS) & (1 << 9) != 0
            && self.vmcb.read64(control::INTERRUPT_SHADOW) & 1 == 0
            && self.vmcb.read64(control::EVENT_INJECTION) & (1 << 31) == 0
    }

    /// Injects external interrupt `vector` at the next VMRUN (call when [`Vcpu::interruptible`]).
    pub fn inject_interrupt(&mut self, vector: u8) {
        // Valid, type 0 (external interrupt), the vector.
        self.vmcb
            .write64(control::EVENT_INJECTION, (1 << 31) | u64::from(vector));
    }

    /// Injects exception `vector` (without an error code) at the next VMRUN.
    pub fn inject_exception(&mut self, vector: u8) {
        // Valid, type 3 (exception), the vector.
        self.vmcb.write64(
            control::EVENT_INJECTION,
            (1 << 31) | (3 << 8) | u64::from(vector),
        );
    }
}
