//! CPUID inside the TD: the leaves the TDX module answers itself, and the rest, which raise
//! #VE so the TD asks the VMM with TDVMCALL<Instruction.CPUID>.
//!
//! The emulated CPU is QEMU's `-cpu max` (AMD); a TD sees an Intel CPU: TDVF's reset vector
//! checks for "GenuineIntel", a maximum leaf of at least 0x21, the hypervisor bit and leaf
//! 0x21's "IntelTDX    ". Everything else the module reports comes from the host CPU.

use core::arch::x86_64::__cpuid_count;

/// Leaf 0x21's signature in EBX, EDX, ECX: "Inte" "lTDX" "    ".
const TDX_SIGNATURE: [u32; 3] = [0x6574_6e49, 0x5844_546c, 0x2020_2020];
/// "Genu" "ineI" "ntel" in EBX, EDX, ECX.
const INTEL: [u32; 3] = [0x756e_6547, 0x4965_6e69, 0x6c65_746e];
const HYPERVISOR: u32 = 1 << 31;
const X2APIC: u32 = 1 << 21;

/// The module's answer (EAX, EBX, ECX, EDX), or None where the leaf raises #VE.
pub fn module_answer(leaf: u32, subleaf: u32, vcpu_index: u32) -> Option<[u32; 4]> {
    let host = || {
        // SAFETY: CPUID has no side effects.
        let r = __cpuid_count(leaf, subleaf);
        [r.eax, r.ebx, r.ecx, r.edx]
    };
    match leaf {
        0 => Some([0x21, INTEL[0], INTEL[2], INTEL[1]]),
        1 => {
            let [eax, ebx, ecx, edx] = host();
            let ebx = (ebx & 0x00ff_ffff) | (vcpu_index << 24);
            Some([eax, ebx, ecx | HYPERVISOR | X2APIC, edx])
        }
        0xb | 0x1f => {
            let [eax, ebx, ecx, _] = host();
            Some([eax, ebx, ecx, vcpu_index])
        }
        0x21 => Some(if subleaf == 0 {
            [0, TDX_SIGNATURE[0], TDX_SIGNATURE[2], TDX_SIGNATURE[1]]
        } else {
            [0; 4]
        }),
        // Intel reports no vendor string in the extended range.
        0x8000_0000 => Some([host()[0], 0, 0, 0]),
        0x2..=0x20 | 0x8000_0001..=0x8000_0008 => Some(host()),
        _ => None,
    }
}
