//! Instruction emulation sub-functions: CPUID, HLT, IN/OUT, RDMSR/WRMSR, WBINVD.

use super::{
    Regs, TdCall, VmcallError, VmcallStatus, expose, function, vmcall_raw, vmcall_registers_only,
    vmcall_regs,
};

/// The four registers CPUID returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct CpuidResult {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// Asks the VMM for CPUID leaf `leaf`, sub-leaf `subleaf`.
///
/// The answer is the VMM's: only hypervisor leaves (0x4000_0000..=0x4FFF_FFFF) should be taken
/// from it; the #VE handler enforces that.
pub fn cpuid(tdx: &impl TdCall, leaf: u32, subleaf: u32) -> Result<CpuidResult, VmcallError> {
    let args = Regs {
        r12: leaf.into(),
        r13: subleaf.into(),
        ..Regs::default()
    };
    let out = vmcall_registers_only(tdx, function::CPUID, expose::R12_TO_R15, args)?;
    Ok(CpuidResult {
        eax: out.r12 as u32,
        ebx: out.r13 as u32,
        ecx: out.r14 as u32,
        edx: out.r15 as u32,
    })
}

/// Halts the vCPU through the VMM until the next interrupt.
///
/// `interrupts_blocked` tells the VMM whether the halted code had interrupts disabled (then only
/// an NMI or similar wakes it); it must match the caller's RFLAGS.IF or wake-ups are lost.
pub fn hlt(tdx: &impl TdCall, interrupts_blocked: bool) -> Result<(), VmcallError> {
    let args = Regs {
        r12: interrupts_blocked.into(),
        ..Regs::default()
    };
    vmcall_registers_only(tdx, function::HLT, expose::R12, args).map(drop)
}

/// Enables interrupts and halts, with STI immediately before TDCALL: the idle loop's `sti; hlt`.
///
/// An interrupt that became pending after the caller checked for work is then delivered only
/// after the VMM has seen the halt request with interrupts enabled, so it wakes the vCPU instead
/// of being lost. Emulating HLT through #VE cannot give this guarantee.
///
/// # Safety
///
/// Interrupts are enabled on return: an IDT must be loaded and the caller must be interruptible.
pub unsafe fn safe_halt(tdx: &impl TdCall) -> Result<(), VmcallError> {
    let regs = vmcall_regs(function::HLT, expose::R12, Regs::default());
    // SAFETY: HLT carries no guest memory; the caller accepts interrupts being enabled.
    match unsafe { vmcall_raw(tdx, regs, true) }? {
        (VmcallStatus::Success, _) => Ok(()),
        (status, _) => Err(VmcallError::Vmm(status)),
    }
}

/// The width of a port-IO access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IoSize {
    /// `inb`/`outb`.
    U8 = 1,
    /// `inw`/`outw`.
    U16 = 2,
    /// `inl`/`outl`.
    U32 = 4,
}

impl IoSize {
    /// The width in bytes.
    pub const fn bytes(self) -> u64 {
        self as u64
    }

    /// The size for a width of `bytes`, if port IO has one.
    pub const fn from_bytes(bytes: u64) -> Option<Self> {
        match bytes {
            1 => Some(Self::U8),
            2 => Some(Self::U16),
            4 => Some(Self::U32),
            _ => None,
        }
    }

    /// The bits an access of this width carries.
    pub const fn mask(self) -> u32 {
        match self {
            Self::U8 => 0xff,
            Self::U16 => 0xffff,
            Self::U32 => 0xffff_ffff,
        }
    }
}

const IO_READ: u64 = 0;
const IO_WRITE: u64 = 1;

/// Reads `size` bytes from `port`; the result is truncated to the access width.
pub fn io_read(tdx: &impl TdCall, port: u16, size: IoSize) -> Result<u32, VmcallError> {
    let args = Regs {
        r12: size.bytes(),
        r13: IO_READ,
        r14: port.into(),
        ..Regs::default()
    };
    let out = vmcall_registers_only(
        tdx,
        function::IO,
        expose::R12 | expose::R13 | expose::R14,
        args,
    )?;
    Ok(out.r11 as u32 & size.mask())
}

/// Writes the low `size` bytes of `value` to `port`.
pub fn io_write(tdx: &impl TdCall, port: u16, size: IoSize, value: u32) -> Result<(), VmcallError> {
    let args = Regs {
        r12: size.bytes(),
        r13: IO_WRITE,
        r14: port.into(),
        r15: (value & size.mask()).into(),
        ..Regs::default()
    };
    vmcall_registers_only(tdx, function::IO, expose::R12_TO_R15, args).map(drop)
}

/// Reads MSR `index` through the VMM. A refusal is an error the kernel should turn into #GP.
pub fn rdmsr(tdx: &impl TdCall, index: u32) -> Result<u64, VmcallError> {
    let args = Regs {
        r12: index.into(),
        ..Regs::default()
    };
    Ok(vmcall_registers_only(tdx, function::RDMSR, expose::R12, args)?.r11)
}

/// Writes MSR `index` through the VMM. A refusal is an error the kernel should turn into #GP.
pub fn wrmsr(tdx: &impl TdCall, index: u32, value: u64) -> Result<(), VmcallError> {
    let args = Regs {
        r12: index.into(),
        r13: value,
        ..Regs::default()
    };
    vmcall_registers_only(tdx, function::WRMSR, expose::R12_R13, args).map(drop)
}

/// Asks the VMM to write back and invalidate caches.
pub fn wbinvd(tdx: &impl TdCall) -> Result<(), VmcallError> {
    vmcall_registers_only(tdx, function::WBINVD, 0, Regs::default()).map(drop)
}
