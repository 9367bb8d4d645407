//! `cargo xtask run --tdvf`: the mini-kernel booted by Debian's TDVF as a TD under tdx-sim, and
//! the milestone check of `cargo xtask test`.

use crate::kernel::{self, qemu};
use std::time::Duration;

/// The whole run (TDVF's boot and the kernel's) must end within this, or it fails. tdx-sim's
/// own watchdog ends a TD that makes no TDCALL for 20 s well before.
const TD_BOOT_TIMEOUT: Duration = Duration::from_secs(600);
/// tdx-sim's last line starts with this.
pub const SUMMARY_PREFIX: &str = "tdx-sim: TDVF ";
/// The milestone lines tdx-sim prints, in the order a TDVF boot reaches them.
const MILESTONES: [&str; 3] = ["first TDCALL", "first interrupt", "APs in the mailbox loop"];

/// Builds tdx-sim and the kernel, and boots them; returns the serial log and QEMU's status.
fn boot() -> Result<qemu::Boot, String> {
    let (_, kernel_efi) = kernel::build_image("mini-kernel", "--cfg mini_kernel_image")?;
    let (sim_elf, sim_efi) = kernel::build_image("tdx-sim", "")?;
    kernel::red_zone_check(&sim_elf)?;
    let ovmf = qemu::ensure_installed()?;
    let tdvf = qemu::find_tdvf()?;
    let loader = qemu::Loader::TdxSim {
        tdvf,
        kernel: kernel_efi,
    };
    let boot = qemu::boot(
        &sim_efi,
        &kernel::target_dir(),
        &ovmf,
        &loader,
        TD_BOOT_TIMEOUT,
    )?;
    if boot.timed_out {
        return Err(format!(
            "the software TD did not finish within {} s (a hung TD or tdx-sim)",
            TD_BOOT_TIMEOUT.as_secs()
        ));
    }
    Ok(boot)
}

/// The summary line, or why there is none.
fn summary(boot: &qemu::Boot) -> Result<&str, String> {
    boot.serial
        .lines()
        .rev()
        .find(|l| l.starts_with(SUMMARY_PREFIX))
        .ok_or(format!(
            "tdx-sim printed no summary (QEMU status {:?})",
            boot.status
        ))
}

/// `cargo xtask run --tdvf`: passes only when the TD's kernel passed every check.
pub fn run() -> Result<(), String> {
    boot_test()
}

/// The milestones `serial` reports, in order, up to the first one missing.
fn milestones_reached(serial: &str) -> Vec<&'static str> {
    MILESTONES
        .iter()
        .copied()
        .take_while(|m| serial.contains(&format!("tdx-sim: milestone: {m} at ")))
        .collect()
}

/// Checks only a TD runs: they need the TD's x2APIC, which TCG does not offer the plain boot.
const TD_ONLY_CHECKS: [&str; 2] = ["external interrupt", "wake IPIs"];

/// The checks the kernel must pass as a TD under Debian's TDVF: every check of the plain boot
/// but the AP hand-back, which needs a version-1 MADT entry with a reset vector (edk2 2025.08
/// and later; the kernel says why it skips it), and the TD-only ones.
fn td_required_checks() -> Vec<&'static str> {
    kernel::REQUIRED_CHECKS
        .iter()
        .copied()
        .filter(|c| *c != "AP handed back to the firmware")
        .chain(TD_ONLY_CHECKS)
        .collect()
}

/// The check of `cargo xtask test`: Debian's TDVF, run as a TD under tdx-sim, reaches every
/// milestone (its reset vector, DXE's timer interrupt, the APs in TdxDxe's mailbox loop) and
/// boots the mini-kernel, which passes every check as a TD; tdx-sim's summary agrees.
pub fn boot_test() -> Result<(), String> {
    let boot = boot()?;
    let reached = milestones_reached(&boot.serial);
    if reached.len() < MILESTONES.len() {
        let summary = summary(&boot).unwrap_or("no summary");
        return Err(format!(
            "TDVF reached only {reached:?} of {MILESTONES:?}; {summary}"
        ));
    }
    let kernel = kernel::judge_checks(&boot, &td_required_checks())?;
    let summary = summary(&boot)?;
    if !summary.ends_with(" 0 failed") {
        return Err(format!(
            "tdx-sim's summary disagrees with the kernel: {summary}"
        ));
    }
    eprintln!("xtask: software TD: {kernel}");
    eprintln!("xtask: {summary}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milestones_count_only_in_order_and_only_whole_lines() {
        let all = "tdx-sim: milestone: first TDCALL at 0.1 s\n\
                   tdx-sim: milestone: first interrupt at 9.0 s\n\
                   tdx-sim: milestone: APs in the mailbox loop at 40.0 s\n";
        assert_eq!(milestones_reached(all), MILESTONES.to_vec());
        let gap = all.replace("first interrupt at", "first interrupt was never");
        assert_eq!(milestones_reached(&gap), vec!["first TDCALL"]);
        assert!(milestones_reached("tdx-sim: started\n").is_empty());
    }
}
