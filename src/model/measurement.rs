//! TDG.MR.REPORT and TDG.MR.RTMR.EXTEND: the TD's measurements and its TDREPORT.
//!
//! RTMRs extend with real SHA-384 (`RTMR = SHA384(RTMR || digest)`), so a test can compare them
//! against a hash it computes itself. The TDREPORT follows the TDREPORT_STRUCT layout; its MAC
//! cannot be the CPU's (no key), so the model puts a SHA-384-based stand-in there.

use super::{ModelConfig, OPERAND_R8, OPERAND_RCX, OPERAND_RDX, TdxModule, status_with_operand};
use crate::tdcall::{REPORT_DATA_SIZE, Regs, TDREPORT_SIZE, TdxStatus};
use sha2::{Digest, Sha384};

/// The number of RTMRs.
const RTMRS: usize = 4;
/// REPORTTYPE.TYPE of a TDX report.
const REPORT_TYPE_TDX: u8 = 0x81;
/// TDINFO's offset in TDREPORT_STRUCT.
const TDINFO: usize = 512;
/// TEE_TCB_INFO's offset and size.
const TEE_TCB_INFO: usize = 256;
const TEE_TCB_INFO_SIZE: usize = 239;

/// The measurement state of the TD.
#[derive(Debug)]
pub(crate) struct Measurement {
    pub(crate) rtmr: [[u8; 48]; RTMRS],
}

impl Measurement {
    pub(crate) fn new(_config: &ModelConfig) -> Self {
        Self {
            rtmr: [[0; 48]; RTMRS],
        }
    }
}

