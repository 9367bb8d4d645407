//! Completion statuses: TDCALL's RAX and TDG.VP.VMCALL's R10.

use core::fmt;

/// A TDCALL completion status (RAX after the instruction).
///
/// Bit 63 marks an error and bit 62 a non-recoverable one; bits 63..32 name the status and bits
/// 31..0 carry details such as the id of the offending operand. Equality therefore compares the
/// upper 32 bits only: `status == TdxStatus::OPERAND_INVALID` holds whatever operand was named.
#[derive(Clone, Copy)]
pub struct TdxStatus(u64);

/// The class of a [`TdxStatus`], from its bits 63 and 62.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusClass {
    /// Bit 63 clear: the leaf did its work (possibly with a warning such as already accepted).
    Success,
    /// Bit 63 set, bit 62 clear: the call failed but may succeed if retried (e.g. busy).
    Recoverable,
    /// Bits 63 and 62 set: retrying the same call cannot succeed.
    NonRecoverable,
}

const ERROR_BIT: u64 = 1 << 63;
const NON_RECOVERABLE_BIT: u64 = 1 << 62;

impl TdxStatus {
    /// TDX_SUCCESS.
    pub const SUCCESS: Self = Self(0);
    /// TDX_PAGE_ALREADY_ACCEPTED: success class; the page was accepted before and NOT zeroed.
    pub const PAGE_ALREADY_ACCEPTED: Self = Self(0x0000_0B0A_0000_0000);
    /// TDX_OPERAND_INVALID: an operand is malformed (e.g. ACCEPT at the 1G level).
    pub const OPERAND_INVALID: Self = Self(0xC000_0100_0000_0000);
    /// TDX_OPERAND_ADDR_RANGE_ERROR: an address operand is outside the allowed range.
    pub const OPERAND_ADDR_RANGE_ERROR: Self = Self(0xC000_0101_0000_0000);
    /// TDX_OPERAND_BUSY: a resource is locked by another operation; retry.
    pub const OPERAND_BUSY: Self = Self(0x8000_0200_0000_0000);
    /// TDX_NO_VALID_VE_INFO: VEINFO.GET without a pending #VE.
    pub const NO_VALID_VE_INFO: Self = Self(0xC000_0704_0000_0000);
    /// TDX_EPT_WALK_FAILED: the GPA has no Secure-EPT mapping the leaf could use.
    pub const EPT_WALK_FAILED: Self = Self(0xC000_0B00_0000_0000);
    /// TDX_PAGE_SIZE_MISMATCH: the host maps the range with smaller pages than requested.
    pub const PAGE_SIZE_MISMATCH: Self = Self(0xC000_0B0B_0000_0000);
    /// TDX_EPT_ENTRY_STATE_INCORRECT: the Secure-EPT entry is not in a state the leaf accepts.
    pub const EPT_ENTRY_STATE_INCORRECT: Self = Self(0xC000_0B0D_0000_0000);
    /// TDX_METADATA_FIELD_ID_INCORRECT: VM.RD/WR of an unknown field.
    pub const METADATA_FIELD_ID_INCORRECT: Self = Self(0xC000_0C00_0000_0000);
    /// TDX_METADATA_FIELD_NOT_WRITABLE: VM.WR of a read-only field or bits.
    pub const METADATA_FIELD_NOT_WRITABLE: Self = Self(0xC000_0C01_0000_0000);
    /// TDX_METADATA_FIELD_NOT_READABLE: VM.RD of a field the guest may not read.
    pub const METADATA_FIELD_NOT_READABLE: Self = Self(0xC000_0C02_0000_0000);
    /// TDX_METADATA_FIELD_VALUE_NOT_VALID: VM.WR with a value the field does not allow.
    pub const METADATA_FIELD_VALUE_NOT_VALID: Self = Self(0xC000_0C03_0000_0000);

