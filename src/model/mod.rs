//! A software TDX module: the guest-visible ABI of TDCALL and of a VMM behind TDG.VP.VMCALL,
//! faithful enough that code passing against it is right on hardware.
//!
//! [`TdxModule`] holds one TD: its memory (page states kept as a sparse range map, so a 1 TiB
//! TD costs a few entries), its vCPUs (each a [`Vcpu`] implementing [`TdCall`]), its measurement
//! registers and TD-scope fields, and a VMM with devices (a 16550 UART at COM1, port and MMIO
//! devices, CPUID and MSR tables). Tests drive it through the crate's own wrappers and check
//! the outcome through accessors, counters and the call trace; knobs make it misbehave the way
//! real hosts do (busy, refusals, lying MapGPA).
//!
//! # What a test can do
//!
//! - Build the TD: [`TdxModule::new`] with a [`ModelConfig`]; [`TdxModule::add_memory`] in a
//!   [`PageState`]; [`TdxModule::add_ram_on_demand`] for RAM the VMM adds when first accepted; [`TdxModule::set_host_page_size`] per range; [`TdxModule::add_backing`] to
//!   give guest memory real bytes; [`TdxModule::add_port_device`],
//!   [`TdxModule::add_mmio_device`] (with [`RegisterFile`]), [`TdxModule::set_cpuid`],
//!   [`TdxModule::set_msr`].
//! - Run guest code: [`TdxModule::vcpu`] gives a [`Vcpu`], a [`TdCall`].
//! - Provoke: [`TdxModule::inject_ve`], [`TdxModule::inject_busy`],
//!   [`TdxModule::inject_tdcall_status`], [`TdxModule::refuse_vmcall`],
//!   [`TdxModule::set_map_gpa_fault`], [`TdxModule::stall_accepts`],
//!   [`TdxModule::set_quote_deferred`], and for anything else [`TdxModule::set_tdcall_hook`].
//! - Observe: [`TdxModule::page_state`], [`TdxModule::page_runs`], [`TdxModule::host_maps_4k`],
//!   [`TdxModule::accept_stats`], [`TdxModule::tdcall_count`], [`TdxModule::vmcall_count`],
//!   [`TdxModule::trace`], [`TdxModule::uart_output`], [`TdxModule::halts`],
//!   [`TdxModule::sti_calls`], [`TdxModule::msr`], [`TdxModule::rtmr`], [`TdxModule::td_ctls`],
//!   [`TdxModule::fatal_error`], [`TdxModule::event_notify_vector`], [`TdxModule::td_killed`],
//!   and more below.
//!
//! Every status follows the TDX module source (`intel/tdx-module`, `src/td_dispatcher/`) where
//! the module answers. Where the real module instead exits to the VMM (an ACCEPT of a GPA without
//! a private page), the model's VMM acts as KVM does: it adds guest RAM it has not added yet
//! ([`TdxModule::add_ram_on_demand`]) and the ACCEPT succeeds, or it ends the TD
//! ([`TdxModule::td_killed`]); it never answers a status the module does not give.
//!
//! Leaves the model implements: TDG.VP.VMCALL, VP.INFO, MR.RTMR.EXTEND, VP.VEINFO.GET,
//! MR.REPORT, MEM.PAGE.ACCEPT, VM.RD and VM.WR. Every other leaf answers `TDX_OPERAND_INVALID`
//! (operand RAX), as the module answers a leaf it does not have; code that needs, say,
//! TDG.SYS.RD must therefore cope with a module that lacks it.
//!
//! The model needs only `alloc` and [`spin`], so a `no_std` kernel can compile it in and service
//! TDCALL (which raises #UD without TDX) from it.
//!
//! ```
//! use tdx_boot::model::{ModelConfig, PageState, TdxModule};
//! use tdx_boot::tdcall::{accept_page, vp_info, AcceptOutcome, PageLevel};
//!
//! let tdx = TdxModule::new(ModelConfig::default());
//! tdx.add_memory(0, 0x40_0000, PageState::Unaccepted);
//! let cpu = tdx.vcpu(0);
//! assert_eq!(vp_info(&cpu).unwrap().gpaw, 48);
//! // SAFETY: the model has no backing here, so nothing is zeroed.
//! assert_eq!(unsafe { accept_page(&cpu, 0x20_0000, PageLevel::Size2M) }, AcceptOutcome::Accepted);
//! assert_eq!(tdx.page_state(0x20_0000), PageState::Private);
//! ```

