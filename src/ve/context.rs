//! [`VeContext`]: what the handler needs to know about the TD, read once.

use super::handler::{Code, dispatch};
use super::{Frame, VeError};
use crate::tdcall::{TdCall, TdInfo, TdInfoError, vp_info};

/// The TD facts the #VE handler needs: its guest physical address width (the shared bit and the
/// valid GPA range for EPT violations).
///
/// [`handle`](super::handle) and [`handle_with_code`](super::handle_with_code) query TDG.VP.INFO
/// on every EPT violation; a kernel that handles MMIO often keeps a `VeContext` (the GPAW never
/// changes for a TD) and calls its methods instead, which saves one TDCALL per MMIO access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VeContext {
    gpaw: u8,
}

impl VeContext {
    /// Reads the TD's facts with TDG.VP.INFO.
    pub fn query(tdx: &impl TdCall) -> Result<Self, TdInfoError> {
        vp_info(tdx).map(|info| Self::from_td_info(&info))
    }

    /// The facts from a [`TdInfo`] the kernel already has.
    pub fn from_td_info(info: &TdInfo) -> Self {
        Self { gpaw: info.gpaw }
    }

    /// The facts of a TD whose GPAW (validated by TDG.VP.INFO) is `gpaw`.
    pub(super) fn from_gpaw(gpaw: u8) -> Self {
        Self { gpaw }
    }

    /// The guest physical address width.
    pub fn gpaw(&self) -> u8 {
        self.gpaw
    }

    /// The shared bit of a GPA.
    pub fn shared_mask(&self) -> u64 {
        // `vp_info` validated 32..=52.
        1u64.checked_shl(u32::from(self.gpaw).saturating_sub(1))
            .unwrap_or(0)
    }

    /// Whether `gpa` lies below 2^GPAW.
    pub fn gpa_in_range(&self, gpa: u64) -> bool {
        gpa.checked_shr(self.gpaw.into()).unwrap_or(0) == 0
    }

    /// [`handle`](super::handle) without the TDG.VP.INFO query.
    ///
    /// # Safety
    ///
    /// As for [`handle`](super::handle).
    pub unsafe fn handle(&self, tdx: &impl TdCall, frame: &mut Frame) -> Result<(), VeError> {
        dispatch(tdx, frame, Code::AtRip, Some(self))
    }

    /// [`handle_with_code`](super::handle_with_code) without the TDG.VP.INFO query.
    pub fn handle_with_code(
        &self,
        tdx: &impl TdCall,
        frame: &mut Frame,
        code: &[u8],
    ) -> Result<(), VeError> {
        dispatch(tdx, frame, Code::Given(code), Some(self))
    }
}
