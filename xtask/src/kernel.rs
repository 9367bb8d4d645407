//! The example mini-kernel: build, convert to PE32+, boot in QEMU, check the boot log.

mod pe;
pub mod qemu;

mod redzone;

use crate::shell;
use std::path::PathBuf;
use std::time::Duration;

/// QEMU is killed after this long, so CI never hangs on a kernel that does.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// The status QEMU exits with when the kernel writes its success code to `isa-debug-exit`.
const QEMU_EXIT_SUCCESS: i32 = 33;
/// ... and its failure code.
const QEMU_EXIT_FAILURE: i32 = 35;
/// The kernel's final line starts with this; the rest says how many checks passed and failed.
const FINAL_LINE: &str = "mini-kernel: checks:";

/// The target dir of the image build: separate, so the host build is never invalidated.
pub fn target_dir() -> PathBuf {
    shell::root().join("target/kernel")
}

/// Builds the kernel ELF and converts it; returns (ELF path, PE path).
fn build() -> Result<(PathBuf, PathBuf), String> {
    build_image("mini-kernel", "--cfg mini_kernel_image")
}

/// Builds the bare-metal image of `package` (with `extra_cfg` besides `bare_metal_image`) and
/// converts it to PE32+; returns (ELF path, PE path).
pub fn build_image(package: &str, extra_cfg: &str) -> Result<(PathBuf, PathBuf), String> {
    let target_dir = target_dir();
    shell::run(
        shell::cargo()
            .args([
                "build",
                "-p",
                package,
                "--release",
                "--target",
                "x86_64-unknown-linux-gnu",
            ])
            // With an explicit --target these flags reach only the kernel and its dependencies,
            // not build scripts. They make a freestanding static PIE without a red zone, and
            // deny warnings in the image-only code that clippy's host build does not see
            // (registry dependencies have their lints capped by cargo).
            .env(
                "RUSTFLAGS",
                format!(
                    "{extra_cfg} --cfg bare_metal_image -C relocation-model=pie \
                     -C no-redzone=yes -C target-feature=+crt-static -C panic=abort -D warnings"
                ),
            )
            // It would take precedence over RUSTFLAGS.
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env("CARGO_TARGET_DIR", &target_dir),
    )?;
    let elf = target_dir.join(format!("x86_64-unknown-linux-gnu/release/{package}"));
    let data = std::fs::read(&elf).map_err(|e| format!("{}: {e}", elf.display()))?;
    let (image, summary) = pe::elf_to_pe(&data)?;
    let efi = target_dir.join(format!("{package}.efi"));
    std::fs::write(&efi, image).map_err(|e| format!("{}: {e}", efi.display()))?;
    eprintln!(
        "xtask: {} ({} sections, {} base relocations, entry {:#x})",
        efi.display(),
        summary.sections.len(),
        summary.relocations,
        summary.entry
    );
    for (name, rva, size, characteristics) in &summary.sections {
        eprintln!(
            "xtask:   {name:8} rva {rva:#8x} size {size:#8x} characteristics {characteristics:#010x}"
        );
    }
    Ok((elf, efi))
}

fn loader_from_args() -> qemu::Loader {
    if std::env::args().any(|a| a == "--esp") {
        qemu::Loader::Esp
    } else {
        qemu::Loader::Kernel
    }
}

/// `cargo xtask run [--tdvf | --model [--esp]]`: build the image and boot it, serial console on
/// stdout. The default is `--tdvf`: the kernel as a TD under Debian's TDVF on tdx-sim; `--model`
/// is the plain-QEMU boot against the model compiled into the kernel (`--esp`: from an ESP).
pub fn run() -> Result<(), String> {
    let plain = std::env::args().any(|a| a == "--model" || a == "--esp");
    if !plain {
        return crate::software_td::run();
    }
    let (elf, efi) = build()?;
    if let Err(e) = red_zone_check(&elf) {
        eprintln!("xtask: warning: {e}");
    }
    let ovmf = qemu::ensure_installed()?;
    let boot = qemu::boot(
        &efi,
        &target_dir(),
        &ovmf,
        &loader_from_args(),
        BOOT_TIMEOUT,
    )?;
    judge(&boot).map(|summary| eprintln!("xtask: {summary}"))
}

/// The checks a boot in plain QEMU must report as passed: every capability, so a step that was
/// silently skipped fails the test as surely as one that failed.
pub const REQUIRED_CHECKS: [&str; 17] = [
    "memory map",
    "ACPI tables",
    "descriptor tables",
    "TD info and policy",
    "TDVMCALL console",
    "#VE CPUID",
    "#VE port IO",
    "#VE MMIO",
    "lazy acceptance",
    "APs woken through the mailbox",
    "parallel acceptance",
    "AP handed back to the firmware",
    "shared conversion round trip",
    "firmware event log",
    "kernel measurements",
    "event log",
    "quote",
];

