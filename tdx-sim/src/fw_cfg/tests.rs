use std::collections::BTreeMap;
use std::vec;
use std::vec::Vec;

use super::*;

/// QEMU's fw_cfg as a table of items, with the IO interface's select-and-stream semantics.
struct FakeDevice {
    items: BTreeMap<u16, Vec<u8>>,
    selected: u16,
    offset: usize,
    writable: bool,
    written: Vec<u8>,
}

impl FakeDevice {
    /// Items as the outer QEMU has them: its own kernel (tdx-sim), two ordinary files and the
    /// TD's kernel and command line as opt/ files.
    fn new() -> Self {
        let mut items = BTreeMap::new();
        items.insert(FW_CFG_SIGNATURE, b"QEMU".to_vec());
        items.insert(FW_CFG_ID, 3u32.to_le_bytes().to_vec());
        items.insert(FW_CFG_KERNEL_SIZE, 4u32.to_le_bytes().to_vec());
        items.insert(FW_CFG_KERNEL_DATA, b"HOST".to_vec());
        items.insert(FW_CFG_SETUP_SIZE, 512u32.to_le_bytes().to_vec());
        let files: [(&str, Vec<u8>); 4] = [
            ("etc/acpi/tables", vec![0xa1; 300]),
            (
                "opt/tdx-sim/kernel",
                (0..1500u32).map(|i| (i * 13) as u8).collect(),
            ),
            ("etc/e820", vec![0xe8; 40]),
            ("opt/tdx-sim/cmdline", b"console=ttyS0".to_vec()),
        ];
        let mut dir = (files.len() as u32).to_be_bytes().to_vec();
        for (i, (name, data)) in files.iter().enumerate() {
            let key = 0x20 + i as u16;
            let mut entry = [0u8; 64];
            entry[..4].copy_from_slice(&(data.len() as u32).to_be_bytes());
            entry[4..6].copy_from_slice(&key.to_be_bytes());
            entry[8..8 + name.len()].copy_from_slice(name.as_bytes());
            dir.extend_from_slice(&entry);
            items.insert(key, data.clone());
        }
        items.insert(FW_CFG_FILE_DIR, dir);
        FakeDevice {
            items,
            selected: 0,
            offset: 0,
            writable: false,
            written: Vec::new(),
        }
    }

    fn item(&self, key: u16) -> Vec<u8> {
        self.items[&key].clone()
    }
}

impl FwCfgBackend for FakeDevice {
    fn select(&mut self, key: u16) {
        self.selected = key;
        self.offset = 0;
    }
    fn read(&mut self, buf: &mut [u8]) {
        let item = self.items.get(&self.selected).cloned().unwrap_or_default();
        for byte in buf {
            *byte = item.get(self.offset).copied().unwrap_or(0);
            self.offset += 1;
        }
    }
    fn write(&mut self, data: &[u8]) -> bool {
        self.written.extend_from_slice(data);
        self.writable
    }
}

/// TD memory: a shared window at 0x8000_0000_0000 and nothing else.
struct SharedWindow {
    base: u64,
    bytes: Vec<u8>,
}

impl SharedWindow {
    fn new() -> Self {
        SharedWindow {
            base: 1 << 47,
            bytes: vec![0x55; 0x4000],
        }
    }
    fn range(&self, gpa: u64, len: usize) -> Result<core::ops::Range<usize>, BadGpa> {
        let start = gpa.checked_sub(self.base).ok_or(BadGpa(gpa))? as usize;
        let end = start.checked_add(len).ok_or(BadGpa(gpa))?;
        if end > self.bytes.len() {
            return Err(BadGpa(gpa));
        }
        Ok(start..end)
    }
    fn descriptor(&mut self, at: u64, control: u32, length: u32, target: u64) {
        let r = self.range(at, 16).unwrap();
        self.bytes[r.start..r.start + 4].copy_from_slice(&control.to_be_bytes());
        self.bytes[r.start + 4..r.start + 8].copy_from_slice(&length.to_be_bytes());
        self.bytes[r.start + 8..r.end].copy_from_slice(&target.to_be_bytes());
    }
    fn control(&self, at: u64) -> u32 {
        let r = self.range(at, 4).unwrap();
        u32::from_be_bytes(self.bytes[r].try_into().unwrap())
    }
    fn at(&self, gpa: u64, len: usize) -> &[u8] {
        &self.bytes[self.range(gpa, len).unwrap()]
    }
}

