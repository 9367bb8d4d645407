//! The TD's RAM layout as QEMU's q35 machine has it, and the CMOS RAM-size registers that
//! describe it, in front of the real RTC/CMOS.
//!
//! TDVF's PEI (`OvmfPkg/Library/PlatformInitLib`) sizes RAM below 4 GiB from CMOS 0x34/0x35 and
//! above 4 GiB from 0x5B-0x5D even in a TD, so these must agree with the TD HOB, not with the
//! machine tdx-sim itself runs on. Everything else (clock, status registers) goes to the real
//! device.
//!
//! # What QEMU does
//! - `hw/i386/pc_q35.c`: RAM is split at `lowmem` = 0xB000_0000 (2.75 GiB), or 0x8000_0000
//!   (2 GiB) when the RAM is at least 2.75 GiB, so the part above 4 GiB starts gigabyte-aligned;
//!   RAM past `lowmem` is placed from 4 GiB up.
//! - `hw/i386/e820_memory_layout.c` users (`pc_memory_init`): E820 RAM entries
//!   `[0, below_4g)` and `[4 GiB, 4 GiB + above_4g)`.
//! - `hw/i386/pc.c` `pc_cmos_init`: 0x15/0x16 base memory in KiB (at most 640); 0x17/0x18 and
//!   0x30/0x31 memory above 1 MiB in KiB, capped at 65535; 0x34/0x35 memory above 16 MiB in
//!   64 KiB units, capped at 65535 (all from the RAM below 4 GiB); 0x5B/0x5C/0x5D memory above
//!   4 GiB in 64 KiB units; all little-endian.

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// The CMOS index port.
pub const CMOS_INDEX_PORT: u16 = 0x70;
/// The CMOS data port.
pub const CMOS_DATA_PORT: u16 = 0x71;

/// RAM below and above 4 GiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamLayout {
    /// Bytes of RAM from address 0.
    pub below_4g: u64,
    /// Bytes of RAM from 4 GiB.
    pub above_4g: u64,
}

impl RamLayout {
    /// The q35 split of `ram_size` bytes (QEMU `pc_q35_init` without `max-ram-below-4g`).
    pub const fn q35(ram_size: u64) -> Self {
        let lowmem = if ram_size >= 0xb000_0000 {
            0x8000_0000
        } else {
            0xb000_0000
        };
        if ram_size >= lowmem {
            RamLayout {
                below_4g: lowmem,
                above_4g: ram_size - lowmem,
            }
        } else {
            RamLayout {
                below_4g: ram_size,
                above_4g: 0,
            }
        }
    }

    /// The E820 RAM entries `(start, length)` QEMU reports for this layout (the second is
    /// absent without RAM above 4 GiB).
    pub fn e820_ram(&self) -> impl Iterator<Item = (u64, u64)> {
        let low = (self.below_4g != 0).then_some((0, self.below_4g));
        let high = (self.above_4g != 0).then_some((4 * GIB, self.above_4g));
        low.into_iter().chain(high)
    }

    /// The CMOS byte QEMU stores at `index`, for the memory-size registers; `None` for others.
    pub fn cmos_byte(&self, index: u8) -> Option<u8> {
        let below = self.below_4g;
        let base_kib = (below / KIB).min(640);
        let extended_kib = (below.saturating_sub(MIB) / KIB).min(0xffff);
        let above_16m = (below.saturating_sub(16 * MIB) / (64 * KIB)).min(0xffff);
        let above_4g = self.above_4g / (64 * KIB);
        let byte = |value: u64, shift: u32| (value >> shift) as u8;
        Some(match index {
            0x15 => byte(base_kib, 0),
            0x16 => byte(base_kib, 8),
            0x17 | 0x30 => byte(extended_kib, 0),
            0x18 | 0x31 => byte(extended_kib, 8),
            0x34 => byte(above_16m, 0),
            0x35 => byte(above_16m, 8),
            0x5b => byte(above_4g, 0),
            0x5c => byte(above_4g, 8),
            0x5d => byte(above_4g, 16),
            _ => return None,
        })
    }
}

/// The machine's real RTC/CMOS, reached by index.
pub trait CmosBackend {
    /// Reads CMOS byte `index` (0..=0x7F).
    fn read(&mut self, index: u8) -> u8;
    /// Writes CMOS byte `index` (0..=0x7F).
    fn write(&mut self, index: u8, value: u8);
}

/// The TD's CMOS: the memory-size registers from a [`RamLayout`], everything else from the
/// real device.
#[derive(Clone, Copy, Debug)]
pub struct TdCmos {
    layout: RamLayout,
    index: u8,
}

impl TdCmos {
    /// A CMOS describing `layout`.
    pub const fn new(layout: RamLayout) -> Self {
        TdCmos { layout, index: 0 }
    }

    /// An OUT to port 0x70 or 0x71; other ports are ignored. Bit 7 of the index (NMI mask)
    /// is not kept, as in QEMU's 128-byte RTC.
    pub fn write_port(&mut self, port: u16, value: u8, backend: &mut impl CmosBackend) {
        match port {
            CMOS_INDEX_PORT => self.index = value & 0x7f,
            CMOS_DATA_PORT if self.layout.cmos_byte(self.index).is_none() => {
                backend.write(self.index, value)
            }
            // The memory size is the VMM's to say: TD writes to it are dropped.
            _ => {}
        }
    }

    /// An IN from port 0x70 or 0x71 (0xFF from other ports and from the index port, which is
    /// write-only).
    pub fn read_port(&mut self, port: u16, backend: &mut impl CmosBackend) -> u8 {
        match port {
            CMOS_DATA_PORT => self
                .layout
                .cmos_byte(self.index)
                .unwrap_or_else(|| backend.read(self.index)),
            _ => 0xff,
        }
    }
}

#[cfg(test)]
mod tests;
