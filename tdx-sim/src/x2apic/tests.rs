use super::*;

const GP: Result<u64, ApicFault> = Err(ApicFault::GeneralProtection);

/// An enabled APIC (SVR = 0x1FF) with ID 5, one clock unit per timer count.
fn enabled() -> X2Apic {
    let mut apic = X2Apic::new(5, 1, true);
    apic.write(SVR, 0x1ff, 0).unwrap();
    apic
}

fn ipi(apic: &mut X2Apic, icr: u64) -> WriteEffect {
    apic.write(ICR, icr, 0).unwrap()
}

#[test]
fn reset_state_and_read_only_registers() {
    let apic = X2Apic::new(0x23, 1, false);
    assert_eq!(apic.read(ID, 0), Ok(0x23));
    assert_eq!(apic.read(VERSION, 0), Ok(0x6_0014));
    assert_eq!(apic.read(LDR, 0), Ok(0x2_0008), "cluster 2, member bit 3");
    assert_eq!(apic.read(SVR, 0), Ok(0xff));
    for msr in [LVT_CMCI, 0x832, 0x833, 0x834, 0x835, 0x836, 0x837] {
        assert_eq!(apic.read(msr, 0), Ok(u64::from(LVT_MASKED)), "LVT {msr:#x}");
    }
    let mut apic = apic;
    for msr in [
        ID,
        VERSION,
        PPR,
        LDR,
        0x810,
        0x817,
        0x818,
        0x820,
        0x827,
        TIMER_CURRENT,
    ] {
        assert_eq!(
            apic.write(msr, 0, 0),
            Err(ApicFault::GeneralProtection),
            "{msr:#x}"
        );
    }
    for msr in [EOI, SELF_IPI] {
        assert_eq!(apic.read(msr, 0), GP, "write-only {msr:#x}");
    }
}

#[test]
fn reserved_msrs_and_bits_raise_gp() {
    let mut apic = enabled();
    for msr in [
        0x800, 0x801, 0x804, 0x807, 0x809, 0x80c, 0x80e, 0x829, 0x831, 0x83a, 0x83d, 0x840, 0x8ff,
    ] {
        assert_eq!(apic.read(msr, 0), GP, "read {msr:#x}");
        assert_eq!(
            apic.write(msr, 0, 0),
            Err(ApicFault::GeneralProtection),
            "write {msr:#x}"
        );
    }
    assert_eq!(
        apic.write(TPR, 1 << 32, 0),
        Err(ApicFault::GeneralProtection)
    );
    assert_eq!(apic.write(EOI, 1, 0), Err(ApicFault::GeneralProtection));
    assert_eq!(apic.write(ESR, 1, 0), Err(ApicFault::GeneralProtection));
    for bit in [13, 16, 17, 20, 31] {
        assert_eq!(
            apic.write(ICR, 0x40 | 1 << bit, 0),
            Err(ApicFault::GeneralProtection),
            "ICR bit {bit}"
        );
    }
    // Reserved TPR bits are dropped, not faulted; ICR's upper half is the destination.
    apic.write(TPR, 0xfff0, 0).unwrap();
    assert_eq!(apic.read(TPR, 0), Ok(0xf0));
    assert!(apic.write(ICR, 7 << 32 | 0x40, 0).is_ok());
    assert_eq!(apic.read(ICR, 0), Ok(7 << 32 | 0x40));
}

#[test]
fn a_software_disabled_apic_drops_fixed_interrupts_and_keeps_lvts_masked() {
    let mut apic = X2Apic::new(0, 1, false);
    apic.receive(0x40, false);
    assert_eq!(apic.pending_vector(), None);
    apic.write(0x835, 0x30, 0).unwrap();
    assert_eq!(
        apic.read(0x835, 0),
        Ok(0x1_0030),
        "still masked while disabled"
    );
    apic.write(SVR, 0x1ff, 0).unwrap();
    apic.write(0x835, 0x30, 0).unwrap();
    assert_eq!(apic.read(0x835, 0), Ok(0x30));
    apic.receive(0x40, false);
    assert_eq!(apic.pending_vector(), Some(0x40));
    // Disabling again masks every LVT.
    apic.write(SVR, 0xff, 0).unwrap();
    assert_eq!(apic.read(0x835, 0), Ok(0x1_0030));
}

