//! The TD's guest-physical memory and the host memory behind it.
//!
//! RAM starts at GPA 0, as on QEMU's q35: below 4 GiB up to `low_end`, and the rest from 4 GiB
//! up. The firmware image occupies the top of the 4 GiB space, where the TDVF metadata puts its
//! sections. Each piece is one block of host memory allocated from the outer firmware, so a GPA
//! turns into a host address by an offset.

/// Where RAM above 4 GiB starts.
pub const HIGH_RAM_START: u64 = 1 << 32;
/// The shared bit of the TD: GPAW 48.
pub const SHARED_BIT: u64 = 1 << 47;
/// The GPAW every TD vCPU is told at reset.
pub const GPAW: u64 = 48;

/// One block of guest memory and its host memory.
#[derive(Clone, Copy, Debug)]
pub struct Block {
    /// First GPA.
    pub gpa: u64,
    /// Bytes.
    pub len: u64,
    /// The host (identity-mapped physical) address of `gpa`.
    pub host: u64,
}

impl Block {
    /// The host address of `gpa`, when the block holds `[gpa, gpa + len)`.
    pub fn host_of(&self, gpa: u64, len: u64) -> Option<u64> {
        let offset = gpa.checked_sub(self.gpa)?;
        (offset.checked_add(len)? <= self.len).then_some(self.host + offset)
    }
}

/// The TD's memory.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// RAM from GPA 0.
    pub low_ram: Block,
    /// RAM from 4 GiB (may be empty).
    pub high_ram: Block,
    /// The firmware image, ending at 4 GiB.
    pub firmware: Block,
}

impl Layout {
    /// The blocks, in GPA order.
    pub fn blocks(&self) -> [Block; 3] {
        [self.low_ram, self.firmware, self.high_ram]
    }

    /// The host address of private `[gpa, gpa + len)`, if one block holds all of it.
    pub fn host_of(&self, gpa: u64, len: u64) -> Option<u64> {
        self.blocks().iter().find_map(|b| b.host_of(gpa, len))
    }

    /// The RAM ranges, as (start, end) GPAs.
    pub fn ram_ranges(&self) -> impl Iterator<Item = (u64, u64)> {
        [self.low_ram, self.high_ram]
            .into_iter()
            .filter(|b| b.len != 0)
            .map(|b| (b.gpa, b.gpa + b.len))
    }

    /// Whether `gpa` (without the shared bit) is RAM.
    pub fn is_ram(&self, gpa: u64) -> bool {
        self.ram_ranges()
            .any(|(start, end)| (start..end).contains(&gpa))
    }
}
