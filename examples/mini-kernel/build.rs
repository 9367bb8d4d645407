//! Link the bootable image as a freestanding static PIE (see `metal::image`).
//!
//! Only when `cargo xtask` builds the image (`--cfg bare_metal_image` in RUSTFLAGS); the host
//! build of the same crate (clippy, tests) links normally.

fn main() {
    let is_image = std::env::var_os("CARGO_CFG_BARE_METAL_IMAGE").is_some();
    metal::image::link_bins_as_image(is_image, |key, value| println!("cargo::{key}={value}"));
}
