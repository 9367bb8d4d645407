use std::vec::Vec;

use super::*;
use crate::td_hob::TdRam;

/// The real device: 128 bytes, with a log of what reached it.
struct FakeRtc {
    bytes: [u8; 128],
    writes: Vec<(u8, u8)>,
}

impl CmosBackend for FakeRtc {
    fn read(&mut self, index: u8) -> u8 {
        self.bytes[usize::from(index)]
    }
    fn write(&mut self, index: u8, value: u8) {
        self.writes.push((index, value));
        self.bytes[usize::from(index)] = value;
    }
}

fn rtc() -> FakeRtc {
    FakeRtc {
        bytes: [0xaa; 128],
        writes: Vec::new(),
    }
}

/// TDVF's reading of the registers (PlatformInitLib `PlatformGetSystemMemorySizeBelow4gb` and
/// `PlatformGetSystemMemorySizeAbove4gb`).
fn tdvf_view(layout: &RamLayout) -> (u64, u64) {
    let b = |i| u64::from(layout.cmos_byte(i).unwrap());
    let below = ((b(0x35) << 8 | b(0x34)) << 16) + 16 * MIB;
    let above = (b(0x5d) << 16 | b(0x5c) << 8 | b(0x5b)) << 16;
    (below, above)
}

#[test]
fn q35_splits_ram_at_2_75_or_2_gib() {
    assert_eq!(
        RamLayout::q35(GIB),
        RamLayout {
            below_4g: GIB,
            above_4g: 0
        }
    );
    assert_eq!(
        RamLayout::q35(0xafff_f000),
        RamLayout {
            below_4g: 0xafff_f000,
            above_4g: 0
        }
    );
    assert_eq!(
        RamLayout::q35(0xb000_0000),
        RamLayout {
            below_4g: 2 * GIB,
            above_4g: 0x3000_0000
        }
    );
    assert_eq!(
        RamLayout::q35(8 * GIB),
        RamLayout {
            below_4g: 2 * GIB,
            above_4g: 6 * GIB
        }
    );
}

#[test]
fn cmos_bytes_match_qemus_pc_cmos_init() {
    let one = RamLayout::q35(GIB);
    let bytes: Vec<u8> = [
        0x15, 0x16, 0x17, 0x18, 0x30, 0x31, 0x34, 0x35, 0x5b, 0x5c, 0x5d,
    ]
    .iter()
    .map(|&i| one.cmos_byte(i).unwrap())
    .collect();
    // 640 KiB base; extended capped at 65535 KiB; (1 GiB - 16 MiB) / 64 KiB = 0x3F00; none above.
    assert_eq!(
        bytes,
        [0x80, 0x02, 0xff, 0xff, 0xff, 0xff, 0x00, 0x3f, 0, 0, 0]
    );
    let small = RamLayout::q35(8 * MIB);
    assert_eq!(
        (small.cmos_byte(0x17), small.cmos_byte(0x18)),
        (Some(0x00), Some(0x1c)),
        "7168 KiB"
    );
    assert_eq!(small.cmos_byte(0x34), Some(0));
    let big = RamLayout::q35(1 << 40);
    assert_eq!(
        big.cmos_byte(0x5d),
        Some(0xff),
        "(1 TiB - 2 GiB) / 64 KiB = 0xFF8000"
    );
    assert_eq!(big.cmos_byte(0x0f), None);
}

#[test]
fn tdvf_reads_back_the_layout() {
    for ram in [32 * MIB, GIB, 0xb000_0000, 3 * GIB, 16 * GIB + 64 * KIB] {
        let layout = RamLayout::q35(ram);
        assert_eq!(
            tdvf_view(&layout),
            (layout.below_4g, layout.above_4g),
            "{ram:#x}"
        );
    }
}

#[test]
fn e820_entries_give_the_td_hob_its_ram() {
    let layout = RamLayout::q35(3 * GIB);
    let entries: Vec<_> = layout.e820_ram().collect();
    assert_eq!(entries, [(0, 2 * GIB), (4 * GIB, GIB)]);
    let ram = TdRam::<4>::from_e820_ram(layout.e820_ram()).unwrap();
    assert_eq!(ram.entries().iter().map(|e| e.length).sum::<u64>(), 3 * GIB);
    assert_eq!(RamLayout::q35(GIB).e820_ram().count(), 1);
}

#[test]
fn the_front_overrides_memory_registers_and_passes_the_rest() {
    let layout = RamLayout::q35(GIB);
    let mut cmos = TdCmos::new(layout);
    let mut real = rtc();
    cmos.write_port(CMOS_INDEX_PORT, 0x80 | 0x35, &mut real);
    assert_eq!(
        cmos.read_port(CMOS_DATA_PORT, &mut real),
        0x3f,
        "NMI bit ignored in the index"
    );
    cmos.write_port(CMOS_DATA_PORT, 0x12, &mut real);
    assert_eq!(
        cmos.read_port(CMOS_DATA_PORT, &mut real),
        0x3f,
        "TD writes to it are dropped"
    );
    assert!(real.writes.is_empty());
    cmos.write_port(CMOS_INDEX_PORT, 0x0f, &mut real);
    assert_eq!(
        cmos.read_port(CMOS_DATA_PORT, &mut real),
        0xaa,
        "shutdown status from the RTC"
    );
    cmos.write_port(CMOS_DATA_PORT, 0x05, &mut real);
    assert_eq!(real.writes, [(0x0f, 0x05)]);
    assert_eq!(cmos.read_port(CMOS_INDEX_PORT, &mut real), 0xff);
    assert_eq!(cmos.read_port(0x72, &mut real), 0xff);
}
