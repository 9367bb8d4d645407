//! GetTdVmCallInfo and SetupEventNotifyInterrupt: negotiating with the VMM.

use super::{Regs, TdCall, VmcallError, expose, function, vmcall_registers_only};

/// GetTdVmCallInfo for `leaf` (0: the GHCI version is supported; 1: the supported
/// sub-function bitmaps in GHCI 1.5+). Returns R11..R14 as the VMM set them.
pub fn get_td_vmcall_info(tdx: &impl TdCall, leaf: u64) -> Result<[u64; 4], VmcallError> {
    let args = Regs {
        r12: leaf,
        ..Regs::default()
    };
    // R12 is the input; R11..R14 the outputs. R15 carries nothing, so it is not exposed.
    let exposed = expose::R12 | expose::R13 | expose::R14;
    let out = vmcall_registers_only(tdx, function::GET_TD_VMCALL_INFO, exposed, args)?;
    Ok([out.r11, out.r12, out.r13, out.r14])
}

/// Asks the VMM to signal completed asynchronous requests (GetQuote) with interrupt `vector`,
/// which must be 32..=255.
pub fn setup_event_notify_interrupt(tdx: &impl TdCall, vector: u8) -> Result<(), VmcallError> {
    if vector < 32 {
        return Err(VmcallError::InvalidArgument("event-notify vector below 32"));
    }
    let args = Regs {
        r12: vector.into(),
        ..Regs::default()
    };
    vmcall_registers_only(
        tdx,
        function::SETUP_EVENT_NOTIFY_INTERRUPT,
        expose::R12,
        args,
    )
    .map(drop)
}
