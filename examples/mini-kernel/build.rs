//! Link the bootable image as a freestanding static PIE laid out by `linker.ld`.
//!
//! Only when `cargo xtask` builds the image (`--cfg mini_kernel_image` in RUSTFLAGS); the host
//! build of the same crate (clippy, tests) links normally.

fn main() {
    println!("cargo::rerun-if-changed=linker.ld");
    if std::env::var_os("CARGO_CFG_MINI_KERNEL_IMAGE").is_none() {
        return;
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static-pie",
        "-Wl,--no-dynamic-linker",
        "-Wl,--build-id=none",
        "-Wl,-z,max-page-size=4096",
        "-Wl,-z,norelro",
        &format!("-Wl,-T,{dir}/linker.ld"),
    ] {
        println!("cargo::rustc-link-arg-bins={arg}");
    }
}
