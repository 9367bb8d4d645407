//! The host's interrupt descriptor table: exceptions in tdx-sim itself are reported on the
//! console and end the run (there is nothing to return to); the APIC timer ends time slices.

use crate::host_timer;
use core::arch::naked_asm;
use x86_64::VirtAddr;
use x86_64::structures::idt::InterruptDescriptorTable;

static mut IDT: InterruptDescriptorTable = InterruptDescriptorTable::new();

/// Saves the caller-saved registers, calls `$handler(vector, frame)` and returns with IRETQ.
/// `$error` says whether the CPU pushed an error code (it is dropped).
macro_rules! stub {
    ($name:ident, $vector:expr, $handler:path, error) => {
        stub!(@body $name, $vector, $handler, "add rsp, 8");
    };
    ($name:ident, $vector:expr, $handler:path) => {
        stub!(@body $name, $vector, $handler, "");
    };
    (@body $name:ident, $vector:expr, $handler:path, $drop_error:literal) => {
        #[unsafe(naked)]
        extern "sysv64" fn $name() {
            naked_asm!(
                $drop_error,
                "push rax", "push rcx", "push rdx", "push rsi", "push rdi",
                "push r8", "push r9", "push r10", "push r11",
                "mov rsi, rsp",
                "add rsi, 72",
                "mov edi, {vector}",
                // The CPU aligned RSP to 16 before its 40-byte frame; with nine pushes that
                // makes 112 bytes, so the call below is made on an aligned stack.
                "call {handler}",
                "pop r11", "pop r10", "pop r9", "pop r8",
                "pop rdi", "pop rsi", "pop rdx", "pop rcx", "pop rax",
                "iretq",
                vector = const $vector,
                handler = sym $handler,
            )
        }
    };
}

extern "sysv64" fn exception(vector: u64, frame: *const u64) {
    // SAFETY: the stub passes the address of the CPU's interrupt frame (RIP, CS, RFLAGS,
    // RSP, SS).
    let (rip, rsp) = unsafe { (frame.read(), frame.add(3).read()) };
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    crate::fatal(format_args!(
        "tdx-sim itself took exception {vector} at RIP {rip:#x} (RSP {rsp:#x}, CR2 {cr2:#x})"
    ));
}

extern "sysv64" fn timer(_vector: u64, _frame: *const u64) {
    host_timer::on_interrupt();
}

extern "sysv64" fn other(_vector: u64, _frame: *const u64) {
    host_timer::end_of_interrupt();
}

extern "sysv64" fn spurious(_vector: u64, _frame: *const u64) {}

stub!(de, 0, exception);
stub!(db, 1, exception);
stub!(nmi, 2, exception);
stub!(bp, 3, exception);
stub!(of, 4, exception);
stub!(br, 5, exception);
stub!(ud, 6, exception);
stub!(nm, 7, exception);
stub!(df, 8, exception, error);
stub!(ts, 10, exception, error);
stub!(np, 11, exception, error);
stub!(ss, 12, exception, error);
stub!(gp, 13, exception, error);
stub!(pf, 14, exception, error);
stub!(mf, 16, exception);
stub!(ac, 17, exception, error);
stub!(mc, 18, exception);
stub!(xm, 19, exception);
stub!(timer_stub, 0xf0, timer);
stub!(spurious_stub, 0xff, spurious);
stub!(other_stub, 0x20, other);

/// Loads the host IDT.
pub fn init() {
    let exceptions: [(usize, extern "sysv64" fn()); 18] = [
        (0, de),
        (1, db),
        (2, nmi),
        (3, bp),
        (4, of),
        (5, br),
        (6, ud),
        (7, nm),
        (8, df),
        (10, ts),
        (11, np),
        (12, ss),
        (13, gp),
        (14, pf),
        (16, mf),
        (17, ac),
        (18, mc),
        (19, xm),
    ];
    // SAFETY: called once, before interrupts are enabled, on the only CPU tdx-sim uses; every
    // address set is a stub above that ends in IRETQ with the stack as the CPU left it.
    unsafe {
        let idt = &mut *core::ptr::addr_of_mut!(IDT);
        for vector in 32..=255u8 {
            idt[vector].set_handler_addr(VirtAddr::new(other_stub as *const () as u64));
        }
        for (vector, stub) in exceptions {
            let addr = VirtAddr::new(stub as *const () as u64);
            match vector {
                0 => idt.divide_error.set_handler_addr(addr),
                1 => idt.debug.set_handler_addr(addr),
                2 => idt.non_maskable_interrupt.set_handler_addr(addr),
                3 => idt.breakpoint.set_handler_addr(addr),
                4 => idt.overflow.set_handler_addr(addr),
                5 => idt.bound_range_exceeded.set_handler_addr(addr),
                6 => idt.invalid_opcode.set_handler_addr(addr),
                7 => idt.device_not_available.set_handler_addr(addr),
                8 => idt.double_fault.set_handler_addr(addr),
                10 => idt.invalid_tss.set_handler_addr(addr),
                11 => idt.segment_not_present.set_handler_addr(addr),
                12 => idt.stack_segment_fault.set_handler_addr(addr),
                13 => idt.general_protection_fault.set_handler_addr(addr),
                14 => idt.page_fault.set_handler_addr(addr),
                16 => idt.x87_floating_point.set_handler_addr(addr),
                17 => idt.alignment_check.set_handler_addr(addr),
                18 => idt.machine_check.set_handler_addr(addr),
                _ => idt.simd_floating_point.set_handler_addr(addr),
            };
        }
        idt[host_timer::VECTOR].set_handler_addr(VirtAddr::new(timer_stub as *const () as u64));
        idt[host_timer::SPURIOUS_VECTOR]
            .set_handler_addr(VirtAddr::new(spurious_stub as *const () as u64));
        idt.load();
    }
}
