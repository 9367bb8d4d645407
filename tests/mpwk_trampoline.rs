//! The trampoline's machine code, checked by decoding it (it cannot run on the host: it loads
//! CR3, the GDT and the IDT). Every memory operand is resolved against a real `ApBoot` and a real
//! installed page, so a layout change that the assembly did not follow fails here.

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
use tdx_boot::mpwk::trampoline::{slot_offset, trampoline_code};
use tdx_boot::mpwk::{
    ApBoot, ApState, DescriptorTablePointer, TrampolineError, install_trampoline,
};
use x86_64::VirtAddr;

const PHYS: u64 = 0x9_F000;

#[repr(C, align(4096))]
struct Page([u8; 4096]);

#[repr(C, align(4096))]
struct TwoPages([u8; 8192]);

extern "C" fn entry(_: &ApBoot) -> ! {
    unreachable!()
}

fn sample_block() -> ApBoot {
    ApBoot::new(
        7,
        ApState {
            cr3: 0x1111_1000,
            gdtr: DescriptorTablePointer {
                limit: 0x2222,
                base: VirtAddr::new(0x3333_3333_3000),
            },
            idtr: DescriptorTablePointer {
                limit: 0x4444,
                base: VirtAddr::new(0x5555_5555_5000),
            },
            code_selector: 0x66,
            data_selector: 0x77,
            stack_top: 0x8888_8888_8000,
        },
        entry,
        0x9999,
    )
}

fn decode(page: &[u8]) -> Vec<Instruction> {
    let code = &page[..slot_offset()];
    let mut decoder = Decoder::with_ip(64, code, PHYS, DecoderOptions::NONE);
    let instructions: Vec<Instruction> = decoder.iter().collect();
    assert!(
        instructions.iter().all(|i| !i.is_invalid()),
        "undecodable bytes"
    );
    instructions
}

/// Reads `size` bytes of `block` at `offset`, as the AP's `[rbx + offset]` operand would.
fn block_bytes(block: &ApBoot, offset: u64, size: usize) -> Vec<u8> {
    let base = block as *const ApBoot as *const u8;
    assert!(offset as usize + size <= core::mem::size_of::<ApBoot>());
    // SAFETY: in bounds of `block` (checked above); ApBoot has no padding-sensitive reads here
    // beyond initialized fields (the test only reads the operands the trampoline uses).
    unsafe { std::slice::from_raw_parts(base.add(offset as usize), size).to_vec() }
}

#[test]
fn installs_into_the_page_and_zeroes_the_rest() {
    let mut page = Box::new(Page([0xCC; 4096]));
    let code = trampoline_code();
    let trampoline = install_trampoline(&mut page.0, PHYS).unwrap();
    assert_eq!(trampoline.wakeup_vector(), PHYS);
    assert_eq!(trampoline.slot().cr3(), 0);
    assert_eq!(trampoline.slot().ap_boot(), 0);
    assert_eq!(&page.0[..code.len()], code);
    assert!(page.0[code.len()..].iter().all(|b| *b == 0));
    assert!(
        code.len() < 256,
        "the trampoline is small: {} bytes",
        code.len()
    );
    assert_eq!(slot_offset() % 8, 0);
}

#[test]
fn placement_rules() {
    let mut page = Box::new(Page([0; 4096]));
    assert_eq!(
        install_trampoline(&mut page.0, 0x1234).unwrap_err(),
        TrampolineError::MisalignedPhysical(0x1234)
    );
    assert_eq!(
        install_trampoline(&mut page.0, 0x1_0000_0000).unwrap_err(),
        TrampolineError::Above4GiB(0x1_0000_0000)
    );
    assert_eq!(
        install_trampoline(&mut page.0, u64::MAX - 0xFFF).unwrap_err(),
        TrampolineError::Above4GiB(u64::MAX - 0xFFF)
    );
    assert!(install_trampoline(&mut page.0, 0xFFFF_F000).is_ok());
    let mut two = Box::new(TwoPages([0; 8192]));
    let slice: &mut [u8; 4096] = (&mut two.0[1..4097]).try_into().unwrap();
    assert!(matches!(
        install_trampoline(slice, 0x1000),
        Err(TrampolineError::MisalignedVirtual(_))
    ));
}

#[test]
fn no_instruction_that_raises_ve_or_needs_an_idt() {
    let mut page = Box::new(Page([0; 4096]));
    install_trampoline(&mut page.0, PHYS).unwrap();
    let forbidden = [
        Mnemonic::Cpuid,
        Mnemonic::Rdmsr,
        Mnemonic::Wrmsr,
        Mnemonic::Hlt,
        Mnemonic::In,
        Mnemonic::Out,
        Mnemonic::Insb,
        Mnemonic::Outsb,
        Mnemonic::Vmcall,
        Mnemonic::Int,
        Mnemonic::Int3,
        Mnemonic::Wbinvd,
        Mnemonic::Rdpmc,
        Mnemonic::Mwait,
        Mnemonic::Monitor,
    ];
    for instruction in decode(&page.0) {
        assert!(
            !forbidden.contains(&instruction.mnemonic()),
            "{:?} at {:#x}",
            instruction.mnemonic(),
            instruction.ip()
        );
    }
}

