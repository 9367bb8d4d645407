//! Is this an Intel TDX guest? Decided from CPUID alone.
//!
//! CPUID leaf 0x21 belongs to the TDX module: inside a TD the module answers it without a #VE,
//! so detection is safe before the kernel has an IDT. Outside a TD the leaf is either beyond the
//! maximum basic leaf (and then the CPU repeats the highest leaf's data, which is why the maximum
//! is checked first) or answered by a hypervisor that is not TDX.

use core::fmt;

/// The signature of CPUID leaf 0x21 in EBX, EDX, ECX order: `"IntelTDX    "`.
pub const TDX_SIGNATURE: [u8; 12] = *b"IntelTDX    ";

const VENDOR_INTEL: [u8; 12] = *b"GenuineIntel";
const LEAF_VENDOR: u32 = 0;
const LEAF_FEATURES: u32 = 1;
const LEAF_TDX: u32 = 0x21;
const HYPERVISOR_BIT: u32 = 1 << 31;

/// Why the CPU does not look like a TDX guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetectError {
    /// CPUID.0's vendor is not `GenuineIntel` (the bytes as reported, EBX EDX ECX).
    NotIntel {
        /// The vendor string as reported.
        vendor: [u8; 12],
    },
    /// `CPUID.1:ECX[31]` (running under a hypervisor) is clear.
    NoHypervisorBit,
    /// CPUID.0:EAX, the highest basic leaf, is below 0x21.
    MaxLeafTooLow {
        /// The highest basic leaf reported.
        max_leaf: u32,
    },
    /// CPUID.0x21's EBX/EDX/ECX are not `"IntelTDX    "`.
    WrongSignature {
        /// The bytes as reported, EBX EDX ECX.
        signature: [u8; 12],
    },
}

impl fmt::Display for DetectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotIntel { vendor } => {
                write!(f, "not an Intel TDX guest: CPU vendor is ")?;
                write_bytes_escaped(f, vendor)
            }
            Self::NoHypervisorBit => {
                f.write_str("not an Intel TDX guest: CPUID reports no hypervisor")
            }
            Self::MaxLeafTooLow { max_leaf } => write!(
                f,
                "not an Intel TDX guest: highest CPUID leaf is {max_leaf:#x}, below 0x21"
            ),
            Self::WrongSignature { signature } => {
                write!(f, "not an Intel TDX guest: CPUID leaf 0x21 signature is ")?;
                write_bytes_escaped(f, signature)
            }
        }
    }
}

impl core::error::Error for DetectError {}

/// Writes bytes that came from CPUID as an escaped string: they may be anything.
fn write_bytes_escaped(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    f.write_str("\"")?;
    for byte in bytes {
        write!(f, "{}", byte.escape_ascii())?;
    }
    f.write_str("\"")
}

/// The 12 bytes of a CPUID vendor-style string held in `first`, `second`, `third`.
fn register_string(first: u32, second: u32, third: u32) -> [u8; 12] {
    let mut bytes = [0u8; 12];
    for (chunk, reg) in bytes.chunks_exact_mut(4).zip([first, second, third]) {
        chunk.copy_from_slice(&reg.to_le_bytes());
    }
    bytes
}

/// Decides whether the CPU is a TDX guest from the answers of `cpuid(leaf, subleaf)`, which
/// returns `[eax, ebx, ecx, edx]`.
///
/// Checks, in order: vendor `GenuineIntel`, the hypervisor bit, a highest basic leaf of at least
/// 0x21, and leaf 0x21's `"IntelTDX    "` signature. Any answer is accepted as input; an
/// unexpected one yields an error, never a panic.
pub fn detect_with(cpuid: impl Fn(u32, u32) -> [u32; 4]) -> Result<(), DetectError> {
    let [max_leaf, ebx, ecx, edx] = cpuid(LEAF_VENDOR, 0);
    let vendor = register_string(ebx, edx, ecx);
    if vendor != VENDOR_INTEL {
        return Err(DetectError::NotIntel { vendor });
    }
    let [_, _, features_ecx, _] = cpuid(LEAF_FEATURES, 0);
    if features_ecx & HYPERVISOR_BIT == 0 {
        return Err(DetectError::NoHypervisorBit);
    }
    if max_leaf < LEAF_TDX {
        return Err(DetectError::MaxLeafTooLow { max_leaf });
    }
    let [_, ebx, ecx, edx] = cpuid(LEAF_TDX, 0);
    let signature = register_string(ebx, edx, ecx);
    if signature != TDX_SIGNATURE {
        return Err(DetectError::WrongSignature { signature });
    }
    Ok(())
}

/// Decides whether this CPU is a TDX guest by executing CPUID.
///
/// Safe to call before any IDT exists: in a TD the leaves used here (0, 1, 0x21) are answered
/// by the TDX module without a #VE.
pub fn detect() -> Result<(), DetectError> {
    detect_with(|leaf, subleaf| {
        // `__cpuid_count` is an unsafe fn before Rust 1.87 (the crate supports 1.85).
        #[allow(unused_unsafe)]
        // SAFETY: CPUID is available on every x86-64 CPU and has no memory effects.
        let r = unsafe { core::arch::x86_64::__cpuid_count(leaf, subleaf) };
        [r.eax, r.ebx, r.ecx, r.edx]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &[u8; 12]) -> (u32, u32, u32) {
        let w = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
        (w(0), w(4), w(8))
    }

    /// A CPUID answering like a TD, with the given overrides.
    fn td_cpuid(
        vendor: &[u8; 12],
        hv: bool,
        max: u32,
        sig: &[u8; 12],
    ) -> impl Fn(u32, u32) -> [u32; 4] {
        let (vb, vd, vc) = words(vendor);
        let (sb, sd, sc) = words(sig);
        move |leaf, _| match leaf {
            0 => [max, vb, vc, vd],
            1 => [0, 0, if hv { HYPERVISOR_BIT | 0x1 } else { 0x1 }, 0],
            0x21 => [0, sb, sc, sd],
            _ => [0; 4],
        }
    }

    #[test]
    fn a_td_is_detected() {
        assert_eq!(
            detect_with(td_cpuid(b"GenuineIntel", true, 0x23, b"IntelTDX    ")),
            Ok(())
        );
    }

    #[test]
    fn register_order_is_ebx_edx_ecx() {
        // Swapping EDX and ECX of leaf 0x21 must not pass.
        let (sb, sd, sc) = words(b"IntelTDX    ");
        let swapped = move |leaf: u32, _| match leaf {
            0 => {
                let (b, d, c) = words(b"GenuineIntel");
                [0x21, b, c, d]
            }
            1 => [0, 0, HYPERVISOR_BIT, 0],
            _ => [0, sb, sd, sc],
        };
        assert!(matches!(
            detect_with(swapped),
            Err(DetectError::WrongSignature { .. })
        ));
    }
}
