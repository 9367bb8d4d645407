//! The TD's fw_cfg device: QEMU's firmware configuration interface as TDVF sees it, in front of
//! the real device of the machine tdx-sim runs on.
//!
//! # Why a front
//! - The real device's kernel items describe what QEMU was told to boot (tdx-sim itself). The
//!   TD's kernel is passed to QEMU as a named file (`-fw_cfg name=opt/...,file=...`); the front
//!   presents that file as the kernel: FW_CFG_KERNEL_SIZE (0x08) and FW_CFG_KERNEL_DATA (0x11)
//!   come from it, the setup and initrd items are empty, the address and entry items zero, the
//!   command line (0x14/0x15) comes from an optional second file, NUL-terminated as QEMU's
//!   `fw_cfg_add_string` stores it. The file directory (0x19) is the real one without those
//!   files.
//! - fw_cfg DMA names guest-physical addresses. Passed through, the real device would write the
//!   host's memory at the TD's GPAs. The front implements the DMA interface itself: it reads the
//!   descriptor and the data through a caller-supplied accessor of TD memory, and moves the
//!   data through the real device's IO interface.
//!
//! # The interface (QEMU `hw/nvram/fw_cfg.c`, `docs/specs/fw_cfg.rst`)
//! - Port 0x510: a 16-bit OUT selects an item and rewinds it. Port 0x511 (and 0x510 with a
//!   byte-sized IN): the next byte of the item, zero past its end.
//! - Ports 0x514-0x51B, big-endian: a 32-bit OUT at 0x514 latches the descriptor address's high
//!   half, one at 0x518 the low half and starts the transfer; an IN reads the signature
//!   "QEMU CFG".
//! - The descriptor `{ be32 control, be32 length, be64 address }`: control bit 3 SELECT (with
//!   the key in bits 31:16), then one of bit 1 READ, bit 4 WRITE, bit 2 SKIP; on completion
//!   the device writes control back as 0, or 1 (ERROR). A descriptor that cannot be read gets
//!   ERROR; QEMU carries on after a data error, the front stops there (same ERROR result).
//! - FW_CFG_ID (0x01) bit 0: traditional interface, bit 1: DMA. The front reports DMA only when
//!   it offers it.
//! - The directory: `be32 count`, then per file `{ be32 size, be16 select, be16 reserved,
//!   name[56] }`, names NUL-terminated.

use core::fmt;

/// The selector port.
pub const FW_CFG_PORT_SELECTOR: u16 = 0x510;
/// The data port.
pub const FW_CFG_PORT_DATA: u16 = 0x511;
/// The DMA address ports (0x514 high half, 0x518 low half).
pub const FW_CFG_PORT_DMA: u16 = 0x514;

/// FW_CFG_SIGNATURE.
pub const FW_CFG_SIGNATURE: u16 = 0x00;
/// FW_CFG_ID.
pub const FW_CFG_ID: u16 = 0x01;
/// FW_CFG_KERNEL_ADDR.
pub const FW_CFG_KERNEL_ADDR: u16 = 0x07;
/// FW_CFG_KERNEL_SIZE.
pub const FW_CFG_KERNEL_SIZE: u16 = 0x08;
/// FW_CFG_KERNEL_CMDLINE (legacy command-line address).
pub const FW_CFG_KERNEL_CMDLINE: u16 = 0x09;
/// FW_CFG_INITRD_ADDR.
pub const FW_CFG_INITRD_ADDR: u16 = 0x0a;
/// FW_CFG_INITRD_SIZE.
pub const FW_CFG_INITRD_SIZE: u16 = 0x0b;
/// FW_CFG_KERNEL_ENTRY.
pub const FW_CFG_KERNEL_ENTRY: u16 = 0x10;
/// FW_CFG_KERNEL_DATA.
pub const FW_CFG_KERNEL_DATA: u16 = 0x11;
/// FW_CFG_INITRD_DATA.
pub const FW_CFG_INITRD_DATA: u16 = 0x12;
/// FW_CFG_CMDLINE_ADDR.
pub const FW_CFG_CMDLINE_ADDR: u16 = 0x13;
/// FW_CFG_CMDLINE_SIZE.
pub const FW_CFG_CMDLINE_SIZE: u16 = 0x14;
/// FW_CFG_CMDLINE_DATA.
pub const FW_CFG_CMDLINE_DATA: u16 = 0x15;
/// FW_CFG_SETUP_ADDR.
pub const FW_CFG_SETUP_ADDR: u16 = 0x16;
/// FW_CFG_SETUP_SIZE.
pub const FW_CFG_SETUP_SIZE: u16 = 0x17;
/// FW_CFG_SETUP_DATA.
pub const FW_CFG_SETUP_DATA: u16 = 0x18;
/// FW_CFG_FILE_DIR.
pub const FW_CFG_FILE_DIR: u16 = 0x19;

