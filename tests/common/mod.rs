//! Helpers shared by the integration tests that run against the model.
#![allow(dead_code)]

use tdx_boot::model::TdxModule;
use tdx_boot::tdcall::{Regs, TdCall};

/// Host memory standing for guest memory. Leaked on purpose: the model may keep using it for
/// as long as it lives, whatever the order in which a test drops things. Accessed only through
/// raw pointers, never through Rust references, so the model's writes never alias a borrow.
pub struct HostMemory {
    ptr: *mut u8,
    len: usize,
}

impl HostMemory {
    /// `len` bytes, 4 KiB aligned, filled with `fill`.
    pub fn new(len: usize, fill: u8) -> Self {
        let raw = Box::leak(vec![fill; len + 0x1000].into_boxed_slice()).as_mut_ptr();
        let ptr = raw.wrapping_add(raw.align_offset(0x1000));
        Self { ptr, len }
    }

    /// Registers this memory as the backing of guest memory at `gpa`.
    pub fn back(&self, tdx: &TdxModule, gpa: u64) {
        // SAFETY: the memory is leaked (valid forever) and the test touches it only through
        // this type's raw-pointer accessors, between TDCALLs.
        assert!(unsafe { tdx.add_backing(gpa, self.ptr, self.len as u64) });
    }

    pub fn read(&self, offset: usize, len: usize) -> Vec<u8> {
        assert!(offset + len <= self.len);
        let mut out = vec![0; len];
        // SAFETY: in bounds (checked); no reference to the memory exists.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(offset), out.as_mut_ptr(), len) };
        out
    }

    pub fn write(&self, offset: usize, data: &[u8]) {
        assert!(offset + data.len() <= self.len);
        // SAFETY: as in `read`.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(offset), data.len()) };
    }

    pub fn fill(&self, offset: usize, len: usize, byte: u8) {
        assert!(offset + len <= self.len);
        // SAFETY: as in `read`.
        unsafe { std::ptr::write_bytes(self.ptr.add(offset), byte, len) };
    }

    /// The host address of byte `offset` (for wrappers that take a Rust reference).
    pub fn ptr(&self, offset: usize) -> *mut u8 {
        assert!(offset < self.len);
        self.ptr.wrapping_add(offset)
    }
}

/// Private memory `[0, len)` backed by host memory, holding `data` at `at`, whose page a
/// hostile host has then swapped for a pending one (TDH.MEM.PAGE.REMOVE + AUG): the setting in
/// which accepting memory in use zeroes it.
pub fn live_data_on_a_swapped_page(tdx: &TdxModule, len: u64, at: u64, data: &[u8]) -> HostMemory {
    let memory = HostMemory::new(len as usize, 0);
    memory.back(tdx, 0);
    tdx.add_memory(0, len, tdx_boot::model::PageState::Private);
    memory.write(at as usize, data);
    let page = at & !0xfff;
    tdx.add_memory(page, page + 0x1000, tdx_boot::model::PageState::Unaccepted);
    memory
}

/// Executes one raw TDCALL on `cpu`.
pub fn call(cpu: &impl TdCall, regs: Regs) -> Regs {
    let mut regs = regs;
    // SAFETY: the model touches only memory registered with `add_backing` (leaked
    // `HostMemory`), so no Rust object can be affected.
    unsafe { cpu.tdcall(&mut regs) };
    regs
}

/// A vCPU whose module answers every ACCEPT of a GPA in `[start, end)` (any level) with
/// `TDX_OPERAND_ADDR_RANGE_ERROR` without acting on it: a broken or hostile module. A real one
/// never refuses guest RAM (the ACCEPT succeeds, or the EPT violation ends the TD), so this is
/// how a test makes an ACCEPT fail mid-range and the TD live on.
pub struct RefusesAccept<T> {
    pub cpu: T,
    pub start: u64,
    pub end: u64,
}

impl<T: TdCall> TdCall for RefusesAccept<T> {
    unsafe fn tdcall(&self, regs: &mut Regs) {
        let gpa = regs.rcx & !0xfff;
        if regs.rax == tdx_boot::tdcall::leaf::MEM_PAGE_ACCEPT
            && (self.start..self.end).contains(&gpa)
        {
            regs.rax = tdx_boot::tdcall::TdxStatus::OPERAND_ADDR_RANGE_ERROR.raw();
            return;
        }
        // SAFETY: forwarded unchanged; the caller upholds the contract.
        unsafe { self.cpu.tdcall(regs) }
    }
}
