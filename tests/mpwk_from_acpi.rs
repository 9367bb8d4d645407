//! The `acpi` feature: the same tables read by the `acpi` crate and by tdx-boot.
//!
//! On the tables the QEMU boot gets (QEMU's MADT as dumped from the mini-kernel's boot, rebuilt
//! byte for byte for other vCPU counts as hw/i386/acpi-common.c builds it, plus the wakeup entry
//! TDVF appends in a TD) both crates see the same processors, mailbox and fixed fields. On hostile tables, what makes `acpi` loop, panic or read past an entry is
//! refused by tdx-boot with a typed error.
#![cfg(feature = "acpi")]

#[path = "common/ap_state.rs"]
mod ap_state;

use std::pin::Pin;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use acpi::sdt::madt::{Madt as AcpiMadt, MadtEntry, MpProtectedModeWakeupCommand};
use acpi::{AcpiTables, Handler, PciAddress, PhysicalMapping, RawPhysicalMapping};
use tdx_boot::mpwk::from_acpi::{FromAcpiError, MappedMadt, madt_from_mapping};
use tdx_boot::mpwk::{
    ApBoot, Madt, MadtError, Mailbox, MailboxPage, MpWaker, WakeError, WakeupUnusable,
    install_trampoline,
};

// ---- tables -------------------------------------------------------------------------------

fn fix_checksum(table: &mut [u8], at: usize, range: core::ops::Range<usize>) {
    table[at] = 0;
    let sum = table[range].iter().fold(0u8, |s, b| s.wrapping_add(*b));
    table[at] = 0u8.wrapping_sub(sum);
}

/// A system description table: header (as QEMU fills it) and `body`, length and checksum set.
fn sdt(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(signature);
    t.extend_from_slice(&((36 + body.len()) as u32).to_le_bytes());
    t.push(revision);
    t.push(0);
    t.extend_from_slice(b"BOCHS BXPC    ");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(b"BXPC");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(body);
    let len = t.len();
    fix_checksum(&mut t, 9, 0..len);
    t
}

fn local_apic(uid: u8, apic_id: u8, flags: u32) -> Vec<u8> {
    let mut e = vec![0, 8, uid, apic_id];
    e.extend_from_slice(&flags.to_le_bytes());
    e
}

fn local_x2apic(apic_id: u32, flags: u32, uid: u32) -> Vec<u8> {
    let mut e = vec![9, 16, 0, 0];
    for field in [apic_id, flags, uid] {
        e.extend_from_slice(&field.to_le_bytes());
    }
    e
}

fn io_apic(id: u8, address: u32, gsi_base: u32) -> Vec<u8> {
    let mut e = vec![1, 12, id, 0];
    e.extend_from_slice(&address.to_le_bytes());
    e.extend_from_slice(&gsi_base.to_le_bytes());
    e
}

fn source_override(irq: u8, gsi: u32, flags: u16) -> Vec<u8> {
    let mut e = vec![2, 10, 0, irq];
    e.extend_from_slice(&gsi.to_le_bytes());
    e.extend_from_slice(&flags.to_le_bytes());
    e
}

fn wakeup(version: u16, length: u8, mailbox: u64) -> Vec<u8> {
    let mut e = vec![0x10, length];
    e.extend_from_slice(&version.to_le_bytes());
    e.extend_from_slice(&0u32.to_le_bytes());
    e.extend_from_slice(&mailbox.to_le_bytes());
    e.resize(usize::from(length).max(16), 0);
    e
}

/// The entries QEMU's `acpi_build_madt` emits for q35 with `cpus` vCPUs (APIC IDs 0..cpus):
/// one local APIC per CPU (x2APIC from ID 255 on), the IOAPIC at 0xFEC0_0000, the IRQ0 -> GSI2
/// override and level/active-high overrides for the PCI IRQs 5, 9, 10, 11, the LINT1 NMI.
fn qemu_entries(cpus: u32) -> Vec<u8> {
    let mut e = Vec::new();
    for id in 0..cpus {
        match u8::try_from(id) {
            Ok(small) if small < 255 => e.extend(local_apic(small, small, 1)),
            _ => e.extend(local_x2apic(id, 1, id)),
        }
    }
    e.extend(io_apic(0, 0xfec0_0000, 0));
    e.extend(source_override(0, 2, 0));
    for irq in [5, 9, 10, 11] {
        e.extend(source_override(irq, u32::from(irq), 0xd));
    }
    e.extend([4, 6, 0xff, 0, 0, 1]); // local APIC NMI: all processors, LINT1
    e
}

