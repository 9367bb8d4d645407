//! What the TDX module does when a TD executes CPUID, and the values it returns.
//!
//! # The module's rules (Intel TDX module `td_dispatcher/vm_exits/td_cpuid.c` and its generated
//! `cpuid_configurations.c`, version 1.5; ABI spec "CPUID virtualization")
//! 1. Leaves 0x4000_0000..=0x4FFF_FFFF always raise #VE: they belong to the VMM, and the TD asks
//!    it with TDG.VP.VMCALL<Instruction.CPUID> (Linux `handle_cpuid` forwards only this range).
//! 2. If the TD asked for #VE on every CPUID at its CPL (TDG.VP.CPUIDVE.SET), #VE.
//! 3. A leaf above the highest extended leaf, or between the highest base leaf and 0x8000_0000,
//!    is answered as the highest base leaf (the architectural out-of-range rule).
//! 4. A leaf/sub-leaf missing from the module's table raises #VE (all zeros once the TD enabled
//!    REDUCE_VE). Some leaves in the table still #VE unless a TD control says otherwise: 2 unless
//!    VIRT_CPUID2; 6, 0xC, 0x16, 0x17 and 0x8000_0002..5 unless REDUCE_VE; 0xB and 0x1F unless
//!    ENUM_TOPOLOGY.
//! 5. Otherwise the module answers from values fixed at TD creation: per register, the bits the
//!    table marks fixed-0 or dynamic are cleared, fixed-1 bits set, the rest taken from the host
//!    CPU (and, for some, from the VMM's configuration), then dynamic fields patched: leaf 1
//!    EBX bits 31:24 (the vCPU index, or the x2APIC ID with ENUM_TOPOLOGY) and ECX.OSXSAVE (guest
//!    CR4), leaf 7 ECX.OSPKE (guest CR4), leaf 0xB/0x1F EDX (x2APIC ID), 0x8000_0001
//!    EDX.SYSCALL (set only in 64-bit mode).
//!
//! # Our host is not Intel
//! tdx-sim's host is QEMU TCG's `-cpu max`, which says AuthenticAMD. The module would refuse to
//! run there; we keep its masks and fix what is vendor-specific: leaf 0 says GenuineIntel with
//! the module's highest leaf, leaf 1 EAX is an Intel signature from [`CpuidConfig`], AMD's
//! extended vendor string in 0x8000_0000 is cleared (as the module's masks do anyway), and leaf
//! 1 ECX.x2APIC (which the module requires natively) is forced on because tdx-sim provides the
//! x2APIC. Leaf 0x21 answers "IntelTDX    " as the module does.

/// EAX, EBX, ECX, EDX of one CPUID leaf/sub-leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct CpuidValues {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

impl CpuidValues {
    /// The four registers in order.
    pub const fn new(eax: u32, ebx: u32, ecx: u32, edx: u32) -> Self {
        CpuidValues { eax, ebx, ecx, edx }
    }

    fn masked(self, fixed0: [u32; 4], fixed1: [u32; 4]) -> Self {
        CpuidValues {
            eax: (self.eax & !fixed0[0]) | fixed1[0],
            ebx: (self.ebx & !fixed0[1]) | fixed1[1],
            ecx: (self.ecx & !fixed0[2]) | fixed1[2],
            edx: (self.edx & !fixed0[3]) | fixed1[3],
        }
    }
}

/// Where the module's answer comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CpuidSource {
    /// Fixed by the module (leaf 0, 0x21, the all-fixed-0 leaves).
    Fixed,
    /// The host CPU's values filtered through the module's fixed-0/fixed-1 masks, plus the
    /// dynamic fields.
    Host,
    /// All zero: the leaf is not in the table but the TD enabled REDUCE_VE.
    ReducedVe,
}

/// Why CPUID raised #VE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CpuidVeReason {
    /// The hypervisor range 0x4000_0000..=0x4FFF_FFFF (VEINFO "non-configurable paravirt").
    HypervisorRange,
    /// The TD asked for #VE on CPUID (TDG.VP.CPUIDVE.SET).
    TdRequested,
    /// The leaf is not virtualized by the module (or only under a TD control that is off).
    NotVirtualized,
}

/// The module's decision for one CPUID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CpuidDecision {
    /// The module writes these values into the TD's registers and resumes it.
    Module {
        /// The values.
        values: CpuidValues,
        /// Where they come from.
        source: CpuidSource,
    },
    /// #VE (exit reason 10, CPUID); the TD usually asks the VMM with TDG.VP.VMCALL.
    VirtualizationException(CpuidVeReason),
}

