//! The SVM virtual machine control block: one 4 KiB page per guest vCPU, a control area (what
//! to intercept, why the guest exited, what to inject) and a state save area (the guest's
//! segment and control registers). Offsets from the AMD64 Architecture Programmer's Manual,
//! volume 2, appendix B.

/// Control-area fields.
pub mod control {
    /// u32: CR read intercepts in bits 0-15, CR write intercepts in bits 16-31.
    pub const CR_INTERCEPTS: usize = 0x000;
    /// u32: one bit per exception vector.
    pub const EXCEPTION_INTERCEPTS: usize = 0x008;
    /// u32: the first vector of instruction and event intercepts.
    pub const INTERCEPTS_1: usize = 0x00c;
    /// u32: the second.
    pub const INTERCEPTS_2: usize = 0x010;
    /// u64: the IO permission map's physical address.
    pub const IOPM_BASE: usize = 0x040;
    /// u64: the MSR permission map's physical address.
    pub const MSRPM_BASE: usize = 0x048;
    /// u32: the guest's address space id (never 0).
    pub const ASID: usize = 0x058;
    /// u8: 1 flushes the whole TLB on VMRUN.
    pub const TLB_CONTROL: usize = 0x05c;
    /// u64: virtual interrupt control (V_TPR, V_IRQ, V_INTR_PRIO, V_INTR_MASKING, vector).
    pub const VIRTUAL_INTERRUPT: usize = 0x060;
    /// u64: bit 0 = the guest is in an interrupt shadow (after STI or MOV SS).
    pub const INTERRUPT_SHADOW: usize = 0x068;
    /// u64: why the guest exited.
    pub const EXIT_CODE: usize = 0x070;
    /// u64: exit information 1.
    pub const EXIT_INFO_1: usize = 0x078;
    /// u64: exit information 2.
    pub const EXIT_INFO_2: usize = 0x080;
    /// u64: the event being delivered when the exit happened.
    pub const EXIT_INT_INFO: usize = 0x088;
    /// u64: bit 0 enables nested paging.
    pub const NESTED_CONTROL: usize = 0x090;
    /// u64: an event to inject at the next VMRUN.
    pub const EVENT_INJECTION: usize = 0x0a8;
    /// u64: the nested page tables' root.
    pub const NESTED_CR3: usize = 0x0b0;
}

/// State-save-area fields.
pub mod save {
    /// Segment registers, 16 bytes each: u16 selector, u16 attributes, u32 limit, u64 base.
    pub const ES: usize = 0x400;
    /// CS.
    pub const CS: usize = 0x410;
    /// SS.
    pub const SS: usize = 0x420;
    /// DS.
    pub const DS: usize = 0x430;
    /// FS.
    pub const FS: usize = 0x440;
    /// GS.
    pub const GS: usize = 0x450;
    /// GDTR (limit and base only).
    pub const GDTR: usize = 0x460;
    /// LDTR.
    pub const LDTR: usize = 0x470;
    /// IDTR (limit and base only).
    pub const IDTR: usize = 0x480;
    /// TR.
    pub const TR: usize = 0x490;
    /// u8: the current privilege level.
    pub const CPL: usize = 0x4cb;
    /// u64.
    pub const EFER: usize = 0x4d0;
    /// u64.
    pub const CR4: usize = 0x548;
    /// u64.
    pub const CR3: usize = 0x550;
    /// u64.
    pub const CR0: usize = 0x558;
    /// u64.
    pub const DR7: usize = 0x560;
    /// u64.
    pub const DR6: usize = 0x568;
    /// u64.
    pub const RFLAGS: usize = 0x570;
    /// u64.
    pub const RIP: usize = 0x578;
    /// u64.
    pub const RSP: usize = 0x5d8;
    /// u64.
    pub const RAX: usize = 0x5f8;
    /// u64: the guest's PAT.
    pub const G_PAT: usize = 0x668;
}

