//! TDG.VM.RD and TDG.VM.WR: TD-scope metadata fields (TDCS).

use super::{Regs, TdCall, TdxError, TdxStatus, call_registers_only, leaf};

/// TDCS field identifiers a guest kernel uses, and the bits within them.
pub struct TdcsField;

impl TdcsField {
    /// TD_CTLS: guest-controlled TD execution controls.
    pub const TD_CTLS: u64 = 0x1110_0003_0000_0017;
    /// CONFIG_FLAGS: how the host configured the TD.
    pub const CONFIG_FLAGS: u64 = 0x1110_0003_0000_0016;
    /// NOTIFY_ENABLES: which events notify the guest.
    pub const NOTIFY_ENABLES: u64 = 0x9100_0000_0000_0010;
    /// TOPOLOGY_ENUM_CONFIGURED: non-zero when the host configured the vCPUs' x2APIC IDs, so
    /// the module can enumerate the topology (TD_CTLS.ENUM_TOPOLOGY) without the VMM.
    pub const TOPOLOGY_ENUM_CONFIGURED: u64 = 0x9100_0000_0000_0019;
    /// TD_CTLS bit 0: no #VE for pending (unaccepted) private pages.
    pub const TD_CTLS_PENDING_VE_DISABLE: u64 = 1 << 0;
    /// TD_CTLS bit 1: the module enumerates the CPU topology (fewer CPUID #VEs).
    pub const TD_CTLS_ENUM_TOPOLOGY: u64 = 1 << 1;
    /// TD_CTLS bit 3: REDUCE_VE: the module answers more CPUID leaves and MSRs itself.
    pub const TD_CTLS_REDUCE_VE: u64 = 1 << 3;
    /// CONFIG_FLAGS bit 1: FLEXIBLE_PENDING_VE: the guest may set TD_CTLS.PENDING_VE_DISABLE.
    pub const CONFIG_FLAGS_FLEXIBLE_PENDING_VE: u64 = 1 << 1;
}

/// Executes TDG.VM.RD of `field` and returns its value.
///
/// # Errors
///
/// The module's status: `TDX_METADATA_FIELD_ID_INCORRECT` for a field this module version does
/// not have (e.g. CONFIG_FLAGS on TDX 1.0), `TDX_METADATA_FIELD_NOT_READABLE` for one the guest
/// may not read, `TDX_OPERAND_INVALID` for a malformed field identifier.
pub fn vm_rd(tdx: &impl TdCall, field: u64) -> Result<u64, TdxError> {
    let out = call_registers_only(
        tdx,
        Regs {
            rax: leaf::VM_RD,
            rdx: field,
            ..Regs::default()
        },
    );
    TdxStatus::from_raw(out.rax).into_result()?;
    Ok(out.r8)
}

/// Executes TDG.VM.WR: writes the bits of `value` selected by `mask` into `field` and returns
/// the field's previous value.
///
/// Safe: the TD-scope fields a guest may write (TD_CTLS, NOTIFY_ENABLES) choose which events
/// the module reports or handles itself, not what memory holds. The most sensitive, clearing
/// TD_CTLS.PENDING_VE_DISABLE, lets the host turn an access to a page it made pending into a
/// #VE instead of a TD exit; [`crate::ve::handle`] refuses such a #VE (`PrivateGpa`: it never
/// accepts from #VE context), and on its own IST stack no instruction
/// boundary is unsafe to take it at (a kernel gives [`crate::ve::ve_entry`] an IST stack).
///
/// # Errors
///
/// The module's status: `TDX_METADATA_FIELD_ID_INCORRECT` (unknown field),
/// `TDX_METADATA_FIELD_NOT_WRITABLE` (the guest may not write it, or not these bits),
/// `TDX_METADATA_FIELD_VALUE_NOT_VALID` (a reserved bit, or a control the host did not allow),
/// `TDX_OPERAND_BUSY` while another vCPU or the host holds the TD's metadata (retry).
pub fn vm_wr(tdx: &impl TdCall, field: u64, value: u64, mask: u64) -> Result<u64, TdxError> {
    let out = call_registers_only(
        tdx,
        Regs {
            rax: leaf::VM_WR,
            rdx: field,
            r8: value,
            r9: mask,
            ..Regs::default()
        },
    );
    TdxStatus::from_raw(out.rax).into_result()?;
    Ok(out.r8)
}
