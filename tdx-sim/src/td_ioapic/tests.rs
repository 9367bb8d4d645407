use super::*;
use crate::x2apic::logical_id;

/// A machine IOAPIC: QEMU's version (0x20, 24 entries), registers by index, every write seen.
struct Machine {
    registers: [u32; 256],
    writes: usize,
}

impl Machine {
    fn new() -> Self {
        let mut registers = [0; 256];
        registers[usize::from(REG_ID)] = 0x0000_0000;
        registers[usize::from(REG_VERSION)] = 0x0017_0020;
        Self {
            registers,
            writes: 0,
        }
    }

    fn entry(&self, pin: usize) -> u64 {
        let index = 0x10 + 2 * pin;
        u64::from(self.registers[index]) | u64::from(self.registers[index + 1]) << 32
    }
}

impl IoApicWindow for Machine {
    fn read(&mut self, index: u8) -> u32 {
        self.registers[usize::from(index)]
    }

    fn write(&mut self, index: u8, value: u32) {
        self.writes += 1;
        if !matches!(index, REG_VERSION | REG_ARBITRATION) {
            self.registers[usize::from(index)] = value;
        }
    }
}

const HOST_APIC: u8 = 0;
const BASE: u8 = 0x30;

fn front() -> (TdIoApic, Machine) {
    let mut machine = Machine::new();
    let ioapic = TdIoApic::new(&mut machine, HOST_APIC, BASE, 24).unwrap();
    (ioapic, machine)
}

/// The TD writes entry `pin` as a driver does: high half, then low half, through the window.
fn td_write_entry(ioapic: &mut TdIoApic, machine: &mut Machine, pin: u8, entry: u64) {
    for (index, half) in [
        (0x11 + 2 * pin, entry >> 32),
        (0x10 + 2 * pin, entry & 0xffff_ffff),
    ] {
        ioapic.mmio_write(machine, IOREGSEL, 4, u64::from(index));
        ioapic.mmio_write(machine, IOWIN, 4, half);
    }
}

fn td_read(ioapic: &mut TdIoApic, machine: &mut Machine, index: u8) -> u32 {
    ioapic.mmio_write(machine, IOREGSEL, 4, u64::from(index));
    ioapic.mmio_read(IOWIN, 4) as u32
}

fn td_read_entry(ioapic: &mut TdIoApic, machine: &mut Machine, pin: u8) -> u64 {
    u64::from(td_read(ioapic, machine, 0x10 + 2 * pin))
        | u64::from(td_read(ioapic, machine, 0x11 + 2 * pin)) << 32
}

#[test]
fn every_machine_pin_starts_masked_on_its_host_vector() {
    let (ioapic, machine) = front();
    assert_eq!(ioapic.pins(), 24);
    for pin in 0..24 {
        assert_eq!(
            machine.entry(pin),
            MASKED | (u64::from(BASE) + pin as u64),
            "pin {pin}"
        );
        assert_eq!(ioapic.entry(pin), Some(MASKED), "the TD's reset state");
    }
    assert_eq!(ioapic.entry(24), None);
}

#[test]
fn the_td_reads_back_what_it_wrote_and_the_machine_delivers_to_the_host() {
    let (mut ioapic, mut machine) = front();
    // RTC: vector 0x40, edge, active high, to x2APIC 2.
    let entry = 0x40 | 2 << 56;
    td_write_entry(&mut ioapic, &mut machine, 8, entry);
    assert_eq!(td_read_entry(&mut ioapic, &mut machine, 8), entry);
    assert_eq!(
        machine.entry(8),
        u64::from(BASE + 8) | u64::from(HOST_APIC) << 56,
        "host vector, physical, fixed, unmasked, the host CPU"
    );
    // A PCI line: active low, level: both reach the machine.
    td_write_entry(&mut ioapic, &mut machine, 16, 0x51 | ACTIVE_LOW | LEVEL);
    assert_eq!(machine.entry(16), u64::from(BASE + 16) | ACTIVE_LOW | LEVEL);
}

