//! What happens when a TD executes RDMSR or WRMSR.
//!
//! # The module's rules (Intel TDX module `td_dispatcher/vm_exits/td_msr_access.c` and its
//! generated `msr_config_lookup.c`; ABI spec "MSR virtualization")
//! - MSRs outside the ranges an MSR bitmap covers (0..=0x1FFF and 0xC000_0000..=0xC000_1FFF)
//!   always raise #VE.
//! - Inside them, the module's table gives per MSR and direction a bitmap meaning and an action:
//!   - bitmap bit fixed 0: no exit, the CPU reads or writes the TD's own copy (TSC read, EFER
//!     read, SYSENTER, PAT, STAR/LSTAR/FMASK, FS/GS bases, TSC_AUX, SPEC_CTRL...); for the
//!     x2APIC registers TPR, PPR, EOI, ISR, TMR, IRR and SELF_IPI that copy is the virtual
//!     APIC page (APIC-register virtualization),
//!   - dynamic: native when the TD's attributes or XFAM enable the feature (performance
//!     monitoring, PT, CET, LBR, PKS, user interrupts, UMWAIT, TSX, XFD), #GP otherwise,
//!   - exit with #VE, #GP, or "#GP under REDUCE_VE, #VE otherwise", or emulation by the module
//!     (EFER writes: only SCE may change, anything else #VE; MISC_ENABLE, DEBUGCTL and XSS with
//!     their checks; the VMX capability MSRs; ARCH_CAPABILITIES and XAPIC_DISABLE_STATUS reads).
//! - MSRs inside the bitmap ranges but missing from the table (IA32_APIC_BASE 0x1B, the x2APIC ID,
//!   version, LDR, SVR, ESR, CMCI, ICR, LVT, timer and divide registers, every unlisted MSR) exit
//!   and raise #VE, or #GP under REDUCE_VE.
//!
//! So a TD reaches its VMM for IA32_APIC_BASE and for every x2APIC register the CPU does not
//! virtualize; TDVF issues TDG.VP.VMCALL<RDMSR/WRMSR> for exactly those (0x1B, 0x80F, 0x832,
//! 0x835, 0x836, 0x838), and Linux's #VE handler forwards such accesses the same way.

/// Read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsrAccess {
    /// RDMSR.
    Read,
    /// WRMSR.
    Write,
}

/// A TD feature that dynamic MSRs depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsrFeature {
    /// ATTRIBUTES.PERFMON.
    Perfmon,
    /// XFAM.PT.
    ProcessorTrace,
    /// XFAM.CET.
    Cet,
    /// XFAM.LBR.
    Lbr,
    /// ATTRIBUTES.PKS.
    Pks,
    /// XFAM.ULI (user interrupts).
    UserInterrupts,
    /// CPUID-enumerated WAITPKG.
    Umwait,
    /// TSX enabled for the TD.
    Tsx,
    /// XFAM.AMX (XFD).
    Xfd,
    /// Other dynamic state (PERF_METRICS...): treated as PERFMON.
    Other,
}

/// A register the module emulates on exit, with checks of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EmulatedMsr {
    /// IA32_EFER write: only SCE may change; see [`efer_write`].
    Efer,
    /// IA32_MISC_ENABLE read.
    MiscEnable,
    /// IA32_DEBUGCTL.
    DebugCtl,
    /// IA32_XSS write, checked against XFAM.
    Xss,
    /// IA32_ARCH_CAPABILITIES read.
    ArchCapabilities,
    /// IA32_XAPIC_DISABLE_STATUS read (x2APIC cannot be disabled).
    XapicDisableStatus,
    /// An IA32_VMX_* capability read.
    VmxCapability,
    /// IA32_PERF_CAPABILITIES read.
    PerfCapabilities,
}

/// The module's decision for one MSR access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsrDecision {
    /// No exit: the CPU uses the TD's own copy of the MSR.
    Native,
    /// No exit: an x2APIC register the CPU virtualizes (virtual APIC page).
    VirtualApic,
    /// The module emulates it.
    Emulated(EmulatedMsr),
    /// #VE (exit reason 31 RDMSR / 32 WRMSR); the TD asks the VMM with TDG.VP.VMCALL.
    VirtualizationException,
    /// #GP(0) injected into the TD.
    GeneralProtection,
}

/// The TD's configuration the decisions depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MsrConfig {
    /// TD_CTLS.REDUCE_VE.
    pub reduce_ve: bool,
    /// Features enabled for the TD (dynamic MSRs are native for these, #GP otherwise).
    pub perfmon: bool,
    /// XFAM.PT.
    pub processor_trace: bool,
    /// XFAM.CET.
    pub cet: bool,
    /// XFAM.LBR.
    pub lbr: bool,
    /// ATTRIBUTES.PKS.
    pub pks: bool,
    /// XFAM.ULI.
    pub user_interrupts: bool,
    /// WAITPKG.
    pub umwait: bool,
    /// TSX.
    pub tsx: bool,
    /// XFAM.AMX.
    pub xfd: bool,
}