#[test]
fn position_independent_and_reads_only_the_slot_and_the_block() {
    let mut page = Box::new(Page([0; 4096]));
    install_trampoline(&mut page.0, PHYS).unwrap();
    let slot = PHYS + slot_offset() as u64;
    for instruction in decode(&page.0) {
        for operand in 0..instruction.op_count() {
            match instruction.op_kind(operand) {
                OpKind::Memory if instruction.mnemonic() != Mnemonic::Lea => {
                    if instruction.is_ip_rel_memory_operand() {
                        let target = instruction.ip_rel_memory_address();
                        assert!(
                            target == slot || target == slot + 8,
                            "RIP-relative access outside the slot at {:#x}",
                            instruction.ip()
                        );
                    } else {
                        assert_eq!(
                            instruction.memory_base(),
                            Register::RBX,
                            "memory operand not based on the block at {:#x}",
                            instruction.ip()
                        );
                        assert_eq!(instruction.memory_index(), Register::None);
                    }
                }
                OpKind::NearBranch64 => {
                    let target = instruction.near_branch_target();
                    assert!(
                        (PHYS..PHYS + 4096).contains(&target),
                        "branch leaves the page"
                    );
                }
                _ => {}
            }
        }
        if instruction.mnemonic() == Mnemonic::Lea {
            let target = instruction.ip_rel_memory_address();
            assert!(
                (PHYS..slot).contains(&target),
                "lea of a code address inside the page"
            );
        }
    }
}

