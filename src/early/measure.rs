//! Measured boot: extending runtime measurement registers (RTMRs) and getting a TDREPORT.
//!
//! The TDX module reads and writes these buffers by guest physical address, so the kernel has to
//! say where they are: a [`PhysAddrOf`] translates the virtual address of a buffer on the
//! caller's stack (private memory) into its GPA. The translation is the one thing the crate cannot
//! check, which is why implementing the trait is `unsafe`; what can be checked is: the GPA has the
//! alignment the leaf requires, lies within the TD's address width, and is private.

use super::td::shared_mask;
use crate::tdcall::{
    REPORT_DATA_SIZE, ReportData, RtmrDigest, TdCall, TdReport, TdxError, TdxStatus, rtmr_extend,
};
use core::fmt;
use sha2::{Digest, Sha384};

/// The number of RTMRs (indexes 0..=3).
pub const RTMR_COUNT: u8 = 4;

/// How often a call is repeated while the module answers TDX_OPERAND_BUSY (another vCPU holds
/// the RTMR or the TD's measurement state).
const BUSY_RETRIES: u32 = 16;

/// Translates a virtual address of the running kernel into a guest physical address.
///
/// # Safety
///
/// `gpa_of(addr)` must return the GPA that the kernel's current page tables map `addr` to,
/// including the shared bit exactly as the mapping has it, or `None`. The crate hands the result
/// to the TDX module, which then reads or writes that memory: a wrong answer makes it touch memory
/// the kernel did not intend. Buffers passed through this module never cross a 4 KiB page, so
/// the translation of their first byte covers all of them.
pub unsafe trait PhysAddrOf {
    /// The GPA of the byte at virtual address `addr`, or `None` if it is not mapped.
    fn gpa_of(&self, addr: usize) -> Option<u64>;
}

/// The translation of a kernel whose memory is identity mapped (VA = GPA), as on firmware's page
/// tables at hand-off.
#[derive(Clone, Copy, Debug)]
pub struct IdentityMapped(());

impl IdentityMapped {
    /// Vouches that every buffer this translation is used for is identity mapped.
    ///
    /// # Safety
    ///
    /// While the value is used, the stack and every buffer passed to this module must be mapped
    /// at virtual address = guest physical address, private (shared bit clear).
    pub const unsafe fn new() -> Self {
        Self(())
    }
}

// SAFETY: `IdentityMapped::new`'s caller vouched that VA = GPA for the buffers involved.
unsafe impl PhysAddrOf for IdentityMapped {
    fn gpa_of(&self, addr: usize) -> Option<u64> {
        u64::try_from(addr).ok()
    }
}

/// A translation given as a closure.
pub struct TranslateWith<F>(F);

impl<F: Fn(usize) -> Option<u64>> TranslateWith<F> {
    /// Wraps `translate`.
    ///
    /// # Safety
    ///
    /// `translate` must meet [`PhysAddrOf`]'s contract.
    pub const unsafe fn new(translate: F) -> Self {
        Self(translate)
    }
}

// SAFETY: `TranslateWith::new`'s caller vouched for the closure.
unsafe impl<F: Fn(usize) -> Option<u64>> PhysAddrOf for TranslateWith<F> {
    fn gpa_of(&self, addr: usize) -> Option<u64> {
        (self.0)(addr)
    }
}

impl<F> fmt::Debug for TranslateWith<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TranslateWith(..)")
    }
}

/// Why a measurement call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MeasureError {
    /// The RTMR index is not below [`RTMR_COUNT`].
    BadRtmrIndex(u8),
    /// The translation has no GPA for a buffer.
    Untranslated,
    /// The translated GPA lacks the alignment the leaf requires (the GPA and the alignment).
    Misaligned {
        /// The GPA the translation returned.
        gpa: u64,
        /// The alignment the leaf needs.
        align: u64,
    },
    /// The translated GPA is shared (or beyond the TD's address width): the module would refuse
    /// it, and the buffer would be visible to the host.
    NotPrivate(u64),
    /// The module failed the call.
    Tdcall(TdxError),
}

impl fmt::Display for MeasureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadRtmrIndex(i) => write!(f, "RTMR index {i} is not in 0..=3"),
            Self::Untranslated => f.write_str("no GPA for a measurement buffer"),
            Self::Misaligned { gpa, align } => {
                write!(f, "buffer GPA {gpa:#x} is not {align}-byte aligned")
            }
            Self::NotPrivate(gpa) => write!(f, "buffer GPA {gpa:#x} is not private memory"),
            Self::Tdcall(e) => write!(f, "measurement: {e}"),
        }
    }
}

