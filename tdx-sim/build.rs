//! Link the bootable image as a freestanding static PIE (see `metal::image`), only when
//! `cargo xtask` builds it (`--cfg bare_metal_image`); the host build links normally.

fn main() {
    let is_image = std::env::var_os("CARGO_CFG_BARE_METAL_IMAGE").is_some();
    metal::image::link_bins_as_image(is_image, |key, value| println!("cargo::{key}={value}"));
}