impl MsrConfig {
    fn has(&self, feature: MsrFeature) -> bool {
        match feature {
            MsrFeature::Perfmon | MsrFeature::Other => self.perfmon,
            MsrFeature::ProcessorTrace => self.processor_trace,
            MsrFeature::Cet => self.cet,
            MsrFeature::Lbr => self.lbr,
            MsrFeature::Pks => self.pks,
            MsrFeature::UserInterrupts => self.user_interrupts,
            MsrFeature::Umwait => self.umwait,
            MsrFeature::Tsx => self.tsx,
            MsrFeature::Xfd => self.xfd,
        }
    }
}

/// One direction's behaviour in the table.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Native,
    Apic,
    Ve,
    Gp,
    GpOrVe,
    Emulate(EmulatedMsr),
    Dynamic(MsrFeature),
}

use Action::{Apic, Dynamic, Emulate, Gp, GpOrVe, Native, Ve};
use EmulatedMsr as E;
use MsrFeature as F;

/// `(first, last, read, write)`, sorted by address (module `msr_config_lookup.c`).
const TABLE: &[(u32, u32, Action, Action)] = &[
    (0x10, 0x10, Native, Ve),     // IA32_TIME_STAMP_COUNTER
    (0x48, 0x49, Native, Native), // SPEC_CTRL, PRED_CMD
    (0x87, 0x87, GpOrVe, GpOrVe), // MKTME_PARTITIONING
    (0x8c, 0x8f, Gp, Gp),         // SGXLEPUBKEYHASH
    (0x98, 0x9b, Gp, Gp),         // WBINVDP, WBNOINVDP, INTR_PENDING, SMM_MONITOR_CTL
    (0x9e, 0x9e, Gp, Gp),         // SMBASE
    (0xbc, 0xbc, Native, Ve),     // MISC_PACKAGE_CTLS
    (0xbd, 0xbd, Emulate(E::XapicDisableStatus), Native),
    (0xc1, 0xc8, Dynamic(F::Perfmon), Dynamic(F::Perfmon)), // PMCx
    (0xe1, 0xe1, Dynamic(F::Umwait), Dynamic(F::Umwait)),
    (0x10a, 0x10a, Emulate(E::ArchCapabilities), Native),
    (0x10b, 0x10b, Native, Native), // FLUSH_CMD
    (0x122, 0x122, Dynamic(F::Tsx), Dynamic(F::Tsx)),
    (0x174, 0x176, Native, Native), // SYSENTER_CS/ESP/EIP
    (0x186, 0x18d, Dynamic(F::Perfmon), Dynamic(F::Perfmon)), // PERFEVTSELx
    (0x195, 0x195, Gp, Gp),         // OVERCLOCKING_STATUS
    (0x1a0, 0x1a0, Emulate(E::MiscEnable), Ve),
    (0x1a6, 0x1a7, Dynamic(F::Perfmon), Dynamic(F::Perfmon)), // OFFCORE_RSPx
    (0x1c4, 0x1c5, Dynamic(F::Xfd), Dynamic(F::Xfd)),
    (0x1d9, 0x1d9, Emulate(E::DebugCtl), Emulate(E::DebugCtl)),
    (0x1f8, 0x1fa, GpOrVe, GpOrVe),                           // DCA
    (0x276, 0x276, Gp, Gp),                                   // SLAM_ENABLE
    (0x277, 0x277, Native, Native),                           // PAT
    (0x309, 0x310, Dynamic(F::Perfmon), Dynamic(F::Perfmon)), // FIXED_CTRx
    (0x329, 0x329, Dynamic(F::Other), Dynamic(F::Other)),     // PERF_METRICS
    (
        0x345,
        0x345,
        Emulate(E::PerfCapabilities),
        Dynamic(F::Perfmon),
    ),
    (0x38d, 0x392, Dynamic(F::Perfmon), Dynamic(F::Perfmon)), // FIXED_CTR_CTRL..GLOBAL_INUSE
    (0x3f1, 0x3f2, Dynamic(F::Perfmon), Dynamic(F::Perfmon)), // PEBS
    (0x3f6, 0x3f7, Dynamic(F::Perfmon), Dynamic(F::Perfmon)),
    (0x480, 0x480, Emulate(E::VmxCapability), Gp),
    (0x481, 0x484, Ve, Gp), // VMX_{PINBASED,PROCBASED,EXIT,ENTRY}_CTLS
    (0x485, 0x489, Emulate(E::VmxCapability), Gp),
    (0x48a, 0x48a, Ve, Gp), // VMX_VMCS_ENUM
    (0x48b, 0x492, Emulate(E::VmxCapability), Gp),
    (0x4c1, 0x4c8, Dynamic(F::Perfmon), Dynamic(F::Perfmon)), // A_PMCx
    (0x500, 0x500, Gp, Gp),                                   // SGX_SVN_STATUS
    (
        0x560,
        0x561,
        Dynamic(F::ProcessorTrace),
        Dynamic(F::ProcessorTrace),
    ),
    (
        0x570,
        0x572,
        Dynamic(F::ProcessorTrace),
        Dynamic(F::ProcessorTrace),
    ),
    (
        0x580,
        0x587,
        Dynamic(F::ProcessorTrace),
        Dynamic(F::ProcessorTrace),
    ),
    (0x600, 0x600, Native, Native), // DS_AREA
    (0x6a0, 0x6a0, Dynamic(F::Cet), Dynamic(F::Cet)),
    (0x6a2, 0x6a2, Dynamic(F::Cet), Dynamic(F::Cet)),
    (0x6a4, 0x6a8, Dynamic(F::Cet), Dynamic(F::Cet)),
    (0x6e0, 0x6e0, GpOrVe, GpOrVe), // TSC_DEADLINE
    (0x6e1, 0x6e1, Dynamic(F::Pks), Dynamic(F::Pks)),
    (0x800, 0x801, Gp, Gp), // reserved x2APIC
    (0x804, 0x807, Gp, Gp),
    (0x808, 0x808, Apic, Apic), // TPR
    (0x809, 0x809, Apic, Apic),
    (0x80a, 0x80a, Apic, Apic), // PPR
    (0x80b, 0x80b, Apic, Apic), // EOI
    (0x80c, 0x80c, Apic, Apic),
    (0x80e, 0x80e, Apic, Apic),
    (0x810, 0x827, Apic, Apic), // ISR, TMR, IRR
    (0x829, 0x82e, Gp, Gp),
    (0x831, 0x831, Gp, Gp),
    (0x83f, 0x83f, Apic, Apic), // SELF_IPI
    (0x840, 0x8ff, Gp, Gp),
    (0x981, 0x984, GpOrVe, GpOrVe), // TME
    (
        0x985,
        0x98a,
        Dynamic(F::UserInterrupts),
        Dynamic(F::UserInterrupts),
    ),
    (0xc80, 0xc80, Native, Ve), // DEBUG_INTERFACE
    (0xd90, 0xd90, Gp, Gp),     // BNDCFGS
    (0xd93, 0xd93, Gp, Gp),     // PASID
    (0xda0, 0xda0, Native, Emulate(E::Xss)),
    (0x1200, 0x12ff, Dynamic(F::Lbr), Dynamic(F::Lbr)),
    (0x14ce, 0x14cf, Dynamic(F::Lbr), Dynamic(F::Lbr)),
    (0x1500, 0x16ff, Dynamic(F::Lbr), Dynamic(F::Lbr)),
    (0x1b01, 0x1b01, Native, Native), // UARCH_MISC_CTL
    (0xc000_0080, 0xc000_0080, Native, Emulate(E::Efer)),
    (0xc000_0081, 0xc000_0082, Native, Native), // STAR, LSTAR
    (0xc000_0084, 0xc000_0084, Native, Native), // FMASK
    (0xc000_0100, 0xc000_0103, Native, Native), // FS/GS/KERNEL_GS base, TSC_AUX
];

