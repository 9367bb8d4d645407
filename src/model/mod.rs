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
//!   [`PageState`]; [`TdxModule::set_host_page_size`] per range; [`TdxModule::add_backing`] to
//!   give guest memory real bytes; [`TdxModule::add_port_device`],
//!   [`TdxModule::add_mmio_device`] (with [`RegisterFile`]), [`TdxModule::set_cpuid`],
//!   [`TdxModule::set_msr`].
//! - Run guest code: [`TdxModule::vcpu`] gives a [`Vcpu`], a [`TdCall`].
//! - Provoke: [`TdxModule::inject_ve`], [`TdxModule::inject_busy`],
//!   [`TdxModule::inject_tdcall_status`], [`TdxModule::refuse_vmcall`],
//!   [`TdxModule::set_map_gpa_fault`], [`TdxModule::stall_accepts`],
//!   [`TdxModule::set_quote_deferred`].
//! - Observe: [`TdxModule::page_state`], [`TdxModule::page_runs`], [`TdxModule::host_maps_4k`],
//!   [`TdxModule::accept_stats`], [`TdxModule::tdcall_count`], [`TdxModule::vmcall_count`],
//!   [`TdxModule::trace`], [`TdxModule::uart_output`], [`TdxModule::halts`],
//!   [`TdxModule::sti_calls`], [`TdxModule::msr`], [`TdxModule::rtmr`], [`TdxModule::td_ctls`],
//!   [`TdxModule::fatal_error`], [`TdxModule::event_notify_vector`], and more below.
//!
//! Every status follows the TDX module source (`intel/tdx-module`, `src/td_dispatcher/`) where
//! the module answers; where the real module would instead exit to the VMM (an ACCEPT of a GPA
//! without private memory), the model answers a status and says so on the method.
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
mod stats;
mod td_fields;
mod ve;
mod vmcall;
mod vmm;
mod vp_info;

pub use config::{HostPageSize, ModelConfig};
pub use faults::{FOREVER, MapGpaFault, Times};
pub use quote::{
    MODEL_QUOTE_TAG, QUOTE_STATUS_ERROR, QUOTE_STATUS_IN_FLIGHT, QUOTE_STATUS_SUCCESS,
};
pub use stats::{AcceptStats, TraceEvent};
pub use vmcall::VMM_GARBAGE;
pub use vmm::{Halt, MmioDevice, PortDevice, RegisterFile};

use crate::tdcall::vmcall::CpuidResult;
use crate::tdcall::{Regs, TdCall, TdxStatus, VeInfo, VmcallStatus, leaf};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use backing::Backing;
use core::sync::atomic::{AtomicBool, Ordering};
use faults::Faults;
use measurement::Measurement;
use memory::Memory;
use spin::Mutex;
use stats::Stats;
use td_fields::TdFields;
use vmm::Vmm;

/// The state of one 4 KiB page of guest physical memory (GPA without the shared bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageState {
    /// No memory: never added, or removed.
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
    /// While set, ACCEPTs wait in flight (after locking their pages, before zeroing).
    stall_accepts: AtomicBool,
}