impl TdMemory for SharedWindow {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), BadGpa> {
        let r = self.range(gpa, buf.len())?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), BadGpa> {
        let r = self.range(gpa, data.len())?;
        self.bytes[r].copy_from_slice(data);
        Ok(())
    }
}

const FILES: KernelFiles<'static> = KernelFiles {
    kernel: "opt/tdx-sim/kernel",
    cmdline: Some("opt/tdx-sim/cmdline"),
};

fn front(device: &mut FakeDevice, dma: bool) -> TdFwCfg<'static> {
    TdFwCfg::new(device, FILES, dma).unwrap()
}

/// Reads `len` bytes of `key` through the IO interface, as TDVF without DMA does.
fn io_item(fw: &mut TdFwCfg, device: &mut FakeDevice, key: u16, len: usize) -> Vec<u8> {
    let mut memory = SharedWindow::new();
    assert!(fw.io_write(FW_CFG_PORT_SELECTOR, 2, u32::from(key), device, &mut memory));
    (0..len)
        .map(|_| fw.io_read(FW_CFG_PORT_DATA, 1, device).unwrap() as u8)
        .collect()
}

fn u32_item(fw: &mut TdFwCfg, device: &mut FakeDevice, key: u16) -> u32 {
    u32::from_le_bytes(io_item(fw, device, key, 4).try_into().unwrap())
}

#[test]
fn kernel_items_come_from_the_opt_files() {
    let mut device = FakeDevice::new();
    let mut fw = front(&mut device, false);
    let kernel = device.item(0x21);
    assert_eq!(u32_item(&mut fw, &mut device, FW_CFG_KERNEL_SIZE), 1500);
    let mut data = io_item(&mut fw, &mut device, FW_CFG_KERNEL_DATA, 1504);
    assert_eq!(data.split_off(1500), [0; 4], "zero past the end");
    assert_eq!(data, kernel);
    assert_eq!(
        u32_item(&mut fw, &mut device, FW_CFG_SETUP_SIZE),
        0,
        "not the host's 512"
    );
    assert_eq!(io_item(&mut fw, &mut device, FW_CFG_SETUP_DATA, 8), [0; 8]);
    assert_eq!(u32_item(&mut fw, &mut device, FW_CFG_INITRD_SIZE), 0);
    assert_eq!(
        u32_item(&mut fw, &mut device, FW_CFG_CMDLINE_SIZE),
        14,
        "with its NUL"
    );
    assert_eq!(
        io_item(&mut fw, &mut device, FW_CFG_CMDLINE_DATA, 15),
        b"console=ttyS0\0\0"
    );
    // Other items pass through.
    assert_eq!(io_item(&mut fw, &mut device, FW_CFG_SIGNATURE, 4), b"QEMU");
    assert_eq!(io_item(&mut fw, &mut device, 0x22, 40), device.item(0x22));
}

#[test]
fn without_a_cmdline_file_the_command_line_is_empty() {
    let mut device = FakeDevice::new();
    let files = KernelFiles {
        cmdline: None,
        ..FILES
    };
    let mut fw = TdFwCfg::new(&mut device, files, false).unwrap();
    assert_eq!(u32_item(&mut fw, &mut device, FW_CFG_CMDLINE_SIZE), 1);
    assert_eq!(
        io_item(&mut fw, &mut device, FW_CFG_CMDLINE_DATA, 2),
        [0, 0]
    );
}

/// The kernel files are the TD's, and `etc/e820` describes the machine tdx-sim runs on, not
/// the TD: TDVF must size RAM from the TD's CMOS instead.
#[test]
fn the_directory_hides_the_kernel_files_and_the_machines_e820() {
    let mut device = FakeDevice::new();
    let mut fw = front(&mut device, false);
    let dir = io_item(&mut fw, &mut device, FW_CFG_FILE_DIR, 4 + 64 + 8);
    assert_eq!(dir[..4], 1u32.to_be_bytes());
    let real = device.item(FW_CFG_FILE_DIR);
    assert_eq!(dir[4..68], real[4..68], "etc/acpi/tables");
    assert!(
        real[4 + 128..4 + 192].windows(8).any(|w| w == b"etc/e820"),
        "the fake device lists etc/e820"
    );
    assert_eq!(dir[68..], [0; 8]);
    // Selecting it again starts over.
    assert_eq!(
        io_item(&mut fw, &mut device, FW_CFG_FILE_DIR, 12)[..],
        dir[..12]
    );
}