fn madt(entries: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
    body.extend_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT
    body.extend_from_slice(entries);
    sdt(b"APIC", 1, &body)
}

/// The MADT QEMU 7.2 gave the mini-kernel (`cargo xtask run`: q35, TCG, `-smp 4`, OVMF),
/// dumped from the boot.
const QEMU_Q35_4_VCPUS_MADT: &str = concat!(
    "4150494390000000014b424f4348532042585043202020200100000042585043",
    "010000000000e0fe010000000008000001000000000801010100000000080202",
    "010000000008030301000000010c00000000c0fe00000000020a000002000000",
    "0000020a0005050000000d00020a0009090000000d00020a000a0a0000000d00",
    "020a000b0b0000000d000406ff000001",
);

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

const MAILBOX: u64 = 0x7f8f_e000;

/// The wakeup entries TDVF appends: edk2-stable202311..202505 (version 0, 16 bytes) and
/// edk2-stable202508 on (version 1, 24 bytes, with the reset vector).
const TDVF_WAKEUP_ENTRIES: [(u16, u8); 2] = [(0, 16), (1, 24)];

/// What a TD's kernel gets: QEMU's MADT with TDVF's wakeup entry of `version` and `length`.
fn tdvf_madt(cpus: u32, (version, length): (u16, u8)) -> Vec<u8> {
    let mut entries = qemu_entries(cpus);
    let mut entry = wakeup(version, length, MAILBOX);
    if length >= 24 {
        entry[16..24].copy_from_slice(&(MAILBOX + 0x1000).to_le_bytes());
    }
    entries.extend(entry);
    madt(&entries)
}

/// A TD's MADT from the TDVF releases of 2023-2025.
fn td_madt(cpus: u32) -> Vec<u8> {
    tdvf_madt(cpus, TDVF_WAKEUP_ENTRIES[0])
}

// ---- the acpi crate's side ----------------------------------------------------------------

/// An `acpi::Handler` for tables in host memory: "physical" addresses are host addresses.
#[derive(Clone, Copy)]
struct HostMemory;

impl Handler for HostMemory {
    unsafe fn map_physical_region<T>(&self, address: usize, size: usize) -> RawPhysicalMapping<T> {
        let start = NonNull::new(address as *mut T).expect("tables are at non-null addresses");
        // SAFETY: the tests pass addresses of live buffers of at least `size` bytes.
        unsafe { RawPhysicalMapping::new(address, start, size, size) }
    }
    unsafe fn unmap_physical_region<T>(&self, _region: RawPhysicalMapping<T>) {}
    fn read_u8(&self, _: usize) -> u8 {
        unreachable!("table parsing does no MMIO")
    }
    fn read_u16(&self, _: usize) -> u16 {
        unreachable!()
    }
    fn read_u32(&self, _: usize) -> u32 {
        unreachable!()
    }
    fn read_u64(&self, _: usize) -> u64 {
        unreachable!()
    }
    fn write_u8(&self, _: usize, _: u8) {}
    fn write_u16(&self, _: usize, _: u16) {}
    fn write_u32(&self, _: usize, _: u32) {}
    fn write_u64(&self, _: usize, _: u64) {}
    fn read_io_u8(&self, _: u16) -> u8 {
        unreachable!()
    }
    fn read_io_u16(&self, _: u16) -> u16 {
        unreachable!()
    }
    fn read_io_u32(&self, _: u16) -> u32 {
        unreachable!()
    }
    fn write_io_u8(&self, _: u16, _: u8) {}
    fn write_io_u16(&self, _: u16, _: u16) {}
    fn write_io_u32(&self, _: u16, _: u32) {}
    fn read_pci_u8(&self, _: PciAddress, _: u16) -> u8 {
        unreachable!()
    }
    fn read_pci_u16(&self, _: PciAddress, _: u16) -> u16 {
        unreachable!()
    }
    fn read_pci_u32(&self, _: PciAddress, _: u16) -> u32 {
        unreachable!()
    }
    fn write_pci_u8(&self, _: PciAddress, _: u16, _: u8) {}
    fn write_pci_u16(&self, _: PciAddress, _: u16, _: u16) {}
    fn write_pci_u32(&self, _: PciAddress, _: u16, _: u32) {}
    fn nanos_since_boot(&self) -> u64 {
        0
    }
    fn stall(&self, _: u64) {}
    fn sleep(&self, _: u64) {}
}

