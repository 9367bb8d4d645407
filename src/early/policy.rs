//! The attribute policy: which TD configurations the kernel agrees to run in, and the TD controls
//! it turns on (SEPT #VE off, REDUCE_VE or at least ENUM_TOPOLOGY on, notifications off).
//!
//! # Why SEPT #VE must be off
//!
//! Unless #VE on private memory is disabled, the VMM can remove or block a private page at any
//! moment and make the next access to it raise #VE. A kernel touches private memory everywhere
//! (stacks, page tables, the #VE handler's own data) and cannot handle a #VE at arbitrary places,
//! so such a TD is at the VMM's mercy. Two mechanisms turn it off:
//!
//! - the SEPT_VE_DISABLE attribute, chosen by the host when it creates the TD (TDX 1.0);
//! - TD_CTLS.PENDING_VE_DISABLE, which the guest itself may set when the host allowed it with
//!   CONFIG_FLAGS.FLEXIBLE_PENDING_VE (newer modules). Then the attribute only tells the initial
//!   state and TD_CTLS is authoritative, since firmware may already have changed it.
//!
//! Like Linux (`disable_sept_ve` in arch/x86/coco/tdx/tdx.c), the check is relaxed only for a
//! TD whose DEBUG attribute is set, whose memory and state the host can read anyway, so #VEs can
//! stay on to give backtraces. Unlike Linux, which decides from the attribute alone, the caller
//! has to opt in with [`Policy::allow_debug`]: a production kernel never runs unprotected just
//! because the host made its TD debuggable.

use super::td::EarlyError;
use crate::tdcall::{TdAttributes, TdCall, TdcsField, TdxError, TdxStatus, vm_rd, vm_wr};

/// How often a TD_CTLS write is repeated while the module answers TDX_OPERAND_BUSY (the host
/// holds the TD's metadata lock for a moment).
const BUSY_RETRIES: u32 = 16;

/// Sets the `bits` of TD_CTLS, retrying a busy module a bounded number of times; returns the
/// previous value.
fn set_td_ctls(tdx: &impl TdCall, bits: u64) -> Result<u64, TdxError> {
    let mut result = vm_wr(tdx, TdcsField::TD_CTLS, bits, bits);
    for _ in 0..BUSY_RETRIES {
        match result {
            Err(TdxError(status)) if status == TdxStatus::OPERAND_BUSY => {
                result = vm_wr(tdx, TdcsField::TD_CTLS, bits, bits);
            }
            _ => break,
        }
    }
    result
}

/// What the kernel accepts from the TD's configuration and asks of the TDX module.
///
/// `Policy::default()` is the strict policy: SEPT #VE must be disabled even in a DEBUG TD, no
/// attribute is forbidden outright, REDUCE_VE is requested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Accept a TD in which SEPT #VE stays enabled, provided the TD's DEBUG attribute is set.
    /// Without DEBUG, SEPT #VE enabled is refused even with this flag.
    pub allow_debug: bool,
    /// Attributes the kernel refuses to run with (e.g. [`TdAttributes::DEBUG`] for a
    /// production kernel, [`TdAttributes::MIGRATABLE`]).
    pub forbidden_attributes: TdAttributes,
    /// Ask the module to enable TD_CTLS.REDUCE_VE (it answers more CPUID leaves and MSRs itself,
    /// so fewer #VEs reach the kernel and the VMM sees fewer requests).
    pub reduce_ve: bool,
}

impl Policy {
    /// The strict policy: SEPT #VE must be disabled, REDUCE_VE requested.
    pub const STRICT: Self = Self {
        allow_debug: false,
        forbidden_attributes: TdAttributes::empty(),
        reduce_ve: true,
    };

    /// The strict policy, but a DEBUG TD may keep SEPT #VE enabled.
    pub const fn debug() -> Self {
        Self {
            allow_debug: true,
            ..Self::STRICT
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self::STRICT
    }
}

/// How SEPT #VE (a #VE on an access to a blocked or removed private page) was found or left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeptVe {
    /// Disabled by the SEPT_VE_DISABLE attribute; the guest cannot change it.
    DisabledByAttribute,
    /// TD_CTLS.PENDING_VE_DISABLE was already set (by the host's choice or earlier boot code).
    AlreadyDisabled,
    /// This call set TD_CTLS.PENDING_VE_DISABLE.
    DisabledNow,
    /// Still enabled: accepted only because the policy allows a DEBUG TD to keep it.
    EnabledForDebug,
}

impl SeptVe {
    /// Whether the VMM can no longer inject #VE on private memory.
    pub const fn is_disabled(self) -> bool {
        !matches!(self, Self::EnabledForDebug)
    }
}