#[test]
fn setup_fails_without_the_files() {
    let mut device = FakeDevice::new();
    let missing = KernelFiles {
        kernel: "opt/none",
        cmdline: None,
    };
    assert_eq!(
        TdFwCfg::new(&mut device, missing, false).unwrap_err(),
        FwCfgError::MissingFile
    );
    let no_cmdline = KernelFiles {
        cmdline: Some("opt/none"),
        ..FILES
    };
    assert_eq!(
        TdFwCfg::new(&mut device, no_cmdline, false).unwrap_err(),
        FwCfgError::MissingFile
    );
    let long = KernelFiles {
        kernel: &"x".repeat(56),
        cmdline: None,
    };
    assert_eq!(
        TdFwCfg::new(&mut device, long, false).unwrap_err(),
        FwCfgError::NameTooLong
    );
    // A prefix of a real name is not that name.
    let prefix = KernelFiles {
        kernel: "opt/tdx-sim/kern",
        cmdline: None,
    };
    assert_eq!(
        TdFwCfg::new(&mut device, prefix, false).unwrap_err(),
        FwCfgError::MissingFile
    );
    let mut huge = FakeDevice::new();
    huge.items.get_mut(&FW_CFG_FILE_DIR).unwrap()[..4].copy_from_slice(&0x10_0000u32.to_be_bytes());
    assert_eq!(
        TdFwCfg::new(&mut huge, FILES, false).unwrap_err(),
        FwCfgError::DirectoryTooLarge(0x10_0000)
    );
}

#[test]
fn dma_is_offered_only_when_asked_and_signed() {
    let mut device = FakeDevice::new();
    let mut plain = front(&mut device, false);
    assert_eq!(u32_item(&mut plain, &mut device, FW_CFG_ID), 1);
    assert_eq!(plain.io_read(0x514, 4, &mut device), None);
    let mut fw = front(&mut device, true);
    assert_eq!(u32_item(&mut fw, &mut device, FW_CFG_ID), 3);
    let high = fw.io_read(0x514, 4, &mut device).unwrap();
    let low = fw.io_read(0x518, 4, &mut device).unwrap();
    let mut bytes = high.to_le_bytes().to_vec();
    bytes.extend_from_slice(&low.to_le_bytes());
    assert_eq!(
        bytes, b"QEMU CFG",
        "in memory order, as a 32-bit IN stores it"
    );
    assert_eq!(fw.io_read(0x514, 1, &mut device), Some(u32::from(b'Q')));
    assert_eq!(fw.io_read(0x600, 1, &mut device), None);
}

/// Starts a DMA transfer of the descriptor at `descriptor` as TDVF does (two byte-swapped
/// 32-bit OUTs).
fn kick(fw: &mut TdFwCfg, device: &mut FakeDevice, memory: &mut SharedWindow, descriptor: u64) {
    assert!(fw.io_write(
        0x514,
        4,
        ((descriptor >> 32) as u32).swap_bytes(),
        device,
        memory
    ));
    assert!(fw.io_write(0x518, 4, (descriptor as u32).swap_bytes(), device, memory));
}

