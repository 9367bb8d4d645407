//! The guest linear address of the memory access an instruction makes, for the EPT-violation
//! #VE a TD reads: VMX reports it (exit qualification bit 7), SVM's nested page fault does not,
//! so the host decodes the instruction at RIP and computes the address itself.
//!
//! The decoding is iced-x86's, not tdx-boot's own MMIO decoder: the TD's #VE handler checks
//! its decoded address against this one, and the check only means something if the two come
//! from independent decoders. The instruction bytes and registers are the guest's and
//! untrusted: every way the address cannot be known is a [`Unresolved`], never a panic.
//!
//! Only 64-bit mode is handled, where ES, CS, SS and DS have base 0 and only FS and GS carry
//! one: a TD's kernel runs there, and TDVF makes its MMIO through TDVMCALLs, not through #VE.

use iced_x86::{Decoder, DecoderError, DecoderOptions, Instruction, Mnemonic, OpKind, Register};

/// The registers of a vCPU in 64-bit mode that address arithmetic reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddressRegisters {
    /// RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8-R15: the order of their encodings.
    pub gprs: [u64; 16],
    /// RIP of the instruction (its first byte), for RIP-relative operands.
    pub rip: u64,
    /// FS's base (IA32_FS_BASE).
    pub fs_base: u64,
    /// GS's base (IA32_GS_BASE).
    pub gs_base: u64,
}

/// The memory access an instruction makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryAccess {
    /// The linear address of its first byte.
    pub linear_address: u64,
    /// The instruction's length in bytes.
    pub instruction_length: usize,
}

/// Why the linear address of an instruction's access is not known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unresolved {
    /// The bytes are no valid instruction in 64-bit mode.
    Undecodable,
    /// The bytes end before the instruction does.
    Truncated,
    /// The instruction has no explicit memory operand (a register-only instruction, or one
    /// whose only memory access is implicit, such as PUSH of a register).
    NoMemoryOperand,
    /// The memory operand is only an address, not an access (LEA, the multi-byte NOP).
    NotAnAccess,
    /// The instruction touches memory in more than one place (MOVS, CMPS, PUSH or POP of
    /// memory, CALL through memory) or in many (a gather or scatter with a vector index): which
    /// of them faulted cannot be told from the instruction.
    SeveralAccesses,
    /// The address depends on a register [`AddressRegisters`] does not hold.
    UnknownRegister(Register),
}

/// The decoded instruction at the start of `bytes` (at `rip`), or why there is none.
fn decode(bytes: &[u8], rip: u64) -> Result<Instruction, Unresolved> {
    let mut decoder = Decoder::with_ip(64, bytes, rip, DecoderOptions::NONE);
    let instruction = decoder.decode();
    match decoder.last_error() {
        DecoderError::None => Ok(instruction),
        DecoderError::NoMoreBytes => Err(Unresolved::Truncated),
        _ => Err(Unresolved::Undecodable),
    }
}

fn is_memory_operand(kind: OpKind) -> bool {
    matches!(
        kind,
        OpKind::Memory
            | OpKind::MemorySegSI
            | OpKind::MemorySegESI
            | OpKind::MemorySegRSI
            | OpKind::MemorySegDI
            | OpKind::MemorySegEDI
            | OpKind::MemorySegRDI
            | OpKind::MemoryESDI
            | OpKind::MemoryESEDI
            | OpKind::MemoryESRDI
    )
}

/// The value iced asks for: a general-purpose register of any width (AH-BH are bits 15:8),
/// or a segment's base. iced numbers its registers in encoding order within each width.
fn register_value(registers: &AddressRegisters, register: Register) -> Option<u64> {
    match register {
        Register::ES | Register::CS | Register::SS | Register::DS => return Some(0),
        Register::FS => return Some(registers.fs_base),
        Register::GS => return Some(registers.gs_base),
        _ => {}
    }
    // (first of a group, the GPR number of that first, the value's shift, its mask).
    const GROUPS: [(Register, Register, usize, u32, u64); 6] = [
        (Register::AL, Register::BL, 0, 0, 0xff),
        (Register::AH, Register::BH, 0, 8, 0xff),
        // SPL, BPL, SIL, DIL, R8L-R15L: registers 4-15 with a REX prefix.
        (Register::SPL, Register::R15L, 4, 0, 0xff),
        (Register::AX, Register::R15W, 0, 0, 0xffff),
        (Register::EAX, Register::R15D, 0, 0, 0xffff_ffff),
        (Register::RAX, Register::R15, 0, 0, u64::MAX),
    ];
    let &(first, _, number, shift, mask) = GROUPS
        .iter()
        .find(|(first, last, ..)| (*first..=*last).contains(&register))?;
    let gpr = registers
        .gprs
        .get(register as usize - first as usize + number)?;
    Some((gpr >> shift) & mask)
}

/// The linear address of the one memory access the instruction at the start of `bytes` makes,
/// with `registers` as they were when it faulted.
pub fn memory_access(
    bytes: &[u8],
    registers: &AddressRegisters,
) -> Result<MemoryAccess, Unresolved> {
    let instruction = decode(bytes, registers.rip)?;
    if matches!(instruction.mnemonic(), Mnemonic::Lea | Mnemonic::Nop) {
        return Err(Unresolved::NotAnAccess);
    }
    if matches!(
        instruction.mnemonic(),
        Mnemonic::Push | Mnemonic::Pop | Mnemonic::Call
    ) {
        // Their explicit operand, if in memory, comes with an implicit stack access.
        let explicit =
            (0..instruction.op_count()).any(|i| is_memory_operand(instruction.op_kind(i)));
        return Err(if explicit {
            Unresolved::SeveralAccesses
        } else {
            Unresolved::NoMemoryOperand
        });
    }
    let mut memory =
        (0..instruction.op_count()).filter(|&i| is_memory_operand(instruction.op_kind(i)));
    let operand = memory.next().ok_or(Unresolved::NoMemoryOperand)?;
    let vector_index = (Register::XMM0..=Register::ZMM31).contains(&instruction.memory_index());
    if memory.next().is_some() || vector_index {
        return Err(Unresolved::SeveralAccesses);
    }
    let mut unknown = None;
    let linear_address = instruction.virtual_address(operand, 0, |register, _, _| {
        let value = register_value(registers, register);
        if value.is_none() {
            unknown = Some(register);
        }
        value
    });
    match (linear_address, unknown) {
        (Some(linear_address), _) => Ok(MemoryAccess {
            linear_address,
            instruction_length: instruction.len(),
        }),
        (None, Some(register)) => Err(Unresolved::UnknownRegister(register)),
        (None, None) => Err(Unresolved::UnknownRegister(Register::None)),
    }
}

#[cfg(test)]
mod tests;
