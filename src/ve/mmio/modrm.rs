//! ModRM, SIB and displacement: the memory operand of the `/r` and `/0` forms.

use super::{AddressForm, MmioError, decode::Cursor, prefix::Prefixes};

/// A decoded ModRM byte with a memory operand.
pub(super) struct ModRm {
    /// ModRM.reg extended by REX.R: a register number.
    pub reg: u8,
    /// The memory operand.
    pub form: AddressForm,
}

/// Consumes ModRM, an optional SIB and the displacement. Register operands (mod = 3) are refused.
pub(super) fn parse(cursor: &mut Cursor<'_>, prefixes: &Prefixes) -> Result<ModRm, MmioError> {
    let modrm = cursor.byte()?;
    let mode = modrm >> 6;
    let reg_field = (modrm >> 3) & 7;
    let rm = modrm & 7;
    if mode == 3 {
        return Err(MmioError::RegisterOperand);
    }
    let (rex_r, rex_x, rex_b) = prefixes.rex_bits();
    let reg = reg_field | rex_r;

    let (base, index, scale, disp32_without_base) = if rm == 4 {
        let sib = cursor.byte()?;
        let index = ((sib >> 3) & 7) | rex_x;
        let base = sib & 7;
        // Index 4 (RSP, without REX.X) means "no index"; R12 is a real index.
        let index = (index != 4).then_some(index);
        if base == 5 && mode == 0 {
            (None, index, 1 << (sib >> 6), true)
        } else {
            (Some(base | rex_b), index, 1 << (sib >> 6), false)
        }
    } else if rm == 5 && mode == 0 {
        let displacement = cursor.i32()?;
        return Ok(ModRm {
            reg,
            form: AddressForm::RipRelative(displacement),
        });
    } else {
        (Some(rm | rex_b), None, 1, false)
    };

    let displacement = match mode {
        1 => cursor.byte()? as i8 as i32,
        2 => cursor.i32()?,
        _ if disp32_without_base => cursor.i32()?,
        _ => 0,
    };
    Ok(ModRm {
        reg,
        form: AddressForm::Indirect {
            base,
            index,
            scale,
            displacement,
        },
    })
}
