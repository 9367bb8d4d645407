#![no_main]
//! Unaccepted-memory table: arbitrary tables never panic; the runs are sorted, separated, agree
//! with the point query, mark exactly themselves in an all-usable map, and re-encoding the map
//! gives the same runs.

use libfuzzer_sys::fuzz_target;
use tdx_boot::e820::{
    MemoryMap, RegionKind, UnacceptedBitmap, encode_unaccepted_table, unaccepted_table_extent,
    unaccepted_table_len,
};
use tdx_boot_fuzz::{assert_sanitized, raw_or_framed};

/// A valid header (version 1, power-of-two unit, base from the input), so that half the inputs
/// explore the bitmap instead of the header checks.
fn with_header(selector: u8, rest: &[u8]) -> Vec<u8> {
    let unit = 1u32 << (12 + selector % 20);
    let base_units = u64::from(rest.first().copied().unwrap_or(0));
    let base = if selector & 0x40 != 0 {
        base_units * u64::from(unit)
    } else {
        base_units << 12
    };
    let bitmap = rest.get(1..).unwrap_or(&[]);
    let mut bytes = Vec::with_capacity(24 + bitmap.len());
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&unit.to_le_bytes());
    bytes.extend_from_slice(&base.to_le_bytes());
    bytes.extend_from_slice(&(bitmap.len() as u64).to_le_bytes());
    bytes.extend_from_slice(bitmap);
    bytes
}

fuzz_target!(|data: &[u8]| {
    let Some(data) = raw_or_framed(data, with_header) else {
        return;
    };
    // The pages holding the table, wherever it lies: page-aligned, covering every byte of it.
    let address = data
        .get(8..16)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
    if let Ok(extent) = unaccepted_table_extent(address, &data) {
        let size = u64::from_le_bytes(data[16..24].try_into().unwrap());
        assert!(extent.start % 4096 == 0 && extent.end % 4096 == 0);
        assert!(extent.start <= address && address + 24 + size <= extent.end);
    }
    let Ok(table) = UnacceptedBitmap::parse(&data) else {
        return;
    };
    let covered_end = table.covered_end().expect("validated");
    let mut previous_end = None;
    for range in table.ranges() {
        assert!(range.start < range.end);
        assert!(range.start >= table.phys_base() && range.end <= covered_end);
        if let Some(end) = previous_end {
            assert!(end < range.start, "runs not separated");
        }
        assert!(table.is_unaccepted(range.start) && table.is_unaccepted(range.end - 1));
        if range.end < covered_end {
            assert!(!table.is_unaccepted(range.end));
        }
        previous_end = Some(range.end);
    }

    let mut map = MemoryMap::<256>::new();
    map.insert(0, u64::MAX, RegionKind::Usable)
        .expect("empty map");
    if table.apply_to(&mut map).is_err() {
        return;
    }
    assert_sanitized(map.regions());
    assert!(map.unaccepted_ranges().eq(table.ranges()));

    let unit = table.unit_size() as u32;
    if table.phys_base() % table.unit_size() != 0 {
        return;
    }
    let Ok(len) = unaccepted_table_len(&map, unit) else {
        return;
    };
    if len > 1 << 20 {
        return;
    }
    let mut out = vec![0u8; len];
    let mut eager = 0;
    encode_unaccepted_table(&map, unit, &mut out, |_| eager += 1).expect("sized");
    assert_eq!(eager, 0, "aligned runs need no eager acceptance");
    let again = UnacceptedBitmap::parse(&out).expect("own output parses");
    assert!(again.ranges().eq(table.ranges()));
});