#[test]
fn an_edge_interrupt_becomes_the_tds_vector_for_its_destination() {
    let (mut ioapic, mut machine) = front();
    td_write_entry(&mut ioapic, &mut machine, 8, 0x40 | 2 << 56);
    let pin = ioapic.pin_of_host_vector(BASE + 8).unwrap();
    assert_eq!(pin, 8);
    let message = ioapic.interrupt(&mut machine, pin).unwrap();
    assert_eq!(message.vector, 0x40);
    assert_eq!(message.mode, DeliveryMode::Fixed);
    assert!(!message.level_triggered);
    assert!(message.reaches(2) && !message.reaches(0) && !message.reaches(1));
    // Edge: nothing to wait for, the next one goes through as well.
    assert!(ioapic.interrupt(&mut machine, pin).is_some());
    assert_eq!(machine.entry(8) & MASKED, 0);
}

#[test]
fn a_level_interrupt_waits_for_the_tds_eoi_with_the_pin_masked() {
    let (mut ioapic, mut machine) = front();
    td_write_entry(&mut ioapic, &mut machine, 16, 0x51 | LEVEL | ACTIVE_LOW);
    let message = ioapic.interrupt(&mut machine, 16).unwrap();
    assert!(message.level_triggered);
    assert_ne!(td_read_entry(&mut ioapic, &mut machine, 16) & REMOTE_IRR, 0);
    assert_ne!(machine.entry(16) & MASKED, 0, "masked while the TD has it");
    assert!(
        ioapic.interrupt(&mut machine, 16).is_none(),
        "no second delivery before the EOI"
    );
    ioapic.end_of_interrupt(&mut machine, 0x52);
    assert_ne!(
        machine.entry(16) & MASKED,
        0,
        "another vector's EOI changes nothing"
    );
    ioapic.end_of_interrupt(&mut machine, 0x51);
    assert_eq!(td_read_entry(&mut ioapic, &mut machine, 16) & REMOTE_IRR, 0);
    assert_eq!(
        machine.entry(16) & MASKED,
        0,
        "delivers again after the EOI"
    );
    // The EOI register does the same.
    assert!(ioapic.interrupt(&mut machine, 16).is_some());
    ioapic.mmio_write(&mut machine, IOAPIC_EOI, 4, 0x51);
    assert_eq!(machine.entry(16) & MASKED, 0);
}

#[test]
fn a_masked_entry_or_a_mode_a_td_cannot_take_never_reaches_it() {
    let (mut ioapic, mut machine) = front();
    td_write_entry(&mut ioapic, &mut machine, 4, 0x44 | MASKED);
    assert_ne!(machine.entry(4) & MASKED, 0);
    assert!(ioapic.interrupt(&mut machine, 4).is_none());
    // SMI (2), NMI (4), INIT (5), ExtINT (7): kept masked in the machine.
    for mode in [2u64, 4, 5, 7] {
        td_write_entry(&mut ioapic, &mut machine, 5, 0x45 | mode << 8);
        assert_ne!(machine.entry(5) & MASKED, 0, "mode {mode}");
        assert!(ioapic.interrupt(&mut machine, 5).is_none(), "mode {mode}");
    }
    // Lowest priority is delivered.
    td_write_entry(&mut ioapic, &mut machine, 5, 0x45 | 1 << 8);
    assert_eq!(
        ioapic.interrupt(&mut machine, 5).map(|m| m.mode),
        Some(DeliveryMode::LowestPriority)
    );
}

#[test]
fn only_an_unmasked_deliverable_pin_may_still_wake_the_td() {
    let (mut ioapic, mut machine) = front();
    assert!(!ioapic.may_deliver(), "reset: every pin masked");
    td_write_entry(&mut ioapic, &mut machine, 9, 0x49 | 7 << 8);
    assert!(!ioapic.may_deliver(), "ExtINT never reaches a TD");
    td_write_entry(&mut ioapic, &mut machine, 9, 0x49);
    assert!(ioapic.may_deliver());
    td_write_entry(&mut ioapic, &mut machine, 9, 0x49 | MASKED);
    assert!(!ioapic.may_deliver());
}