/// What became of the REDUCE_VE request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceVe {
    /// The policy did not ask for it; TD_CTLS was left alone.
    NotRequested,
    /// This call enabled it.
    Enabled,
    /// It was already enabled.
    AlreadyEnabled,
    /// The module refused REDUCE_VE, but the host configured the topology and the module
    /// enumerates it (TD_CTLS.ENUM_TOPOLOGY): topology CPUID leaves and MSRs no longer #VE.
    TopologyOnly(TdxError),
    /// The module refused the write: it predates REDUCE_VE or the host did not allow it (and
    /// did not configure the topology for ENUM_TOPOLOGY either). The kernel must be ready for
    /// the #VEs REDUCE_VE would have avoided.
    Unsupported(TdxError),
}

impl ReduceVe {
    /// Whether REDUCE_VE is in effect.
    pub const fn is_enabled(self) -> bool {
        matches!(self, Self::Enabled | Self::AlreadyEnabled)
    }
}

/// Refuses the attributes the policy forbids.
pub(super) fn check_attributes(
    attributes: TdAttributes,
    policy: &Policy,
) -> Result<(), EarlyError> {
    let forbidden = attributes.intersection(policy.forbidden_attributes);
    if forbidden.is_empty() {
        Ok(())
    } else {
        Err(EarlyError::ForbiddenAttributes(forbidden))
    }
}

/// Makes sure SEPT #VE is disabled, or refuses to continue (see the module documentation).
pub(super) fn disable_sept_ve(
    tdx: &impl TdCall,
    attributes: TdAttributes,
    policy: &Policy,
) -> Result<SeptVe, EarlyError> {
    let debug_td = attributes.contains(TdAttributes::DEBUG);
    let debug_allowed = policy.allow_debug && debug_td;
    // A module without CONFIG_FLAGS (TDX 1.0) fails the read: the guest has no control then.
    let config_flags = vm_rd(tdx, TdcsField::CONFIG_FLAGS).unwrap_or(0);
    if config_flags & TdcsField::CONFIG_FLAGS_FLEXIBLE_PENDING_VE == 0 {
        return if attributes.contains(TdAttributes::SEPT_VE_DISABLE) {
            Ok(SeptVe::DisabledByAttribute)
        } else if debug_allowed {
            Ok(SeptVe::EnabledForDebug)
        } else {
            Err(EarlyError::SeptVeEnabled { debug_td })
        };
    }
    let controls = vm_rd(tdx, TdcsField::TD_CTLS).map_err(EarlyError::TdCtlsRead)?;
    if controls & TdcsField::TD_CTLS_PENDING_VE_DISABLE != 0 {
        return Ok(SeptVe::AlreadyDisabled);
    }
    if debug_allowed {
        return Ok(SeptVe::EnabledForDebug);
    }
    match set_td_ctls(tdx, TdcsField::TD_CTLS_PENDING_VE_DISABLE) {
        Ok(_) => Ok(SeptVe::DisabledNow),
        Err(error) => Err(EarlyError::SeptVeDisableFailed(error)),
    }
}

/// Asks for TD_CTLS.REDUCE_VE if the policy wants it; a refusal is reported, not an error.
///
/// As Linux does: REDUCE_VE includes ENUM_TOPOLOGY, so only when REDUCE_VE is refused is
/// ENUM_TOPOLOGY requested on its own, and only if the host configured the topology (the
/// module refuses it otherwise).
pub(super) fn reduce_ve(tdx: &impl TdCall, policy: &Policy) -> ReduceVe {
    if !policy.reduce_ve {
        return ReduceVe::NotRequested;
    }
    let bit = TdcsField::TD_CTLS_REDUCE_VE;
    let refused = match set_td_ctls(tdx, bit) {
        Ok(previous) if previous & bit != 0 => return ReduceVe::AlreadyEnabled,
        Ok(_) => return ReduceVe::Enabled,
        Err(error) => error,
    };
    let configured = vm_rd(tdx, TdcsField::TOPOLOGY_ENUM_CONFIGURED).unwrap_or(0) != 0;
    if configured && set_td_ctls(tdx, TdcsField::TD_CTLS_ENUM_TOPOLOGY).is_ok() {
        ReduceVe::TopologyOnly(refused)
    } else {
        ReduceVe::Unsupported(refused)
    }
}

/// Turns off every TDX notification (NOTIFY_ENABLES = 0), best effort, as Linux does: the
/// kernel handles none, and a notification arrives as a #VE its handler would refuse.
pub(super) fn disable_notifications(tdx: &impl TdCall) -> bool {
    vm_wr(tdx, TdcsField::NOTIFY_ENABLES, 0, u64::MAX).is_ok()
}
