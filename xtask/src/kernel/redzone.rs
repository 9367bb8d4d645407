//! Checking that no function in the image uses the red zone.
//!
//! An interrupt pushes its frame below RSP, so in a kernel the 128 bytes under RSP are not safe
//! to use. The kernel is compiled with `-C no-redzone=yes`; this check catches code that was
//! not (the precompiled `core`, for instance), by disassembling the image with `objdump` and
//! looking for memory accesses below the stack pointer:
//! - any operand `-N(%rsp)` (reading or writing below RSP), and
//! - in functions that set up a frame pointer (`mov %rsp,%rbp`), an operand `-N(%rbp)` deeper
//!   than what the function pushed or subtracted from RSP after that point.
//!
//! `lea` only computes an address (epilogues use `lea -N(%rbp),%rsp`), so it is not an access.

use std::path::Path;
use std::process::Command;

/// One access below the stack pointer.
#[derive(Debug, PartialEq, Eq)]
pub struct RedZoneUse {
    pub function: String,
    pub instruction: String,
}

/// Disassembles `elf` and returns every red-zone access found.
pub fn check_image(elf: &Path) -> Result<Vec<RedZoneUse>, String> {
    let output = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn", "-M", "att", "-w"])
        .arg(elf)
        .output()
        .map_err(|e| format!("objdump (binutils): {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "objdump failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(find_red_zone_uses(&String::from_utf8_lossy(&output.stdout)))
}

/// The negative displacement of a `-0xN(%reg` operand in `operands`, if any.
fn negative_displacement(operands: &str, register: &str) -> Option<u64> {
    let pattern = format!("(%{register}");
    let mut rest = operands;
    while let Some(at) = rest.find(&pattern) {
        let before = &rest[..at];
        let start = before.rfind([',', ' ', '*']).map_or(0, |i| i + 1);
        if let Some(hex) = before[start..].strip_prefix("-0x")
            && let Ok(value) = u64::from_str_radix(hex, 16)
        {
            return Some(value);
        }
        rest = &rest[at + pattern.len()..];
    }
    None
}

/// The analysis itself, on `objdump -d` output (AT&T syntax).
pub fn find_red_zone_uses(disassembly: &str) -> Vec<RedZoneUse> {
    let mut found = Vec::new();
    let mut function = String::new();
    let mut frame_pointer = false;
    let mut allocated: u64 = 0;
    for line in disassembly.lines() {
        if let Some(name) = line
            .strip_suffix(">:")
            .and_then(|l| l.split_once(" <"))
            .map(|(_, n)| n)
        {
            function = name.to_string();
            frame_pointer = false;
            allocated = 0;
            continue;
        }
        // Instruction lines look like "    1240:\tmov    %rsp,%rbp".
        let Some((_, instruction)) = line.split_once(":\t") else {
            continue;
        };
        let instruction = instruction.trim();
        let (mnemonic, operands) = instruction
            .split_once(char::is_whitespace)
            .unwrap_or((instruction, ""));
        let operands = operands.trim();
        if mnemonic.starts_with("lea") {
            continue;
        }
        if mnemonic.starts_with("mov") && operands == "%rsp,%rbp" {
            frame_pointer = true;
            allocated = 0;
            continue;
        }
        if frame_pointer {
            if mnemonic.starts_with("push") {
                allocated = allocated.saturating_add(8);
            } else if mnemonic == "sub" && operands.ends_with(",%rsp") {
                let amount = operands.trim_start_matches("$0x").trim_end_matches(",%rsp");
                allocated =
                    allocated.saturating_add(u64::from_str_radix(amount, 16).unwrap_or(u64::MAX));
            } else if mnemonic == "and" && operands.ends_with(",%rsp") {
                // Realignment moves RSP down by an unknown amount: stop judging RBP offsets.
                allocated = u64::MAX;
            }
        }
        let below_rsp = negative_displacement(operands, "rsp").is_some();
        let below_frame =
            frame_pointer && negative_displacement(operands, "rbp").is_some_and(|n| n > allocated);
        if below_rsp || below_frame {
            found.push(RedZoneUse {
                function: function.clone(),
                instruction: instruction.to_string(),
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_below_rsp_is_found() {
        let text = "0000000000001000 <leaf>:\n    1000:\tmov    %rdi,-0x8(%rsp)\n    1005:\tret\n";
        let found = find_red_zone_uses(text);
        assert_eq!(
            found,
            vec![RedZoneUse {
                function: "leaf".into(),
                instruction: "mov    %rdi,-0x8(%rsp)".into()
            }]
        );
    }

    #[test]
    fn frame_locals_below_allocation_are_found_and_inside_are_not() {
        let text = "0000000000001000 <framed>:\n\
                    \x20   1000:\tpush   %rbp\n\
                    \x20   1001:\tmov    %rsp,%rbp\n\
                    \x20   1004:\tsub    $0x10,%rsp\n\
                    \x20   1008:\tmov    %rdi,-0x10(%rbp)\n\
                    \x20   100c:\tmov    %rdi,-0x18(%rbp)\n\
                    \x20   1010:\tlea    -0x40(%rbp),%rsp\n";
        let found = find_red_zone_uses(text);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].instruction, "mov    %rdi,-0x18(%rbp)");
    }

    #[test]
    fn ordinary_stack_use_is_not_flagged() {
        let text = "0000000000001000 <f>:\n    1000:\tsub    $0x18,%rsp\n    1004:\tmov    %rdi,0x8(%rsp)\n\
                    \x20   1009:\tmov    -0x8(%rdi),%rax\n    100d:\tadd    $0x18,%rsp\n";
        assert!(find_red_zone_uses(text).is_empty());
    }
}
