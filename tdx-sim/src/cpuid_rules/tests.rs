use super::*;

/// What QEMU TCG's `-cpu max` answers on an AMD-flavoured host, reduced to what matters here:
/// AMD vendor strings, AMD family, SVM and other AMD-only bits, VMX set to prove it is masked.
fn tcg_max(leaf: u32, subleaf: u32) -> CpuidValues {
    match (leaf, subleaf) {
        (0, _) => CpuidValues::new(0xd, 0x6874_7541, 0x444d_4163, 0x6974_6e65), // AuthenticAMD
        (1, _) => CpuidValues::new(0x0083_0f10, 0x0001_0800, 0xfffa_3223, 0x178b_fbff),
        (7, 0) => CpuidValues::new(1, 0xf1bf_07ab, 0x0040_5f4e, 0xac00_0010),
        (0xb, s) => CpuidValues::new(1, 1, s | 0x100, 0),
        (0xd, 0) => CpuidValues::new(0x7, 0x340, 0x340, 0),
        (0x8000_0000, _) => CpuidValues::new(0x8000_001f, 0x6874_7541, 0x444d_4163, 0x6974_6e65),
        (0x8000_0001, _) => CpuidValues::new(0x0083_0f10, 0, 0x0000_01f7, 0xefd3_fbff),
        (0x8000_0008, _) => CpuidValues::new(0x3030, 0x0000_0205, 0, 0),
        _ => CpuidValues::new(0xdead_beef, 0xdead_beef, 0xdead_beef, 0xdead_beef),
    }
}

fn ask(leaf: u32, subleaf: u32, config: &CpuidConfig, vcpu: &VcpuCpuidState) -> CpuidDecision {
    td_cpuid(leaf, subleaf, config, vcpu, tcg_max)
}

fn values(leaf: u32, subleaf: u32, config: &CpuidConfig, vcpu: &VcpuCpuidState) -> CpuidValues {
    match ask(leaf, subleaf, config, vcpu) {
        CpuidDecision::Module { values, .. } => values,
        other => panic!("CPUID {leaf:#x}.{subleaf} raised {other:?}"),
    }
}

fn ve(leaf: u32, subleaf: u32, config: &CpuidConfig) -> Option<CpuidVeReason> {
    match ask(leaf, subleaf, config, &VcpuCpuidState::default()) {
        CpuidDecision::VirtualizationException(reason) => Some(reason),
        CpuidDecision::Module { .. } => None,
    }
}

fn vendor(v: CpuidValues) -> [u8; 12] {
    let mut s = [0u8; 12];
    s[..4].copy_from_slice(&v.ebx.to_le_bytes());
    s[4..8].copy_from_slice(&v.edx.to_le_bytes());
    s[8..].copy_from_slice(&v.ecx.to_le_bytes());
    s
}

#[test]
fn tdvf_td_detection_sees_an_intel_td() {
    let config = CpuidConfig::default();
    let vcpu = VcpuCpuidState::default();
    let leaf0 = values(0, 0, &config, &vcpu);
    assert_eq!(&vendor(leaf0), b"GenuineIntel");
    assert!(leaf0.eax >= 0x21);
    assert_eq!(
        ask(0, 0, &config, &vcpu),
        CpuidDecision::Module {
            values: leaf0,
            source: CpuidSource::Fixed
        }
    );
    let leaf1 = values(1, 0, &config, &vcpu);
    assert_ne!(leaf1.ecx & 1 << 31, 0, "hypervisor bit");
    assert_ne!(leaf1.ecx & 1 << 21, 0, "x2APIC");
    assert_eq!(
        leaf1.ecx & 1 << 5,
        0,
        "VMX is fixed-0 even though the host reports it"
    );
    assert_eq!(
        leaf1.eax, config.signature,
        "Intel signature, not the AMD family"
    );
    let tdx = values(0x21, 0, &config, &vcpu);
    assert_eq!((tdx.eax, &vendor(tdx)), (0, b"IntelTDX    "));
}

#[test]
fn the_hypervisor_range_always_raises_ve() {
    let reduce = CpuidConfig {
        reduce_ve: true,
        ..CpuidConfig::default()
    };
    for leaf in [0x4000_0000, 0x4000_0001, 0x4fff_ffff] {
        assert_eq!(
            ve(leaf, 0, &CpuidConfig::default()),
            Some(CpuidVeReason::HypervisorRange)
        );
        assert_eq!(ve(leaf, 0, &reduce), Some(CpuidVeReason::HypervisorRange));
    }
    // Just outside the range: answered as the highest base leaf (0x23 sub-leaf 0).
    assert_eq!(ve(0x3fff_ffff, 0, &CpuidConfig::default()), None);
    assert_eq!(ve(0x5000_0000, 0, &CpuidConfig::default()), None);
}

#[test]
fn out_of_range_leaves_answer_as_the_highest_base_leaf() {
    let config = CpuidConfig {
        max_base_leaf: 0x21,
        ..CpuidConfig::default()
    };
    let vcpu = VcpuCpuidState::default();
    let tdx = values(0x21, 0, &config, &vcpu);
    assert_eq!(values(0x22, 0, &config, &vcpu), tdx);
    assert_eq!(values(0x8000_0009, 0, &config, &vcpu), tdx);
    assert_eq!(values(0xffff_ffff, 0, &config, &vcpu), tdx);
    // Sub-leaf 1 of 0x21 is not in the table.
    assert_eq!(ve(0x21, 1, &config), Some(CpuidVeReason::NotVirtualized));
}

