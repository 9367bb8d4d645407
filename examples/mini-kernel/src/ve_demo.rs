//! #VE in action: CPUID, port IO and MMIO, each emulated by tdx-boot's #VE handler.
//!
//! In a TD the instructions themselves raise #VE. Without TDX, each site first tells the model
//! what the TDX module would report for that instruction (`inject_ve`) and then executes
//! `int 20` immediately before it. The saved RIP then points at the instruction, exactly as for
//! a real #VE, so the crate's entry stub and handler run on a real interrupt frame: the handler
//! calls VEINFO.GET, emulates the instruction through a TDVMCALL (both TDCALLs, answered by the
//! model through #UD), writes the results into the frame and advances RIP past the instruction,
//! which therefore never executes.

use crate::platform::Platform;
use crate::{check, kprintln};
use alloc::vec::Vec;
use core::arch::asm;
use tdx_boot::model::{RegisterFile, TdxModule};
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
/// Where the model's demo MMIO device sits (an unused GPA below 4 GiB, accessed shared).
pub const MMIO_GPA: u64 = 0xfeb0_0000;

/// Sets up the model's side: the VMM's hypervisor CPUID leaf and an MMIO register file.
pub fn prepare_model(module: &TdxModule) -> RegisterFile {
    module.set_cpuid(HYPERVISOR_LEAF, 0, MODEL_HYPERVISOR);
    let device = RegisterFile::new(0x1000);
    module.add_mmio_device(MMIO_GPA, 0x1000, alloc::boxed::Box::new(device.clone()));
    device
}

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

    /// A 32-bit MMIO write and read back at `gpa` (model only: the access is never executed,
    /// the handler decodes it and performs it with #VE.RequestMMIO).
    pub fn mmio_round_trip(&self, gpa: u64, shared_bit: u64, value: u32) -> Option<u32> {
        let Source::Model(_) = self else { return None };
        let address = gpa | shared_bit;
        let ept = |write: bool| VeInfo {
            exit_reason: VeInfo::EXIT_REASON_EPT_VIOLATION,
            exit_qualification: if write { 1 << 1 } else { 1 << 0 },
            guest_linear_address: address,
            guest_physical_address: address,
            ..VeInfo::default()
        };
        let read: u32;
        self.inject(ept(true));
        // SAFETY: the store is never executed: `int 20` delivers the injected EPT violation and
        // the handler performs the access through the VMM, then skips the instruction.
        unsafe {
            asm!("int 20", "mov dword ptr [{a}], {v:e}", a = in(reg) address, v = in(reg) value)
        };
        self.inject(ept(false));
        // SAFETY: as above, for the load.
        unsafe {
            asm!("int 20", "mov {v:e}, dword ptr [{a}]", a = in(reg) address, v = out(reg) read)
        };
        Some(read)
    }
}

/// CPUID, port IO and MMIO through #VE and tdx-boot's handler.
pub fn check_all(platform: &Platform, shared_bit: u64) {
    let (source, mmio_device) = match *platform {
        Platform::Td => (Source::Td, None),
        Platform::Model(module) => (Source::Model(module), Some(prepare_model(module))),
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

    match (
        source.mmio_round_trip(MMIO_GPA, shared_bit, 0x1234_5678),
        mmio_device,
    ) {
        (Some(read), Some(device)) => check!(
            "#VE MMIO",
            read == 0x1234_5678 && device.get(0, 4) == 0x1234_5678,
            "MOV store + load at shared GPA {:#x}: device saw {:#x}, load returned {read:#x}",
            MMIO_GPA | shared_bit,
            device.get(0, 4)
        ),
        _ => {
            kprintln!("mini-kernel: #VE MMIO: not exercised in a TD (needs a shared MMIO mapping)")
        }
    }
}