/// Decides from the exit status and the final line whether the boot passed: QEMU's success
/// status, no failed check, and every required check passed.
fn judge(boot: &qemu::Boot) -> Result<String, String> {
    judge_checks(boot, &REQUIRED_CHECKS)
}

/// [`judge`] with `required` as the checks that must have passed.
pub fn judge_checks(boot: &qemu::Boot, required: &[&str]) -> Result<String, String> {
    if boot.timed_out {
        return Err(format!(
            "QEMU did not finish within {} s",
            BOOT_TIMEOUT.as_secs()
        ));
    }
    let Some(line) = boot
        .serial
        .lines()
        .rev()
        .find(|l| l.starts_with(FINAL_LINE))
    else {
        return Err(format!(
            "the kernel did not reach its final line (QEMU status {:?})",
            boot.status
        ));
    };
    let failed = line
        .split_once(" passed, ")
        .and_then(|(_, rest)| rest.split_once(" failed"))
        .and_then(|(n, _)| n.parse::<u32>().ok());
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|name| !line.contains(&format!("{name}: pass")))
        .collect();
    match (boot.status, failed) {
        (Some(QEMU_EXIT_SUCCESS), Some(0)) if missing.is_empty() => Ok(line.to_string()),
        (Some(QEMU_EXIT_SUCCESS), Some(0)) => {
            Err(format!("checks missing from the boot: {missing:?}"))
        }
        (Some(QEMU_EXIT_FAILURE), _) => Err(format!("the kernel reported failures: {line}")),
        (status, _) => Err(format!("QEMU ended with status {status:?} after: {line}")),
    }
}

/// Fails if any function in the image accesses memory below RSP.
pub fn red_zone_check(elf: &std::path::Path) -> Result<(), String> {
    let uses = redzone::check_image(elf)?;
    if !uses.is_empty() {
        let list: Vec<String> = uses
            .iter()
            .map(|u| format!("  {}: {}", u.function, u.instruction))
            .collect();
        return Err(format!(
            "{} red-zone accesses in the image:\n{}",
            uses.len(),
            list.join("\n")
        ));
    }
    eprintln!("xtask: red-zone check: no function in the image accesses memory below RSP");
    Ok(())
}

/// The QEMU boot check of `cargo xtask test`: no function in the image uses the red zone, and
/// the kernel passes every check when OVMF loads it with `-kernel` and from an ESP directory.
pub fn boot_test() -> Result<(), String> {
    let (elf, efi) = build()?;
    red_zone_check(&elf)?;
    let ovmf = qemu::ensure_installed()?;
    for loader in [qemu::Loader::Kernel, qemu::Loader::Esp] {
        let boot = qemu::boot(&efi, &target_dir(), &ovmf, &loader, BOOT_TIMEOUT)?;
        let summary = judge(&boot).map_err(|e| format!("boot with {loader:?}: {e}"))?;
        eprintln!("xtask: boot with {loader:?}: {summary}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot(status: i32, final_line: &str) -> qemu::Boot {
        qemu::Boot {
            serial: format!("BdsDxe: starting\nmini-kernel: efi_main\n{final_line}\n"),
            status: Some(status),
            timed_out: false,
        }
    }

    fn all_passed() -> String {
        let checks: Vec<String> = REQUIRED_CHECKS
            .iter()
            .map(|c| format!("{c}: pass"))
            .collect();
        format!(
            "{FINAL_LINE} {} passed, 0 failed ({}) - all checks passed",
            REQUIRED_CHECKS.len(),
            checks.join(", ")
        )
    }

    #[test]
    fn a_complete_passing_boot_passes() {
        assert!(judge(&boot(QEMU_EXIT_SUCCESS, &all_passed())).is_ok());
    }

    #[test]
    fn a_failed_check_a_missing_check_or_a_bad_status_fails() {
        let failed = all_passed()
            .replace("0 failed", "1 failed")
            .replace("#VE MMIO: pass", "#VE MMIO: FAIL");
        assert!(judge(&boot(QEMU_EXIT_FAILURE, &failed)).is_err());
        let missing = all_passed().replace(", lazy acceptance: pass", "");
        assert!(judge(&boot(QEMU_EXIT_SUCCESS, &missing)).is_err());
        assert!(
            judge(&boot(0, &all_passed())).is_err(),
            "a triple fault exits QEMU with 0"
        );
        let hung = qemu::Boot {
            timed_out: true,
            ..boot(QEMU_EXIT_SUCCESS, &all_passed())
        };
        assert!(judge(&hung).is_err());
        let no_line = qemu::Boot {
            serial: "mini-kernel: efi_main\n".into(),
            ..boot(QEMU_EXIT_SUCCESS, "")
        };
        assert!(judge(&no_line).is_err());
    }
}