    /// Wraps a raw RAX value.
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw RAX value, operand id included.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The status proper: bits 63..32, without the operand details.
    pub const fn code(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// Bits 31..0: details such as the id of the operand the status is about.
    pub const fn operand_id(self) -> u32 {
        self.0 as u32
    }

    /// Whether bit 63 (error) is clear.
    pub const fn is_success(self) -> bool {
        self.0 & ERROR_BIT == 0
    }

    /// Whether the status is an error.
    pub const fn is_error(self) -> bool {
        !self.is_success()
    }

    /// The class from bits 63 and 62.
    pub const fn class(self) -> StatusClass {
        if self.0 & ERROR_BIT == 0 {
            StatusClass::Success
        } else if self.0 & NON_RECOVERABLE_BIT == 0 {
            StatusClass::Recoverable
        } else {
            StatusClass::NonRecoverable
        }
    }

    /// `Ok(self)` for the success class (warnings included), `Err` otherwise.
    pub const fn into_result(self) -> Result<Self, TdxError> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(TdxError(self))
        }
    }

    /// The name of a status this crate knows, e.g. `"TDX_OPERAND_BUSY"`.
    pub fn name(self) -> Option<&'static str> {
        const NAMES: [(TdxStatus, &str); 13] = [
            (TdxStatus::SUCCESS, "TDX_SUCCESS"),
            (
                TdxStatus::PAGE_ALREADY_ACCEPTED,
                "TDX_PAGE_ALREADY_ACCEPTED",
            ),
            (TdxStatus::OPERAND_INVALID, "TDX_OPERAND_INVALID"),
            (
                TdxStatus::OPERAND_ADDR_RANGE_ERROR,
                "TDX_OPERAND_ADDR_RANGE_ERROR",
            ),
            (TdxStatus::OPERAND_BUSY, "TDX_OPERAND_BUSY"),
            (TdxStatus::NO_VALID_VE_INFO, "TDX_NO_VALID_VE_INFO"),
            (TdxStatus::EPT_WALK_FAILED, "TDX_EPT_WALK_FAILED"),
            (TdxStatus::PAGE_SIZE_MISMATCH, "TDX_PAGE_SIZE_MISMATCH"),
            (
                TdxStatus::EPT_ENTRY_STATE_INCORRECT,
                "TDX_EPT_ENTRY_STATE_INCORRECT",
            ),
            (
                TdxStatus::METADATA_FIELD_ID_INCORRECT,
                "TDX_METADATA_FIELD_ID_INCORRECT",
            ),
            (
                TdxStatus::METADATA_FIELD_NOT_WRITABLE,
                "TDX_METADATA_FIELD_NOT_WRITABLE",
            ),
            (
                TdxStatus::METADATA_FIELD_NOT_READABLE,
                "TDX_METADATA_FIELD_NOT_READABLE",
            ),
            (
                TdxStatus::METADATA_FIELD_VALUE_NOT_VALID,
                "TDX_METADATA_FIELD_VALUE_NOT_VALID",
            ),
        ];
        NAMES.iter().find(|(s, _)| *s == self).map(|(_, n)| *n)
    }
}

impl PartialEq for TdxStatus {
    fn eq(&self, other: &Self) -> bool {
        self.code() == other.code()
    }
}

impl Eq for TdxStatus {}

impl core::hash::Hash for TdxStatus {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.code().hash(state);
    }
}

impl fmt::Debug for TdxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) if self.operand_id() == 0 => f.write_str(name),
            Some(name) => write!(f, "{name}(operand {:#x})", self.operand_id()),
            None => write!(f, "TdxStatus({:#018x})", self.0),
        }
    }
}

impl fmt::Display for TdxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A TDCALL that completed with an error-class status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TdxError(pub TdxStatus);

impl fmt::Display for TdxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TDCALL failed with {}", self.0)
    }
}

impl core::error::Error for TdxError {}

/// The status of a TDG.VP.VMCALL sub-function (R10 after the call), as set by the VMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VmcallStatus {
    /// TDG.VP.VMCALL_SUCCESS.
    Success,
    /// TDG.VP.VMCALL_RETRY: partially done; call again (MapGPA: from the GPA in R11).
    Retry,
    /// TDG.VP.VMCALL_INVALID_OPERAND.
    InvalidOperand,
    /// TDG.VP.VMCALL_GPA_INUSE: MapGPA of a range that is in use.
    GpaInUse,
    /// TDG.VP.VMCALL_ALIGN_ERROR: an address or size is misaligned.
    AlignError,
    /// Any other value the VMM put in R10.
    Other(u64),
}

