//! `cargo xtask run --tdvf`: the mini-kernel booted by Debian's TDVF as a TD under tdx-sim.

use crate::kernel::{self, qemu};
use std::time::Duration;

/// The whole run (TDVF's boot and the kernel's) must end within this, or it fails.
const TD_BOOT_TIMEOUT: Duration = Duration::from_secs(900);
/// tdx-sim's last line starts with this.
pub const SUMMARY_PREFIX: &str = "tdx-sim: TDVF ";

/// Builds tdx-sim and the kernel, and boots them.
pub fn run() -> Result<(), String> {
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
    let summary = boot
        .serial
        .lines()
        .rev()
        .find(|l| l.starts_with(SUMMARY_PREFIX))
        .ok_or(format!(
            "tdx-sim printed no summary (QEMU status {:?})",
            boot.status
        ))?;
    match boot.status {
        Some(33) => Ok(()),
        status => Err(format!("{summary} (QEMU status {status:?})")),
    }
}