/// An RSDP (revision 2) and XSDT pointing at `madt`, kept alive with it.
struct Firmware {
    rsdp: Vec<u8>,
    _xsdt: Vec<u8>,
    _madt: Vec<u8>,
}

impl Firmware {
    fn new(madt: Vec<u8>) -> Self {
        let xsdt = sdt(b"XSDT", 1, &(madt.as_ptr() as u64).to_le_bytes());
        let mut rsdp = Vec::new();
        rsdp.extend_from_slice(b"RSD PTR ");
        rsdp.push(0);
        rsdp.extend_from_slice(b"BOCHS ");
        rsdp.push(2);
        rsdp.extend_from_slice(&0u32.to_le_bytes());
        rsdp.extend_from_slice(&36u32.to_le_bytes());
        rsdp.extend_from_slice(&(xsdt.as_ptr() as u64).to_le_bytes());
        rsdp.extend_from_slice(&[0; 4]);
        fix_checksum(&mut rsdp, 8, 0..20);
        fix_checksum(&mut rsdp, 32, 0..36);
        Firmware {
            rsdp,
            _xsdt: xsdt,
            _madt: madt,
        }
    }

    fn tables(&self) -> AcpiTables<HostMemory> {
        // SAFETY: the RSDP, XSDT and MADT are live buffers owned by `self`.
        unsafe { AcpiTables::from_rsdp(HostMemory, self.rsdp.as_ptr() as usize) }
            .expect("acpi accepts the RSDP")
    }
}

/// `acpi`'s view of a MADT in memory. `bytes` must hold at least the 44-byte fixed part.
fn acpi_view(bytes: &[u8]) -> Pin<&AcpiMadt> {
    assert!(bytes.len() >= size_of::<AcpiMadt>());
    // SAFETY: `AcpiMadt` is packed (alignment 1) and at most `bytes.len()` bytes long; the pin
    // holds because the borrow keeps the bytes where they are.
    unsafe { Pin::new_unchecked(&*bytes.as_ptr().cast::<AcpiMadt>()) }
}

/// What `acpi` reads from a MADT, in the terms tdx-boot uses.
#[derive(Debug, Default, PartialEq, Eq)]
struct View {
    enabled_apic_ids: Vec<u32>,
    wakeups: Vec<(u16, u64)>,
    entry_types: Vec<u8>,
}

fn acpi_reads(madt: Pin<&AcpiMadt>) -> View {
    let mut view = View::default();
    for entry in madt.entries() {
        let (entry_type, processor) = match entry {
            MadtEntry::LocalApic(e) => (0, Some((u32::from(e.apic_id), { e.flags }))),
            MadtEntry::IoApic(_) => (1, None),
            MadtEntry::InterruptSourceOverride(_) => (2, None),
            MadtEntry::NmiSource(_) => (3, None),
            MadtEntry::LocalApicNmi(_) => (4, None),
            MadtEntry::LocalX2Apic(e) => (9, Some(({ e.x2apic_id }, { e.flags }))),
            MadtEntry::MultiprocessorWakeup(e) => {
                view.wakeups
                    .push(({ e.mailbox_version }, { e.mailbox_address }));
                (0x10, None)
            }
            other => panic!("QEMU publishes no {other:?}"),
        };
        view.entry_types.push(entry_type);
        if let Some((apic_id, flags)) = processor
            && flags & 1 != 0
        {
            view.enabled_apic_ids.push(apic_id);
        }
    }
    view
}

fn tdx_boot_reads(madt: &Madt<'_>) -> View {
    View {
        enabled_apic_ids: madt.apic_ids().collect(),
        wakeups: madt
            .wakeup()
            .ok()
            .map(|w| (w.version, w.mailbox_address))
            .into_iter()
            .collect(),
        entry_types: madt.entries().map(|(entry_type, _)| entry_type).collect(),
    }
}