#[test]
fn priority_follows_tpr_and_in_service_vectors() {
    let mut apic = enabled();
    apic.receive(0x31, false);
    apic.receive(0x52, false);
    assert_eq!(apic.read(IRR0 + 1, 0), Ok(1 << 0x11), "bank 1 holds 0x31");
    assert_eq!(apic.acknowledge(), Some(0x52));
    assert_eq!(apic.read(ISR0 + 2, 0), Ok(1 << 0x12));
    assert_eq!(apic.read(PPR, 0), Ok(0x50));
    assert_eq!(
        apic.pending_vector(),
        None,
        "class 3 waits behind in-service class 5"
    );
    apic.receive(0x55, false);
    assert_eq!(apic.pending_vector(), None, "same class as in service");
    apic.receive(0x61, false);
    assert_eq!(apic.acknowledge(), Some(0x61), "higher class preempts");
    assert_eq!(apic.write(EOI, 0, 0), Ok(WriteEffect::None));
    assert_eq!(apic.write(EOI, 0, 0), Ok(WriteEffect::None));
    assert_eq!(apic.read(PPR, 0), Ok(0));
    assert_eq!(apic.acknowledge(), Some(0x55));
    apic.write(EOI, 0, 0).unwrap();
    apic.write(TPR, 0x47, 0).unwrap();
    assert_eq!(apic.read(PPR, 0), Ok(0x47));
    assert_eq!(apic.pending_vector(), None, "TPR class 4 blocks class 3");
    apic.write(TPR, 0x20, 0).unwrap();
    assert_eq!(apic.acknowledge(), Some(0x31));
    apic.write(TPR, 0x63, 0).unwrap();
    assert_eq!(
        apic.read(PPR, 0),
        Ok(0x63),
        "TPR above the in-service class"
    );
}

#[test]
fn eoi_of_a_level_triggered_vector_is_reported() {
    let mut apic = enabled();
    assert_eq!(
        apic.write(EOI, 0, 0),
        Ok(WriteEffect::None),
        "nothing in service"
    );
    apic.receive(0x70, true);
    assert_eq!(apic.read(TMR0 + 3, 0), Ok(1 << 0x10));
    apic.acknowledge();
    assert_eq!(apic.write(EOI, 0, 0), Ok(WriteEffect::LevelEoi(0x70)));
    apic.receive(0x70, false);
    assert_eq!(apic.read(TMR0 + 3, 0), Ok(0), "an edge delivery clears TMR");
    apic.acknowledge();
    assert_eq!(apic.write(EOI, 0, 0), Ok(WriteEffect::None));
}

#[test]
fn illegal_vectors_set_esr_and_the_error_lvt() {
    let mut apic = enabled();
    apic.receive(5, false);
    assert_eq!(apic.read(ESR, 0), Ok(0), "errors show after a write to ESR");
    apic.write(ESR, 0, 0).unwrap();
    assert_eq!(apic.read(ESR, 0), Ok(u64::from(ESR_RECEIVE_ILLEGAL_VECTOR)));
    apic.write(LVT_ERROR, 0xfe, 0).unwrap();
    assert_eq!(
        ipi(&mut apic, 3),
        WriteEffect::None,
        "fixed IPI with vector 3 is not sent"
    );
    apic.write(ESR, 0, 0).unwrap();
    assert_eq!(apic.read(ESR, 0), Ok(u64::from(ESR_SEND_ILLEGAL_VECTOR)));
    assert_eq!(apic.pending_vector(), Some(0xfe), "the error LVT fired");
    apic.write(ESR, 0, 0).unwrap();
    assert_eq!(apic.read(ESR, 0), Ok(0));
}

#[test]
fn icr_writes_become_ipi_requests() {
    let mut apic = enabled();
    let fixed = ipi(&mut apic, 9 << 32 | 0x41);
    assert_eq!(
        fixed,
        WriteEffect::Ipi(IpiRequest {
            source: 5,
            vector: 0x41,
            mode: DeliveryMode::Fixed,
            destination: Destination::Physical(9),
            level_triggered: false,
        })
    );
    let WriteEffect::Ipi(logical) = ipi(&mut apic, 0x1_0006 << 32 | 1 << 11 | 1 << 8 | 0x42) else {
        panic!()
    };
    assert_eq!(
        (logical.mode, logical.destination),
        (DeliveryMode::LowestPriority, Destination::Logical(0x1_0006))
    );
    let WriteEffect::Ipi(nmi) = ipi(&mut apic, 4 << 8 | 3 << 18) else {
        panic!()
    };
    assert_eq!(
        (nmi.mode, nmi.destination),
        (DeliveryMode::Nmi, Destination::AllExcludingSelf)
    );
    let WriteEffect::Ipi(me) = ipi(&mut apic, 1 << 18 | 1 << 15 | 1 << 14 | 0x43) else {
        panic!()
    };
    assert_eq!(
        (me.destination, me.level_triggered),
        (Destination::ToSelf, true)
    );
    let WriteEffect::Ipi(all) = ipi(&mut apic, 2 << 18 | 0x44) else {
        panic!()
    };
    assert_eq!(all.destination, Destination::AllIncludingSelf);
    assert_eq!(
        ipi(&mut apic, 5 << 8 | 1 << 14),
        WriteEffect::IpiRefused(RefusedIpi::Init)
    );
    assert_eq!(
        ipi(&mut apic, 6 << 8 | 0x10),
        WriteEffect::IpiRefused(RefusedIpi::StartUp)
    );
    assert_eq!(
        ipi(&mut apic, 2 << 8),
        WriteEffect::IpiRefused(RefusedIpi::Smi)
    );
    assert_eq!(
        ipi(&mut apic, 7 << 8 | 0x40),
        WriteEffect::IpiRefused(RefusedIpi::Reserved(7))
    );
}