/// Every TDCALL status the model returns by itself (injected statuses aside).
pub const TDCALL_STATUSES: &[TdxStatus] = &[
    TdxStatus::SUCCESS,
    TdxStatus::PAGE_ALREADY_ACCEPTED,
    TdxStatus::OPERAND_INVALID,
    TdxStatus::OPERAND_BUSY,
    TdxStatus::NO_VALID_VE_INFO,
    TdxStatus::EPT_WALK_FAILED,
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
            stall_accepts: AtomicBool::new(false),
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

    /// Sets the pages of `[start, end)` to `state` (page-granular: `start` is rounded down and
    /// `end` up to 4 KiB). `Unaccepted` is memory the host added for the guest to accept;
    /// `Private` is memory already accepted (by the firmware); `Absent` removes memory.
    pub fn add_memory(&self, start: u64, end: u64, state: PageState) {
        let start = start & !0xfff;
        let end = end.checked_add(0xfff).map_or(!0xfff, |e| e & !0xfff);
        self.memory.lock().set_state(start, end, state);
    }

    /// The state of the page holding `gpa` (the shared bit is ignored).
    pub fn page_state(&self, gpa: u64) -> PageState {
        self.memory.lock().state(gpa & !self.shared_bit())
    }

    /// The maximal runs of equal page state overlapping `[start, end)`, clipped to it; absent
    /// gaps are left out.
    pub fn page_runs(&self, start: u64, end: u64) -> Vec<(u64, u64, PageState)> {
        self.memory.lock().states.runs(start, end).collect()
    }

    /// How many entries the page-state bookkeeping holds: the model's memory cost, which grows
    /// with the number of distinct runs, not with the size of the TD.
    pub fn page_map_entries(&self) -> usize {
        self.memory.lock().entry_count()
    }

    /// Makes the host map every 2 MiB block touching `[start, end)` with `size` pages,
    /// overriding [`ModelConfig::host_page_size`] there.
    pub fn set_host_page_size(&self, start: u64, end: u64, size: HostPageSize) {
        self.memory.lock().set_host_size(start, end, size);
    }

    /// Whether the host maps the 2 MiB block holding `gpa` with 4 KiB pages (configured, split
    /// after a 4 KiB accept, or forced by mixed page states in the block).
    pub fn host_maps_4k(&self, gpa: u64) -> bool {
        self.memory
            .lock()
            .host_maps_4k(gpa & !(memory::PAGE_2M - 1))
    }

    /// Backs guest memory `[gpa, gpa + len)` with the host buffer at `host`: ACCEPT zeroes it,
    /// TDG.MR.REPORT writes into it, RTMR.EXTEND and the VMM (GetQuote, MapGPA) read and write
    /// it. Returns false, registering nothing, if the range is empty, wraps around, or overlaps
    /// an already backed range.
    ///
    /// # Safety
    ///
    /// `host` must be valid for reads and writes of `len` bytes for as long as the model lives,
    /// and while the model lives that memory may be accessed only through the model or through
    /// the guest code under test using it as its memory at `gpa` (never concurrently with a
    /// TDCALL that touches the same bytes, as on hardware).
    pub unsafe fn add_backing(&self, gpa: u64, host: *mut u8, len: u64) -> bool {
        self.backing.lock().add(gpa, host, len)
    }

    /// Zeroes the backed parts of `[gpa, gpa + len)`.
    fn zero_backing(&self, gpa: u64, len: u64) {
        let pieces = self.backing.lock().pieces(gpa, len);
        for piece in pieces {
            // SAFETY: `add_backing`'s contract makes the registered memory valid for writes and
            // reserved to the model while a TDCALL touches it; `pieces` stays inside regions.
            unsafe { core::ptr::write_bytes(piece.ptr, 0, piece.len) };
        }
    }

    /// Reads `buf.len()` bytes of guest memory at `gpa` (no shared bit) if one backing region
    /// holds them all.
    fn read_guest(&self, gpa: u64, buf: &mut [u8]) -> bool {
        let Some(slice) = self.backing.lock().whole(gpa, buf.len() as u64) else {
            return false;
        };
        // SAFETY: the slice lies inside a registered region (`whole`), valid for reads under
        // `add_backing`'s contract; `buf` is a distinct Rust buffer.
        unsafe { core::ptr::copy_nonoverlapping(slice.ptr, buf.as_mut_ptr(), slice.len) };
        true
    }

    /// Writes `data` to guest memory at `gpa` (no shared bit) if one backing region holds it.
    fn write_guest(&self, gpa: u64, data: &[u8]) -> bool {
        let Some(slice) = self.backing.lock().whole(gpa, data.len() as u64) else {
            return false;
        };
        // SAFETY: as in `read_guest`, for writes.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), slice.ptr, slice.len) };
        true
    }

    /// Makes a #VE pending on `vcpu`: the next TDG.VP.VEINFO.GET there returns `info`.
    ///
    /// Returns false, keeping the pending information, if the previous #VE on `vcpu` was not
    /// yet read: on hardware that second #VE escalates to a double fault. Such events are
    /// counted ([`TdxModule::ve_double_faults`]).
    pub fn inject_ve(&self, vcpu: u32, info: VeInfo) -> bool {
        let mut vcpus = self.vcpus.lock();
        let state = vcpus.entry(vcpu).or_default();
        if state.pending_ve.is_some() {
            state.ve_double_faults += 1;
            return false;
        }
        state.pending_ve = Some(info);
        true
    }

    /// How many #VEs were injected on `vcpu` while VE information was still unread (each a
    /// double fault on hardware).
    pub fn ve_double_faults(&self, vcpu: u32) -> u64 {
        self.vcpus
            .lock()
            .get(&vcpu)
            .map_or(0, |v| v.ve_double_faults)
    }

    /// Whether a #VE is pending (not yet read with VEINFO.GET) on `vcpu`.
    pub fn ve_pending(&self, vcpu: u32) -> bool {
        self.vcpus
            .lock()
            .get(&vcpu)
            .is_some_and(|v| v.pending_ve.is_some())
    }

    /// How many TDCALLs `vcpu` made with interrupts enabled
    /// ([`TdCall::tdcall_enabling_interrupts`], i.e. STI right before TDCALL).
    pub fn sti_calls(&self, vcpu: u32) -> u64 {
        self.vcpus.lock().get(&vcpu).map_or(0, |v| v.sti_calls)
    }

    /// The next `times` calls of TDCALL `leaf` (any vCPU) return `status` and do nothing else.
    /// [`FOREVER`] never runs out.
    pub fn inject_tdcall_status(&self, leaf: u64, status: TdxStatus, times: Times) {
        self.faults_armed.store(true, Ordering::SeqCst);
        self.faults.lock().arm_tdcall(leaf, status.raw(), times);
    }

    /// The next `times` ACCEPTs answer `TDX_OPERAND_BUSY` (operand RCX), as under contention.
    pub fn inject_busy(&self, times: Times) {
        self.inject_tdcall_status(
            leaf::MEM_PAGE_ACCEPT,
            TdxStatus::from_raw(status_with_operand(TdxStatus::OPERAND_BUSY, OPERAND_RCX)),
            times,
        );
    }

    /// The VMM answers the next `times` TDG.VP.VMCALLs of sub-function `function` with the raw
    /// VMCALL status `status` (R10) and does nothing else.
    pub fn refuse_vmcall(&self, function: u64, status: u64, times: Times) {
        self.faults_armed.store(true, Ordering::SeqCst);
        self.faults.lock().arm_vmcall(function, status, times);
    }

    /// Makes every following MapGPA misbehave as `fault` says; `None` restores honest answers.
    pub fn set_map_gpa_fault(&self, fault: Option<MapGpaFault>) {
        self.faults_armed.store(true, Ordering::SeqCst);
        self.faults.lock().map_gpa = fault;
    }

    /// Disarms every injected status, refusal and MapGPA fault.
    pub fn clear_faults(&self) {
        self.faults.lock().clear();
    }

    /// While `stall` is true, every ACCEPT that passed its checks waits in flight (its pages
    /// locked, before zeroing) until `stall` is set false again: lets a test make two vCPUs
    /// meet on the same page deterministically. See [`TdxModule::accepts_in_flight`].
    pub fn stall_accepts(&self, stall: bool) {
        self.stall_accepts.store(stall, Ordering::SeqCst);
    }

    /// How many ACCEPTs are in flight right now.
    pub fn accepts_in_flight(&self) -> usize {
        self.memory.lock().in_flight.len()
    }

    /// How many TDCALLs of `leaf` (RAX bits 15:0, any version) were made, on all vCPUs.
    pub fn tdcall_count(&self, leaf: u64) -> u64 {
        self.stats.tdcall_count(leaf)
    }

    /// How many TDG.VP.VMCALLs of sub-function `function` reached the VMM.
    pub fn vmcall_count(&self, function: u64) -> u64 {
        self.stats.vmcall_count(function)
    }

    /// ACCEPT statistics.
    pub fn accept_stats(&self) -> AcceptStats {
        self.stats.accept_stats()
    }

    /// Starts (`true`) or stops recording every TDCALL in the trace.
    pub fn enable_trace(&self, enabled: bool) {
        self.stats.set_trace(enabled);
    }

    /// The recorded TDCALLs, oldest first.
    pub fn trace(&self) -> Vec<TraceEvent> {
        self.stats.take_trace()
    }

    /// Forgets the recorded TDCALLs.
    pub fn clear_trace(&self) {
        self.stats.clear_trace();
    }

    /// Sets the VMM's answer to CPUID `leaf`/`subleaf` (Instruction.CPUID). Unset leaves read
    /// as zeros.
    pub fn set_cpuid(&self, leaf: u32, subleaf: u32, result: CpuidResult) {
        self.vmm.lock().cpuid.insert((leaf, subleaf), result);
    }

    /// Gives MSR `index` the value `value` in the VMM (RDMSR returns it, WRMSR may change it).
    /// MSRs never set are unknown: RDMSR and WRMSR of them fail with INVALID_OPERAND.
    pub fn set_msr(&self, index: u32, value: u64) {
        self.vmm.lock().msrs.insert(index, value);
    }

    /// The value of MSR `index` in the VMM, if it exists.
    pub fn msr(&self, index: u32) -> Option<u64> {
        self.vmm.lock().msrs.get(&index).copied()
    }

    /// Everything written to the COM1 UART's transmit register so far.
    pub fn uart_output(&self) -> Vec<u8> {
        self.vmm.lock().uart.output.clone()
    }

    /// Attaches `device` to ports `[first_port, first_port + count)`; it answers Instruction.IO
    /// there (before the built-in UART). Unclaimed ports read as all ones and ignore writes, as
    /// on a PC.
    pub fn add_port_device(&self, first_port: u16, count: u16, device: Box<dyn PortDevice>) {
        self.vmm.lock().ports.push((first_port, count, device));
    }

    /// Attaches `device` at `[gpa, gpa + len)` (no shared bit) and marks those pages `Mmio`:
    /// #VE.RequestMMIO at the shared alias of these GPAs reaches it.
    pub fn add_mmio_device(&self, gpa: u64, len: u64, device: Box<dyn MmioDevice>) {
        let gpa = gpa & !self.shared_bit();
        self.add_memory(gpa, gpa.saturating_add(len), PageState::Mmio);
        self.vmm.lock().mmio.push((gpa, len, device));
    }

    /// The halts the VMM saw (Instruction.HLT), oldest first.
    pub fn halts(&self) -> Vec<Halt> {
        self.vmm.lock().halts.clone()
    }

    /// The ReportFatalError the VMM received: the error code and the message bytes (up to the
    /// first NUL, at most 64).
    pub fn fatal_error(&self) -> Option<(u32, Vec<u8>)> {
        self.vmm.lock().fatal.clone()
    }

    /// The vector registered with SetupEventNotifyInterrupt.
    pub fn event_notify_vector(&self) -> Option<u8> {
        self.vmm.lock().notify_vector
    }

    /// How many Instruction.WBINVD requests the VMM received.
    pub fn wbinvd_count(&self) -> u64 {
        self.vmm.lock().wbinvd
    }

    /// The current value of RTMR `index` (0..=3); zeros for another index.
    pub fn rtmr(&self, index: usize) -> [u8; 48] {
        self.measurement
            .lock()
            .rtmr
            .get(index)
            .copied()
            .unwrap_or([0; 48])
    }

    /// The current value of TDCS field TD_CTLS.
    pub fn td_ctls(&self) -> u64 {
        self.td_fields.lock().td_ctls
    }

    /// The current value of TDCS field NOTIFY_ENABLES.
    pub fn notify_enables(&self) -> u64 {
        self.td_fields.lock().notify_enables
    }

    /// One TDCALL from vCPU `vcpu`: dispatches on the leaf in RAX like the module's dispatcher.
    fn tdcall(&self, vcpu: u32, regs: &mut Regs, sti: bool) {
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
            leaf::MEM_PAGE_ACCEPT => self.page_accept(regs.rcx),
            leaf::VM_RD => self.vm_rd(regs),
            leaf::VM_WR => self.vm_wr(regs),
            _ => status_with_operand(TdxStatus::OPERAND_INVALID, OPERAND_RAX),
        };
    }
}
