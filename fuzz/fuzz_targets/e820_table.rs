#![no_main]
//! E820 table reader and writer: arbitrary tables never panic; accepted ones yield a sanitized
//! map that covers every entry with kinds at least as restrictive, and writing the map out and
//! reading it back gives the same map.

use libfuzzer_sys::fuzz_target;
use tdx_boot::e820::{
    E820_ENTRY_SIZE, E820Entry, MemoryMap, UnacceptedAs, e820_kind, read_e820_table,
    write_e820_table,
};
use tdx_boot_fuzz::{assert_covered, assert_sanitized};

fuzz_target!(|data: &[u8]| {
    let mut map = MemoryMap::<48>::new();
    let result = read_e820_table(data, &mut map);
    assert_sanitized(map.regions());
    if result.is_err() {
        return;
    }
    for entry in data
        .chunks_exact(E820_ENTRY_SIZE)
        .filter_map(E820Entry::decode)
    {
        if entry.size != 0 {
            let kind = e820_kind(entry.entry_type);
            assert_covered(map.regions(), entry.addr, entry.addr + entry.size, kind);
        }
    }
    let mut out = [0u8; 48 * E820_ENTRY_SIZE];
    let count = write_e820_table(&map, UnacceptedAs::Reserved, &mut out).expect("fits");
    let mut again = MemoryMap::<48>::new();
    read_e820_table(&out[..count * E820_ENTRY_SIZE], &mut again).expect("own output reads");
    assert_eq!(map, again);
});