mod accept;
mod backing;
mod config;
mod faults;
mod map_gpa;
mod measurement;
mod memory;
mod page_map;
mod quote;
mod quoting_enclave;
mod stats;
mod td_exit;
mod td_fields;
mod ve;
mod vmcall;
mod vmm;
mod vp_info;

pub use config::{HostPageSize, ModelConfig};
pub use faults::{FOREVER, MapGpaFault, Times};
pub use quote::{
    QUOTE_STATUS_ERROR, QUOTE_STATUS_IN_FLIGHT, QUOTE_STATUS_SERVICE_UNAVAILABLE,
    QUOTE_STATUS_SUCCESS,
};
pub use quoting_enclave::{MODEL_ATTESTATION_KEY, MODEL_PCK_KEY, model_public_key};
pub use stats::{AcceptStats, TraceEvent};
pub use td_exit::{TD_KILLED_STATUS, TdKilled};
pub use vmcall::VMM_GARBAGE;
pub use vmm::{CpuidSource, Halt, MmioDevice, MsrDevice, PortDevice, RegisterFile};

use crate::tdcall::{Regs, TdCall, TdxStatus, VeInfo, VmcallStatus, leaf};
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use backing::Backing;
use core::sync::atomic::{AtomicBool, Ordering};
use faults::Faults;
use measurement::Measurement;
use memory::Memory;
use spin::Mutex;
use stats::Stats;
use td_fields::TdFields;
use vmm::Vmm;

/// A test's rewrite of TDCALL answers: called after the model answered, with the vCPU, the
/// registers on entry and the registers about to be returned, which it may change. For
/// failures no knob produces (one field of VM.WR failing, a VMM lying in one direction only).
/// It may call into the model, TDCALLs included.
pub type TdcallHook = dyn Fn(u32, &Regs, &mut Regs) + Send + Sync;

/// The state of one 4 KiB page of guest physical memory (GPA without the shared bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageState {
    /// No memory: never added (or RAM the VMM adds on demand, not added yet), or removed.
    Absent,
    /// Private memory the host added but the guest has not accepted (pending).
    Unaccepted,
    /// Private memory the guest accepted (or the firmware did).
    Private,
    /// Memory converted to shared (MapGPA with the shared bit): the VMM can read it.
    Shared,
    /// Emulated device memory: accesses are #VE.RequestMMIO to the VMM.
    Mmio,
}

/// Operand ids in bits 31:0 of a status: the register number of the offending operand.
pub(crate) const OPERAND_RAX: u64 = 0;
pub(crate) const OPERAND_RCX: u64 = 1;
pub(crate) const OPERAND_RDX: u64 = 2;
pub(crate) const OPERAND_R8: u64 = 8;

/// `status` with operand id `operand` in bits 31:0.
pub(crate) const fn status_with_operand(status: TdxStatus, operand: u64) -> u64 {
    status.raw() | operand
}

/// The per-vCPU state the module keeps.
#[derive(Clone, Copy, Debug, Default)]
struct VcpuState {
    /// The #VE information VEINFO.GET will return, if a #VE is pending.
    pending_ve: Option<VeInfo>,
    /// How many TDCALLs were made with interrupts enabled (STI before TDCALL).
    sti_calls: u64,
    /// #VEs injected while the previous one was unread.
    ve_double_faults: u64,
}

