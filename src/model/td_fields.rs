//! TDG.VM.RD and TDG.VM.WR of the TD-scope fields a guest kernel uses.
//!
//! Write rules as the module's metadata code applies them: the bits written are the request
//! mask (R9) narrowed to the field's guest-writable bits; none left means
//! `TDX_METADATA_FIELD_NOT_WRITABLE`; a request that would change a bit the guest may not write
//! means `TDX_METADATA_FIELD_VALUE_NOT_VALID`. Unknown fields answer
//! `TDX_METADATA_FIELD_ID_INCORRECT`.

use super::{ModelConfig, OPERAND_RDX, TdxModule, status_with_operand};
use crate::tdcall::{Regs, TdcsField, TdxStatus};

/// NOTIFY_ENABLES bit 0: notify the guest of a zero-step attack suspicion.
const NOTIFY_ZERO_STEP: u64 = 1 << 0;

/// The fields' values.
#[derive(Debug)]
pub(crate) struct TdFields {
    pub(crate) td_ctls: u64,
    pub(crate) notify_enables: u64,
    config_flags: u64,
    topology_enum_configured: u64,
    td_ctls_writable: u64,
}

impl TdFields {
    pub(crate) fn new(config: &ModelConfig) -> Self {
        let mut td_ctls_writable = 0;
        // The module refuses ENUM_TOPOLOGY (and REDUCE_VE, which includes it) unless the host
        // configured the topology.
        if config.topology_enum_configured {
            td_ctls_writable |= TdcsField::TD_CTLS_ENUM_TOPOLOGY;
        }
        if config.reduce_ve_supported && config.topology_enum_configured {
            td_ctls_writable |= TdcsField::TD_CTLS_REDUCE_VE;
        }
        if config.config_flags & TdcsField::CONFIG_FLAGS_FLEXIBLE_PENDING_VE != 0 {
            td_ctls_writable |= TdcsField::TD_CTLS_PENDING_VE_DISABLE;
        }
        Self {
            td_ctls: 0,
            notify_enables: 0,
            config_flags: config.config_flags,
            topology_enum_configured: config.topology_enum_configured.into(),
            td_ctls_writable,
        }
    }

    /// The value and the guest-writable bits of `field`.
    fn lookup(&mut self, field: u64) -> Option<(&mut u64, u64)> {
        match field {
            TdcsField::TD_CTLS => Some((&mut self.td_ctls, self.td_ctls_writable)),
            TdcsField::NOTIFY_ENABLES => Some((&mut self.notify_enables, NOTIFY_ZERO_STEP)),
            TdcsField::CONFIG_FLAGS => Some((&mut self.config_flags, 0)),
            TdcsField::TOPOLOGY_ENUM_CONFIGURED => Some((&mut self.topology_enum_configured, 0)),
            _ => None,
        }
    }
}

impl TdxModule {
    /// TDG.VM.RD: RDX = field id; R8 = value. Version 1 also returns RDX = the next field id
    /// (-1: the model enumerates no sequence).
    pub(super) fn vm_rd(&self, regs: &mut Regs) -> u64 {
        let version = (regs.rax >> 16) & 0xff;
        let mut fields = self.td_fields.lock();
        let Some((value, _)) = fields.lookup(regs.rdx) else {
            regs.r8 = 0;
            return status_with_operand(TdxStatus::METADATA_FIELD_ID_INCORRECT, OPERAND_RDX);
        };
        regs.r8 = *value;
        if version == 1 {
            regs.rdx = u64::MAX;
        }
        TdxStatus::SUCCESS.raw()
    }

    /// TDG.VM.WR: RDX = field id, R8 = value, R9 = write mask; R8 = the previous value.
    pub(super) fn vm_wr(&self, regs: &mut Regs) -> u64 {
        let mut fields = self.td_fields.lock();
        let Some((value, writable)) = fields.lookup(regs.rdx) else {
            regs.r8 = 0;
            return status_with_operand(TdxStatus::METADATA_FIELD_ID_INCORRECT, OPERAND_RDX);
        };
        let request = regs.r9;
        let combined = request & writable;
        if combined == 0 {
            regs.r8 = 0;
            return TdxStatus::METADATA_FIELD_NOT_WRITABLE.raw();
        }
        let forbidden = request & !writable;
        if (*value ^ regs.r8) & forbidden != 0 {
            regs.r8 = 0;
            return TdxStatus::METADATA_FIELD_VALUE_NOT_VALID.raw();
        }
        let old = *value;
        *value = (old & !combined) | (regs.r8 & combined);
        regs.r8 = old;
        TdxStatus::SUCCESS.raw()
    }
}

impl TdxModule {
    /// The current value of TDCS field TD_CTLS.
    pub fn td_ctls(&self) -> u64 {
        self.td_fields.lock().td_ctls
    }
    /// The current value of TDCS field NOTIFY_ENABLES.
    pub fn notify_enables(&self) -> u64 {
        self.td_fields.lock().notify_enables
    }
}