#[test]
fn logical_and_broadcast_destinations_follow_x2apic_cluster_zero() {
    let (mut ioapic, mut machine) = front();
    td_write_entry(&mut ioapic, &mut machine, 1, 0x41 | LOGICAL | 0b0110 << 56);
    let message = ioapic.interrupt(&mut machine, 1).unwrap();
    assert_eq!(message.destination, Destination::Logical(0b0110));
    assert!(message.reaches(1) && message.reaches(2) && !message.reaches(0));
    assert_eq!(logical_id(2), 0b100, "cluster 0, member bit 2");
    td_write_entry(&mut ioapic, &mut machine, 1, 0x41 | 0xff << 56);
    let message = ioapic.interrupt(&mut machine, 1).unwrap();
    assert!(
        (0..4).all(|id| message.reaches(id)),
        "physical 0xFF: everyone"
    );
}

#[test]
fn read_only_bits_and_registers_keep_their_values() {
    let (mut ioapic, mut machine) = front();
    let version = td_read(&mut ioapic, &mut machine, REG_VERSION);
    assert_eq!(version, 0x0017_0020);
    ioapic.mmio_write(&mut machine, IOREGSEL, 4, u64::from(REG_VERSION));
    ioapic.mmio_write(&mut machine, IOWIN, 4, 0);
    assert_eq!(td_read(&mut ioapic, &mut machine, REG_VERSION), version);
    // The TD's ID is its own: the machine's is not touched.
    let before = machine.writes;
    ioapic.mmio_write(&mut machine, IOREGSEL, 4, u64::from(REG_ID));
    ioapic.mmio_write(&mut machine, IOWIN, 4, 0x0300_0000);
    assert_eq!(td_read(&mut ioapic, &mut machine, REG_ID), 0x0300_0000);
    assert_eq!(machine.writes, before);
    assert_eq!(machine.registers[0], 0);
    // Delivery status and remote IRR cannot be written; reserved bits keep what was written
    // (QEMU's IOAPIC_RW_BITS), and none of them reaches the machine.
    td_write_entry(
        &mut ioapic,
        &mut machine,
        3,
        0x43 | READ_ONLY | 0x00ff_0000_fffe_0000,
    );
    assert_eq!(
        td_read_entry(&mut ioapic, &mut machine, 3),
        0x43 | 0x00ff_0000_fffe_0000
    );
    assert_eq!(machine.entry(3), u64::from(BASE + 3));
    // Arbitration reads as the ID.
    assert_eq!(
        td_read(&mut ioapic, &mut machine, REG_ARBITRATION),
        0x0300_0000
    );
}

#[test]
fn only_the_low_byte_of_the_offset_decodes_and_ioregsel_takes_any_size() {
    let (mut ioapic, mut machine) = front();
    ioapic.mmio_write(&mut machine, 0x100 + IOREGSEL, 1, u64::from(REG_VERSION));
    assert_eq!(ioapic.mmio_read(IOREGSEL, 2), u64::from(REG_VERSION));
    assert_eq!(ioapic.mmio_read(0xf00 + IOWIN, 4), 0x0017_0020);
}

#[test]
fn the_eoi_register_exists_only_on_a_version_0x20_ioapic() {
    let mut machine = Machine::new();
    machine.registers[usize::from(REG_VERSION)] = 0x0017_0011;
    let mut ioapic = TdIoApic::new(&mut machine, HOST_APIC, BASE, 24).unwrap();
    td_write_entry(&mut ioapic, &mut machine, 16, 0x51 | LEVEL);
    assert!(ioapic.interrupt(&mut machine, 16).is_some());
    ioapic.mmio_write(&mut machine, IOAPIC_EOI, 4, 0x51);
    assert_ne!(machine.entry(16) & MASKED, 0, "no EOI register on a 0x11");
    ioapic.end_of_interrupt(&mut machine, 0x51);
    assert_eq!(machine.entry(16) & MASKED, 0, "the APIC's EOI still works");
}

