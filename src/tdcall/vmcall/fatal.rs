//! ReportFatalError: tell the host why the TD is stopping.

use super::{Regs, TdCall, VmcallError, expose, function, vmcall_registers_only};

/// How many message bytes travel in registers.
pub const FATAL_MESSAGE_SIZE: usize = 64;

/// Reports a fatal error with `code` and the first 64 bytes of `message` to the VMM, which
/// normally stops the TD. Returns only if the VMM lets it: the caller must then stop itself
/// (e.g. halt with interrupts disabled forever).
///
/// The message travels in registers (R14, R15, RBX, RDI, RSI, R8, R9, RDX, eight bytes each,
/// little endian, zero padded), so no shared memory is needed: it works before anything is set up.
pub fn report_fatal_error(tdx: &impl TdCall, code: u32, message: &[u8]) -> VmcallError {
    let mut bytes = [0u8; FATAL_MESSAGE_SIZE];
    let len = message.len().min(FATAL_MESSAGE_SIZE);
    bytes[..len].copy_from_slice(&message[..len]);
    let mut words = [0u64; 8];
    for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut raw = [0; 8];
        raw.copy_from_slice(chunk);
        *word = u64::from_le_bytes(raw);
    }
    let args = Regs {
        r12: code.into(),
        r13: 0,
        r14: words[0],
        r15: words[1],
        rbx: words[2],
        rdi: words[3],
        rsi: words[4],
        r8: words[5],
        r9: words[6],
        rdx: words[7],
        ..Regs::default()
    };
    let exposed = expose::R12_TO_R15
        | expose::RBX
        | expose::RDI
        | expose::RSI
        | expose::R8
        | expose::R9
        | expose::RDX;
    match vmcall_registers_only(tdx, function::REPORT_FATAL_ERROR, exposed, args) {
        Err(e) => e,
        // The VMM returned success from a call that should not return.
        Ok(_) => VmcallError::Vmm(super::VmcallStatus::Success),
    }
}
