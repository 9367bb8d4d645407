//! Entering and leaving the guest with AMD SVM: turning SVM on, and one VMRUN round trip with
//! the guest's general registers and FPU state swapped in and out around it.

use core::arch::naked_asm;
use x86_64::registers::model_specific::Msr;

/// EFER, whose bit 12 (SVME) enables SVM.
const EFER: u32 = 0xc000_0080;
const EFER_SVME: u64 = 1 << 12;
/// Where VMRUN saves the host's state.
const VM_HSAVE_PA: u32 = 0xc001_0117;

/// The guest's general registers that the VMCB does not hold (RAX and RSP live there).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Gprs {
    /// Unused: the guest's RAX is in the VMCB. Keeps the others at their register numbers.
    pub rax_unused: u64,
    /// RBX.
    pub rbx: u64,
    /// RCX.
    pub rcx: u64,
    /// RDX.
    pub rdx: u64,
    /// RSI.
    pub rsi: u64,
    /// RDI.
    pub rdi: u64,
    /// RBP.
    pub rbp: u64,
    /// R8..R15.
    pub r: [u64; 8],
}

/// A 512-byte FXSAVE area.
#[repr(C, align(16))]
pub struct FxArea(pub [u8; 512]);

impl FxArea {
    /// The state after FNINIT with SSE exceptions masked: FCW 0x37F, MXCSR 0x1F80.
    pub const fn initial() -> Self {
        let mut bytes = [0u8; 512];
        bytes[0] = 0x7f;
        bytes[1] = 0x03;
        bytes[24] = 0x80;
        bytes[25] = 0x1f;
        Self(bytes)
    }
}

/// Whether the CPU has SVM with nested paging (CPUID 0x8000_0001 ECX[2], 0x8000_000A EDX[0]).
pub fn supported() -> bool {
    // SAFETY: CPUID has no side effects.
    let ext = core::arch::x86_64::__cpuid(0x8000_0001);
    // SAFETY: as above.
    let features = core::arch::x86_64::__cpuid(0x8000_000a);
    ext.ecx & (1 << 2) != 0 && features.edx & 1 != 0
}

/// Turns SVM on and gives VMRUN its host save area.
///
/// # Safety
///
/// `host_save_area` is the physical address of a 4 KiB page used for nothing else, for as
/// long as guests run; the CPU supports SVM ([`supported`]).
pub unsafe fn enable(host_save_area: u64) {
    // SAFETY: setting EFER.SVME only enables the SVM instructions; the save area is the
    // caller's (contract).
    unsafe {
        let mut efer = Msr::new(EFER);
        efer.write(efer.read() | EFER_SVME);
        Msr::new(VM_HSAVE_PA).write(host_save_area);
    }
}

/// Runs the guest of `guest_vmcb` until its next exit.
///
/// # Safety
///
/// Both VMCBs are physical addresses of page-aligned VMCBs (the host's one only for
/// VMSAVE/VMLOAD), the guest's is consistent enough for VMRUN or its exit reports why not,
/// and every physical address inside it (nested CR3, permission maps) is valid. SVM is
/// enabled.
pub unsafe fn run(
    gprs: &mut Gprs,
    guest_vmcb: u64,
    host_vmcb: u64,
    guest_fx: &mut FxArea,
    host_fx: &mut FxArea,
) {
    // SAFETY: forwarded contract; the pointers come from live references.
    unsafe { vmrun_round_trip(gprs, guest_vmcb, host_vmcb, guest_fx, host_fx) }
}

/// VMSAVE the host, VMLOAD the guest, load its registers, VMRUN, and the reverse.
///
/// The host's callee-saved registers are pushed, and everything the guest may change is
/// stored before returning, so to the caller this is an ordinary `sysv64` call. Host RAX and
/// RSP come back from the host save area (VMRUN saves them), so the pushed values are found.
#[unsafe(naked)]
unsafe extern "sysv64" fn vmrun_round_trip(
    gprs: *mut Gprs,
    guest_vmcb: u64,
    host_vmcb: u64,
    guest_fx: *mut FxArea,
    host_fx: *mut FxArea,
) {
    naked_asm!(
        "push rbx",
        "push rbp",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "push rdi", // [rsp+32] gprs
        "push rsi", // [rsp+24] guest VMCB
        "push rdx", // [rsp+16] host VMCB
        "push rcx", // [rsp+8]  guest FX
        "push r8",  // [rsp]    host FX
        "fxsave64 [r8]",
        "fxrstor64 [rcx]",
        "mov rax, rdx",
        "vmsave rax",
        "mov rax, rsi",
        "vmload rax",
        "mov rbx, [rdi + 8]",
        "mov rcx, [rdi + 16]",
        "mov rdx, [rdi + 24]",
        "mov rsi, [rdi + 32]",
        "mov rbp, [rdi + 48]",
        "mov r8, [rdi + 56]",
        "mov r9, [rdi + 64]",
        "mov r10, [rdi + 72]",
        "mov r11, [rdi + 80]",
        "mov r12, [rdi + 88]",
        "mov r13, [rdi + 96]",
        "mov r14, [rdi + 104]",
        "mov r15, [rdi + 112]",
        "mov rdi, [rdi + 40]",
        "vmrun rax",
        "vmsave rax",
        "push rdi", // the guest's RDI; the slots above move down by 8
        "mov rdi, [rsp + 40]",
        "mov [rdi + 8], rbx",
        "mov [rdi + 16], rcx",
        "mov [rdi + 24], rdx",
        "mov [rdi + 32], rsi",
        "mov [rdi + 48], rbp",
        "mov [rdi + 56], r8",
        "mov [rdi + 64], r9",
        "mov [rdi + 72], r10",
        "mov [rdi + 80], r11",
        "mov [rdi + 88], r12",
        "mov [rdi + 96], r13",
        "mov [rdi + 104], r14",
        "mov [rdi + 112], r15",
        "pop rax",
        "mov [rdi + 40], rax",
        "pop r8",
        "pop rcx",
        "fxsave64 [rcx]",
        "fxrstor64 [r8]",
        "pop rax", // host VMCB
        "vmload rax",
        "pop rsi",
        "pop rdi",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbp",
        "pop rbx",
        "ret",
    )
}