#[test]
fn destinations_reach_the_right_apics() {
    let request = |destination| IpiRequest {
        source: 5,
        vector: 0x40,
        mode: DeliveryMode::Fixed,
        destination,
        level_triggered: false,
    };
    assert!(request(Destination::Physical(9)).reaches(9));
    assert!(!request(Destination::Physical(9)).reaches(8));
    assert!(request(Destination::Physical(u32::MAX)).reaches(1234));
    // APIC 0x12: cluster 1, bit 2.
    assert!(request(Destination::Logical(0x1_0004)).reaches(0x12));
    assert!(!request(Destination::Logical(0x1_0004)).reaches(0x13));
    assert!(
        !request(Destination::Logical(0x0_0004)).reaches(0x12),
        "other cluster"
    );
    assert!(request(Destination::ToSelf).reaches(5) && !request(Destination::ToSelf).reaches(6));
    assert!(!request(Destination::AllExcludingSelf).reaches(5));
    assert!(request(Destination::AllExcludingSelf).reaches(6));
    assert!(request(Destination::AllIncludingSelf).reaches(5));
}

#[test]
fn self_ipi_sets_irr() {
    let mut apic = enabled();
    assert_eq!(apic.write(SELF_IPI, 0x99, 0), Ok(WriteEffect::None));
    assert_eq!(apic.pending_vector(), Some(0x99));
}

#[test]
fn one_shot_timer_counts_down_and_fires_once() {
    let mut apic = enabled();
    apic.write(LVT_TIMER, 0xec, 0).unwrap();
    apic.write(TIMER_DIVIDE, 0, 0).unwrap(); // divide by 2
    apic.write(TIMER_INITIAL, 100, 1000).unwrap();
    assert_eq!(apic.next_event(), Some(1200));
    assert_eq!(apic.read(TIMER_CURRENT, 1050), Ok(75));
    assert!(!apic.advance(1199));
    assert_eq!(apic.pending_vector(), None);
    assert!(apic.advance(1200));
    assert_eq!(apic.pending_vector(), Some(0xec));
    assert_eq!(apic.read(TIMER_CURRENT, 1300), Ok(0));
    assert_eq!(apic.next_event(), None);
    assert!(!apic.advance(5000), "one-shot");
    // A masked timer expires without an interrupt.
    let mut masked = enabled();
    masked.write(LVT_TIMER, 0x1_00ec, 0).unwrap();
    masked.write(TIMER_INITIAL, 10, 0).unwrap();
    assert!(masked.advance(20));
    assert_eq!(masked.pending_vector(), None);
}

#[test]
fn periodic_timer_reloads() {
    let mut apic = enabled();
    apic.write(LVT_TIMER, 1 << 17 | 0xed, 0).unwrap();
    apic.write(TIMER_DIVIDE, 0b1011, 0).unwrap(); // divide by 1
    apic.write(TIMER_INITIAL, 50, 0).unwrap();
    assert_eq!(apic.read(TIMER_CURRENT, 70), Ok(30));
    assert!(apic.advance(120), "fired (periods at 50 and 100 coalesce)");
    assert_eq!(apic.next_event(), Some(150));
    assert_eq!(apic.acknowledge(), Some(0xed));
    apic.write(EOI, 0, 0).unwrap();
    assert!(apic.advance(150));
    assert_eq!(apic.pending_vector(), Some(0xed));
}

