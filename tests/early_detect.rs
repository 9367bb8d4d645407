//! TD detection from CPUID: real TD answers, the near misses, and arbitrary hostile answers.

use proptest::prelude::*;
use std::cell::RefCell;
use tdx_boot::early::{DetectError, TDX_SIGNATURE, detect, detect_with};

/// Splits a 12-byte string into the three registers that carry it, in the given order.
fn regs_of(s: &[u8; 12]) -> [u32; 3] {
    let mut out = [0u32; 3];
    for (word, chunk) in out.iter_mut().zip(s.chunks_exact(4)) {
        *word = u32::from_le_bytes(chunk.try_into().unwrap());
    }
    out
}

/// What a CPU answers; leaf 0x21 and the vendor as strings, as a human would write them.
#[derive(Clone, Debug)]
struct Cpu {
    max_leaf: u32,
    vendor: [u8; 12],
    leaf1_ecx: u32,
    leaf21: [u8; 12],
}

impl Cpu {
    fn td() -> Self {
        Self {
            max_leaf: 0x23,
            vendor: *b"GenuineIntel",
            leaf1_ecx: 0xfeda_3203 | 1 << 31,
            leaf21: TDX_SIGNATURE,
        }
    }

    /// CPUID as hardware answers it: vendor in EBX EDX ECX, leaf 0x21 likewise, and a leaf above
    /// the maximum answering like the highest basic leaf (as Intel CPUs do).
    fn cpuid(&self, leaf: u32, _subleaf: u32) -> [u32; 4] {
        let leaf = if leaf > self.max_leaf && leaf < 0x4000_0000 {
            self.max_leaf
        } else {
            leaf
        };
        match leaf {
            0 => {
                let [b, d, c] = regs_of(&self.vendor);
                [self.max_leaf, b, c, d]
            }
            1 => [0x806f8, 0, self.leaf1_ecx, 0],
            0x21 => {
                let [b, d, c] = regs_of(&self.leaf21);
                [0, b, c, d]
            }
            _ => [0x0123_4567, 0x89ab_cdef, 0x0f0f_0f0f, 0xf0f0_f0f0],
        }
    }
}

#[test]
fn a_td_is_detected() {
    let cpu = Cpu::td();
    assert_eq!(detect_with(|l, s| cpu.cpuid(l, s)), Ok(()));
}

#[test]
fn another_vendor_is_refused() {
    let cpu = Cpu {
        vendor: *b"AuthenticAMD",
        ..Cpu::td()
    };
    assert_eq!(
        detect_with(|l, s| cpu.cpuid(l, s)),
        Err(DetectError::NotIntel {
            vendor: *b"AuthenticAMD"
        })
    );
}

#[test]
fn bare_metal_without_hypervisor_bit_is_refused() {
    let cpu = Cpu {
        leaf1_ecx: 0x7ffa_fbff,
        ..Cpu::td()
    };
    assert_eq!(
        detect_with(|l, s| cpu.cpuid(l, s)),
        Err(DetectError::NoHypervisorBit)
    );
}

#[test]
fn an_old_cpu_is_refused_without_reading_leaf_0x21() {
    // With max leaf 0x20 the CPU would answer leaf 0x21 with leaf 0x20's data; make that data
    // the TDX signature to prove detection never trusts it.
    let asked = RefCell::new(Vec::new());
    let cpu = Cpu {
        max_leaf: 0x20,
        ..Cpu::td()
    };
    let result = detect_with(|leaf, sub| {
        asked.borrow_mut().push(leaf);
        if leaf == 0x20 || leaf == 0x21 {
            let [b, d, c] = regs_of(&TDX_SIGNATURE);
            return [0, b, c, d];
        }
        cpu.cpuid(leaf, sub)
    });
    assert_eq!(result, Err(DetectError::MaxLeafTooLow { max_leaf: 0x20 }));
    assert!(
        !asked.borrow().contains(&0x21),
        "asked {:?}",
        asked.borrow()
    );
}

#[test]
fn near_miss_signatures_are_refused() {
    for sig in [
        b"IntelTDX\0\0\0\0",
        b"intelTDX    ",
        b"IntelTDX   \0",
        b"KVMKVMKVM\0\0\0",
        b"TDXIntel    ",
    ] {
        let cpu = Cpu {
            leaf21: *sig,
            ..Cpu::td()
        };
        assert_eq!(
            detect_with(|l, s| cpu.cpuid(l, s)),
            Err(DetectError::WrongSignature { signature: *sig }),
            "{sig:?}"
        );
    }
}

#[test]
fn errors_print_hostile_bytes_escaped() {
    let cpu = Cpu {
        vendor: *b"Genu\n\x1b[2Jtel",
        ..Cpu::td()
    };
    let text = detect_with(|l, s| cpu.cpuid(l, s)).unwrap_err().to_string();
    assert!(!text.contains('\n') && !text.contains('\x1b'), "{text}");
    assert!(text.contains("\\n\\x1b[2J"), "{text}");
}

#[test]
fn native_detection_agrees_with_native_cpuid() {
    // Whatever this machine is, `detect` must equal `detect_with` over the real instruction.
    let native = detect_with(|leaf, sub| {
        let r = core::arch::x86_64::__cpuid_count(leaf, sub);
        [r.eax, r.ebx, r.ecx, r.edx]
    });
    assert_eq!(detect(), native);
}

proptest! {
    /// Arbitrary answers: detection never panics, and says "TD" exactly when all four rules hold.
    #[test]
    fn arbitrary_cpuid_answers(answers in proptest::collection::vec(any::<[u32; 4]>(), 3)) {
        let reply = |leaf: u32, _| match leaf {
            0 => answers[0],
            1 => answers[1],
            0x21 => answers[2],
            _ => [0; 4],
        };
        let [max, vb, vc, vd] = answers[0];
        let [_, sb, sc, sd] = answers[2];
        let bytes = |a: u32, b: u32, c: u32| {
            let mut v = Vec::new();
            for w in [a, b, c] { v.extend_from_slice(&w.to_le_bytes()); }
            v
        };
        let expected_td = bytes(vb, vd, vc) == b"GenuineIntel"
            && answers[1][2] & (1 << 31) != 0
            && max >= 0x21
            && bytes(sb, sd, sc) == TDX_SIGNATURE;
        prop_assert_eq!(detect_with(reply).is_ok(), expected_td);
    }

    /// Only the signature wrong: always refused as such.
    #[test]
    fn arbitrary_signatures(sig in any::<[u8; 12]>()) {
        prop_assume!(sig != TDX_SIGNATURE);
        let cpu = Cpu { leaf21: sig, ..Cpu::td() };
        prop_assert_eq!(
            detect_with(|l, s| cpu.cpuid(l, s)),
            Err(DetectError::WrongSignature { signature: sig })
        );
    }
}