/// Exit codes (EXITCODE).
pub mod exit {
    /// Write to CR0 (CR n: `CR0_WRITE + n`).
    pub const CR0_WRITE: u64 = 0x10;
    /// Write to CR3.
    pub const CR3_WRITE: u64 = 0x13;
    /// Write to CR4.
    pub const CR4_WRITE: u64 = 0x14;
    /// Exception `v`: `EXCEPTION + v`.
    pub const EXCEPTION: u64 = 0x40;
    /// A physical interrupt.
    pub const INTR: u64 = 0x60;
    /// CPUID.
    pub const CPUID: u64 = 0x72;
    /// HLT.
    pub const HLT: u64 = 0x78;
    /// IN/OUT.
    pub const IOIO: u64 = 0x7b;
    /// RDMSR/WRMSR.
    pub const MSR: u64 = 0x7c;
    /// The guest shut down (a triple fault).
    pub const SHUTDOWN: u64 = 0x7f;
    /// VMMCALL.
    pub const VMMCALL: u64 = 0x81;
    /// INVD.
    pub const INVD: u64 = 0x76;
    /// WBINVD.
    pub const WBINVD: u64 = 0x89;
    /// MONITOR.
    pub const MONITOR: u64 = 0x8a;
    /// MWAIT.
    pub const MWAIT: u64 = 0x8b;
    /// A nested page fault.
    pub const NPF: u64 = 0x400;
    /// VMRUN refused the VMCB (an inconsistent guest state).
    pub const INVALID: u64 = u64::MAX;
}

/// Bits of `INTERCEPTS_1`.
pub mod intercept1 {
    /// Physical interrupts.
    pub const INTR: u32 = 1 << 0;
    /// NMIs.
    pub const NMI: u32 = 1 << 1;
    /// INIT.
    pub const INIT: u32 = 1 << 3;
    /// CPUID.
    pub const CPUID: u32 = 1 << 18;
    /// INVD.
    pub const INVD: u32 = 1 << 22;
    /// HLT.
    pub const HLT: u32 = 1 << 24;
    /// IN/OUT, through the IO permission map.
    pub const IOIO: u32 = 1 << 27;
    /// RDMSR/WRMSR, through the MSR permission map.
    pub const MSR: u32 = 1 << 28;
    /// Shutdown.
    pub const SHUTDOWN: u32 = 1 << 31;
}

/// Bits of `INTERCEPTS_2`.
pub mod intercept2 {
    /// VMRUN (required by the architecture).
    pub const VMRUN: u32 = 1 << 0;
    /// VMMCALL.
    pub const VMMCALL: u32 = 1 << 1;
    /// VMLOAD.
    pub const VMLOAD: u32 = 1 << 2;
    /// VMSAVE.
    pub const VMSAVE: u32 = 1 << 3;
    /// STGI.
    pub const STGI: u32 = 1 << 4;
    /// CLGI.
    pub const CLGI: u32 = 1 << 5;
    /// SKINIT.
    pub const SKINIT: u32 = 1 << 6;
    /// WBINVD.
    pub const WBINVD: u32 = 1 << 9;
    /// MONITOR.
    pub const MONITOR: u32 = 1 << 10;
    /// MWAIT.
    pub const MWAIT: u32 = 1 << 11;
}

/// One VMCB: a page-aligned 4 KiB block addressed by offset.
#[repr(C, align(4096))]
pub struct Vmcb([u8; 4096]);

impl Vmcb {
    /// A zeroed VMCB.
    pub const fn zeroed() -> Self {
        Self([0; 4096])
    }

    /// Reads the little-endian field of `N` bytes at `offset`.
    fn get<const N: usize>(&self, offset: usize) -> [u8; N] {
        let mut out = [0; N];
        out.copy_from_slice(&self.0[offset..offset + N]);
        out
    }

    /// The u64 at `offset`.
    pub fn read64(&self, offset: usize) -> u64 {
        u64::from_le_bytes(self.get(offset))
    }

    /// The u32 at `offset`.
    pub fn read32(&self, offset: usize) -> u32 {
        u32::from_le_bytes(self.get(offset))
    }

    /// Writes the u64 at `offset`.
    pub fn write64(&mut self, offset: usize, value: u64) {
        self.0[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
    }

    /// Writes the u32 at `offset`.
    pub fn write32(&mut self, offset: usize, value: u32) {
        self.0[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }

    /// Writes the byte at `offset`.
    pub fn write8(&mut self, offset: usize, value: u8) {
        self.0[offset] = value;
    }

    /// The byte at `offset`.
    pub fn read8(&self, offset: usize) -> u8 {
        self.0[offset]
    }

    /// Sets segment `at` (one of the `save` segment offsets).
    pub fn set_segment(
        &mut self,
        at: usize,
        selector: u16,
        attributes: u16,
        limit: u32,
        base: u64,
    ) {
        self.0[at..at + 2].copy_from_slice(&selector.to_le_bytes());
        self.0[at + 2..at + 4].copy_from_slice(&attributes.to_le_bytes());
        self.write32(at + 4, limit);
        self.write64(at + 8, base);
    }

    /// The base of segment `at`.
    pub fn segment_base(&self, at: usize) -> u64 {
        self.read64(at + 8)
    }
}