/// The trampoline's steps, in order, with the block operands resolved against a real block.
#[test]
fn loads_the_block_in_the_documented_order() {
    let mut page = Box::new(Page([0; 4096]));
    install_trampoline(&mut page.0, PHYS).unwrap();
    let slot = PHYS + slot_offset() as u64;
    let mut block = sample_block();
    let instructions = decode(&page.0);
    let position = |predicate: &dyn Fn(&Instruction) -> bool, what: &str| {
        instructions
            .iter()
            .position(predicate)
            .unwrap_or_else(|| panic!("missing: {what}"))
    };
    let block_operand =
        |i: &Instruction| (i.memory_base() == Register::RBX).then(|| i.memory_displacement64());

    let read_cr3 = position(
        &|i| i.is_ip_rel_memory_operand() && i.ip_rel_memory_address() == slot,
        "read slot.cr3",
    );
    let read_block = position(
        &|i| {
            i.is_ip_rel_memory_operand()
                && i.ip_rel_memory_address() == slot + 8
                && i.op0_register() == Register::RBX
        },
        "read slot.ap_boot into rbx",
    );
    let load_cr3 = position(
        &|i| i.mnemonic() == Mnemonic::Mov && i.op0_register() == Register::CR3,
        "mov cr3",
    );
    let load_rsp = position(
        &|i| i.mnemonic() == Mnemonic::Mov && i.op0_register() == Register::RSP,
        "mov rsp",
    );
    let lgdt = position(&|i| i.mnemonic() == Mnemonic::Lgdt, "lgdt");
    let far_return = position(&|i| i.mnemonic() == Mnemonic::Retf, "retfq");
    let load_ss = position(
        &|i| i.mnemonic() == Mnemonic::Mov && i.op0_register() == Register::SS,
        "mov ss",
    );
    let lidt = position(&|i| i.mnemonic() == Mnemonic::Lidt, "lidt");
    let started = position(
        &|i| {
            i.mnemonic() == Mnemonic::Mov
                && i.op0_kind() == OpKind::Memory
                && i.memory_base() == Register::RBX
        },
        "store started",
    );
    let call = position(&|i| i.mnemonic() == Mnemonic::Call, "call entry");

    // The slot is read first, and never after the started flag.
    assert!(read_cr3 < load_cr3 && read_block < load_cr3);
    let last_slot_read = instructions
        .iter()
        .rposition(|i| i.is_ip_rel_memory_operand() && i.mnemonic() != Mnemonic::Lea)
        .unwrap();
    assert!(last_slot_read < started);
    // A stack before the first push, CR3 before anything in the block, GDT before segments.
    let first_push = position(&|i| i.mnemonic() == Mnemonic::Push, "push");
    assert!(load_cr3 < load_rsp && load_rsp < first_push);
    assert!(load_cr3 < lgdt && lgdt < far_return && far_return < load_ss);
    assert!(load_ss < lidt && lidt < started && started < call);

    // Each block operand is the field it should be, read from a real `ApBoot`.
    let operand_of = |index: usize| block_operand(&instructions[index]).expect("rbx operand");
    let rsp_bytes = block_bytes(&block, operand_of(load_rsp), 8);
    assert_eq!(rsp_bytes, block.stack_top.to_le_bytes());
    let gdtr = block_bytes(&block, operand_of(lgdt), 10);
    assert_eq!(&gdtr[..2], &0x2222u16.to_le_bytes());
    assert_eq!(&gdtr[2..], &0x3333_3333_3000u64.to_le_bytes());
    let idtr = block_bytes(&block, operand_of(lidt), 10);
    assert_eq!(&idtr[..2], &0x4444u16.to_le_bytes());
    assert_eq!(&idtr[2..], &0x5555_5555_5000u64.to_le_bytes());
    let entry_bytes = block_bytes(&block, operand_of(call), 8);
    assert_eq!(entry_bytes, (block.entry as usize as u64).to_le_bytes());
    // The selectors: a 16-bit load before the far return (CS) and after it (data).
    let selector_reads: Vec<u64> = instructions
        .iter()
        .filter(|i| {
            matches!(i.mnemonic(), Mnemonic::Movzx | Mnemonic::Mov)
                && i.memory_size() == iced_x86::MemorySize::UInt16
        })
        .filter_map(block_operand)
        .collect();
    assert_eq!(selector_reads.len(), 2);
    assert_eq!(
        block_bytes(&block, selector_reads[0], 2),
        0x66u16.to_le_bytes()
    );
    assert_eq!(
        block_bytes(&block, selector_reads[1], 2),
        0x77u16.to_le_bytes()
    );

    // The started store hits the flag `has_started` reads: do it to a real block.
    let store = &instructions[started];
    assert_eq!(store.immediate32(), 1);
    assert!(!block.has_started());
    block_bytes(&block, operand_of(started), 4); // bounds check of the displacement
    let flag = (&raw mut block)
        .cast::<u8>()
        .wrapping_add(operand_of(started) as usize);
    // SAFETY: the displacement lies inside `block` (checked just above) and the pointer comes from
    // a unique borrow; if it is the started flag, this atomic store is what the AP does.
    unsafe {
        (*(flag as *const std::sync::atomic::AtomicU32))
            .store(store.immediate32(), std::sync::atomic::Ordering::Release)
    };
    assert!(block.has_started());

    // The entry gets the block in RDI (System V first argument).
    let set_rdi = position(
        &|i| i.mnemonic() == Mnemonic::Mov && i.op0_register() == Register::RDI,
        "mov rdi",
    );
    assert_eq!(instructions[set_rdi].op1_register(), Register::RBX);
    assert!(set_rdi < call);
    // The stack is aligned to 16 before the far-return pushes (which pop back) and the call.
    let align = position(&|i| i.mnemonic() == Mnemonic::And, "and rsp, -16");
    assert_eq!(instructions[align].op0_register(), Register::RSP);
    assert_eq!(instructions[align].immediate(1) as i64, -16);
}

/// Debian's TDVF hands its APs over with CR4.OSFXSR clear (only the BSP's SEC enables SSE), and
/// compiled Rust uses SSE anywhere: the trampoline turns SSE on before it calls the kernel.
#[test]
fn sse_is_turned_on_before_the_entry_is_called() {
    let code = trampoline_code();
    let mut decoder = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
    let mut seen: Vec<Instruction> = Vec::new();
    for instruction in &mut decoder {
        let is_call = instruction.mnemonic() == Mnemonic::Call;
        seen.push(instruction);
        if is_call {
            break;
        }
    }
    let writes = |cr: Register| {
        seen.iter().position(|i| {
            i.mnemonic() == Mnemonic::Mov
                && i.op0_kind() == OpKind::Register
                && i.op0_register() == cr
        })
    };
    let call = seen.len() - 1;
    let cr0 = writes(Register::CR0).expect("CR0 is written");
    let cr4 = writes(Register::CR4).expect("CR4 is written");
    assert!(cr0 < call && cr4 < call);
    // The values: CR0 & !(EM | TS) | MP, and CR4 | OSFXSR | OSXMMEXCPT.
    let immediates: Vec<i64> = seen[..call]
        .iter()
        .filter(|i| matches!(i.mnemonic(), Mnemonic::And | Mnemonic::Or))
        .map(|i| i.immediate(1) as i64)
        .collect();
    assert!(
        immediates.contains(&-13),
        "EM and TS cleared: {immediates:?}"
    );
    assert!(immediates.contains(&2), "MP set: {immediates:?}");
    assert!(
        immediates.contains(&0x600),
        "OSFXSR, OSXMMEXCPT set: {immediates:?}"
    );
}
