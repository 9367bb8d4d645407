//! #VE for instructions: CPUID of a hypervisor leaf and port IO, each emulated by tdx-boot's #VE
//! handler. (MMIO, which faults on an access rather than an instruction, is [`crate::ve_mmio`].)
//!
//! In a TD the instructions themselves raise #VE. Without TDX, each site first tells the model
//! what the TDX module would report for that instruction (`inject_ve`) and then executes
//! `int 20` immediately before it. The saved RIP then points at the instruction, exactly as for
//! a real #VE, so the crate's entry stub and handler run on a real interrupt frame: the handler
//! calls VEINFO.GET, emulates the instruction through a TDVMCALL (both TDCALLs, answered by the
//! model through #UD), writes the results into the frame and advances RIP past the instruction,
//! which therefore never executes.

use crate::check;
use crate::platform::Platform;
use alloc::vec::Vec;
use core::arch::asm;
use tdx_boot::model::TdxModule;
use tdx_boot::tdcall::VeInfo;
use tdx_boot::tdcall::vmcall::CpuidResult;

/// Where the #VE sites get their exits from.
#[derive(Clone, Copy)]
pub enum Source {
    /// A real TD: the instructions fault by themselves.
    Td,
    /// The model: each site injects the exit and raises vector 20 itself.
    Model(&'static TdxModule),
}

/// The hypervisor CPUID leaf the demo reads (only 0x4000_0000..=0x4FFF_FFFF reach the VMM).
pub const HYPERVISOR_LEAF: u32 = 0x4000_0000;
/// The model VMM's answer to [`HYPERVISOR_LEAF`]: max leaf and "TDXBOOTMODEL".
pub const MODEL_HYPERVISOR: CpuidResult = CpuidResult {
    eax: 0x4000_0001,
    ebx: u32::from_le_bytes(*b"TDXB"),
    ecx: u32::from_le_bytes(*b"OOTM"),
    edx: u32::from_le_bytes(*b"ODEL"),
};
/// COM1's scratch register: written and read back through #VE.
pub const SCRATCH_PORT: u16 = 0x3ff;

/// Which vCPU the model charges the #VE to.
fn vcpu() -> u32 {
    crate::percpu::current().map_or(0, |c| c.index)
}

impl Source {
    fn inject(&self, info: VeInfo) {
        if let Source::Model(module) = self {
            module.inject_ve(vcpu(), info);
        }
    }

    /// CPUID `leaf` (sub-leaf 0).
    pub fn cpuid(&self, leaf: u32) -> CpuidResult {
        let (eax, ebx, ecx, edx);
        self.inject(VeInfo {
            exit_reason: VeInfo::EXIT_REASON_CPUID,
            instruction_length: 2,
            ..VeInfo::default()
        });
        // SAFETY: CPUID has no memory effects; RBX (which asm cannot name) is saved and
        // restored around it by hand. `int 20` reaches the #VE gate, whose handler emulates the
        // CPUID and resumes after it.
        unsafe {
            match self {
                Source::Model(_) => asm!(
                    "mov {b:r}, rbx", "int 20", "cpuid", "xchg {b:r}, rbx",
                    b = out(reg) ebx, inout("eax") leaf => eax, inout("ecx") 0u32 => ecx, out("edx") edx,
                ),
                Source::Td => asm!(
                    "mov {b:r}, rbx", "cpuid", "xchg {b:r}, rbx",
                    b = out(reg) ebx, inout("eax") leaf => eax, inout("ecx") 0u32 => ecx, out("edx") edx,
                ),
            }
        }
        let ebx: u64 = ebx;
        CpuidResult {
            eax,
            ebx: ebx as u32,
            ecx,
            edx,
        }
    }

    /// `out dx, al`.
    pub fn outb(&self, port: u16, value: u8) {
        self.inject(VeInfo {
            exit_reason: VeInfo::EXIT_REASON_IO,
            exit_qualification: u64::from(port) << 16,
            instruction_length: 1,
            ..VeInfo::default()
        });
        // SAFETY: a write to a UART register; `int 20` as for `cpuid`.
        unsafe {
            match self {
                Source::Model(_) => asm!("int 20", "out dx, al", in("dx") port, in("al") value),
                Source::Td => asm!("out dx, al", in("dx") port, in("al") value),
            }
        }
    }

    /// `in al, dx`.
    pub fn inb(&self, port: u16) -> u8 {
        self.inject(VeInfo {
            exit_reason: VeInfo::EXIT_REASON_IO,
            exit_qualification: (u64::from(port) << 16) | (1 << 3),
            instruction_length: 1,
            ..VeInfo::default()
        });
        let value: u8;
        // SAFETY: a read of a UART register; `int 20` as for `cpuid`.
        unsafe {
            match self {
                Source::Model(_) => asm!("int 20", "in al, dx", in("dx") port, out("al") value),
                Source::Td => asm!("in al, dx", in("dx") port, out("al") value),
            }
        }
        value
    }
}

/// CPUID and port IO through #VE and tdx-boot's handler.
pub fn check(platform: &Platform) {
    let source = match *platform {
        Platform::Td => Source::Td,
        Platform::Model(module) => {
            // The model VMM's side: its hypervisor CPUID leaf.
            module.set_cpuid(HYPERVISOR_LEAF, 0, MODEL_HYPERVISOR);
            Source::Model(module)
        }
    };
    let cpuid = source.cpuid(HYPERVISOR_LEAF);
    let expected = match platform {
        Platform::Model(_) => cpuid == MODEL_HYPERVISOR,
        Platform::Td => cpuid.eax >= HYPERVISOR_LEAF,
    };
    let vendor: Vec<u8> = [cpuid.ebx, cpuid.ecx, cpuid.edx]
        .iter()
        .flat_map(|r| r.to_le_bytes())
        .collect();
    check!(
        "#VE CPUID",
        expected,
        "leaf {:#x} -> max leaf {:#x}, vendor {:?}",
        HYPERVISOR_LEAF,
        cpuid.eax,
        core::str::from_utf8(&vendor).unwrap_or("?")
    );

    source.outb(SCRATCH_PORT, 0xa5);
    let back = source.inb(SCRATCH_PORT);
    check!(
        "#VE port IO",
        back == 0xa5,
        "OUT {:#x} then IN {:#x}: {back:#04x}",
        SCRATCH_PORT,
        SCRATCH_PORT
    );
}
