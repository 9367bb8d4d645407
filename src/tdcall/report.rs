//! TDG.MR.REPORT and TDG.MR.RTMR.EXTEND: measured boot.

use super::{Regs, TdAttributes, TdCall, TdxError, TdxStatus, leaf};
use static_assertions::const_assert_eq;

/// The size of a TDREPORT_STRUCT.
pub const TDREPORT_SIZE: usize = 1024;
/// The size of REPORTDATA.
pub const REPORT_DATA_SIZE: usize = 64;

/// A TDREPORT_STRUCT as TDG.MR.REPORT writes it: REPORTMACSTRUCT (256 bytes), TEE_TCB_INFO
/// (239 bytes + 17 reserved) and TDINFO (512 bytes). 1024-byte aligned, as the leaf requires.
#[derive(Clone, PartialEq, Eq)]
#[repr(C, align(1024))]
pub struct TdReport {
    /// The raw structure.
    pub bytes: [u8; TDREPORT_SIZE],
}
const_assert_eq!(core::mem::size_of::<TdReport>(), TDREPORT_SIZE);

/// The 64 bytes of caller data bound into a report (64-byte aligned, as the leaf requires).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct ReportData(pub [u8; REPORT_DATA_SIZE]);

/// A SHA-384 digest to extend into an RTMR (64-byte aligned, as the leaf requires).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct RtmrDigest(pub [u8; 48]);

impl Default for TdReport {
    fn default() -> Self {
        Self {
            bytes: [0; TDREPORT_SIZE],
        }
    }
}

impl core::fmt::Debug for TdReport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TdReport")
            .field("report_type", &self.report_type())
            .field("attributes", &self.attributes())
            .finish_non_exhaustive()
    }
}

macro_rules! field {
    ($(#[$doc:meta])* $name:ident, $offset:expr, $len:expr) => {
        $(#[$doc])*
        pub fn $name(&self) -> &[u8; $len] {
            self.bytes[$offset..$offset + $len].try_into().unwrap_or(&[0; $len])
        }
    };
}

impl TdReport {
    const TDINFO: usize = 512;

    /// REPORTTYPE: type (0x81 for TDX), subtype, version, reserved.
    pub fn report_type(&self) -> [u8; 4] {
        [self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]]
    }

    field!(
        /// CPUSVN: the TCB's security version numbers.
        cpu_svn, 16, 16);
    field!(
        /// SHA-384 of TEE_TCB_INFO.
        tee_tcb_info_hash, 32, 48);
    field!(
        /// SHA-384 of TDINFO.
        tee_info_hash, 80, 48);
    field!(
        /// REPORTDATA: the caller's 64 bytes.
        report_data, 128, REPORT_DATA_SIZE);
    field!(
        /// The MAC over REPORTMACSTRUCT.
        mac, 224, 32);
    field!(
        /// MRTD: the build-time measurement of the TD.
        mrtd, Self::TDINFO + 16, 48);
    field!(
        /// MRCONFIGID: software-defined configuration id.
        mr_config_id, Self::TDINFO + 64, 48);
    field!(
        /// MROWNER: software-defined owner id.
        mr_owner, Self::TDINFO + 112, 48);
    field!(
        /// MROWNERCONFIG: software-defined owner configuration.
        mr_owner_config, Self::TDINFO + 160, 48);

    /// TDINFO.ATTRIBUTES.
    pub fn attributes(&self) -> TdAttributes {
        TdAttributes::from_bits_retain(self.u64_at(Self::TDINFO))
    }

    /// TDINFO.XFAM.
    pub fn xfam(&self) -> u64 {
        self.u64_at(Self::TDINFO + 8)
    }

    /// RTMR `index` (0..=3); `None` for any other index.
    pub fn rtmr(&self, index: usize) -> Option<&[u8; 48]> {
        if index >= 4 {
            return None;
        }
        let start = Self::TDINFO + 208 + 48 * index;
        self.bytes[start..start + 48].try_into().ok()
    }

    fn u64_at(&self, offset: usize) -> u64 {
        let mut raw = [0; 8];
        raw.copy_from_slice(&self.bytes[offset..offset + 8]);
        u64::from_le_bytes(raw)
    }
}

/// Executes TDG.MR.REPORT: the module writes a TDREPORT binding `data` into `report`.
///
/// # Safety
///
/// `report_gpa` and `data_gpa` must be the guest physical addresses of `report` and `data`
/// (private memory). The module writes 1024 bytes at `report_gpa` and reads 64 at `data_gpa`.
pub unsafe fn tdreport(
    tdx: &impl TdCall,
    report: &mut TdReport,
    report_gpa: u64,
    data: &ReportData,
    data_gpa: u64,
) -> Result<(), TdxError> {
    // The borrows keep both buffers alive and unaliased across the call. The module reaches them
    // by physical address, not through a pointer the asm is given, so their provenance is
    // exposed: the compiler must then assume the TDCALL (like any unknown function) may write
    // `report` and read `data`, instead of keeping their old contents in registers.
    let _ = core::ptr::from_mut(report).expose_provenance();
    let _ = core::ptr::from_ref(data).expose_provenance();
    let mut regs = Regs {
        rax: leaf::MR_REPORT,
        rcx: report_gpa,
        rdx: data_gpa,
        r8: 0,
        ..Regs::default()
    };
    // SAFETY: the caller guarantees the GPAs are those of the borrowed buffers, which the module
    // may write (`report`, borrowed mutably) and read (`data`).
    unsafe { tdx.tdcall(&mut regs) };
    TdxStatus::from_raw(regs.rax).into_result().map(drop)
}

/// Executes TDG.MR.RTMR.EXTEND: RTMR\[`index`\] = SHA-384(RTMR\[`index`\] || `digest`).
///
/// An `index` above 3 fails with `TDX_OPERAND_INVALID` without a call, as the module would answer.
///
/// # Safety
///
/// `digest_gpa` must be the guest physical address of `digest` (private memory).
pub unsafe fn rtmr_extend(
    tdx: &impl TdCall,
    digest: &RtmrDigest,
    digest_gpa: u64,
    index: u8,
) -> Result<(), TdxError> {
    // The borrow keeps the digest alive across the call; exposing its provenance tells the
    // compiler the TDCALL may read it (the module reaches it by physical address).
    let _ = core::ptr::from_ref(digest).expose_provenance();
    if index > 3 {
        return Err(TdxError(TdxStatus::OPERAND_INVALID));
    }
    let mut regs = Regs {
        rax: leaf::MR_RTMR_EXTEND,
        rcx: digest_gpa,
        rdx: u64::from(index),
        ..Regs::default()
    };
    // SAFETY: the module only reads 48 bytes at `digest_gpa`, which the caller guarantees is
    // the borrowed digest.
    unsafe { tdx.tdcall(&mut regs) };
    TdxStatus::from_raw(regs.rax).into_result().map(drop)
}