/// TD-wide settings (TDH.MNG.INIT's CPUID configuration and the TD's TD_CTLS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidConfig {
    /// CPUID(0).EAX: 0x23 for TDX module 1.5 (TDVF needs at least 0x21).
    pub max_base_leaf: u32,
    /// CPUID(1).EAX, the family/model/stepping the TD sees (default: a Sapphire Rapids,
    /// family 6 model 0x8F stepping 8).
    pub signature: u32,
    /// CPUID(1).EBX bits 23:16, configured by the VMM.
    pub logical_processors: u8,
    /// CPUID(1).ECX.TSC_DEADLINE: whether the x2APIC offers TSC-deadline mode.
    pub tsc_deadline: bool,
    /// TD_CTLS.REDUCE_VE.
    pub reduce_ve: bool,
    /// TD_CTLS.ENUM_TOPOLOGY.
    pub enum_topology: bool,
    /// TD_CTLS.VIRT_CPUID2.
    pub virt_cpuid2: bool,
}

impl Default for CpuidConfig {
    fn default() -> Self {
        CpuidConfig {
            max_base_leaf: 0x23,
            signature: 0x0008_06f8,
            logical_processors: 1,
            tsc_deadline: false,
            reduce_ve: false,
            enum_topology: false,
            virt_cpuid2: false,
        }
    }
}

/// The executing vCPU's state that dynamic fields reflect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VcpuCpuidState {
    /// TDVPS.VCPU_INDEX.
    pub vcpu_index: u32,
    /// The vCPU's x2APIC ID.
    pub x2apic_id: u32,
    /// Current privilege level.
    pub cpl: u8,
    /// Guest CR4.OSXSAVE.
    pub cr4_osxsave: bool,
    /// Guest CR4.PKE.
    pub cr4_pke: bool,
    /// The guest runs in 64-bit mode.
    pub long_mode: bool,
    /// TDG.VP.CPUIDVE.SET: #VE on every CPUID at CPL 0.
    pub ve_all_supervisor: bool,
    /// TDG.VP.CPUIDVE.SET: #VE on every CPUID at CPL > 0.
    pub ve_all_user: bool,
}

/// The highest extended leaf the module reports.
pub const MAX_EXTENDED_LEAF: u32 = 0x8000_0008;
/// First leaf of the VMM's range.
pub const HYPERVISOR_LEAVES_START: u32 = 0x4000_0000;
/// Last leaf of the VMM's range.
pub const HYPERVISOR_LEAVES_END: u32 = 0x4fff_ffff;

/// "GenuineIntel" as EBX, EDX, ECX.
const GENUINE_INTEL: [u32; 3] = [0x756e_6547, 0x4965_6e69, 0x6c65_746e];
/// "IntelTDX    " as EBX, EDX, ECX.
const INTEL_TDX: [u32; 3] = [0x6574_6e49, 0x5844_546c, 0x2020_2020];

const ALL: u32 = u32::MAX;
const NONE: [u32; 4] = [0; 4];
const ZERO: [u32; 4] = [ALL; 4];
const ANY: u32 = u32::MAX;

/// Under which condition a leaf in the table is answered instead of raising #VE.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Gate {
    Always,
    ReduceVe,
    VirtCpuid2,
    EnumTopology,
}

/// One row of the module's table: `leaf`, sub-leaves `first..=last` (`ANY`: sub-leaf ignored),
/// fixed-0-or-dynamic and fixed-1 masks per register.
struct Rule {
    leaf: u32,
    first: u32,
    last: u32,
    gate: Gate,
    fixed0: [u32; 4],
    fixed1: [u32; 4],
}

const fn rule(
    leaf: u32,
    first: u32,
    last: u32,
    gate: Gate,
    fixed0: [u32; 4],
    fixed1: [u32; 4],
) -> Rule {
    Rule {
        leaf,
        first,
        last,
        gate,
        fixed0,
        fixed1,
    }
}