// ---- agreement on the tables the QEMU boot gets -------------------------------------------

#[test]
fn both_crates_read_the_same_processors_and_mailbox_from_a_tds_madt() {
    for (cpus, tdvf) in [1, 4, 64, 300]
        .into_iter()
        .flat_map(|cpus| TDVF_WAKEUP_ENTRIES.map(|entry| (cpus, entry)))
    {
        let bytes = tdvf_madt(cpus, tdvf);
        let firmware = Firmware::new(bytes.clone());
        let tables = firmware.tables();
        let mapped = MappedMadt::find(&tables).expect("a TD's MADT is valid");
        let ours = tdx_boot_reads(&mapped.madt());
        let theirs = acpi_reads(mapped.mapping().get());
        assert_eq!(ours, theirs, "{cpus} vCPUs, TDVF entry {tdvf:?}");
        assert_eq!(ours.enabled_apic_ids, (0..cpus).collect::<Vec<_>>());
        assert_eq!(mapped.wakeup().mailbox_address, MAILBOX);
        assert_eq!(mapped.wakeup().version, tdvf.0);
        // acpi's entry has no reset vector; tdx-boot reads it from a 24-byte entry.
        assert_eq!(
            mapped.wakeup().reset_vector,
            (tdvf.1 >= 24).then_some(MAILBOX + 0x1000)
        );
        assert_eq!(mapped.madt().bytes(), &bytes[..]);
        let acpi_header = mapped.mapping().get();
        assert_eq!(mapped.madt().local_apic_address(), {
            acpi_header.local_apic_address
        });
        assert_eq!(mapped.madt().flags(), { acpi_header.flags });

        // The borrowed form, from a mapping the kernel holds, gives the same.
        let mapping: PhysicalMapping<HostMemory, AcpiMadt> =
            tables.find_table().expect("acpi finds the MADT");
        let (madt, wakeup) = madt_from_mapping(&mapping).expect("valid");
        assert_eq!(tdx_boot_reads(&madt), ours);
        assert_eq!(wakeup, mapped.wakeup());
        let back = mapped.into_mapping();
        assert_eq!(
            back.raw().physical_start(),
            firmware._madt.as_ptr() as usize
        );
    }
}

#[test]
fn the_builder_makes_exactly_the_madt_qemu_gave_the_boot() {
    let dumped = unhex(QEMU_Q35_4_VCPUS_MADT);
    assert_eq!(madt(&qemu_entries(4)), dumped);
    let madt = Madt::parse(&dumped).expect("QEMU's MADT is valid");
    let ours = tdx_boot_reads(&madt);
    assert_eq!(ours, acpi_reads(acpi_view(&dumped)));
    assert_eq!(ours.enabled_apic_ids, [0, 1, 2, 3]);
    assert_eq!(ours.entry_types, [0, 0, 0, 0, 1, 2, 2, 2, 2, 2, 4]);
}

#[test]
fn without_a_wakeup_entry_both_see_the_processors_and_tdx_boot_says_why_it_cannot_wake() {
    let bytes = madt(&qemu_entries(4)); // plain QEMU, no TDVF
    let firmware = Firmware::new(bytes.clone());
    let tables = firmware.tables();
    assert_eq!(
        MappedMadt::find(&tables).unwrap_err(),
        FromAcpiError::Wakeup(WakeupUnusable::Missing)
    );
    let madt = Madt::parse(&bytes).expect("valid");
    assert_eq!(tdx_boot_reads(&madt), acpi_reads(acpi_view(&bytes)));
    // acpi's own mailbox lookup agrees that there is none.
    assert!(acpi_view(&bytes).get_mpwk_mailbox_addr().is_err());
}

#[test]
fn tables_without_a_madt_are_reported_as_such() {
    let firmware = Firmware::new(sdt(b"FACP", 6, &[0; 64]));
    assert_eq!(
        MappedMadt::find(&firmware.tables()).unwrap_err(),
        FromAcpiError::NoMadt
    );
}

// ---- hostile tables ------------------------------------------------------------------------

