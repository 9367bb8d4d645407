//! The linear address a decoded MMIO move accesses, computed from its operand and the
//! interrupted registers, as Linux's `insn_get_addr_ref` does for `handle_mmio`.

use super::{AddressForm, Mmio};
use crate::ve::Frame;

impl Mmio {
    /// The linear address of the access when `frame` executes this instruction at `frame.rip`:
    /// base + index * scale + displacement (RIP-relative: from the end of the instruction), cut to
    /// 32 bits with the 67 prefix. `None` for an FS or GS override: the segment base is not in the
    /// frame, so the address is unknown.
    ///
    /// The #VE handler needs it because the GPA of an EPT violation says where the access
    /// *faulted*, not where it *started*: a load that starts in a private page and runs into an
    /// MMIO page faults at offset 0 of the MMIO page.
    pub fn linear_address(&self, frame: &Frame) -> Option<u64> {
        if self.operand.segment.is_some() {
            return None;
        }
        let address = match self.operand.form {
            AddressForm::Indirect {
                base,
                index,
                scale,
                displacement,
            } => {
                let base = base.map_or(0, |number| frame.gpr(number));
                let index = index.map_or(0, |number| frame.gpr(number));
                base.wrapping_add(index.wrapping_mul(u64::from(scale)))
                    .wrapping_add(displacement as i64 as u64)
            }
            AddressForm::RipRelative(displacement) => frame
                .rip
                .wrapping_add(u64::from(self.len))
                .wrapping_add(displacement as i64 as u64),
            AddressForm::Absolute(address) => address,
        };
        Some(if self.operand.address_size == 4 {
            address & 0xffff_ffff
        } else {
            address
        })
    }
}
