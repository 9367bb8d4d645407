//! Bounds-checked little-endian field access for untrusted firmware tables (memory maps, HOBs,
//! ACPI): every read says `None` instead of panicking when the field is not inside the bytes.

pub(crate) fn u16_at(bytes: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_le_bytes(array_at(bytes, offset)?))
}

pub(crate) fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(array_at(bytes, offset)?))
}

pub(crate) fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_le_bytes(array_at(bytes, offset)?))
}

pub(crate) fn array_at<const L: usize>(bytes: &[u8], offset: usize) -> Option<[u8; L]> {
    bytes.get(offset..offset.checked_add(L)?)?.try_into().ok()
}
