//! EPT violations under #VE: MMIO to a shared GPA, emulated by decoding the instruction at RIP.

use super::handler::{Code, advance};
use super::mmio::{self, MAX_INSN_LEN, Mmio, MmioError};
use super::{Frame, VeContext, VeError};
use crate::tdcall::vmcall;
use crate::tdcall::{TdCall, VeInfo};

const PAGE_SIZE: u64 = 4096;
/// EPT-violation exit qualification bit 7: VEINFO's guest linear address is valid.
const GLA_VALID: u64 = 1 << 7;
/// Bit 8, meaningful with bit 7: the access was to the translation of that linear address (set)
/// or to a paging-structure entry while translating it (clear).
const GLA_TRANSLATED: u64 = 1 << 8;

/// An EPT violation: refuses user mode, private GPAs (a removed private page: fatal) and
/// violations the CPU marks as a page-table walk's (never the instruction's access); decodes
/// the instruction (VEINFO's length is not valid here); computes the access's linear address from
/// the operand and the registers and refuses an access that spans two pages or does not match
/// what VEINFO reports; performs the access with #VE.RequestMMIO and applies the result.
///
/// The span check is Linux's (`handle_mmio`): the GPA alone cannot show it, since a load that
/// starts in a private page and runs into an MMIO page faults at offset 0 of the MMIO page.
pub(super) fn emulate(
    tdx: &impl TdCall,
    info: &VeInfo,
    frame: &mut Frame,
    code: Code<'_>,
    context: Option<&VeContext>,
) -> Result<(), VeError> {
    // The dispatcher refuses user mode for every exit but CPUID; kept here as well because
    // decoding at RIP below relies on it.
    if frame.is_user_mode() {
        return Err(VeError::UserMode);
    }
    let gpa = info.guest_physical_address;
    let td = match context {
        Some(known) => *known,
        None => VeContext::query(tdx).map_err(VeError::TdInfo)?,
    };
    if !td.gpa_in_range(gpa) {
        return Err(VeError::GpaOutOfRange(gpa));
    }
    if gpa & td.shared_mask() == 0 {
        return Err(VeError::PrivateGpa(gpa));
    }
    if info.exit_qualification & (GLA_VALID | GLA_TRANSLATED) == GLA_VALID {
        return Err(VeError::PagingStructureAccess(gpa));
    }
    let insn = match code {
        Code::Given(bytes) => mmio::decode(bytes),
        // SAFETY: `Code::AtRip` comes only from `handle`, whose contract says RIP points at
        // readable code of the interrupted kernel context, and user mode was refused above.
        Code::AtRip => unsafe { decode_at(frame.rip) },
    }
    .map_err(VeError::Decode)?;
    check_linear_address(info, frame, &insn)?;
    perform(tdx, info, frame, &insn, gpa)?;
    advance(frame, insn.insn_len() as u64);
    Ok(())
}

/// The access must lie in one page and be the one VEINFO reports: at the GPA's page offset and,
/// when the exit qualification marks it valid, at VEINFO's linear address.
fn check_linear_address(info: &VeInfo, frame: &Frame, insn: &Mmio) -> Result<(), VeError> {
    let size = insn.size();
    let linear = insn.linear_address(frame).ok_or(VeError::SegmentOverride)?;
    let last_byte = linear.checked_add(size as u64 - 1);
    if last_byte.is_none_or(|last| last / PAGE_SIZE != linear / PAGE_SIZE) {
        return Err(VeError::CrossesPage { linear, size });
    }
    let gpa = info.guest_physical_address;
    let gla_valid = info.exit_qualification & GLA_VALID != 0;
    if linear % PAGE_SIZE != gpa % PAGE_SIZE || (gla_valid && info.guest_linear_address != linear) {
        return Err(VeError::AddressMismatch { linear, gpa });
    }
    Ok(())
}

fn perform(
    tdx: &impl TdCall,
    info: &VeInfo,
    frame: &mut Frame,
    insn: &Mmio,
    gpa: u64,
) -> Result<(), VeError> {
    let refused = |error| VeError::Vmcall {
        exit_reason: info.exit_reason,
        error,
    };
    let size = insn.access_size();
    if insn.is_write() {
        vmcall::mmio_write(tdx, gpa, size, insn.write_value(frame)).map_err(refused)
    } else {
        let value = vmcall::mmio_read(tdx, gpa, size).map_err(refused)?;
        insn.complete_read(frame, value);
        Ok(())
    }
}

/// Decodes the instruction at `rip`, reading to the end of RIP's page first and into the next
/// page only if the instruction continues there.
///
/// # Safety
///
/// `rip` points at readable memory up to the end of its page, and the next page is readable if
/// the instruction continues into it.
unsafe fn decode_at(rip: u64) -> Result<Mmio, MmioError> {
    let mut bytes = [0u8; MAX_INSN_LEN];
    let to_page_end = (PAGE_SIZE - rip % PAGE_SIZE) as usize;
    let first = to_page_end.min(MAX_INSN_LEN);
    let base = rip as usize as *const u8;
    // SAFETY: `first` bytes from `rip` stay inside RIP's page, readable by the contract.
    unsafe { core::ptr::copy_nonoverlapping(base, bytes.as_mut_ptr(), first) };
    match mmio::decode(bytes.get(..first).unwrap_or(&bytes)) {
        Err(MmioError::Truncated) if first < MAX_INSN_LEN => {
            // SAFETY: the instruction continues into the next page, which the contract makes
            // readable; at most 15 bytes in all are read.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    base.wrapping_add(first),
                    bytes.as_mut_ptr().wrapping_add(first),
                    MAX_INSN_LEN - first,
                )
            };
            mmio::decode(&bytes)
        }
        decoded => decoded,
    }
}
