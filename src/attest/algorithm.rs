//! TPM hash algorithm identifiers (TCG Algorithm Registry) as event logs name them.

use sha2::{Digest, Sha256, Sha384, Sha512};

/// TPM_ALG_SHA1.
pub const TPM_ALG_SHA1: u16 = 0x0004;
/// TPM_ALG_SHA256.
pub const TPM_ALG_SHA256: u16 = 0x000B;
/// TPM_ALG_SHA384: the only algorithm TDX measurement registers use.
pub const TPM_ALG_SHA384: u16 = 0x000C;
/// TPM_ALG_SHA512.
pub const TPM_ALG_SHA512: u16 = 0x000D;
/// TPM_ALG_SM3_256.
pub const TPM_ALG_SM3_256: u16 = 0x0012;

/// The largest digest any registered algorithm produces (SHA-512).
pub const MAX_DIGEST_SIZE: usize = 64;

/// The digest size the registry fixes for `algorithm`, or `None` for one this crate does not
/// know (a log may still carry it: its header says how long its digests are).
pub const fn known_digest_size(algorithm: u16) -> Option<usize> {
    match algorithm {
        TPM_ALG_SHA1 => Some(20),
        TPM_ALG_SHA256 | TPM_ALG_SM3_256 => Some(32),
        TPM_ALG_SHA384 => Some(48),
        TPM_ALG_SHA512 => Some(64),
        _ => None,
    }
}

/// Hashes `data` with `algorithm` into `out` (its digest size); `None` for an algorithm this
/// crate cannot compute (SHA-1 and SM3 are not implemented: a kernel has no business creating
/// new SHA-1 measurements).
pub fn hash_into(algorithm: u16, data: &[u8], out: &mut [u8]) -> Option<()> {
    match algorithm {
        TPM_ALG_SHA256 => copy(&Sha256::digest(data), out),
        TPM_ALG_SHA384 => copy(&Sha384::digest(data), out),
        TPM_ALG_SHA512 => copy(&Sha512::digest(data), out),
        _ => None,
    }
}

fn copy(digest: &[u8], out: &mut [u8]) -> Option<()> {
    out.get_mut(..digest.len())?.copy_from_slice(digest);
    Some(())
}
