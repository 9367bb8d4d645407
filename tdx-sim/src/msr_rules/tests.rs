use super::*;
use MsrAccess::{Read, Write};

fn both(msr: u32, config: &MsrConfig) -> (MsrDecision, MsrDecision) {
    (td_msr(msr, Read, config), td_msr(msr, Write, config))
}

const VE: MsrDecision = MsrDecision::VirtualizationException;
const GP: MsrDecision = MsrDecision::GeneralProtection;

#[test]
fn the_msrs_tdvf_sends_to_its_vmm_raise_ve() {
    let config = MsrConfig::default();
    for msr in [0x1b, 0x80f, 0x832, 0x835, 0x836, 0x838] {
        assert_eq!(both(msr, &config), (VE, VE), "MSR {msr:#x}");
    }
    // Under REDUCE_VE the unlisted ones #GP instead.
    let reduce = MsrConfig {
        reduce_ve: true,
        ..config
    };
    assert_eq!(both(0x1b, &reduce), (GP, GP));
}

#[test]
fn x2apic_registers_split_between_the_cpu_the_vmm_and_gp() {
    let config = MsrConfig::default();
    for msr in [
        0x808, 0x80a, 0x80b, 0x810, 0x817, 0x818, 0x820, 0x827, 0x83f,
    ] {
        assert_eq!(
            both(msr, &config),
            (MsrDecision::VirtualApic, MsrDecision::VirtualApic)
        );
    }
    for msr in [
        0x802, 0x803, 0x80d, 0x828, 0x82f, 0x830, 0x833, 0x834, 0x837, 0x839, 0x83e,
    ] {
        assert_eq!(both(msr, &config), (VE, VE), "MSR {msr:#x}");
    }
    for msr in [
        0x800, 0x801, 0x804, 0x807, 0x829, 0x82e, 0x831, 0x840, 0x8ff,
    ] {
        assert_eq!(both(msr, &config), (GP, GP), "MSR {msr:#x}");
    }
}

#[test]
fn msrs_outside_the_bitmaps_always_raise_ve() {
    let reduce = MsrConfig {
        reduce_ve: true,
        ..MsrConfig::default()
    };
    for msr in [
        0x2000,
        0x4000_0000,
        0x4b56_4d00,
        0xbfff_ffff,
        0xc000_2000,
        u32::MAX,
    ] {
        assert_eq!(both(msr, &reduce), (VE, VE), "MSR {msr:#x}");
    }
    // The last MSRs the bitmaps cover follow the table (unlisted: #VE, or #GP with REDUCE_VE).
    assert_eq!(both(0x1fff, &reduce), (GP, GP));
    assert_eq!(both(0xc000_1fff, &MsrConfig::default()), (VE, VE));
}

#[test]
fn context_msrs_are_native_and_some_writes_exit() {
    let config = MsrConfig::default();
    for msr in [
        0x174,
        0x277,
        0xc000_0081,
        0xc000_0082,
        0xc000_0084,
        0xc000_0100,
        0xc000_0103,
    ] {
        assert_eq!(
            both(msr, &config),
            (MsrDecision::Native, MsrDecision::Native)
        );
    }
    assert_eq!(
        both(0x10, &config),
        (MsrDecision::Native, VE),
        "TSC: read native, write #VE"
    );
    assert_eq!(
        both(0xc000_0080, &config),
        (
            MsrDecision::Native,
            MsrDecision::Emulated(EmulatedMsr::Efer)
        )
    );
    assert_eq!(
        both(0x1a0, &config),
        (MsrDecision::Emulated(EmulatedMsr::MiscEnable), VE)
    );
    assert_eq!(both(0x8c, &config), (GP, GP), "SGX launch keys");
    assert_eq!(
        both(0x6e0, &config),
        (VE, VE),
        "TSC_DEADLINE without REDUCE_VE"
    );
}

#[test]
fn dynamic_msrs_follow_the_td_features() {
    let off = MsrConfig::default();
    let on = MsrConfig {
        perfmon: true,
        cet: true,
        lbr: true,
        ..off
    };
    for msr in [0xc1, 0x186, 0x38f, 0x309] {
        assert_eq!(both(msr, &off), (GP, GP));
        assert_eq!(both(msr, &on), (MsrDecision::Native, MsrDecision::Native));
    }
    assert_eq!(
        both(0x6a2, &on),
        (MsrDecision::Native, MsrDecision::Native),
        "S_CET"
    );
    assert_eq!(both(0x6a2, &off), (GP, GP));
    assert_eq!(
        both(0x14ce, &on),
        (MsrDecision::Native, MsrDecision::Native),
        "LBR_CTL"
    );
    assert_eq!(both(0x570, &on), (GP, GP), "PT not enabled");
}

#[test]
fn efer_writes_may_change_sce_only() {
    let efer = 0xd01; // SCE, LME, LMA, NXE
    assert_eq!(efer_write(efer, efer & !EFER_SCE), Ok(0xd00));
    assert_eq!(efer_write(0xd00, 0xd01), Ok(0xd01));
    // LMA is read-only: writing it clear keeps it.
    assert_eq!(efer_write(efer, efer & !EFER_LMA), Ok(efer));
    assert_eq!(efer_write(efer, efer & !(1 << 11)), Err(VE), "NXE");
    assert_eq!(efer_write(efer, efer & !(1 << 8)), Err(VE), "LME");
    assert_eq!(efer_write(efer, efer | 1 << 12), Err(VE), "SVME");
}

#[test]
fn the_table_is_sorted_and_disjoint() {
    for pair in TABLE.windows(2) {
        assert!(
            pair[0].0 <= pair[0].1 && pair[0].1 < pair[1].0,
            "{:#x}",
            pair[1].0
        );
    }
}