#[test]
fn hostile_accesses_read_zero_and_change_nothing() {
    let (mut ioapic, mut machine) = front();
    let before = machine.registers;
    // Past the last entry (0x10 + 2 * 24 = 0x40), odd sizes, other offsets.
    for index in [0x40u8, 0x41, 0xff, 0x03, 0x0f] {
        assert_eq!(
            td_read(&mut ioapic, &mut machine, index),
            0,
            "register {index:#x}"
        );
        ioapic.mmio_write(&mut machine, IOWIN, 4, 0xffff_ffff);
    }
    ioapic.mmio_write(&mut machine, IOREGSEL, 4, 0x10);
    ioapic.mmio_write(&mut machine, IOWIN, 1, 0x41);
    ioapic.mmio_write(&mut machine, IOWIN, 8, 0x41);
    ioapic.mmio_write(&mut machine, 0x20, 4, 0x41);
    ioapic.mmio_write(&mut machine, IOAPIC_EOI, 2, 0x41);
    assert_eq!(ioapic.mmio_read(IOWIN, 2), 0);
    assert_eq!(ioapic.mmio_read(0x30, 4), 0);
    assert_eq!(machine.registers, before);
    assert_eq!(ioapic.entry(0), Some(MASKED));
    assert!(ioapic.interrupt(&mut machine, 24).is_none());
    assert!(ioapic.interrupt(&mut machine, usize::MAX).is_none());
    assert_eq!(ioapic.pin_of_host_vector(BASE - 1), None);
    assert_eq!(ioapic.pin_of_host_vector(BASE + 24), None);
    assert_eq!(ioapic.host_vector(24), None);
}

#[test]
fn a_missing_ioapic_or_no_room_for_host_vectors_is_refused() {
    let mut machine = Machine::new();
    machine.registers[usize::from(REG_VERSION)] = u32::MAX;
    assert_eq!(
        TdIoApic::new(&mut machine, 0, BASE, 24).unwrap_err(),
        IoApicError::Missing(u32::MAX)
    );
    let mut machine = Machine::new();
    assert!(matches!(
        TdIoApic::new(&mut machine, 0, 0xe0, 24),
        Err(IoApicError::NoHostVectors {
            base: 0xe0,
            pins: 24
        })
    ));
    assert!(
        TdIoApic::new(&mut machine, 0, 0x10, 24).is_err(),
        "exception vectors"
    );
    // A version register claiming 256 entries is capped at what IOREGSEL reaches.
    machine.registers[usize::from(REG_VERSION)] = 0x00ff_0020;
    let ioapic = TdIoApic::new(&mut machine, 0, 0x21, 200).unwrap();
    assert_eq!(ioapic.pins(), MAX_PINS);
}

#[test]
fn the_td_sees_only_the_pins_the_host_has_vectors_for() {
    let mut machine = Machine::new();
    machine.registers[0x10 + 2 * 20] = 0x99; // the firmware's entry, unmasked
    let mut ioapic = TdIoApic::new(&mut machine, HOST_APIC, BASE, 16).unwrap();
    assert_eq!(ioapic.pins(), 16);
    assert_eq!(
        td_read(&mut ioapic, &mut machine, REG_VERSION) >> 16 & 0xff,
        15,
        "the version register says 16 entries"
    );
    assert_ne!(
        machine.entry(20) & MASKED,
        0,
        "a pin beyond is masked for good"
    );
    assert_eq!(td_read(&mut ioapic, &mut machine, 0x10 + 2 * 20), 0);
    assert!(ioapic.interrupt(&mut machine, 20).is_none());
    assert!(TdIoApic::new(&mut machine, HOST_APIC, BASE, 0).is_err());
}
