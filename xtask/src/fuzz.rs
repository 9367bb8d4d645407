//! Fuzzing with cargo-fuzz (nightly, libFuzzer): short smoke runs in `cargo xtask test`.

use crate::shell;
use std::process::Command;

/// Seconds each target runs in the smoke run. `cargo xtask fuzz TARGET 3600` runs longer.
const SMOKE_SECONDS: u32 = 10;

fn targets() -> Result<Vec<String>, String> {
    let dir = shell::root().join("fuzz/fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "rs").then(|| path.file_stem()?.to_str().map(String::from))?
        })
        .collect();
    names.sort();
    Ok(names)
}

fn ensure_cargo_fuzz() -> Result<(), String> {
    let installed = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if installed {
        return Ok(());
    }
    shell::run(Command::new("cargo").args(["+nightly", "install", "cargo-fuzz", "--locked"]))
}

/// Runs `target` for `seconds` seconds.
pub fn run(target: &str, seconds: u32) -> Result<(), String> {
    ensure_cargo_fuzz()?;
    shell::run(
        Command::new("cargo")
            .current_dir(shell::root())
            .args([
                "+nightly",
                "fuzz",
                "run",
                target,
                "--",
                &format!("-max_total_time={seconds}"),
            ])
            .env_remove("RUSTFLAGS"),
    )
}

/// A short run of every target: proves each builds and survives its first inputs.
pub fn smoke_all() -> Result<(), String> {
    for target in targets()? {
        run(&target, SMOKE_SECONDS)?;
    }
    Ok(())
}
