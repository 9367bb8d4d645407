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

/// The DMA interface's address register (big-endian halves at 0x514 and 0x518; writing the
/// low half starts the transfer).
const DMA_ADDRESS_HIGH: u16 = 0x514;
const DMA_ADDRESS_LOW: u16 = 0x518;
/// Control bits of a DMA request.
const DMA_ERROR: u32 = 1 << 0;
const DMA_READ: u32 = 1 << 1;
const DMA_SELECT: u32 = 1 << 3;
/// FW_CFG_ID bit: the DMA interface exists.
const ID_DMA: u32 = 1 << 1;
const ID: u16 = 0x01;

/// A DMA request as the device reads it (every field big-endian).
#[repr(C, align(16))]
struct DmaAccess {
    control: u32,
    length: u32,
    address: u64,
}

/// Reads the whole of `file` into `out` (which must be at least its size): with one DMA
/// transfer where the device has DMA (tdx-sim's own memory is identity-mapped, so addresses are
/// physical), byte by byte otherwise. Byte by byte, 2 MiB take tens of seconds under TCG.
pub fn read(file: File, out: &mut [u8]) {
    let len = (file.size as usize).min(out.len());
    let mut id = [0u8; 4];
    read_item(ID, &mut id);
    if u32::from_le_bytes(id) & ID_DMA == 0 {
        read_item(file.select, &mut out[..len]);
        return;
    }
    let request = DmaAccess {
        control: ((u32::from(file.select) << 16) | DMA_SELECT | DMA_READ).to_be(),
        length: (len as u32).to_be(),
        address: (out.as_mut_ptr() as u64).to_be(),
    };
    let at = &request as *const DmaAccess as u64;
    // SAFETY: the device writes `len` bytes into `out` (ours, identity-mapped) and then the
    // request's control word; the request lives until the loop below sees it finished.
    unsafe {
        Port::<u32>::new(DMA_ADDRESS_HIGH).write(((at >> 32) as u32).to_be());
        Port::<u32>::new(DMA_ADDRESS_LOW).write((at as u32).to_be());
    }
    loop {
        // SAFETY: the device updates the control word; read it as it may change.
        let control = u32::from_be(unsafe { core::ptr::addr_of!(request.control).read_volatile() });
        if control & DMA_ERROR != 0 {
            read_item(file.select, &mut out[..len]);
            return;
        }
        if control == 0 {
            return;
        }
        core::hint::spin_loop();
    }
}
