//! TDG.VP.INFO: the TD's execution environment.

use super::{Regs, TdCall, TdxError, TdxStatus, call_registers_only, leaf};
use bitflags::bitflags;
use core::fmt;

bitflags! {
    /// TD attributes (TDG.VP.INFO RDX; TDREPORT's TDINFO.ATTRIBUTES).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct TdAttributes: u64 {
        /// The TD is debuggable by the host: its memory and state are not confidential.
        const DEBUG = 1 << 0;
        /// Intel CET shadow stack supervisor data may be reported.
        const ICSSD = 1 << 16;
        /// Linear-address space separation is allowed.
        const LASS = 1 << 27;
        /// EPT violations on private memory cause a TD exit, never a #VE: the VMM cannot use
        /// #VE injection on private pages against the guest. Required unless debugging.
        const SEPT_VE_DISABLE = 1 << 28;
        /// The TD may be migrated.
        const MIGRATABLE = 1 << 29;
        /// Supervisor protection keys are allowed.
        const PKS = 1 << 30;
        /// Key Locker is allowed.
        const KL = 1 << 31;
        /// The TD may use the performance monitoring unit.
        const PERFMON = 1 << 63;
        // Bits this crate does not name are kept, not dropped.
        const _ = !0;
    }
}

/// What TDG.VP.INFO reports about the TD and the calling vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TdInfo {
    /// Guest physical address width: 48 or 52 on current hardware.
    pub gpaw: u8,
    /// The TD's attributes.
    pub attributes: TdAttributes,
    /// Number of vCPUs initialized so far.
    pub num_vcpus: u32,
    /// Maximum number of vCPUs the TD may have.
    pub max_vcpus: u32,
    /// Index of the calling vCPU (0-based; VCPU_INDEX 0 is the firmware's BSP).
    pub vcpu_index: u32,
}

impl TdInfo {
    /// The shared bit: bit GPAW-1 of a GPA.
    ///
    /// 0 (no shared bit) for a GPAW of 0 or above 64, which [`vp_info`] never reports but a
    /// hand-built `TdInfo` may hold.
    pub const fn shared_mask(&self) -> u64 {
        let Some(bit) = self.gpaw.checked_sub(1) else {
            return 0;
        };
        match 1u64.checked_shl(bit as u32) {
            Some(mask) => mask,
            None => 0,
        }
    }

    /// Whether `gpa` (with or without the shared bit) is below 2^GPAW, i.e. addressable in this
    /// TD. Every `u64` is for a GPAW of 64 or more.
    pub const fn gpa_in_range(&self, gpa: u64) -> bool {
        match gpa.checked_shr(self.gpaw as u32) {
            Some(above) => above == 0,
            None => true,
        }
    }
}

/// Why [`vp_info`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TdInfoError {
    /// The TDCALL itself failed.
    Tdcall(TdxError),
    /// The reported GPAW is outside 32..=52, so no shared bit can be derived from it.
    BadGpaw(u8),
    /// NUM_VCPUS is zero or exceeds MAX_VCPUS, or VCPU_INDEX is not below NUM_VCPUS.
    BadVcpuCounts,
}

impl fmt::Display for TdInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tdcall(e) => write!(f, "TDG.VP.INFO: {e}"),
            Self::BadGpaw(g) => write!(f, "TDG.VP.INFO reported an invalid GPAW {g}"),
            Self::BadVcpuCounts => f.write_str("TDG.VP.INFO reported inconsistent vCPU counts"),
        }
    }
}

impl core::error::Error for TdInfoError {}

/// Executes TDG.VP.INFO and validates what it reports.
pub fn vp_info(tdx: &impl TdCall) -> Result<TdInfo, TdInfoError> {
    let out = call_registers_only(
        tdx,
        Regs {
            rax: leaf::VP_INFO,
            ..Regs::default()
        },
    );
    TdxStatus::from_raw(out.rax)
        .into_result()
        .map_err(TdInfoError::Tdcall)?;
    let gpaw = (out.rcx & 0x3f) as u8;
    if !(32..=52).contains(&gpaw) {
        return Err(TdInfoError::BadGpaw(gpaw));
    }
    let num_vcpus = out.r8 as u32;
    let max_vcpus = (out.r8 >> 32) as u32;
    let vcpu_index = out.r9 as u32;
    if num_vcpus == 0 || num_vcpus > max_vcpus || vcpu_index >= num_vcpus {
        return Err(TdInfoError::BadVcpuCounts);
    }
    Ok(TdInfo {
        gpaw,
        attributes: TdAttributes::from_bits_retain(out.rdx),
        num_vcpus,
        max_vcpus,
        vcpu_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info_with_gpaw(gpaw: u8) -> TdInfo {
        TdInfo {
            gpaw,
            attributes: TdAttributes::empty(),
            num_vcpus: 1,
            max_vcpus: 1,
            vcpu_index: 0,
        }
    }

    #[test]
    fn shared_bit_and_range_follow_the_gpaw() {
        let info = info_with_gpaw(48);
        assert_eq!(info.shared_mask(), 1 << 47);
        assert!(info.gpa_in_range((1 << 48) - 1));
        assert!(!info.gpa_in_range(1 << 48));
        assert_eq!(info_with_gpaw(52).shared_mask(), 1 << 51);
    }

    /// `TdInfo`'s fields are public, so a caller can build one with a GPAW that `vp_info` would
    /// have refused: the methods must answer (no shared bit, everything in range beyond 64 bits)
    /// instead of overflowing a shift.
    #[test]
    fn a_gpaw_vp_info_would_refuse_does_not_panic() {
        assert_eq!(info_with_gpaw(0).shared_mask(), 0);
        assert!(info_with_gpaw(0).gpa_in_range(0));
        assert!(!info_with_gpaw(0).gpa_in_range(1));
        assert_eq!(info_with_gpaw(64).shared_mask(), 1 << 63);
        assert!(info_with_gpaw(64).gpa_in_range(u64::MAX));
        assert_eq!(info_with_gpaw(65).shared_mask(), 0);
        assert!(info_with_gpaw(u8::MAX).gpa_in_range(u64::MAX));
    }
}
