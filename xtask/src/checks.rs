//! `cargo xtask test`: every check, in order, stopping at the first failure.

use crate::{fuzz, kernel, shell};

/// One named check.
type Step = (&'static str, fn() -> Result<(), String>);

/// Every check `cargo xtask test` makes. Add a line here for a new kind of check.
const STEPS: &[Step] = &[
    ("format", format),
    ("clippy", clippy),
    ("unit and integration tests", tests),
    ("docs", docs),
    ("cargo package", package),
    ("loom model checks", loom),
    ("fuzz smoke runs", fuzz::smoke_all),
    ("mini-kernel boot in QEMU", kernel::boot_test),
    (
        "software TD: Debian's TDVF under tdx-sim",
        crate::software_td::boot_test,
    ),
];

pub fn run_all() -> Result<(), String> {
    for (name, step) in STEPS {
        eprintln!("==> {name}");
        step().map_err(|e| format!("{name}: {e}"))?;
    }
    eprintln!("==> all checks passed");
    Ok(())
}

fn format() -> Result<(), String> {
    shell::run(shell::cargo().args(["fmt", "--all", "--", "--check"]))
}

fn clippy() -> Result<(), String> {
    shell::run(shell::cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]))?;
    shell::run(shell::cargo().args(["clippy", "--lib", "--", "-D", "warnings"]))
}

fn tests() -> Result<(), String> {
    shell::run(shell::cargo().args(["test", "--workspace", "--all-features"]))?;
    // What volatile::VolatilePtr compiles to differs between profiles; a kernel is built in both.
    shell::run(shell::cargo().args([
        "test",
        "--release",
        "--features",
        "model",
        "--test",
        "ve_volatile",
    ]))?;
    // The crate must also build and pass without the model.
    shell::run(shell::cargo().args(["test", "--lib"]))
}

fn docs() -> Result<(), String> {
    shell::run(
        shell::cargo()
            .args(["doc", "--no-deps", "--all-features"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    shell::run(
        shell::cargo()
            .args(["doc", "--no-deps", "-p", "tdx-sim"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )
}

/// The crate as crates.io would get it: packaged (no path dependency, nothing outside `include`
/// it needs) and built from the package alone. A work tree with uncommitted changes is packaged
/// as it is (`--allow-dirty`); CI's fresh clone is clean, so there the check is the real one.
fn package() -> Result<(), String> {
    let status = std::process::Command::new("git")
        .args(["status", "--porcelain"])
        .current_dir(shell::root())
        .output()
        .map_err(|e| format!("git status: {e}"))?;
    let mut cmd = shell::cargo();
    // Every feature: the package must build `acpi` and `uefi` from crates.io alone too.
    cmd.args(["package", "--package", "tdx-boot", "--all-features"]);
    if !status.stdout.is_empty() {
        eprintln!("xtask: uncommitted changes: packaging with --allow-dirty");
        cmd.arg("--allow-dirty");
    }
    shell::run(&mut cmd)
}

/// The loom model checks (tests named `loom_*` compiled with `--cfg loom`), in their own target
/// directory so the normal build is not invalidated.
fn loom() -> Result<(), String> {
    shell::run(
        shell::cargo()
            .args(["test", "--release", "--features", "model", "--lib", "loom_"])
            .env("RUSTFLAGS", "--cfg loom")
            .env("CARGO_TARGET_DIR", shell::root().join("target/loom"))
            .env("LOOM_MAX_PREEMPTIONS", "3"),
    )
}

/// `cargo xtask bench`: every benchmark, in release mode.
pub fn bench() -> Result<(), String> {
    shell::run(shell::cargo().args(["bench", "--features", "model"]))?;
    shell::run(shell::cargo().args(["bench", "-p", "tdx-sim"]))
}
