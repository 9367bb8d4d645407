//! [`ModelConfig`]: what kind of TD the model pretends to be, and how its host behaves.

use crate::tdcall::TdAttributes;

/// The page size the host (the VMM's EPT for private memory) uses to map a 2 MiB block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostPageSize {
    /// Every private page is mapped with 4 KiB entries: every 2 MiB ACCEPT fails with
    /// `TDX_PAGE_SIZE_MISMATCH`, as on hosts that never map private memory with huge pages.
    Size4K,
    /// Blocks are mapped at 2 MiB until the guest accepts a 4 KiB page inside one, which makes
    /// the host split that block (as KVM does).
    Size2M,
}

/// The configuration of a [`TdxModule`](super::TdxModule).
///
/// Every field is public so a test writes `ModelConfig { gpaw: 52, ..Default::default() }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelConfig {
    /// Guest physical address width: 48 (shared bit 47) or 52 (shared bit 51).
    pub gpaw: u8,
    /// NUM_VCPUS as TDG.VP.INFO reports it.
    pub num_vcpus: u32,
    /// MAX_VCPUS as TDG.VP.INFO reports it; 0 means "equal to `num_vcpus`".
    pub max_vcpus: u32,
    /// The TD attributes (TDG.VP.INFO RDX, TDREPORT TDINFO.ATTRIBUTES).
    pub attributes: u64,
    /// TDINFO.XFAM in TDREPORT.
    pub xfam: u64,
    /// How the host maps private memory (see [`HostPageSize`]); overridable per range with
    /// [`TdxModule::set_host_page_size`](super::TdxModule::set_host_page_size). Upstream KVM
    /// (Linux 6.16) maps TD private memory at 4 KiB only: `Size4K` is that host.
    pub host_page_size: HostPageSize,
    /// The most bytes one MapGPA converts before answering RETRY; 0 converts the whole range at
    /// once. KVM converts 2 MiB per step; older QEMU 64 MiB.
    pub map_gpa_chunk: u64,
    /// Whether the module supports TD_CTLS.REDUCE_VE (TDX module 1.5 with the feature
    /// enumerated). Without it a TDG.VM.WR setting the bit fails.
    pub reduce_ve_supported: bool,
    /// Whether the host configured the vCPUs' topology (TDCS TOPOLOGY_ENUM_CONFIGURED), which
    /// TD_CTLS.ENUM_TOPOLOGY needs.
    pub topology_enum_configured: bool,
    /// CONFIG_FLAGS as the host configured them (read only for the guest).
    pub config_flags: u64,
    /// CONFIG_FLAGS.NO_RBP_MOD semantics: when set, exposing RBP (RCX bit 5) to TDG.VP.VMCALL
    /// fails with `TDX_OPERAND_INVALID`, as the module does with this flag.
    pub no_rbp_mod: bool,
    /// MRTD in TDREPORT.
    pub mrtd: [u8; 48],
    /// MRCONFIGID in TDREPORT.
    pub mr_config_id: [u8; 48],
    /// MROWNER in TDREPORT.
    pub mr_owner: [u8; 48],
    /// MROWNERCONFIG in TDREPORT.
    pub mr_owner_config: [u8; 48],
    /// After a TDG.VP.VMCALL, exposed registers that are not outputs of the sub-function hold
    /// VMM garbage ([`VMM_GARBAGE`](super::VMM_GARBAGE) plus the register number) when true
    /// (the default), so code that trusts an undefined output fails its tests.
    pub vmm_clobbers_exposed: bool,
    /// The VMCALL status (R10) the VMM answers for a sub-function it does not implement.
    /// INVALID_OPERAND by default; KVM since Linux 6.16 answers SUBFUNC_UNSUPPORTED
    /// (`0x8000_0000_0000_0003`), so code must not rely on the exact value.
    pub vmcall_unsupported_status: u64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            gpaw: 48,
            num_vcpus: 4,
            max_vcpus: 0,
            attributes: TdAttributes::SEPT_VE_DISABLE.bits(),
            // x87, SSE, AVX: the XFAM every TD has.
            xfam: 0x7,
            host_page_size: HostPageSize::Size2M,
            map_gpa_chunk: 0,
            reduce_ve_supported: true,
            topology_enum_configured: true,
            config_flags: 0,
            no_rbp_mod: false,
            mrtd: [0; 48],
            mr_config_id: [0; 48],
            mr_owner: [0; 48],
            mr_owner_config: [0; 48],
            vmm_clobbers_exposed: true,
            vmcall_unsupported_status: crate::tdcall::VmcallStatus::INVALID_OPERAND_RAW,
        }
    }
}

impl ModelConfig {
    /// MAX_VCPUS as reported: `max_vcpus`, or `num_vcpus` when that is 0.
    pub fn effective_max_vcpus(&self) -> u32 {
        if self.max_vcpus == 0 {
            self.num_vcpus
        } else {
            self.max_vcpus
        }
    }

    /// The shared bit (GPAW - 1); 0 for a GPAW outside 1..=63 (such a model has no shared bit).
    pub fn shared_bit(&self) -> u64 {
        match self.gpaw {
            1..=63 => 1 << (self.gpaw - 1),
            _ => 0,
        }
    }

    /// Whether `gpa` (shared bit included) is below 2^GPAW.
    pub fn gpa_in_range(&self, gpa: u64) -> bool {
        match self.gpaw {
            0..=63 => gpa >> self.gpaw == 0,
            _ => true,
        }
    }
}
