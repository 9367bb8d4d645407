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
        (offset.checked_add(len)? <= self.len).then(|| self.host + offset)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_addresses_only_for_ranges_inside_one_block() {
        let layout = Layout {
            low_ram: Block {
                gpa: 0,
                len: 0x4000_0000,
                host: 0x1_0000_0000,
            },
            high_ram: Block {
                gpa: HIGH_RAM_START,
                len: 0x2000_0000,
                host: 0x2_0000_0000,
            },
            firmware: Block {
                gpa: 0xffe0_0000,
                len: 0x20_0000,
                host: 0x3_0000_0000,
            },
        };
        assert_eq!(layout.host_of(0x1000, 0x1000), Some(0x1_0000_1000));
        assert_eq!(layout.host_of(0x3fff_f000, 0x1000), Some(0x1_3fff_f000));
        assert_eq!(
            layout.host_of(0x3fff_f000, 0x2000),
            None,
            "runs past the block"
        );
        assert_eq!(layout.host_of(0x8000_0000, 1), None, "a hole");
        assert_eq!(layout.host_of(0xffff_fff0, 16), Some(0x3_001f_fff0));
        assert_eq!(layout.host_of(u64::MAX, 2), None, "no overflow");
        let ranges: Vec<_> = layout.ram_ranges().collect();
        assert_eq!(
            ranges,
            vec![
                (0, 0x4000_0000),
                (HIGH_RAM_START, HIGH_RAM_START + 0x2000_0000)
            ]
        );
    }
}