/// A software TDX module holding one TD and its VMM. `Sync`: vCPUs on several threads call it
/// at once, as CPUs call the real module.
pub struct TdxModule {
    config: ModelConfig,
    memory: Mutex<Memory>,
    backing: Mutex<Backing>,
    vcpus: Mutex<BTreeMap<u32, VcpuState>>,
    measurement: Mutex<Measurement>,
    td_fields: Mutex<TdFields>,
    vmm: Mutex<Vmm>,
    faults: Mutex<Faults>,
    stats: Stats,
    /// Whether any fault was ever armed: spares every TDCALL the faults lock otherwise.
    faults_armed: AtomicBool,
    /// The test's rewrite of answers, if any.
    hook: Mutex<Option<Arc<TdcallHook>>>,
    hook_set: AtomicBool,
    /// While set, ACCEPTs wait in flight (after locking their pages, before zeroing).
    stall_accepts: AtomicBool,
    /// Why the VMM ended the TD, if it did.
    killed: Mutex<Option<TdKilled>>,
    /// `killed` is set: spares every TDCALL that lock.
    dead: AtomicBool,
}

/// Every TDCALL status the model returns by itself (injected statuses aside).
pub const TDCALL_STATUSES: &[TdxStatus] = &[
    TdxStatus::SUCCESS,
    TdxStatus::PAGE_ALREADY_ACCEPTED,
    TdxStatus::OPERAND_INVALID,
    TdxStatus::OPERAND_BUSY,
    TdxStatus::NO_VALID_VE_INFO,
    TdxStatus::PAGE_SIZE_MISMATCH,
    TdxStatus::METADATA_FIELD_ID_INCORRECT,
    TdxStatus::METADATA_FIELD_NOT_WRITABLE,
    TdxStatus::METADATA_FIELD_VALUE_NOT_VALID,
];

/// Every TDG.VP.VMCALL status (R10) the model's VMM returns by itself (refusals aside).
pub const VMCALL_STATUSES: &[VmcallStatus] = &[
    VmcallStatus::Success,
    VmcallStatus::Retry,
    VmcallStatus::InvalidOperand,
    VmcallStatus::AlignError,
];

/// One vCPU of a [`TdxModule`]: what a guest's code calls TDCALL on.
///
/// Obtained from [`TdxModule::vcpu`]; cheap to copy.
#[derive(Clone, Copy)]
pub struct Vcpu<'a> {
    module: &'a TdxModule,
    index: u32,
}

impl core::fmt::Debug for Vcpu<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Vcpu").field("index", &self.index).finish()
    }
}

impl Vcpu<'_> {
    /// This vCPU's index (VCPU_INDEX).
    pub fn index(&self) -> u32 {
        self.index
    }
}

impl TdCall for Vcpu<'_> {
    unsafe fn tdcall(&self, regs: &mut Regs) {
        self.module.tdcall(self.index, regs, false);
    }

    unsafe fn tdcall_enabling_interrupts(&self, regs: &mut Regs) {
        self.module.tdcall(self.index, regs, true);
    }
}

impl TdxModule {
    /// A TD with no memory, configured by `config`.
    pub fn new(config: ModelConfig) -> Self {
        Self {
            memory: Mutex::new(Memory::new(config.host_page_size)),
            backing: Mutex::new(Backing::default()),
            vcpus: Mutex::new(BTreeMap::new()),
            measurement: Mutex::new(Measurement::new(&config)),
            td_fields: Mutex::new(TdFields::new(&config)),
            vmm: Mutex::new(Vmm::new()),
            faults: Mutex::new(Faults::default()),
            stats: Stats::default(),
            faults_armed: AtomicBool::new(false),
            hook: Mutex::new(None),
            hook_set: AtomicBool::new(false),
            stall_accepts: AtomicBool::new(false),
            killed: Mutex::new(None),
            dead: AtomicBool::new(false),
            config,
        }
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The shared bit of this TD's GPAs (bit GPAW - 1).
    pub fn shared_bit(&self) -> u64 {
        self.config.shared_bit()
    }

    /// vCPU `index`.
    ///
    /// Any index works, also one at or above `num_vcpus`: such a vCPU behaves like the others
    /// and TDG.VP.INFO reports its index as given, so the guest's own consistency check
    /// (VCPU_INDEX below NUM_VCPUS) is what catches it, as it would catch a lying module.
    pub fn vcpu(&self, index: u32) -> Vcpu<'_> {
        Vcpu {
            module: self,
            index,
        }
    }

