//! Building the lazy bitmap from a sanitized memory map and from Linux's EFI table.

use std::sync::atomic::AtomicU64;
use tdx_boot::accept::UnacceptedBitmap;
use tdx_boot::e820::{self, MemoryMap, RegionKind};
use tdx_boot::model::{ModelConfig, PageState, TdxModule};

mod common;

const K4: u64 = 0x1000;
const M2: u64 = 0x20_0000;

fn storage(words: usize) -> Vec<AtomicU64> {
    (0..words).map(|_| AtomicU64::new(0)).collect()
}

fn map() -> MemoryMap<16> {
    let mut map = MemoryMap::new();
    map.insert(0, 512 << 20, RegionKind::Usable).unwrap();
    // Unaligned at both ends, with a reserved hole.
    map.insert(512 << 20, (1 << 30) + 3 * K4, RegionKind::Unaccepted)
        .unwrap();
    map.insert((1 << 30) + 3 * K4, (1 << 30) + M2, RegionKind::Reserved)
        .unwrap();
    map.insert((1 << 30) + 2 * M2 + K4, 2 << 30, RegionKind::Unaccepted)
        .unwrap();
    map
}

fn model(map: &MemoryMap<16>) -> TdxModule {
    let tdx = TdxModule::new(ModelConfig::default());
    for r in map.regions() {
        match r.kind {
            RegionKind::Usable => tdx.add_memory(r.start, r.end, PageState::Private),
            RegionKind::Unaccepted => tdx.add_memory(r.start, r.end, PageState::Unaccepted),
            _ => {}
        }
    }
    tdx
}

#[test]
fn from_a_memory_map_and_from_the_efi_table_agree() {
    let map = map();
    let words_needed = UnacceptedBitmap::words_needed(0, 2 << 30, M2);

    let tdx = model(&map);
    let mut words = storage(words_needed);
    // SAFETY: the model's memory, which the firmware (the test) added unaccepted and nothing uses.
    let from_map =
        unsafe { UnacceptedBitmap::from_memory_map(&tdx.vcpu(0), &mut words, 0, M2, &map) }
            .unwrap();
    // The partial units at the edges were accepted at once; the reserved hole was not touched.
    assert_eq!(tdx.page_state((1 << 30) + 2 * K4), PageState::Private);
    assert_eq!(tdx.page_state((1 << 30) + 2 * M2 + K4), PageState::Private);
    assert_eq!(tdx.page_state((1 << 30) + 4 * K4), PageState::Absent);
    let expected = (512 << 20) / M2 + (1 << 30) / M2 - 3;
    assert_eq!(from_map.unaccepted_bytes(), expected * M2);

    // The same map through Linux's table: the EFI stub's side encodes it, the kernel's parses.
    let tdx2 = model(&map);
    let mut table = vec![0u8; e820::unaccepted_table_len(&map, M2 as u32).unwrap()];
    let mut eager = Vec::new();
    e820::encode_unaccepted_table(&map, M2 as u32, &mut table, |r| eager.push(r)).unwrap();
    for r in &eager {
        // SAFETY: the model's memory, which the firmware (the test) added unaccepted and nothing uses.
        unsafe { tdx_boot::accept::accept_range(&tdx2.vcpu(0), r.start, r.end) }.unwrap();
    }
    let parsed = e820::UnacceptedBitmap::parse(&table).unwrap();
    let mut words2 = storage(words_needed);
    // SAFETY: the model's memory, which the firmware (the test) added unaccepted and nothing uses.
    let from_table =
        unsafe { UnacceptedBitmap::from_efi_table(&tdx2.vcpu(0), &mut words2, &parsed) }.unwrap();
    assert_eq!(from_table.unaccepted_bytes(), from_map.unaccepted_bytes());
    for gpa in (0..(2u64 << 30)).step_by(M2 as usize) {
        assert_eq!(
            from_map.needs_accept(gpa, gpa + K4),
            from_table.needs_accept(gpa, gpa + K4),
            "{gpa:#x}"
        );
    }
    // And lazy acceptance works over it.
    from_table
        .ensure_accepted(&tdx2.vcpu(0), 1 << 30, (1 << 30) + K4)
        .unwrap();
    assert_eq!(tdx2.page_state(1 << 30), PageState::Private);
    assert_eq!(tdx2.accept_stats().already_accepted, 0);
}

/// What `from_efi_table`'s `unsafe` guards against: parsing checks the table's shape, not its
/// truth. A table (left by a previous kernel, say) that marks a unit still holding data makes
/// the bitmap accept that unit on its first use, and a page the host swapped for a pending one
/// there is zeroed under the data.
#[test]
fn an_efi_table_that_marks_memory_in_use_gets_it_zeroed() {
    let tdx = TdxModule::new(ModelConfig::default());
    let data = b"handed-over data";
    let memory = common::live_data_on_a_swapped_page(&tdx, 4 * M2, 2 * M2 + K4, data);
    let mut lying = MemoryMap::<4>::new();
    lying
        .insert(2 * M2, 3 * M2, RegionKind::Unaccepted)
        .unwrap();
    let mut table = vec![0u8; e820::unaccepted_table_len(&lying, M2 as u32).unwrap()];
    e820::encode_unaccepted_table(&lying, M2 as u32, &mut table, |_| {}).unwrap();
    let parsed = e820::UnacceptedBitmap::parse(&table).unwrap();
    let mut words = storage(1);
    // SAFETY: deliberately broken for the demonstration: the table marks memory in use. The
    // model writes only `HostMemory`, which the test reaches through raw pointers.
    let bitmap = unsafe { UnacceptedBitmap::from_efi_table(&tdx.vcpu(0), &mut words, &parsed) };
    let bitmap = bitmap.unwrap();
    assert_eq!(bitmap.unaccepted_bytes(), M2);
    bitmap
        .ensure_accepted(&tdx.vcpu(0), 2 * M2, 2 * M2 + 1)
        .unwrap();
    assert_eq!(
        memory.read((2 * M2 + K4) as usize, 16),
        vec![0; 16],
        "live data zeroed"
    );
}