/// Runs `work` in a forked child and says whether it finished within `limit` (the child is
/// killed otherwise), so a loop for ever costs the test `limit`, not a CPU for the whole run.
fn finishes_within(limit: Duration, work: impl FnOnce()) -> bool {
    // SAFETY: the child only runs `work` (pure computation on memory it inherited, no locks,
    // no allocation in the cases below) and leaves with `_exit`.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork failed");
    if child == 0 {
        work();
        // SAFETY: ends the child without running the parent's atexit handlers.
        unsafe { libc::_exit(0) };
    }
    let deadline = Instant::now() + limit;
    loop {
        let mut status = 0;
        // SAFETY: `child` is our child; `status` is a valid out-parameter.
        let done = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
        if done == child {
            return libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
        }
        if Instant::now() >= deadline {
            // SAFETY: kills and reaps our own child.
            unsafe {
                libc::kill(child, libc::SIGKILL);
                libc::waitpid(child, &mut status, 0);
            }
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_zero_length_entry_of_a_reserved_type_makes_acpi_spin_and_tdx_boot_refuse_it() {
    let mut entries = qemu_entries(2);
    let offset = 44 + entries.len();
    entries.extend([0x20, 0]); // reserved type, length 0
    let bytes = madt(&entries);

    // The harness sees a finishing iteration finish (so a `false` below means a loop).
    let valid = td_madt(2);
    assert!(finishes_within(Duration::from_secs(20), || {
        std::hint::black_box(acpi_view(&valid).entries().count());
    }));
    assert!(
        !finishes_within(Duration::from_secs(1), || {
            std::hint::black_box(acpi_view(&bytes).entries().count());
        }),
        "acpi's MadtEntryIter ended on a zero-length entry"
    );

    assert_eq!(
        Madt::parse(&bytes).unwrap_err(),
        MadtError::BadEntry {
            offset,
            entry_type: 0x20,
            length: 0
        }
    );
    let firmware = Firmware::new(bytes);
    assert!(matches!(
        MappedMadt::find(&firmware.tables()),
        Err(FromAcpiError::Madt(MadtError::BadEntry { length: 0, .. }))
    ));
}

#[test]
fn a_zero_length_processor_entry_is_returned_by_acpi_for_ever_and_refused_by_tdx_boot() {
    let mut entries = local_apic(0, 0, 1);
    entries.extend([0, 0, 1, 1, 1, 0, 0, 0]); // a local APIC entry with length 0
    let bytes = madt(&entries);
    // Two entries in the table; acpi yields the second one again on every call.
    let seen = acpi_view(&bytes).entries().take(1000).count();
    assert_eq!(seen, 1000);
    assert!(matches!(
        Madt::parse(&bytes),
        Err(MadtError::BadEntry {
            offset: 52,
            entry_type: 0,
            length: 0
        })
    ));
}

#[test]
fn an_entry_shorter_than_its_type_is_read_past_its_end_by_acpi_and_refused_by_tdx_boot() {
    // A 2-byte "local APIC" followed by an IOAPIC entry: acpi reads the local APIC's fields
    // from the IOAPIC entry's bytes (its "APIC ID" is the IOAPIC's length byte, 12).
    let mut entries = vec![0, 2];
    entries.extend(io_apic(0, 0xfec0_0000, 0));
    let bytes = madt(&entries);
    let view = acpi_reads(acpi_view(&bytes));
    assert_eq!(view.entry_types, [0, 1]);
    let Some(MadtEntry::LocalApic(entry)) = acpi_view(&bytes).entries().next() else {
        panic!("acpi reads a local APIC");
    };
    assert_eq!(entry.apic_id, 12, "read from the next entry");
    assert_eq!(
        Madt::parse(&bytes).unwrap_err(),
        MadtError::BadEntry {
            offset: 44,
            entry_type: 0,
            length: 2
        }
    );
}

#[test]
fn a_bad_checksum_passes_acpis_find_table_and_not_tdx_boot() {
    let mut bytes = td_madt(4);
    bytes[9] = bytes[9].wrapping_add(1);
    let firmware = Firmware::new(bytes);
    let tables = firmware.tables();
    assert!(tables.find_table::<AcpiMadt>().is_some());
    assert_eq!(
        MappedMadt::find(&tables).unwrap_err(),
        FromAcpiError::Madt(MadtError::BadChecksum)
    );
}

#[test]
fn a_madt_shorter_than_its_header_is_refused_where_acpi_saturates() {
    // The header says 40 bytes: less than the 44-byte fixed part. 7.0 saturates to no entries
    // (5.2 underflows; see the next test); tdx-boot names the bad length.
    let mut bytes = td_madt(2);
    bytes[4..8].copy_from_slice(&40u32.to_le_bytes());
    let len = bytes.len();
    fix_checksum(&mut bytes, 9, 0..len);
    assert_eq!(acpi_view(&bytes).entries().count(), 0);
    assert_eq!(Madt::parse(&bytes).unwrap_err(), MadtError::BadLength(40));
    let firmware = Firmware::new(bytes);
    assert_eq!(
        MappedMadt::find(&firmware.tables()).unwrap_err(),
        FromAcpiError::Madt(MadtError::BadLength(40)),
        "acpi maps only the 40 bytes the header claims"
    );
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "in release, acpi 5.2 wraps and reads far past the table"
)]
fn acpi_5_2_underflows_on_a_madt_shorter_than_its_header() {
    let mut bytes = td_madt(2);
    bytes[4..8].copy_from_slice(&40u32.to_le_bytes());
    assert!(bytes.len() >= size_of::<acpi5::madt::Madt>());
    let underflowed = std::panic::catch_unwind(|| {
        // SAFETY: as in `acpi_view`: a packed structure within the buffer, pinned by the borrow.
        let madt = unsafe { Pin::new_unchecked(&*bytes.as_ptr().cast::<acpi5::madt::Madt>()) };
        madt.entries().count()
    });
    assert!(underflowed.is_err(), "acpi 5.2 subtracted without checking");
    assert_eq!(Madt::parse(&bytes).unwrap_err(), MadtError::BadLength(40));
}

#[test]
fn mailboxes_acpi_would_use_are_refused_when_unusable() {
    for (entry, why) in [
        (
            wakeup(0, 16, MAILBOX + 8),
            WakeupUnusable::MisalignedMailbox(MAILBOX + 8),
        ),
        (wakeup(0, 16, 0), WakeupUnusable::NullMailbox),
    ] {
        let mut entries = qemu_entries(2);
        entries.extend(&entry);
        let bytes = madt(&entries);
        let acpi_mailbox = acpi_view(&bytes)
            .get_mpwk_mailbox_addr()
            .expect("acpi takes the entry's address as it is");
        assert_eq!(
            acpi_mailbox,
            u64::from_le_bytes(entry[8..16].try_into().unwrap())
        );
        let firmware = Firmware::new(bytes);
        assert_eq!(
            MappedMadt::find(&firmware.tables()).unwrap_err(),
            FromAcpiError::Wakeup(why)
        );
    }
}

#[test]
fn an_unknown_mailbox_command_panics_acpi_and_is_a_typed_error_for_tdx_boot() {
    // acpi converts the command it reads back with `From<u16>`.
    assert!(std::panic::catch_unwind(|| MpProtectedModeWakeupCommand::from(7u16)).is_err());

    // The firmware left command 7 in the mailbox: tdx-boot's waker reports it and posts nothing.
    let page: &'static MailboxPage = Box::leak(Box::new(MailboxPage::new()));
    // SAFETY: the command is bits 15:0 of the page's first 64-bit word (the ACPI layout), an
    // `AtomicU64` in `MailboxPage`; the test plays the firmware writing it.
    unsafe { &*(page as *const MailboxPage).cast::<std::sync::atomic::AtomicU64>() }
        .store(7, std::sync::atomic::Ordering::SeqCst);
    #[repr(C, align(4096))]
    struct Page([u8; 4096]);
    let code: &'static mut Page = Box::leak(Box::new(Page([0xcc; 4096])));
    let trampoline = Box::leak(Box::new(
        install_trampoline(&mut code.0, 0x8000).expect("install"),
    ));
    let mut waker = MpWaker::new(Mailbox::new(page), trampoline);
    extern "C" fn never_runs(_: &ApBoot) -> ! {
        unreachable!("no AP is woken")
    }
    let block = Box::leak(Box::new(ApBoot::new(
        1,
        ap_state::state(0x10_0000),
        never_runs,
        0,
    )));
    assert_eq!(
        waker.wake(block, || false).unwrap_err(),
        WakeError::MailboxBusy { command: 7 }
    );
    assert_eq!(Mailbox::new(page).command_raw(), 7, "nothing was posted");
}