/// The module 1.5 table (`cpuid_configurations.c`), masks as published; leaf 1 ECX also forces
/// x2APIC (bit 21) and clears the bits of features tdx-sim does not offer (DCA, EST, TM2, and
/// TSC-deadline unless configured: the "mutable" fields).
const RULES: &[Rule] = &[
    rule(0x0, ANY, ANY, Gate::Always, ZERO, NONE),
    rule(
        0x1,
        ANY,
        ANY,
        Gate::Always,
        [
            ALL,
            ALL,
            0x0801_0060 | 1 << 7 | 1 << 8 | 1 << 18 | 1 << 24,
            0x4012_0400,
        ],
        [0, 0x800, 1 << 31 | 1 << 21, 1 << 9],
    ),
    rule(
        0x2,
        ANY,
        ANY,
        Gate::VirtCpuid2,
        ZERO,
        [0x00fe_ff01, 0, 0, 0],
    ),
    rule(0x3, ANY, ANY, Gate::Always, ZERO, NONE),
    rule(0x4, 0, 3, Gate::Always, [0x3c00, 0, 0, 0xffff_fff8], NONE),
    rule(0x4, 4, 4, Gate::Always, ZERO, NONE),
    rule(
        0x5,
        ANY,
        ANY,
        Gate::Always,
        [0xffff_0000, 0xffff_0000, 0xffff_fffc, 0],
        NONE,
    ),
    rule(0x6, ANY, ANY, Gate::ReduceVe, ZERO, [4, 0, 0, 0]),
    rule(
        0x7,
        0,
        0,
        Gate::Always,
        [ALL, 0x0040_4006, 0x643e_8010, 0x0022_98c3],
        [2, 0, 0, 0],
    ),
    rule(
        0x7,
        1,
        1,
        Gate::Always,
        [0xfb77_e20f, ALL, ALL, 0xfffd_bbcf],
        NONE,
    ),
    rule(0x7, 2, 2, Gate::Always, [ALL, ALL, ALL, 0xffff_ffc0], NONE),
    rule(0x8, ANY, ANY, Gate::Always, ZERO, NONE),
    rule(0xa, ANY, ANY, Gate::Always, [0, 0, 0, 0xffff_6000], NONE),
    rule(
        0xb,
        0,
        1,
        Gate::EnumTopology,
        [0xffff_ffe0, 0xffff_0000, 0xffff_0000, ALL],
        NONE,
    ),
    rule(0xb, 2, 2, Gate::EnumTopology, ZERO, NONE),
    rule(0xd, 0, 0, Gate::Always, [0xfff9_fd18, 0, 0, ALL], NONE),
    rule(
        0xd,
        1,
        1,
        Gate::Always,
        [0xffff_ffe0, 0, 0xffff_26ff, ALL],
        NONE,
    ),
    rule(0xd, 2, 0x12, Gate::Always, [0, 0, 0, ALL], NONE),
    rule(0xe, ANY, ANY, Gate::Always, ZERO, NONE),
    rule(0x11, ANY, ANY, Gate::Always, ZERO, NONE),
    rule(0x12, ANY, ANY, Gate::Always, ZERO, NONE),
    rule(0x13, ANY, ANY, Gate::Always, ZERO, NONE),
    rule(
        0x14,
        0,
        0,
        Gate::Always,
        [0, 0xffff_fe00, 0x7fff_fff0, ALL],
        NONE,
    ),
    rule(0x14, 1, 1, Gate::Always, [0xfff8, 0, ALL, ALL], NONE),
    rule(
        0x15,
        ANY,
        ANY,
        Gate::Always,
        [0xffff_fffe, 0, 0xfe82_87bf, ALL],
        [1, 0, 0x017d_7840, 0],
    ),
    rule(0x19, ANY, ANY, Gate::Always, ZERO, NONE),
    rule(0x1a, ANY, ANY, Gate::Always, [0, ALL, ALL, ALL], NONE),
    rule(0x1c, ANY, ANY, Gate::Always, NONE, NONE),
    rule(0x1d, 0, 1, Gate::Always, NONE, NONE),
    rule(0x1e, ANY, ANY, Gate::Always, NONE, NONE),
    rule(
        0x1f,
        0,
        5,
        Gate::EnumTopology,
        [0xffff_ffe0, 0xffff_0000, 0xffff_0000, ALL],
        NONE,
    ),
    rule(0x20, ANY, ANY, Gate::Always, ZERO, NONE),
    rule(
        0x21,
        0,
        0,
        Gate::Always,
        ZERO,
        [0, INTEL_TDX[0], INTEL_TDX[2], INTEL_TDX[1]],
    ),
    rule(0x22, ANY, ANY, Gate::Always, ZERO, NONE),
    rule(0x23, 0, 0, Gate::Always, [0xffff_fff0, 0, ALL, ALL], NONE),
    rule(0x23, 1, 1, Gate::Always, [0, 0, ALL, ALL], NONE),
    rule(0x23, 2, 2, Gate::Always, ZERO, NONE),
    rule(0x23, 3, 3, Gate::Always, [0, ALL, ALL, ALL], NONE),
    rule(
        0x8000_0000,
        ANY,
        ANY,
        Gate::Always,
        ZERO,
        [MAX_EXTENDED_LEAF, 0, 0, 0],
    ),
    rule(
        0x8000_0001,
        ANY,
        ANY,
        Gate::Always,
        [ALL, ALL, 0xffff_fede, 0xd3ef_ffff],
        NONE,
    ),
    rule(
        0x8000_0002,
        ANY,
        ANY,
        Gate::ReduceVe,
        ZERO,
        [0x6574_6e49, 0x4454_206c, 0x2020_2058, 0],
    ),
    rule(
        0x8000_0006,
        ANY,
        ANY,
        Gate::Always,
        [ALL, ALL, 0x8fbf, ALL],
        [0, 0, 0x7040, 0],
    ),
    rule(
        0x8000_0007,
        ANY,
        ANY,
        Gate::Always,
        [ALL, ALL, ALL, 0xffff_feff],
        NONE,
    ),
    rule(
        0x8000_0008,
        ANY,
        ANY,
        Gate::Always,
        [0, 0xffff_fdff, ALL, ALL],
        NONE,
    ),
];