impl core::error::Error for MeasureError {}

/// The GPA of `buffer`, checked for alignment and privacy.
fn private_gpa_of<B>(phys: &impl PhysAddrOf, buffer: &B) -> Result<u64, MeasureError> {
    let align = core::mem::align_of::<B>() as u64;
    let gpa = phys
        .gpa_of(core::ptr::from_ref(buffer).addr())
        .ok_or(MeasureError::Untranslated)?;
    if gpa % align != 0 {
        return Err(MeasureError::Misaligned { gpa, align });
    }
    if let Some(mask) = shared_mask() {
        // Bits at or above the shared bit are either the shared bit or beyond GPAW.
        if gpa >= mask {
            return Err(MeasureError::NotPrivate(gpa));
        }
    }
    Ok(gpa)
}

/// Runs `call` again while it answers TDX_OPERAND_BUSY, a bounded number of times.
fn retry_busy(mut call: impl FnMut() -> Result<(), TdxError>) -> Result<(), MeasureError> {
    let mut result = call();
    for _ in 0..BUSY_RETRIES {
        match result {
            Err(TdxError(status)) if status == TdxStatus::OPERAND_BUSY => result = call(),
            _ => break,
        }
    }
    result.map_err(MeasureError::Tdcall)
}

/// Extends RTMR `index` with the SHA-384 digest of `data` and returns that digest (what an event
/// log records): `RTMR[index] = SHA-384(RTMR[index] || SHA-384(data))`.
pub fn extend_rtmr(
    tdx: &impl TdCall,
    index: u8,
    data: &[u8],
    phys: &impl PhysAddrOf,
) -> Result<[u8; 48], MeasureError> {
    if index >= RTMR_COUNT {
        return Err(MeasureError::BadRtmrIndex(index));
    }
    let digest: [u8; 48] = Sha384::digest(data).into();
    extend_rtmr_digest(tdx, index, &digest, phys)?;
    Ok(digest)
}

/// Extends RTMR `index` with a precomputed SHA-384 `digest`:
/// `RTMR[index] = SHA-384(RTMR[index] || digest)`.
pub fn extend_rtmr_digest(
    tdx: &impl TdCall,
    index: u8,
    digest: &[u8; 48],
    phys: &impl PhysAddrOf,
) -> Result<(), MeasureError> {
    if index >= RTMR_COUNT {
        return Err(MeasureError::BadRtmrIndex(index));
    }
    // A 64-byte-aligned copy on the stack: the leaf requires the alignment, and a 64-byte
    // aligned 48-byte buffer never crosses a page.
    let staged = RtmrDigest(*digest);
    let gpa = private_gpa_of(phys, &staged)?;
    retry_busy(|| {
        // SAFETY: `gpa` is the GPA of `staged` by `phys`'s contract; the module only reads it.
        unsafe { rtmr_extend(tdx, &staged, gpa, index) }
    })
}

/// Fills `report` with a TDREPORT binding `report_data` (TDG.MR.REPORT, subtype 0).
///
/// `report` must live where `phys` can translate it (e.g. on the stack); 1024-byte alignment
/// keeps it inside one page.
pub fn tdreport_into(
    tdx: &impl TdCall,
    report: &mut TdReport,
    report_data: &[u8; REPORT_DATA_SIZE],
    phys: &impl PhysAddrOf,
) -> Result<(), MeasureError> {
    let data = ReportData(*report_data);
    let data_gpa = private_gpa_of(phys, &data)?;
    let report_gpa = private_gpa_of(phys, report)?;
    retry_busy(|| {
        // SAFETY: both GPAs are those of the borrowed buffers by `phys`'s contract; the module
        // writes `report` (borrowed mutably, no other reference) and reads `data`.
        unsafe { crate::tdcall::tdreport(tdx, report, report_gpa, &data, data_gpa) }
    })
}

/// Returns a TDREPORT binding `report_data`, built in a buffer on the stack.
pub fn tdreport(
    tdx: &impl TdCall,
    report_data: &[u8; REPORT_DATA_SIZE],
    phys: &impl PhysAddrOf,
) -> Result<TdReport, MeasureError> {
    let mut report = TdReport::default();
    tdreport_into(tdx, &mut report, report_data, phys)?;
    Ok(report)
}