impl VmcallStatus {
    /// The raw value of TDG.VP.VMCALL_SUCCESS.
    pub const SUCCESS_RAW: u64 = 0;
    /// The raw value of TDG.VP.VMCALL_RETRY.
    pub const RETRY_RAW: u64 = 1;
    /// The raw value of TDG.VP.VMCALL_INVALID_OPERAND.
    pub const INVALID_OPERAND_RAW: u64 = 0x8000_0000_0000_0000;
    /// The raw value of TDG.VP.VMCALL_GPA_INUSE.
    pub const GPA_INUSE_RAW: u64 = 0x8000_0000_0000_0001;
    /// The raw value of TDG.VP.VMCALL_ALIGN_ERROR.
    pub const ALIGN_ERROR_RAW: u64 = 0x8000_0000_0000_0002;

    /// Decodes R10.
    pub const fn from_raw(raw: u64) -> Self {
        match raw {
            Self::SUCCESS_RAW => Self::Success,
            Self::RETRY_RAW => Self::Retry,
            Self::INVALID_OPERAND_RAW => Self::InvalidOperand,
            Self::GPA_INUSE_RAW => Self::GpaInUse,
            Self::ALIGN_ERROR_RAW => Self::AlignError,
            other => Self::Other(other),
        }
    }

    /// The value the VMM puts in R10 for this status.
    pub const fn raw(self) -> u64 {
        match self {
            Self::Success => Self::SUCCESS_RAW,
            Self::Retry => Self::RETRY_RAW,
            Self::InvalidOperand => Self::INVALID_OPERAND_RAW,
            Self::GpaInUse => Self::GPA_INUSE_RAW,
            Self::AlignError => Self::ALIGN_ERROR_RAW,
            Self::Other(raw) => raw,
        }
    }
}

impl fmt::Display for VmcallStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Other(raw) => write!(f, "TDVMCALL status {raw:#x}"),
            known => fmt::Debug::fmt(known, f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_ignores_the_operand_id() {
        let busy_on_rcx = TdxStatus::from_raw(0x8000_0200_0000_0001);
        assert_eq!(busy_on_rcx, TdxStatus::OPERAND_BUSY);
        assert_ne!(busy_on_rcx, TdxStatus::OPERAND_INVALID);
        assert_eq!(busy_on_rcx.operand_id(), 1);
        assert_eq!(busy_on_rcx.raw(), 0x8000_0200_0000_0001);
    }

    #[test]
    fn classes_follow_bits_63_and_62() {
        assert_eq!(TdxStatus::SUCCESS.class(), StatusClass::Success);
        assert_eq!(
            TdxStatus::PAGE_ALREADY_ACCEPTED.class(),
            StatusClass::Success
        );
        assert_eq!(TdxStatus::OPERAND_BUSY.class(), StatusClass::Recoverable);
        assert_eq!(
            TdxStatus::PAGE_SIZE_MISMATCH.class(),
            StatusClass::NonRecoverable
        );
        assert!(TdxStatus::PAGE_ALREADY_ACCEPTED.into_result().is_ok());
        assert_eq!(
            TdxStatus::OPERAND_INVALID.into_result(),
            Err(TdxError(TdxStatus::OPERAND_INVALID))
        );
    }

    #[test]
    fn names_and_unknown_codes_format() {
        use std::format;
        assert_eq!(format!("{:?}", TdxStatus::OPERAND_BUSY), "TDX_OPERAND_BUSY");
        assert_eq!(
            format!("{:?}", TdxStatus::from_raw(0xC000_0100_0000_0002)),
            "TDX_OPERAND_INVALID(operand 0x2)"
        );
        assert_eq!(
            format!("{:?}", TdxStatus::from_raw(0xC000_0999_0000_0000)),
            "TdxStatus(0xc000099900000000)"
        );
    }

    #[test]
    fn vmcall_status_round_trips() {
        for raw in [0, 1, 1 << 63, (1 << 63) | 1, (1 << 63) | 2, 0x1234] {
            assert_eq!(VmcallStatus::from_raw(raw).raw(), raw);
        }
        assert_eq!(VmcallStatus::from_raw(1), VmcallStatus::Retry);
        assert_eq!(VmcallStatus::from_raw(0x1234), VmcallStatus::Other(0x1234));
    }
}