    /// How many TDCALLs `vcpu` made with interrupts enabled
    /// ([`TdCall::tdcall_enabling_interrupts`], i.e. STI right before TDCALL).
    pub fn sti_calls(&self, vcpu: u32) -> u64 {
        self.vcpus.lock().get(&vcpu).map_or(0, |v| v.sti_calls)
    }

    /// One TDCALL from vCPU `vcpu`: dispatches on the leaf in RAX like the module's dispatcher.
    fn tdcall(&self, vcpu: u32, regs: &mut Regs, sti: bool) {
        if self.is_dead() {
            regs.rax = TD_KILLED_STATUS;
            return;
        }
        let input = *regs;
        let leaf_number = regs.rax & 0xffff;
        self.stats.count_tdcall(leaf_number);
        if sti {
            self.vcpus.lock().entry(vcpu).or_default().sti_calls += 1;
        }
        let injected = if self.faults_armed.load(Ordering::Relaxed) {
            self.faults.lock().take_tdcall(leaf_number)
        } else {
            None
        };
        if let Some(status) = injected {
            if leaf_number == leaf::MEM_PAGE_ACCEPT {
                self.stats.record_accept_answer(TdxStatus::from_raw(status));
            }
            regs.rax = status;
        } else {
            self.dispatch(vcpu, regs, sti);
        }
        if self.hook_set.load(Ordering::Relaxed) {
            // Cloned out of the lock so the hook may call into the model.
            let hook = self.hook.lock().clone();
            if let Some(hook) = hook {
                hook(vcpu, &input, regs);
            }
        }
        if self.stats.tracing() {
            self.stats.push_trace(TraceEvent {
                vcpu,
                input,
                output: *regs,
                sti,
            });
        }
    }

    fn dispatch(&self, vcpu: u32, regs: &mut Regs, sti: bool) {
        let leaf_number = regs.rax & 0xffff;
        let version = (regs.rax >> 16) & 0xff;
        let reserved = regs.rax >> 24;
        // RAX: leaf in 15:0, version in 23:16 (only TDG.VM.RD and TDG.VP.VEINFO.GET have a
        // version 1), the rest reserved.
        let versioned = matches!(leaf_number, leaf::VM_RD | leaf::VP_VEINFO_GET);
        if reserved != 0 || version > u64::from(versioned) {
            regs.rax = status_with_operand(TdxStatus::OPERAND_INVALID, OPERAND_RAX);
            return;
        }
        regs.rax = match leaf_number {
            leaf::VP_VMCALL => self.vp_vmcall(vcpu, regs, sti),
            leaf::VP_INFO => self.vp_info(vcpu, regs),
            leaf::MR_RTMR_EXTEND => self.rtmr_extend(regs),
            leaf::VP_VEINFO_GET => self.veinfo_get(vcpu, regs),
            leaf::MR_REPORT => self.mr_report(regs),
            leaf::MEM_PAGE_ACCEPT => self.page_accept(vcpu, regs.rcx),
            leaf::VM_RD => self.vm_rd(regs),
            leaf::VM_WR => self.vm_wr(regs),
            _ => status_with_operand(TdxStatus::OPERAND_INVALID, OPERAND_RAX),
        };
    }
}