#[test]
fn divide_configuration_sets_the_rate() {
    for (code, divisor) in [
        (0b0000, 2),
        (0b0001, 4),
        (0b0010, 8),
        (0b0011, 16),
        (0b1000, 32),
        (0b1001, 64),
        (0b1010, 128),
        (0b1011, 1),
    ] {
        let mut apic = X2Apic::new(0, 3, false);
        apic.write(TIMER_DIVIDE, code, 0).unwrap();
        apic.write(TIMER_INITIAL, 10, 0).unwrap();
        assert_eq!(
            apic.next_event(),
            Some(10 * 3 * divisor),
            "code {code:#06b}"
        );
    }
    // Changing the divider mid-count keeps the count reached.
    let mut apic = X2Apic::new(0, 1, false);
    apic.write(TIMER_DIVIDE, 0b1011, 0).unwrap();
    apic.write(TIMER_INITIAL, 100, 0).unwrap();
    apic.write(TIMER_DIVIDE, 0b0000, 40).unwrap();
    assert_eq!(apic.read(TIMER_CURRENT, 40), Ok(60));
    assert_eq!(apic.next_event(), Some(40 + 60 * 2));
}

#[test]
fn tsc_deadline_mode() {
    let mut plain = X2Apic::new(0, 1, false);
    assert_eq!(
        plain.write_tsc_deadline(5, 0),
        Err(ApicFault::GeneralProtection)
    );
    assert_eq!(plain.read_tsc_deadline(), Err(ApicFault::GeneralProtection));
    plain.write(LVT_TIMER, 2 << 17 | 0x40, 0).unwrap();
    assert_eq!(
        plain.read(LVT_TIMER, 0).unwrap() >> 17 & 3,
        0,
        "mode bit 18 not writable"
    );

    let mut apic = enabled();
    apic.write_tsc_deadline(500, 0).unwrap();
    assert_eq!(
        apic.read_tsc_deadline(),
        Ok(0),
        "ignored outside TSC-deadline mode"
    );
    apic.write(TIMER_INITIAL, 1000, 0).unwrap();
    apic.write(LVT_TIMER, 2 << 17 | 0xef, 10).unwrap();
    assert_eq!(
        apic.next_event(),
        None,
        "switching to TSC-deadline disarms the count"
    );
    assert_eq!(apic.read(TIMER_INITIAL, 10), Ok(0));
    apic.write(TIMER_INITIAL, 1000, 20).unwrap();
    assert_eq!(
        apic.read(TIMER_INITIAL, 20),
        Ok(0),
        "initial count ignored in TSC-deadline mode"
    );
    apic.write_tsc_deadline(500, 20).unwrap();
    assert_eq!(
        (apic.read_tsc_deadline(), apic.next_event()),
        (Ok(500), Some(500))
    );
    assert!(!apic.advance(499));
    assert!(apic.advance(500));
    assert_eq!(apic.read_tsc_deadline(), Ok(0), "fired deadlines read 0");
    assert_eq!(apic.acknowledge(), Some(0xef));
    // A deadline in the past fires at once; 0 disarms.
    apic.write_tsc_deadline(100, 600).unwrap();
    assert_eq!(apic.read(IRR0 + 7, 600), Ok(1 << 0xf));
    apic.write_tsc_deadline(900, 600).unwrap();
    apic.write_tsc_deadline(0, 600).unwrap();
    assert_eq!(apic.next_event(), None);
    // Leaving TSC-deadline mode disarms it too.
    apic.write_tsc_deadline(900, 600).unwrap();
    apic.write(LVT_TIMER, 0xef, 610).unwrap();
    assert_eq!(apic.next_event(), None);
}

proptest::proptest! {
    /// Any sequence of MSR accesses, interrupts and time steps keeps the APIC consistent: no
    /// panic, PPR derived from TPR and ISR, a pending vector always above PPR's class.
    #[test]
    fn arbitrary_use_never_breaks_the_apic(
        ops in proptest::collection::vec(
            (0u8..6, 0x800u32..0x900, proptest::prelude::any::<u64>(), 0u64..1000),
            1..64,
        )
    ) {
        let mut apic = X2Apic::new(3, 7, true);
        let mut now = 0u64;
        for (op, msr, value, step) in ops {
            now += step;
            match op {
                0 => { let _ = apic.read(msr, now); }
                1 => { let _ = apic.write(msr, value & 0xffff_ffff, now); }
                2 => { let _ = apic.write(msr, value, now); }
                3 => apic.receive(value as u8, value & 0x100 != 0),
                4 => { let _ = apic.write_tsc_deadline(now + (value & 0xfff), now); }
                _ => { apic.advance(now); apic.acknowledge(); }
            }
            let ppr = apic.read(PPR, now).unwrap() as u32;
            let tpr = apic.read(TPR, now).unwrap() as u32;
            proptest::prop_assert!(ppr == tpr || ppr & 0xf == 0);
            if let Some(v) = apic.pending_vector() {
                proptest::prop_assert!(u32::from(v >> 4) > ppr >> 4);
            }
            if let Some(next) = apic.next_event() {
                proptest::prop_assert!(next >= now || apic.advance(now));
            }
        }
    }
}
