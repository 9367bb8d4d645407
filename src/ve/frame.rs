//! [`Frame`]: the register state of the code a #VE (or another exception) interrupted.

use core::mem::{offset_of, size_of};

/// The general-purpose registers, RIP, CS, RFLAGS, RSP and SS of the interrupted code.
///
/// The layout is the one the entry stub builds on the stack: the fifteen general-purpose
/// registers it pushes (RAX lowest), directly followed by the five words the CPU pushes when
/// it delivers an exception without an error code (RIP, CS, RFLAGS, RSP, SS). A handler that
/// changes a field changes what the interrupted code sees when the stub returns with `iretq`.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
#[allow(missing_docs)]
pub struct Frame {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// RFLAGS.IF: maskable interrupts are enabled.
pub const RFLAGS_IF: u64 = 1 << 9;

// The stub pushes R15 first and RAX last, so the general-purpose registers end up in this order
// right below the hardware frame; the asm relies on these offsets.
const _: () = {
    assert!(offset_of!(Frame, rax) == 0);
    assert!(offset_of!(Frame, rbx) == 8);
    assert!(offset_of!(Frame, rcx) == 16);
    assert!(offset_of!(Frame, rdx) == 24);
    assert!(offset_of!(Frame, rsi) == 32);
    assert!(offset_of!(Frame, rdi) == 40);
    assert!(offset_of!(Frame, rbp) == 48);
    assert!(offset_of!(Frame, r8) == 56);
    assert!(offset_of!(Frame, r15) == 112);
    assert!(offset_of!(Frame, rip) == Frame::HARDWARE_OFFSET);
    assert!(offset_of!(Frame, cs) == Frame::HARDWARE_OFFSET + 8);
    assert!(offset_of!(Frame, rflags) == Frame::HARDWARE_OFFSET + 16);
    assert!(offset_of!(Frame, rsp) == Frame::HARDWARE_OFFSET + 24);
    assert!(offset_of!(Frame, ss) == Frame::HARDWARE_OFFSET + 32);
    assert!(size_of::<Frame>() == 160);
};

impl Frame {
    /// Where the CPU-pushed part (RIP, CS, RFLAGS, RSP, SS) starts.
    pub const HARDWARE_OFFSET: usize = 15 * 8;

    /// The general-purpose register with the instruction-encoding number `number` (0 RAX, 1 RCX,
    /// 2 RDX, 3 RBX, 4 RSP, 5 RBP, 6 RSI, 7 RDI, 8..15 R8..R15); only the low 4 bits are used.
    pub const fn gpr(&self, number: u8) -> u64 {
        match number & 0xf {
            0 => self.rax,
            1 => self.rcx,
            2 => self.rdx,
            3 => self.rbx,
            4 => self.rsp,
            5 => self.rbp,
            6 => self.rsi,
            7 => self.rdi,
            8 => self.r8,
            9 => self.r9,
            10 => self.r10,
            11 => self.r11,
            12 => self.r12,
            13 => self.r13,
            14 => self.r14,
            _ => self.r15,
        }
    }

    /// The register [`Frame::gpr`] names, for writing.
    pub fn gpr_mut(&mut self, number: u8) -> &mut u64 {
        match number & 0xf {
            0 => &mut self.rax,
            1 => &mut self.rcx,
            2 => &mut self.rdx,
            3 => &mut self.rbx,
            4 => &mut self.rsp,
            5 => &mut self.rbp,
            6 => &mut self.rsi,
            7 => &mut self.rdi,
            8 => &mut self.r8,
            9 => &mut self.r9,
            10 => &mut self.r10,
            11 => &mut self.r11,
            12 => &mut self.r12,
            13 => &mut self.r13,
            14 => &mut self.r14,
            _ => &mut self.r15,
        }
    }

    /// Whether the interrupted code ran in user mode (CS.RPL != 0).
    pub const fn is_user_mode(&self) -> bool {
        self.cs & 3 != 0
    }

    /// Whether the interrupted code had maskable interrupts enabled.
    pub const fn interrupts_enabled(&self) -> bool {
        self.rflags & RFLAGS_IF != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpr_numbers_follow_the_instruction_encoding() {
        let mut frame = Frame::default();
        for n in 0..16u8 {
            *frame.gpr_mut(n) = 0x100 + u64::from(n);
        }
        assert_eq!(frame.rax, 0x100);
        assert_eq!(frame.rcx, 0x101);
        assert_eq!(frame.rdx, 0x102);
        assert_eq!(frame.rbx, 0x103);
        assert_eq!(frame.rsp, 0x104);
        assert_eq!(frame.rbp, 0x105);
        assert_eq!(frame.rsi, 0x106);
        assert_eq!(frame.rdi, 0x107);
        assert_eq!(frame.r8, 0x108);
        assert_eq!(frame.r15, 0x10f);
        for n in 0..16u8 {
            assert_eq!(frame.gpr(n), 0x100 + u64::from(n));
        }
        assert_eq!(frame.rip, 0, "RIP is not a general-purpose register");
    }
}