#[test]
fn dma_reads_land_in_td_memory_through_the_accessor() {
    let mut device = FakeDevice::new();
    let mut fw = front(&mut device, true);
    let mut memory = SharedWindow::new();
    let base = memory.base;
    let control = u32::from(FW_CFG_KERNEL_DATA) << 16 | DMA_CTL_SELECT | DMA_CTL_READ;
    memory.descriptor(base, control, 1000, base + 0x100);
    kick(&mut fw, &mut device, &mut memory, base);
    assert_eq!(memory.control(base), 0, "completed");
    assert_eq!(memory.at(base + 0x100, 1000), &device.item(0x21)[..1000]);
    // Skip 200, then read the rest and beyond: zeros past the end.
    memory.descriptor(base, DMA_CTL_SKIP, 200, 0);
    kick(&mut fw, &mut device, &mut memory, base);
    memory.descriptor(base, DMA_CTL_READ, 310, base + 0x1000);
    kick(&mut fw, &mut device, &mut memory, base);
    assert_eq!(memory.control(base), 0);
    assert_eq!(memory.at(base + 0x1000, 300), &device.item(0x21)[1200..]);
    assert_eq!(memory.at(base + 0x1000 + 300, 10), [0; 10]);
    // The DMA address latch was reset: a lone low write uses a zero high half.
    assert!(fw.io_write(
        0x518,
        4,
        (base as u32).swap_bytes(),
        &mut device,
        &mut memory
    ));
}

#[test]
fn dma_errors_are_reported_in_the_descriptor() {
    let mut device = FakeDevice::new();
    let mut fw = front(&mut device, true);
    let mut memory = SharedWindow::new();
    let base = memory.base;
    // A target outside the TD memory the accessor allows (a private or host address).
    let control = u32::from(FW_CFG_KERNEL_DATA) << 16 | DMA_CTL_SELECT | DMA_CTL_READ;
    memory.descriptor(base, control, 64, 0x10_0000);
    kick(&mut fw, &mut device, &mut memory, base);
    assert_eq!(memory.control(base), DMA_CTL_ERROR);
    // A target that wraps around the address space.
    memory.descriptor(base, DMA_CTL_READ, 0x1000, u64::MAX - 8);
    kick(&mut fw, &mut device, &mut memory, base);
    assert_eq!(memory.control(base), DMA_CTL_ERROR);
    // A descriptor that cannot be read: nothing to report into, nothing happens.
    kick(&mut fw, &mut device, &mut memory, 0x1234);
    // Writes: refused for the front's own items and by a read-only back end.
    memory.descriptor(
        base,
        u32::from(FW_CFG_KERNEL_DATA) << 16 | DMA_CTL_SELECT | DMA_CTL_WRITE,
        4,
        base + 0x200,
    );
    kick(&mut fw, &mut device, &mut memory, base);
    assert_eq!(memory.control(base), DMA_CTL_ERROR);
    memory.descriptor(
        base,
        0x20 << 16 | DMA_CTL_SELECT | DMA_CTL_WRITE,
        4,
        base + 0x200,
    );
    kick(&mut fw, &mut device, &mut memory, base);
    assert_eq!(memory.control(base), DMA_CTL_ERROR);
    device.writable = true;
    memory.descriptor(base, DMA_CTL_WRITE, 4, base + 0x200);
    kick(&mut fw, &mut device, &mut memory, base);
    assert_eq!(memory.control(base), 0);
    assert_eq!(&device.written[4..], memory.at(base + 0x200, 4));
    // No operation at all completes at once.
    memory.descriptor(base, 0, 0x1000, 0);
    kick(&mut fw, &mut device, &mut memory, base);
    assert_eq!(memory.control(base), 0);
}

proptest::proptest! {
    /// Arbitrary port traffic and descriptors never panic and never touch memory outside the
    /// accessor's window (the accessor would refuse it).
    #[test]
    fn arbitrary_traffic_is_safe(
        ops in proptest::collection::vec(
            (0u16..12, 1u8..5, proptest::prelude::any::<u32>(), proptest::prelude::any::<u32>(), proptest::prelude::any::<u32>()),
            1..40,
        )
    ) {
        let mut device = FakeDevice::new();
        let mut fw = front(&mut device, true);
        let mut memory = SharedWindow::new();
        let base = memory.base;
        for (port, size, a, b, c) in ops {
            let port = 0x510 + port;
            if port == 0x518 {
                memory.descriptor(base, a, b & 0x3fff, base + u64::from(c & 0x3fff));
                kick(&mut fw, &mut device, &mut memory, base);
            } else {
                let _ = fw.io_write(port, size, a, &mut device, &mut memory);
                let _ = fw.io_read(port, size, &mut device);
            }
        }
    }
}