#[test]
fn leaves_outside_the_table_raise_ve_or_read_zero_under_reduce_ve() {
    for leaf in [0x9, 0xc, 0xf, 0x10, 0x16, 0x17, 0x1b, 0x8000_0003] {
        assert_eq!(
            ve(leaf, 0, &CpuidConfig::default()),
            Some(CpuidVeReason::NotVirtualized)
        );
        let reduce = CpuidConfig {
            reduce_ve: true,
            ..CpuidConfig::default()
        };
        assert_eq!(
            ask(leaf, 0, &reduce, &VcpuCpuidState::default()),
            CpuidDecision::Module {
                values: CpuidValues::default(),
                source: CpuidSource::ReducedVe
            }
        );
    }
}

#[test]
fn gated_leaves_follow_their_td_controls() {
    let default = CpuidConfig::default();
    assert_eq!(ve(2, 0, &default), Some(CpuidVeReason::NotVirtualized));
    let cpuid2 = CpuidConfig {
        virt_cpuid2: true,
        ..default
    };
    assert_eq!(
        values(2, 0, &cpuid2, &VcpuCpuidState::default()).eax,
        0x00fe_ff01
    );
    assert_eq!(ve(6, 0, &default), Some(CpuidVeReason::NotVirtualized));
    let reduce = CpuidConfig {
        reduce_ve: true,
        ..default
    };
    assert_eq!(
        values(6, 0, &reduce, &VcpuCpuidState::default()).eax,
        4,
        "ARAT"
    );
    assert_eq!(
        ve(0xb, 0, &reduce),
        Some(CpuidVeReason::NotVirtualized),
        "needs ENUM_TOPOLOGY"
    );
    let topology = CpuidConfig {
        enum_topology: true,
        ..default
    };
    let vcpu = VcpuCpuidState {
        vcpu_index: 2,
        x2apic_id: 7,
        ..VcpuCpuidState::default()
    };
    let b = values(0xb, 1, &topology, &vcpu);
    assert_eq!((b.ecx & 0xffff, b.edx), (0x101, 7));
    assert_eq!(
        values(1, 0, &topology, &vcpu).ebx >> 24,
        7,
        "x2APIC ID with ENUM_TOPOLOGY"
    );
    assert_eq!(
        values(1, 0, &default, &vcpu).ebx >> 24,
        2,
        "vCPU index without"
    );
}

#[test]
fn dynamic_fields_follow_the_vcpu() {
    let config = CpuidConfig {
        logical_processors: 4,
        tsc_deadline: true,
        ..CpuidConfig::default()
    };
    let mut vcpu = VcpuCpuidState::default();
    let off = values(1, 0, &config, &vcpu);
    vcpu.cr4_osxsave = true;
    vcpu.cr4_pke = true;
    vcpu.long_mode = true;
    let on = values(1, 0, &config, &vcpu);
    assert_eq!((off.ecx >> 27 & 1, on.ecx >> 27 & 1), (0, 1), "OSXSAVE");
    assert_eq!(on.ecx >> 24 & 1, 1, "TSC deadline as configured");
    assert_eq!(
        on.ebx >> 8 & 0xffff,
        0x0408,
        "4 logical processors, 64-byte CLFLUSH"
    );
    assert_eq!(values(7, 0, &config, &vcpu).ecx >> 4 & 1, 1, "OSPKE");
    let ext = values(0x8000_0001, 0, &config, &vcpu);
    assert_eq!(ext.edx >> 11 & 1, 1, "SYSCALL in 64-bit mode");
    let ext32 = values(0x8000_0001, 0, &config, &VcpuCpuidState::default());
    assert_eq!(ext32.edx >> 11 & 1, 0, "no SYSCALL outside 64-bit mode");
    assert_eq!(ext.ecx & 1 << 2, 0, "AMD's SVM bit is fixed-0");
    assert_ne!(ext.edx & 1 << 29, 0, "long mode from the host");
}

#[test]
fn amd_vendor_strings_and_unknown_host_bits_do_not_leak() {
    let config = CpuidConfig::default();
    let vcpu = VcpuCpuidState::default();
    let ext = values(0x8000_0000, 0, &config, &vcpu);
    assert_eq!(ext, CpuidValues::new(MAX_EXTENDED_LEAF, 0, 0, 0));
    // Fixed-zero leaves never consult the host (whose answer here is 0xdeadbeef).
    for leaf in [3, 8, 0xe, 0x12, 0x20, 0x22] {
        assert_eq!(
            values(leaf, 0, &config, &vcpu),
            CpuidValues::default(),
            "leaf {leaf:#x}"
        );
    }
    let phys = values(0x8000_0008, 0, &config, &vcpu);
    assert_eq!(
        (phys.eax, phys.ebx),
        (0x3030, 0x200),
        "address widths and WBNOINVD only"
    );
    assert_eq!(
        values(7, 0, &config, &vcpu).eax,
        2,
        "highest sub-leaf of leaf 7"
    );
}

#[test]
fn cpuid_ve_set_applies_per_privilege_level() {
    let config = CpuidConfig::default();
    let supervisor = VcpuCpuidState {
        ve_all_supervisor: true,
        ..VcpuCpuidState::default()
    };
    assert_eq!(
        ask(0, 0, &config, &supervisor),
        CpuidDecision::VirtualizationException(CpuidVeReason::TdRequested)
    );
    let user = VcpuCpuidState {
        cpl: 3,
        ..supervisor
    };
    assert!(matches!(
        ask(0, 0, &config, &user),
        CpuidDecision::Module { .. }
    ));
}
