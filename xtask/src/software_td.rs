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

/// Builds tdx-sim and the kernel, and boots them (until a serial line contains `stop_at`, when
/// given); returns the serial log and QEMU's status.
fn boot(stop_at: Option<&str>) -> Result<qemu::Boot, String> {
    let (_, kernel_efi) = kernel::build_image("mini-kernel", "--cfg mini_kernel_image")?;
    let (sim_elf, sim_efi) = kernel::build_image("tdx-sim", "")?;
    kernel::red_zone_check(&sim_elf)?;
    let ovmf = qemu::ensure_installed()?;
    let tdvf = qemu::find_tdvf()?;
    let loader = qemu::Loader::TdxSim {
        tdvf,
        kernel: kernel_efi,
    };
    let boot = qemu::boot_until(
        &sim_efi,
        &kernel::target_dir(),
        &ovmf,
        &loader,
        TD_BOOT_TIMEOUT,
        stop_at,
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
    let boot = boot(None)?;
    let summary = summary(&boot)?;
    match boot.status {
        Some(33) => Ok(()),
        status => Err(format!("{summary} (QEMU status {status:?})")),
    }
}

/// The milestones `serial` reports, in order, up to the first one missing.
fn milestones_reached(serial: &str) -> Vec<&'static str> {
    MILESTONES
        .iter()
        .copied()
        .take_while(|m| serial.contains(&format!("tdx-sim: milestone: {m} at ")))
        .collect()
}

/// The check of `cargo xtask test`: Debian's TDVF, run as a TD, reaches every milestone of
/// the boot that tdx-sim supports so far (its reset vector, SEC's acceptance, PEI, DXE with
/// its timer interrupt, the APs in TdxDxe's mailbox loop). The kernel's flow under TDVF is not
/// reached yet, so the run is stopped at the last milestone.
pub fn milestone_test() -> Result<(), String> {
    let last = format!(
        "tdx-sim: milestone: {} at ",
        MILESTONES[MILESTONES.len() - 1]
    );
    let boot = boot(Some(&last))?;
    let reached = milestones_reached(&boot.serial);
    if reached.len() < MILESTONES.len() {
        let summary = summary(&boot).unwrap_or("no summary");
        return Err(format!(
            "TDVF reached only {reached:?} of {MILESTONES:?}; {summary}"
        ));
    }
    let how = if boot.stopped_at_line {
        "stopped there"
    } else {
        "the run then ended by itself"
    };
    eprintln!("xtask: software TD: Debian's TDVF reached {reached:?} ({how})");
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