const BITMAP_MSRS: u32 = 0x2000;
const HIGH_MSRS: u32 = 0xc000_0000;

/// The module's decision for `access` to MSR `msr` in a TD configured with `config`.
pub fn td_msr(msr: u32, access: MsrAccess, config: &MsrConfig) -> MsrDecision {
    let in_bitmap = msr < BITMAP_MSRS || (HIGH_MSRS..HIGH_MSRS + BITMAP_MSRS).contains(&msr);
    if !in_bitmap {
        return MsrDecision::VirtualizationException;
    }
    let gp_or_ve = if config.reduce_ve {
        MsrDecision::GeneralProtection
    } else {
        MsrDecision::VirtualizationException
    };
    let Some(&(_, _, read, write)) = TABLE
        .iter()
        .find(|(first, last, ..)| (*first..=*last).contains(&msr))
    else {
        return gp_or_ve;
    };
    match if access == MsrAccess::Read {
        read
    } else {
        write
    } {
        Native => MsrDecision::Native,
        Apic => MsrDecision::VirtualApic,
        Ve => MsrDecision::VirtualizationException,
        Gp => MsrDecision::GeneralProtection,
        GpOrVe => gp_or_ve,
        Emulate(which) => MsrDecision::Emulated(which),
        Dynamic(feature) if config.has(feature) => MsrDecision::Native,
        Dynamic(_) => MsrDecision::GeneralProtection,
    }
}

/// EFER.SCE.
pub const EFER_SCE: u64 = 1 << 0;
/// EFER.LMA (read-only).
pub const EFER_LMA: u64 = 1 << 10;

/// The module's emulation of WRMSR(IA32_EFER) in a TD: LMA keeps its value, SCE takes the
/// written one, and a change of any other bit raises #VE. Returns the new EFER or `Err` for
/// #VE.
pub fn efer_write(current: u64, written: u64) -> Result<u64, MsrDecision> {
    let new = (written & !EFER_LMA) | (current & EFER_LMA);
    if (new ^ current) & !EFER_SCE != 0 {
        return Err(MsrDecision::VirtualizationException);
    }
    Ok(new)
}

#[cfg(test)]
mod tests;
