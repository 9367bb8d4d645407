//! The outer machine's fw_cfg device, read through its IO interface: how tdx-sim gets the files
//! `cargo xtask` passes with `-fw_cfg name=opt/tdx-sim/...,file=...` (TDVF, the TD's kernel).

use x86_64::instructions::port::Port;

const SELECTOR_PORT: u16 = 0x510;
const DATA_PORT: u16 = 0x511;
/// The item holding the file directory.
const FILE_DIRECTORY: u16 = 0x19;
/// The signature item: "QEMU" when the device is there.
const SIGNATURE: u16 = 0x00;
/// Bytes of a directory entry's name field.
const NAME_LEN: usize = 56;

/// A file in the outer fw_cfg.
#[derive(Clone, Copy, Debug)]
pub struct File {
    /// Its selector.
    pub select: u16,
    /// Its size in bytes.
    pub size: u32,
}

/// Selects `item` and reads `out.len()` bytes of it from the start.
fn read_item(item: u16, out: &mut [u8]) {
    // SAFETY: the fw_cfg ports only select and stream items; reading has no other effect.
    unsafe {
        Port::<u16>::new(SELECTOR_PORT).write(item);
        let mut data = Port::<u8>::new(DATA_PORT);
        for byte in out {
            *byte = data.read();
        }
    }
}

/// Whether the machine has fw_cfg.
pub fn present() -> bool {
    let mut signature = [0u8; 4];
    read_item(SIGNATURE, &mut signature);
    &signature == b"QEMU"
}

/// Finds the file `name` in the directory.
pub fn find(name: &str) -> Option<File> {
    // SAFETY: as in `read_item`; the directory is streamed entry by entry after one select.
    unsafe {
        Port::<u16>::new(SELECTOR_PORT).write(FILE_DIRECTORY);
    }
    let mut data = Port::<u8>::new(DATA_PORT);
    let mut next = |out: &mut [u8]| {
        for byte in out {
            // SAFETY: as above.
            *byte = unsafe { data.read() };
        }
    };
    let mut count = [0u8; 4];
    next(&mut count);
    // The device has a few dozen files; the bound keeps a bogus count from looping long.
    for _ in 0..u32::from_be_bytes(count).min(4096) {
        let mut entry = [0u8; 8 + NAME_LEN];
        next(&mut entry);
        let size = u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]);
        let select = u16::from_be_bytes([entry[4], entry[5]]);
        let raw_name = &entry[8..];
        let len = raw_name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        if &raw_name[..len] == name.as_bytes() {
            return Some(File { select, size });
        }
    }
    None
}

/// Reads the whole of `file` into `out` (which must be at least its size).
pub fn read(file: File, out: &mut [u8]) {
    let len = (file.size as usize).min(out.len());
    read_item(file.select, &mut out[..len]);
}
