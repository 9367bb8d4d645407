//! How an image is linked: a freestanding static PIE laid out by `image.ld` (beside this crate's
//! manifest), which `cargo xtask` turns into a PE32+ EFI application. An image's build script
//! (a build-dependency on this crate) passes these to the linker when `bare_metal_image` is set.

/// The linker script: linked at 0 with the first page left for the PE headers, one page-aligned
/// PT_LOAD per permission.
pub const LINKER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/image.ld");

/// The argument that makes the linker use [`LINKER_SCRIPT`].
const LINKER_SCRIPT_ARG: &str = concat!("-Wl,-T,", env!("CARGO_MANIFEST_DIR"), "/image.ld");

/// The linker arguments of an image, besides the linker script.
pub const LINK_ARGS: [&str; 7] = [
    "-nostartfiles",
    "-nostdlib",
    "-static-pie",
    "-Wl,--no-dynamic-linker",
    "-Wl,--build-id=none",
    "-Wl,-z,max-page-size=4096",
    "-Wl,-z,norelro",
];

/// Prints the `cargo::` lines that link the package's binaries as an image, when the build is
/// one (`--cfg bare_metal_image` in RUSTFLAGS); otherwise nothing, so the host build links
/// normally. For build scripts; `print` is the build script's `println!`.
pub fn link_bins_as_image(is_image: bool, mut print: impl FnMut(&str, &str)) {
    print("rerun-if-changed", LINKER_SCRIPT);
    if !is_image {
        return;
    }
    for arg in LINK_ARGS {
        print("rustc-link-arg-bins", arg);
    }
    print("rustc-link-arg-bins", LINKER_SCRIPT_ARG);
}