/// DMA control: error.
pub const DMA_CTL_ERROR: u32 = 0x01;
/// DMA control: read.
pub const DMA_CTL_READ: u32 = 0x02;
/// DMA control: skip.
pub const DMA_CTL_SKIP: u32 = 0x04;
/// DMA control: select.
pub const DMA_CTL_SELECT: u32 = 0x08;
/// DMA control: write.
pub const DMA_CTL_WRITE: u32 = 0x10;
/// "QEMU CFG", the DMA port's signature.
pub const DMA_SIGNATURE: u64 = 0x5145_4d55_2043_4647;

/// Bytes of a directory entry.
pub const DIR_ENTRY_LEN: usize = 64;
const NAME_OFFSET: usize = 8;
/// Directory entries the front looks through (QEMU allows at most 0x1000 file slots).
pub const MAX_FILES: u32 = 0x1000;
const DMA_CHUNK: usize = 512;

/// The machine's real fw_cfg, through its IO interface.
pub trait FwCfgBackend {
    /// Selects `key` (OUT 0x510).
    fn select(&mut self, key: u16);
    /// Reads the next bytes of the selected item (IN 0x511), zeros past its end.
    fn read(&mut self, buf: &mut [u8]);
    /// Writes into the selected item; `false` if the back end cannot (the IO interface has no
    /// writes since QEMU 2.4).
    fn write(&mut self, data: &[u8]) -> bool {
        let _ = data;
        false
    }
}

/// A TD guest-physical address the accessor would not read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadGpa(pub u64);

/// The TD's memory as the VMM may touch it (normally shared GPAs only).
pub trait TdMemory {
    /// Reads `buf.len()` bytes at `gpa`.
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), BadGpa>;
    /// Writes `data` at `gpa`.
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), BadGpa>;
}

/// The names of the files that carry the TD's kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelFiles<'a> {
    /// The kernel image, e.g. `opt/tdx-sim/kernel`.
    pub kernel: &'a str,
    /// The command line, if any.
    pub cmdline: Option<&'a str>,
}

/// Why the front could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FwCfgError {
    /// The real device has no such file.
    MissingFile,
    /// The directory claims more than [`MAX_FILES`] files.
    DirectoryTooLarge(u32),
    /// A file name does not fit the 55 bytes of a directory entry.
    NameTooLong,
}

impl fmt::Display for FwCfgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingFile => write!(f, "fw_cfg file for the TD kernel not found"),
            Self::DirectoryTooLarge(n) => write!(f, "fw_cfg directory claims {n} files"),
            Self::NameTooLong => write!(f, "fw_cfg file name too long"),
        }
    }
}

impl core::error::Error for FwCfgError {}

/// A file of the real device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileRef {
    key: u16,
    size: u32,
}

/// What the selected key reads as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Item {
    Passthrough(u16),
    /// A little-endian u32 value.
    Value(u32),
    /// No data at all.
    Empty,
    Kernel,
    Cmdline,
    Directory,
}

/// The directory as the TD reads it: the real one minus hidden files, streamed.
#[derive(Clone, Copy, Debug)]
struct DirStream {
    real_left: u32,
    entry: [u8; DIR_ENTRY_LEN],
    entry_pos: usize,
}