fn put(report: &mut [u8; TDREPORT_SIZE], offset: usize, bytes: &[u8]) {
    if let Some(dst) = report.get_mut(offset..offset + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

impl TdxModule {
    /// Whether `len` bytes at `gpa` are memory the module may touch on the guest's behalf:
    /// within GPAW, private (or shared, if `allow_shared` and the shared bit is set) pages in
    /// the matching state, and backed. Returns the GPA without the shared bit.
    fn guest_buffer(&self, gpa: u64, len: u64, allow_shared: bool) -> Option<u64> {
        let shared_bit = self.config.shared_bit();
        if !self.config.gpa_in_range(gpa) {
            return None;
        }
        let shared = gpa & shared_bit != 0;
        if shared && !allow_shared {
            return None;
        }
        let plain = gpa & !shared_bit;
        let end = plain.checked_add(len)?;
        let wanted = if shared {
            super::PageState::Shared
        } else {
            super::PageState::Private
        };
        if self.memory.lock().states.uniform(plain, end) != Some(wanted) {
            return None;
        }
        self.backing.lock().whole(plain, len)?;
        Some(plain)
    }

    /// TDG.MR.RTMR.EXTEND: RCX = GPA of the 48-byte digest (64-byte aligned, private),
    /// RDX = RTMR index. Checks in the module's order: alignment, GPA, index.
    pub(super) fn rtmr_extend(&self, regs: &mut Regs) -> u64 {
        let invalid_rcx = status_with_operand(TdxStatus::OPERAND_INVALID, OPERAND_RCX);
        if !regs.rcx.is_multiple_of(64) {
            return invalid_rcx;
        }
        let Some(gpa) = self.guest_buffer(regs.rcx, 48, false) else {
            return invalid_rcx;
        };
        let mut digest = [0u8; 48];
        if !self.read_guest(gpa, &mut digest) {
            return invalid_rcx;
        }
        let Some(index) = usize::try_from(regs.rdx).ok().filter(|&i| i < RTMRS) else {
            return status_with_operand(TdxStatus::OPERAND_INVALID, OPERAND_RDX);
        };
        let mut measurement = self.measurement.lock();
        if let Some(rtmr) = measurement.rtmr.get_mut(index) {
            let mut hasher = Sha384::new();
            hasher.update(*rtmr);
            hasher.update(digest);
            rtmr.copy_from_slice(&hasher.finalize());
        }
        TdxStatus::SUCCESS.raw()
    }

    /// TDG.MR.REPORT: RCX = GPA of the 1024-byte TDREPORT (1024-aligned), RDX = GPA of the
    /// 64-byte REPORTDATA (64-aligned), R8 = subtype (0). Both buffers may be private or shared.
    pub(super) fn mr_report(&self, regs: &mut Regs) -> u64 {
        let invalid_rcx = status_with_operand(TdxStatus::OPERAND_INVALID, OPERAND_RCX);
        let invalid_rdx = status_with_operand(TdxStatus::OPERAND_INVALID, OPERAND_RDX);
        if !regs.rcx.is_multiple_of(TDREPORT_SIZE as u64) {
            return invalid_rcx;
        }
        if !regs.rdx.is_multiple_of(REPORT_DATA_SIZE as u64) {
            return invalid_rdx;
        }
        let mut report_data = [0u8; REPORT_DATA_SIZE];
        match self.guest_buffer(regs.rdx, REPORT_DATA_SIZE as u64, true) {
            Some(gpa) if self.read_guest(gpa, &mut report_data) => {}
            _ => return invalid_rdx,
        }
        if regs.r8 != 0 {
            return status_with_operand(TdxStatus::OPERAND_INVALID, OPERAND_R8);
        }
        let report = self.build_report(&report_data);
        match self.guest_buffer(regs.rcx, TDREPORT_SIZE as u64, true) {
            Some(gpa) if self.write_guest(gpa, &report) => TdxStatus::SUCCESS.raw(),
            _ => invalid_rcx,
        }
    }

    /// Assembles a TDREPORT_STRUCT binding `report_data`.
    fn build_report(&self, report_data: &[u8; REPORT_DATA_SIZE]) -> [u8; TDREPORT_SIZE] {
        let mut report = [0u8; TDREPORT_SIZE];
        // REPORTTYPE: TDX, subtype 0, version 0 (no service TDs).
        put(&mut report, 0, &[REPORT_TYPE_TDX, 0, 0, 0]);
        put(&mut report, 128, report_data);
        // TEE_TCB_INFO: VALID says which fields are meaningful; the model fills none but it.
        put(&mut report, TEE_TCB_INFO, &[0xff; 8]);
        // TDINFO.
        let rtmr = self.measurement.lock().rtmr;
        put(&mut report, TDINFO, &self.config.attributes.to_le_bytes());
        put(&mut report, TDINFO + 8, &self.config.xfam.to_le_bytes());
        put(&mut report, TDINFO + 16, &self.config.mrtd);
        put(&mut report, TDINFO + 64, &self.config.mr_config_id);
        put(&mut report, TDINFO + 112, &self.config.mr_owner);
        put(&mut report, TDINFO + 160, &self.config.mr_owner_config);
        for (i, value) in rtmr.iter().enumerate() {
            put(&mut report, TDINFO + 208 + 48 * i, value);
        }
        let tee_tcb_hash = report
            .get(TEE_TCB_INFO..TEE_TCB_INFO + TEE_TCB_INFO_SIZE)
            .map(Sha384::digest)
            .unwrap_or_default();
        put(&mut report, 32, &tee_tcb_hash);
        let tee_info_hash = report
            .get(TDINFO..TDREPORT_SIZE)
            .map(Sha384::digest)
            .unwrap_or_default();
        put(&mut report, 80, &tee_info_hash);
        let mac = report_mac(&report);
        put(&mut report, 224, &mac);
        report
    }
}

/// The model's stand-in for the CPU's MAC over REPORTMACSTRUCT's first 224 bytes (which bind
/// TEE_TCB_INFO and TDINFO through their hashes); its quoting enclave checks it.
pub(super) fn report_mac(report: &[u8]) -> [u8; 32] {
    let mut mac = Sha384::new();
    mac.update(b"tdx-boot model report MAC");
    mac.update(report.get(..224).unwrap_or_default());
    let mut out = [0u8; 32];
    out.copy_from_slice(mac.finalize().get(..32).unwrap_or(&[0; 32]));
    out
}

impl TdxModule {
    /// The current value of RTMR `index` (0..=3); zeros for another index.
    pub fn rtmr(&self, index: usize) -> [u8; 48] {
        self.measurement
            .lock()
            .rtmr
            .get(index)
            .copied()
            .unwrap_or([0; 48])
    }
}
