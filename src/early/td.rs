//! [`init`]: TDG.VP.INFO read once, the attribute policy applied, and the shared-bit mask
//! published for the rest of the kernel.

use super::policy::{self, Policy, ReduceVe, SeptVe};
use crate::tdcall::{TdAttributes, TdCall, TdInfo, TdInfoError, TdxError, vp_info};
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

/// The shared-bit mask, 0 until [`init`] publishes it. A TD's GPAW never changes, so the value is
/// written once and only read afterwards.
static SHARED_MASK: AtomicU64 = AtomicU64::new(0);

/// The shared-bit mask (bit GPAW-1 of a GPA), once [`init`] has succeeded; `None` before.
///
/// A single relaxed load: cheap enough for every page-table update that converts memory.
pub fn shared_mask() -> Option<u64> {
    match SHARED_MASK.load(Ordering::Relaxed) {
        0 => None,
        mask => Some(mask),
    }
}

/// Publishes `mask` unless a different mask was published before.
fn publish_shared_mask(mask: u64) -> Result<(), EarlyError> {
    match SHARED_MASK.compare_exchange(0, mask, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => Ok(()),
        Err(published) if published == mask => Ok(()),
        Err(published) => Err(EarlyError::SharedMaskChanged {
            published,
            reported: mask,
        }),
    }
}

/// Why [`init`] refused to continue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EarlyError {
    /// TDG.VP.INFO failed or reported something impossible.
    Info(TdInfoError),
    /// The TD has attributes the policy forbids (the offending ones).
    ForbiddenAttributes(TdAttributes),
    /// SEPT #VE is enabled and cannot be disabled by the guest, and the policy does not allow it.
    SeptVeEnabled {
        /// Whether the TD is a DEBUG TD (then [`Policy::allow_debug`] would have accepted it).
        debug_td: bool,
    },
    /// The guest may control SEPT #VE, but reading TD_CTLS failed.
    TdCtlsRead(TdxError),
    /// The guest may control SEPT #VE, but the module refused to set TD_CTLS.PENDING_VE_DISABLE.
    SeptVeDisableFailed(TdxError),
    /// An earlier [`init`] published a different shared-bit mask.
    SharedMaskChanged {
        /// The mask published before.
        published: u64,
        /// The mask derived from this call's TDG.VP.INFO.
        reported: u64,
    },
}

impl fmt::Display for EarlyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Info(e) => write!(f, "TD information: {e}"),
            Self::ForbiddenAttributes(attributes) => write!(
                f,
                "TD misconfiguration: attributes {:#x} are forbidden by the policy",
                attributes.bits()
            ),
            Self::SeptVeEnabled { debug_td: true } => f.write_str(
                "TD misconfiguration: SEPT #VE is enabled (SEPT_VE_DISABLE attribute clear); \
                 this DEBUG TD may run only with Policy::allow_debug",
            ),
            Self::SeptVeEnabled { debug_td: false } => f.write_str(
                "TD misconfiguration: SEPT #VE is enabled (SEPT_VE_DISABLE attribute clear): \
                 the host could inject #VE on private memory; refusing to run",
            ),
            Self::TdCtlsRead(e) => write!(f, "cannot read TD_CTLS: {e}"),
            Self::SeptVeDisableFailed(e) => {
                write!(f, "cannot disable SEPT #VE through TD_CTLS: {e}")
            }
            Self::SharedMaskChanged {
                published,
                reported,
            } => write!(
                f,
                "shared-bit mask {reported:#x} differs from the one published before ({published:#x})"
            ),
        }
    }
}

impl core::error::Error for EarlyError {}

impl From<TdInfoError> for EarlyError {
    fn from(e: TdInfoError) -> Self {
        Self::Info(e)
    }
}

/// What the kernel knows about its TD after [`init`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Td {
    info: TdInfo,
    shared_mask: u64,
    sept_ve: SeptVe,
    reduce_ve: ReduceVe,
    notifications_disabled: bool,
}

impl Td {
    /// TDG.VP.INFO as read by [`init`] (the vCPU fields describe the vCPU that called it).
    pub const fn info(&self) -> &TdInfo {
        &self.info
    }

    /// The TD's attributes.
    pub const fn attributes(&self) -> TdAttributes {
        self.info.attributes
    }

    /// The guest physical address width.
    pub const fn gpaw(&self) -> u8 {
        self.info.gpaw
    }

    /// The shared bit of a GPA (bit GPAW-1).
    pub const fn shared_mask(&self) -> u64 {
        self.shared_mask
    }

    /// Whether the TD's DEBUG attribute is set (the host can read its memory and state).
    pub const fn is_debug(&self) -> bool {
        self.info.attributes.contains(TdAttributes::DEBUG)
    }

    /// How SEPT #VE was found or left.
    pub const fn sept_ve(&self) -> SeptVe {
        self.sept_ve
    }

    /// Whether REDUCE_VE is in effect, and why not if it is not.
    pub const fn reduce_ve(&self) -> ReduceVe {
        self.reduce_ve
    }

    /// Whether NOTIFY_ENABLES was cleared, so no TDX notification arrives as a #VE.
    pub const fn notifications_disabled(&self) -> bool {
        self.notifications_disabled
    }
}

/// Reads the TD's configuration once, applies `policy`, and publishes the shared-bit mask.
///
/// Steps: TDG.VP.INFO (validated); the attributes the policy forbids; SEPT #VE disabled or the
/// TD refused (see [`Policy`] and [`SeptVe`]); REDUCE_VE requested if the policy wants it; the
/// shared-bit mask published for [`shared_mask`]. Nothing is published when a step fails.
///
/// Call it on the boot CPU once [`detect`](super::detect) said this is a TD (outside a TD, TDCALL
/// raises #UD). Calling it again is harmless: the module answers the same and the controls are
/// already set.
pub fn init(tdx: &impl TdCall, policy: Policy) -> Result<Td, EarlyError> {
    let info = vp_info(tdx)?;
    policy::check_attributes(info.attributes, &policy)?;
    let sept_ve = policy::disable_sept_ve(tdx, info.attributes, &policy)?;
    let reduce_ve = policy::reduce_ve(tdx, &policy);
    let notifications_disabled = policy::disable_notifications(tdx);
    let shared_mask = info.shared_mask();
    publish_shared_mask(shared_mask)?;
    Ok(Td {
        info,
        shared_mask,
        sept_ve,
        reduce_ve,
        notifications_disabled,
    })
}