/// Files of the real device the TD never sees: `etc/e820` describes the machine tdx-sim runs
/// on, not the TD (TDVF then sizes RAM from CMOS, which the TD's CMOS front answers).
pub const HIDDEN_MACHINE_FILES: [&str; 1] = ["etc/e820"];

/// The TD's fw_cfg.
#[derive(Clone, Debug)]
pub struct TdFwCfg<'a> {
    files: KernelFiles<'a>,
    kernel: FileRef,
    cmdline: Option<FileRef>,
    real_files: u32,
    hidden_files: u32,
    offer_dma: bool,
    item: Item,
    offset: u64,
    dir: DirStream,
    dma_high: u64,
}

impl<'a> TdFwCfg<'a> {
    /// Looks up `files` in the real device's directory. `offer_dma` decides whether the TD
    /// sees the DMA interface (FW_CFG_ID bit 1).
    pub fn new(
        backend: &mut impl FwCfgBackend,
        files: KernelFiles<'a>,
        offer_dma: bool,
    ) -> Result<Self, FwCfgError> {
        for name in [Some(files.kernel), files.cmdline].into_iter().flatten() {
            if name.len() >= DIR_ENTRY_LEN - NAME_OFFSET {
                return Err(FwCfgError::NameTooLong);
            }
        }
        backend.select(FW_CFG_FILE_DIR);
        let mut count = [0u8; 4];
        backend.read(&mut count);
        let real_files = u32::from_be_bytes(count);
        if real_files > MAX_FILES {
            return Err(FwCfgError::DirectoryTooLarge(real_files));
        }
        let (mut kernel, mut cmdline, mut hidden_files) = (None, None, 0);
        for _ in 0..real_files {
            let mut entry = [0u8; DIR_ENTRY_LEN];
            backend.read(&mut entry);
            let file = FileRef {
                key: u16::from_be_bytes([entry[4], entry[5]]),
                size: u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]),
            };
            if entry_name_is(&entry, files.kernel) {
                kernel = Some(file);
                hidden_files += 1;
            } else if files.cmdline.is_some_and(|c| entry_name_is(&entry, c)) {
                cmdline = Some(file);
                hidden_files += 1;
            } else if HIDDEN_MACHINE_FILES
                .iter()
                .any(|h| entry_name_is(&entry, h))
            {
                hidden_files += 1;
            }
        }
        let kernel = kernel.ok_or(FwCfgError::MissingFile)?;
        if files.cmdline.is_some() && cmdline.is_none() {
            return Err(FwCfgError::MissingFile);
        }
        backend.select(FW_CFG_SIGNATURE);
        Ok(TdFwCfg {
            files,
            kernel,
            cmdline,
            real_files,
            hidden_files,
            offer_dma,
            item: Item::Passthrough(FW_CFG_SIGNATURE),
            offset: 0,
            dir: DirStream {
                real_left: 0,
                entry: [0; DIR_ENTRY_LEN],
                entry_pos: DIR_ENTRY_LEN,
            },
            dma_high: 0,
        })
    }

    /// An OUT to a fw_cfg port (`size` bytes, 1, 2 or 4). Returns whether the port is one of
    /// the device's.
    pub fn io_write(
        &mut self,
        port: u16,
        size: u8,
        value: u32,
        backend: &mut impl FwCfgBackend,
        memory: &mut impl TdMemory,
    ) -> bool {
        match (port, size) {
            (FW_CFG_PORT_SELECTOR, 2) => self.select(value as u16, backend),
            // Byte writes to the data port have been ignored since QEMU 2.4.
            (FW_CFG_PORT_SELECTOR | FW_CFG_PORT_DATA, _) => {}
            (0x514, 4) if self.offer_dma => {
                self.dma_high = u64::from(value.swap_bytes()) << 32;
            }
            (0x518, 4) if self.offer_dma => {
                let address = self.dma_high | u64::from(value.swap_bytes());
                self.dma_high = 0;
                self.dma_transfer(address, backend, memory);
            }
            (0x514..=0x51b, _) => return self.offer_dma,
            _ => return false,
        }
        true
    }

    /// An IN from a fw_cfg port (`size` bytes); `None` for ports that are not the device's.
    pub fn io_read(&mut self, port: u16, size: u8, backend: &mut impl FwCfgBackend) -> Option<u32> {
        match port {
            FW_CFG_PORT_SELECTOR | FW_CFG_PORT_DATA if size == 1 => {
                let mut byte = [0u8];
                self.produce(&mut byte, backend);
                Some(u32::from(byte[0]))
            }
            FW_CFG_PORT_SELECTOR | FW_CFG_PORT_DATA => Some(0),
            0x514..=0x51b if self.offer_dma => {
                let offset = u32::from(port - FW_CFG_PORT_DMA);
                let size = u32::from(size.clamp(1, 4)).min(8 - offset);
                let shift = (8 - offset - size) * 8;
                let value = (DMA_SIGNATURE >> shift) as u32 & (u32::MAX >> (32 - size * 8));
                // A big-endian device: the first signature byte comes first in memory.
                Some(value.swap_bytes() >> (32 - size * 8))
            }
            _ => None,
        }
    }

    fn select(&mut self, key: u16, backend: &mut impl FwCfgBackend) {
        self.offset = 0;
        self.item = match key {
            FW_CFG_ID => Item::Value(1 | u32::from(self.offer_dma) << 1),
            FW_CFG_KERNEL_SIZE => Item::Value(self.kernel.size),
            FW_CFG_KERNEL_DATA => {
                backend.select(self.kernel.key);
                Item::Kernel
            }
            FW_CFG_CMDLINE_SIZE => {
                Item::Value(self.cmdline.map_or(0, |c| c.size).saturating_add(1))
            }
            FW_CFG_CMDLINE_DATA => {
                if let Some(cmdline) = self.cmdline {
                    backend.select(cmdline.key);
                }
                Item::Cmdline
            }
            FW_CFG_KERNEL_ADDR
            | FW_CFG_KERNEL_CMDLINE
            | FW_CFG_INITRD_ADDR
            | FW_CFG_INITRD_SIZE
            | FW_CFG_KERNEL_ENTRY
            | FW_CFG_CMDLINE_ADDR
            | FW_CFG_SETUP_ADDR
            | FW_CFG_SETUP_SIZE => Item::Value(0),
            FW_CFG_INITRD_DATA | FW_CFG_SETUP_DATA => Item::Empty,
            FW_CFG_FILE_DIR => {
                backend.select(FW_CFG_FILE_DIR);
                let mut count = [0u8; 4];
                backend.read(&mut count);
                self.dir = DirStream {
                    real_left: self.real_files,
                    entry: [0; DIR_ENTRY_LEN],
                    entry_pos: DIR_ENTRY_LEN,
                };
                Item::Directory
            }
            _ => {
                backend.select(key);
                Item::Passthrough(key)
            }
        };
    }

    /// Fills `out` with the next bytes of the selected item.
    fn produce(&mut self, out: &mut [u8], backend: &mut impl FwCfgBackend) {
        match self.item {
            Item::Passthrough(_) | Item::Kernel => backend.read(out),
            Item::Value(value) => {
                for (i, byte) in out.iter_mut().enumerate() {
                    let at = self.offset + i as u64;
                    *byte = value.to_le_bytes().get(at as usize).copied().unwrap_or(0);
                }
            }
            Item::Empty => out.fill(0),
            Item::Cmdline => {
                let size = u64::from(self.cmdline.map_or(0, |c| c.size));
                let from_file = size.saturating_sub(self.offset).min(out.len() as u64) as usize;
                let (file_part, rest) = out.split_at_mut(from_file);
                if self.cmdline.is_some() {
                    backend.read(file_part);
                }
                // The terminating NUL and anything past it.
                rest.fill(0);
            }
            Item::Directory => {
                for byte in out.iter_mut() {
                    *byte = self.directory_byte(backend);
                }
                return;
            }
        }
        self.offset = self.offset.saturating_add(out.len() as u64);
    }

    fn directory_byte(&mut self, backend: &mut impl FwCfgBackend) -> u8 {
        let at = self.offset;
        self.offset = self.offset.saturating_add(1);
        if at < 4 {
            let visible = self.real_files - self.hidden_files;
            return visible.to_be_bytes()[at as usize];
        }
        if self.dir.entry_pos == DIR_ENTRY_LEN {
            loop {
                if self.dir.real_left == 0 {
                    return 0;
                }
                self.dir.real_left -= 1;
                backend.read(&mut self.dir.entry);
                let hidden = entry_name_is(&self.dir.entry, self.files.kernel)
                    || self
                        .files
                        .cmdline
                        .is_some_and(|c| entry_name_is(&self.dir.entry, c))
                    || HIDDEN_MACHINE_FILES
                        .iter()
                        .any(|h| entry_name_is(&self.dir.entry, h));
                if !hidden {
                    break;
                }
            }
            self.dir.entry_pos = 0;
        }
        let byte = self.dir.entry[self.dir.entry_pos];
        self.dir.entry_pos += 1;
        byte
    }

    fn dma_transfer(
        &mut self,
        address: u64,
        backend: &mut impl FwCfgBackend,
        memory: &mut impl TdMemory,
    ) {
        let mut descriptor = [0u8; 16];
        if memory.read(address, &mut descriptor).is_err() {
            let _ = memory.write(address, &DMA_CTL_ERROR.to_be_bytes());
            return;
        }
        let control =
            u32::from_be_bytes([descriptor[0], descriptor[1], descriptor[2], descriptor[3]]);
        let mut length =
            u32::from_be_bytes([descriptor[4], descriptor[5], descriptor[6], descriptor[7]]);
        let mut target = u64::from_be_bytes([
            descriptor[8],
            descriptor[9],
            descriptor[10],
            descriptor[11],
            descriptor[12],
            descriptor[13],
            descriptor[14],
            descriptor[15],
        ]);
        if control & DMA_CTL_SELECT != 0 {
            self.select((control >> 16) as u16, backend);
        }
        let operation = if control & DMA_CTL_READ != 0 {
            DMA_CTL_READ
        } else if control & DMA_CTL_WRITE != 0 {
            DMA_CTL_WRITE
        } else if control & DMA_CTL_SKIP != 0 {
            DMA_CTL_SKIP
        } else {
            length = 0;
            0
        };
        let mut status = 0;
        let mut chunk = [0u8; DMA_CHUNK];
        while length > 0 {
            let n = (length as usize).min(DMA_CHUNK);
            let buf = &mut chunk[..n];
            let ok = match operation {
                DMA_CTL_READ => {
                    self.produce(buf, backend);
                    memory.write(target, buf).is_ok()
                }
                DMA_CTL_WRITE => memory.read(target, buf).is_ok() && self.consume(buf, backend),
                _ => {
                    self.produce(buf, backend);
                    true
                }
            };
            if !ok {
                status = DMA_CTL_ERROR;
                break;
            }
            length -= n as u32;
            target = target.wrapping_add(n as u64);
        }
        let _ = memory.write(address, &status.to_be_bytes());
    }

    /// A DMA write into the selected item: only real-device items, if the back end writes.
    fn consume(&mut self, data: &[u8], backend: &mut impl FwCfgBackend) -> bool {
        match self.item {
            Item::Passthrough(_) => {
                self.offset = self.offset.saturating_add(data.len() as u64);
                backend.write(data)
            }
            _ => false,
        }
    }
}

fn entry_name_is(entry: &[u8; DIR_ENTRY_LEN], name: &str) -> bool {
    let field = &entry[NAME_OFFSET..];
    let len = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..len] == name.as_bytes()
}

#[cfg(test)]
mod tests;
