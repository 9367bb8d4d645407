//! Project tasks.
//!
//! - `cargo xtask test`: every check the project makes (what CI runs).
//! - `cargo xtask run`: build the example kernel and boot it in QEMU.
//! - `cargo xtask bench`: run the benchmarks and print their ratios.
//! - `cargo xtask fuzz TARGET [SECONDS]`: a longer fuzzing run of one target.

mod checks;
mod fuzz;
mod kernel;
mod shell;
mod software_td;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => checks::run_all(),
        Some("run") => kernel::run(),
        Some("bench") => checks::bench(),
        Some("fuzz") => match args.get(1) {
            Some(target) => {
                let seconds = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(600);
                fuzz::run(target, seconds)
            }
            None => Err("usage: cargo xtask fuzz TARGET [SECONDS]".into()),
        },
        _ => Err("usage: cargo xtask test | run | bench | fuzz TARGET [SECONDS]".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