fn find_rule(leaf: u32, subleaf: u32) -> Option<&'static Rule> {
    RULES
        .iter()
        .find(|r| r.leaf == leaf && (r.first == ANY || (r.first..=r.last).contains(&subleaf)))
}

/// The module's decision for CPUID(`leaf`, `subleaf`) on a vCPU in state `vcpu`, for a TD
/// configured with `config`, on a host whose own CPUID is `host`.
pub fn td_cpuid(
    leaf: u32,
    subleaf: u32,
    config: &CpuidConfig,
    vcpu: &VcpuCpuidState,
    host: impl Fn(u32, u32) -> CpuidValues,
) -> CpuidDecision {
    use CpuidDecision::VirtualizationException as Ve;
    if (HYPERVISOR_LEAVES_START..=HYPERVISOR_LEAVES_END).contains(&leaf) {
        return Ve(CpuidVeReason::HypervisorRange);
    }
    let all_ve = if vcpu.cpl == 0 {
        vcpu.ve_all_supervisor
    } else {
        vcpu.ve_all_user
    };
    if all_ve {
        return Ve(CpuidVeReason::TdRequested);
    }
    let leaf = if leaf > MAX_EXTENDED_LEAF || (leaf > config.max_base_leaf && leaf < 0x8000_0000) {
        config.max_base_leaf
    } else {
        leaf
    };
    let reduced = CpuidDecision::Module {
        values: CpuidValues::default(),
        source: CpuidSource::ReducedVe,
    };
    let Some(rule) = find_rule(leaf, subleaf) else {
        return if config.reduce_ve {
            reduced
        } else {
            Ve(CpuidVeReason::NotVirtualized)
        };
    };
    let open = match rule.gate {
        Gate::Always => true,
        Gate::ReduceVe => config.reduce_ve,
        Gate::VirtCpuid2 => config.virt_cpuid2,
        Gate::EnumTopology => config.enum_topology,
    };
    if !open {
        return Ve(CpuidVeReason::NotVirtualized);
    }
    let fixed = rule.fixed0 == ZERO;
    let native = if fixed {
        CpuidValues::default()
    } else {
        host(leaf, subleaf)
    };
    let mut v = native.masked(rule.fixed0, rule.fixed1);
    match leaf {
        0 => {
            v = CpuidValues::new(
                config.max_base_leaf,
                GENUINE_INTEL[0],
                GENUINE_INTEL[2],
                GENUINE_INTEL[1],
            )
        }
        1 => {
            let apic_id = if config.enum_topology {
                vcpu.x2apic_id
            } else {
                vcpu.vcpu_index
            };
            v.eax = config.signature;
            v.ebx |= (apic_id & 0xff) << 24 | u32::from(config.logical_processors) << 16;
            v.ecx |= u32::from(vcpu.cr4_osxsave) << 27 | u32::from(config.tsc_deadline) << 24;
        }
        7 if subleaf == 0 => v.ecx |= u32::from(vcpu.cr4_pke) << 4,
        0xb | 0x1f => {
            v.ecx |= subleaf & 0xff;
            v.edx = vcpu.x2apic_id;
        }
        0x8000_0001 => v.edx = (v.edx & !(1 << 11)) | u32::from(vcpu.long_mode) << 11,
        _ => {}
    }
    CpuidDecision::Module {
        values: v,
        source: if fixed {
            CpuidSource::Fixed
        } else {
            CpuidSource::Host
        },
    }
}

#[cfg(test)]
mod tests;
