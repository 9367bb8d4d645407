//! EFI GUIDs as they appear in memory.

use core::fmt;

/// A GUID in its in-memory (EFI) byte order: the first three fields little-endian, the last
/// eight bytes as written.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// Builds the GUID written `data1-data2-data3-data4[0..2]-data4[2..8]`.
    pub const fn from_fields(data1: u32, data2: u16, data3: u16, data4: [u8; 8]) -> Self {
        let a = data1.to_le_bytes();
        let b = data2.to_le_bytes();
        let c = data3.to_le_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], data4[0], data4[1], data4[2], data4[3],
            data4[4], data4[5], data4[6], data4[7],
        ])
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            u16::from_le_bytes([b[4], b[5]]),
            u16::from_le_bytes([b[6], b[7]]),
            b[8],
            b[9],
            b[10],
            b[11],
            b[12],
            b[13],
            b[14],
            b[15]
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::Guid;
    use std::format;

    #[test]
    fn fields_are_stored_mixed_endian_and_printed_canonically() {
        let guid = Guid::from_fields(
            0xd5d1_de3c,
            0x105c,
            0x44f9,
            [0x9e, 0xa9, 0xbc, 0xef, 0x98, 0x12, 0x00, 0x31],
        );
        assert_eq!(guid.0[..4], [0x3c, 0xde, 0xd1, 0xd5]);
        assert_eq!(guid.0[4..6], [0x5c, 0x10]);
        assert_eq!(format!("{guid}"), "d5d1de3c-105c-44f9-9ea9-bcef98120031");
    }
}
