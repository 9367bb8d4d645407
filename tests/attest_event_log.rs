//! The CC event log: logs laid out the way edk2 (TDVF) and td-shim write them, built here by an
//! encoder of the test's own; their replay against SHA-384 chains computed here; every corner the
//! format has (fills, cut-short copies, MRTD and EV_NO_ACTION records, several algorithms); and
//! hostile logs, which must fail with the right error or end cleanly, never panic.
#![cfg(feature = "model")]

mod early_support;

use early_support::back_current_stack;
use proptest::prelude::*;
use sha2::{Digest, Sha256, Sha384};
use tdx_boot::attest::algorithm::{TPM_ALG_SHA1, TPM_ALG_SHA256, TPM_ALG_SHA384};
use tdx_boot::attest::event_type::{EV_EFI_ACTION, EV_IPL, EV_NO_ACTION, EV_SEPARATOR};
use tdx_boot::attest::{
    Ccel, CcelError, EventLog, EventLogError, EventLogWriter, LogEnd, LogWriteError,
    MeasureEventError, ReplayError, measure_event,
};
use tdx_boot::early::{self, IdentityMapped, Policy};
use tdx_boot::model::{ModelConfig, TdxModule};

// ---------------------------------------------------------------------------------------------
// An encoder of the test's own (independent of the crate's writer)
// ---------------------------------------------------------------------------------------------

fn sha384(data: &[u8]) -> [u8; 48] {
    Sha384::digest(data).into()
}

/// The header record: TCG_PCR_EVENT with a Spec ID Event03 listing `algorithms`.
fn header(index: u32, algorithms: &[(u16, u16)]) -> Vec<u8> {
    let mut spec = b"Spec ID Event03\0".to_vec();
    spec.extend(0u32.to_le_bytes()); // platform class
    spec.extend([0, 2, 2, 2]); // minor, major, errata, uintn size
    spec.extend((algorithms.len() as u32).to_le_bytes());
    for (id, size) in algorithms {
        spec.extend(id.to_le_bytes());
        spec.extend(size.to_le_bytes());
    }
    spec.push(3);
    spec.extend(b"abc"); // vendor info
    let mut out = index.to_le_bytes().to_vec();
    out.extend(EV_NO_ACTION.to_le_bytes());
    out.extend([0; 20]);
    out.extend((spec.len() as u32).to_le_bytes());
    out.extend(spec);
    out
}

/// A TCG_PCR_EVENT2 record with the given digests.
fn record(mr_index: u32, event_type: u32, digests: &[(u16, Vec<u8>)], data: &[u8]) -> Vec<u8> {
    let mut out = mr_index.to_le_bytes().to_vec();
    out.extend(event_type.to_le_bytes());
    out.extend((digests.len() as u32).to_le_bytes());
    for (id, digest) in digests {
        out.extend(id.to_le_bytes());
        out.extend(digest);
    }
    out.extend((data.len() as u32).to_le_bytes());
    out.extend(data);
    out
}

/// A SHA-384-only record measuring `data` itself.
fn measured(mr_index: u32, event_type: u32, data: &[u8]) -> Vec<u8> {
    record(
        mr_index,
        event_type,
        &[(TPM_ALG_SHA384, sha384(data).to_vec())],
        data,
    )
}

const SHA384_ONLY: &[(u16, u16)] = &[(TPM_ALG_SHA384, 48)];

/// What TDVF leaves: header index 1, records, 0xFF up to `area` bytes.
fn edk2_area(records: &[Vec<u8>], area: usize) -> Vec<u8> {
    let mut log = header(1, SHA384_ONLY);
    for r in records {
        log.extend(r);
    }
    assert!(log.len() <= area);
    log.resize(area, 0xFF);
    log
}

/// What td-shim leaves: header index 0, records, zeros.
fn td_shim_area(records: &[Vec<u8>], area: usize) -> Vec<u8> {
    let mut log = header(0, SHA384_ONLY);
    for r in records {
        log.extend(r);
    }
    log.resize(area, 0);
    log
}

/// RTMR values computed the slow way from (rtmr, digest) pairs.
fn chain(extensions: &[(usize, [u8; 48])]) -> [[u8; 48]; 4] {
    let mut rtmr = [[0u8; 48]; 4];
    for (i, digest) in extensions {
        let mut both = rtmr[*i].to_vec();
        both.extend(digest);
        rtmr[*i] = sha384(&both);
    }
    rtmr
}

fn tdvf_like_records() -> Vec<Vec<u8>> {
    vec![
        measured(1, 0x8000_000A, b"TDHOB"),
        measured(1, 0x8000_000A, b"CFV"),
        // EV_NO_ACTION in RTMR[0]'s index with a non-zero digest: still not extended.
        record(
            1,
            EV_NO_ACTION,
            &[(TPM_ALG_SHA384, vec![7; 48])],
            b"StartupLocality\0\x03",
        ),
        // MRTD: recorded, never extended by the guest.
        measured(0, EV_EFI_ACTION, b"MRTD is the module's"),
        measured(
            2,
            EV_EFI_ACTION,
            b"Calling EFI Application from Boot Option",
        ),
        measured(1, EV_SEPARATOR, &[0; 4]),
        measured(2, EV_SEPARATOR, &[0; 4]),
        measured(2, 0x8000_0003, b"kernel image"),
        measured(3, EV_IPL, b"kernel configuration"),
        measured(4, EV_IPL, b"application"),
    ]
}

fn tdvf_like_rtmrs() -> [[u8; 48]; 4] {
    chain(&[
        (0, sha384(b"TDHOB")),
        (0, sha384(b"CFV")),
        (1, sha384(b"Calling EFI Application from Boot Option")),
        (0, sha384(&[0; 4])),
        (1, sha384(&[0; 4])),
        (1, sha384(b"kernel image")),
        (2, sha384(b"kernel configuration")),
        (3, sha384(b"application")),
    ])
}

// ---------------------------------------------------------------------------------------------
// Both firmware's logs
// ---------------------------------------------------------------------------------------------

#[test]
fn an_edk2_log_replays_to_the_chain_computed_here() {
    let area = edk2_area(&tdvf_like_records(), 0x1_0000);
    let log = EventLog::parse(&area).unwrap();
    assert_eq!(log.len(), 10);
    assert_eq!(log.end(), LogEnd::Fill0xFF);
    assert_eq!(log.spec_id().header_index, 1);
    assert_eq!(log.spec_id().vendor_info, b"abc");
    assert_eq!(log.replay().unwrap(), tdvf_like_rtmrs());
    let used: usize =
        header(1, SHA384_ONLY).len() + tdvf_like_records().iter().map(Vec::len).sum::<usize>();
    assert_eq!(log.bytes(), &area[..used]);
    let events: Vec<_> = log.events().collect();
    assert_eq!(events[0].data, b"TDHOB");
    assert_eq!(events[0].rtmr_index(), Some(0));
    assert_eq!(events[2].rtmr_index(), None, "EV_NO_ACTION");
    assert_eq!(events[3].rtmr_index(), None, "MRTD");
    assert_eq!(events[9].rtmr_index(), Some(3));
    assert_eq!(events[7].sha384(), Some(&sha384(b"kernel image")));
}

#[test]
fn a_td_shim_log_with_index_0_and_zero_fill_replays_the_same() {
    let area = td_shim_area(&tdvf_like_records(), 0x2000);
    let log = EventLog::parse(&area).unwrap();
    assert_eq!(log.spec_id().header_index, 0);
    assert_eq!(log.end(), LogEnd::Zeros);
    assert_eq!(log.len(), 10);
    assert_eq!(log.replay().unwrap(), tdvf_like_rtmrs());
}

#[test]
fn a_copy_cut_short_keeps_its_complete_records() {
    let full = edk2_area(&tdvf_like_records(), 0x1000);
    let used = EventLog::parse(&full).unwrap().bytes().len();
    // Exactly at the end of the records: no fill at all.
    let exact = EventLog::parse(&full[..used]).unwrap();
    assert_eq!((exact.len(), exact.end()), (10, LogEnd::AreaEnd));
    // Inside the last record, at every possible byte.
    let last = tdvf_like_records().last().unwrap().len();
    for cut in used - last + 1..used {
        let log = EventLog::parse(&full[..cut]).unwrap();
        assert_eq!(
            (log.len(), log.end()),
            (9, LogEnd::CutShort),
            "cut at {cut}"
        );
        assert_ne!(
            log.replay().unwrap(),
            tdvf_like_rtmrs(),
            "RTMR[3] misses its event"
        );
        assert_eq!(log.replay().unwrap()[..3], tdvf_like_rtmrs()[..3]);
    }
}

#[test]
fn an_empty_log_replays_to_zeros() {
    let area = edk2_area(&[], 256);
    let log = EventLog::parse(&area).unwrap();
    assert!(log.is_empty());
    assert_eq!(log.replay().unwrap(), [[0; 48]; 4]);
}

#[test]
fn several_algorithms_extend_with_sha384_only() {
    let algorithms = [(TPM_ALG_SHA256, 32), (TPM_ALG_SHA384, 48)];
    let mut area = header(1, &algorithms);
    for data in [&b"one"[..], b"two"] {
        area.extend(record(
            3,
            EV_IPL,
            &[
                (TPM_ALG_SHA256, Sha256::digest(data).to_vec()),
                (TPM_ALG_SHA384, sha384(data).to_vec()),
            ],
            data,
        ));
    }
    area.resize(area.len() + 64, 0xFF);
    let log = EventLog::parse(&area).unwrap();
    let event = log.events().next().unwrap();
    assert_eq!(
        event.digest(TPM_ALG_SHA256),
        Some(&Sha256::digest(b"one")[..])
    );
    assert_eq!(event.digests().count(), 2);
    assert_eq!(
        log.replay().unwrap(),
        chain(&[(2, sha384(b"one")), (2, sha384(b"two"))])
    );
}

#[test]
fn a_log_without_sha384_cannot_give_rtmrs() {
    let mut area = header(1, &[(TPM_ALG_SHA256, 32)]);
    area.extend(record(1, EV_IPL, &[(TPM_ALG_SHA256, vec![1; 32])], b"x"));
    let log = EventLog::parse(&area).unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log.replay(), Err(ReplayError::NoSha384));
    // Listed in the header, but one extending record lacks it.
    let mut area = header(1, &[(TPM_ALG_SHA256, 32), (TPM_ALG_SHA384, 48)]);
    let offset = area.len();
    area.extend(record(2, EV_IPL, &[(TPM_ALG_SHA256, vec![1; 32])], b"x"));
    let log = EventLog::parse(&area).unwrap();
    assert_eq!(log.replay(), Err(ReplayError::MissingSha384 { offset }));
}

// ---------------------------------------------------------------------------------------------
// Hostile logs
// ---------------------------------------------------------------------------------------------

fn parse_err(bytes: &[u8]) -> Option<EventLogError> {
    EventLog::parse(bytes).err()
}

#[test]
fn hostile_headers_are_refused() {
    assert_eq!(parse_err(&[]), Some(EventLogError::TruncatedHeader));
    let good = header(1, SHA384_ONLY);
    for cut in 0..good.len() {
        assert!(EventLog::parse(&good[..cut]).is_err(), "cut at {cut}");
    }
    let mut bad = good.clone();
    bad[0] = 2;
    assert_eq!(parse_err(&bad), Some(EventLogError::BadHeaderIndex(2)));
    let mut bad = good.clone();
    bad[4] = 4;
    assert_eq!(parse_err(&bad), Some(EventLogError::NotSpecIdHeader));
    let mut bad = good.clone();
    bad[32 + 14] = b'2'; // "Spec ID Event02"
    assert_eq!(parse_err(&bad), Some(EventLogError::NotSpecIdHeader));
    assert_eq!(
        parse_err(&header(1, &[])),
        Some(EventLogError::BadAlgorithmCount(0))
    );
    let nine = [(0x100u16, 8u16); 9];
    assert_eq!(
        parse_err(&header(1, &nine)),
        Some(EventLogError::BadAlgorithmCount(9))
    );
    assert_eq!(
        parse_err(&header(1, &[(TPM_ALG_SHA384, 32)])),
        Some(EventLogError::BadDigestSize {
            algorithm: TPM_ALG_SHA384,
            size: 32
        })
    );
    assert_eq!(
        parse_err(&header(1, &[(0x7777, 65)])),
        Some(EventLogError::BadDigestSize {
            algorithm: 0x7777,
            size: 65
        })
    );
    assert_eq!(
        parse_err(&header(1, &[(TPM_ALG_SHA384, 48), (TPM_ALG_SHA384, 48)])),
        Some(EventLogError::DuplicateAlgorithm(TPM_ALG_SHA384))
    );
    // An event size that ends the Spec ID structure inside its algorithm list.
    let mut bad = good.clone();
    bad[28..32].copy_from_slice(&30u32.to_le_bytes());
    assert_eq!(parse_err(&bad), Some(EventLogError::BadSpecId));
}

#[test]
fn hostile_records_are_refused_or_end_the_log() {
    let head = header(1, SHA384_ONLY);
    let at = head.len();
    let with = |r: Vec<u8>| {
        let mut area = head.clone();
        area.extend(measured(1, EV_IPL, b"first"));
        area.extend(r);
        area
    };
    let at = at + measured(1, EV_IPL, b"first").len();
    let zero = record(1, EV_IPL, &[], b"");
    assert_eq!(
        parse_err(&with(zero)),
        Some(EventLogError::BadDigestCount {
            offset: at,
            count: 0
        })
    );
    let two = record(
        1,
        EV_IPL,
        &[(TPM_ALG_SHA384, vec![0; 48]), (TPM_ALG_SHA384, vec![0; 48])],
        b"",
    );
    assert_eq!(
        parse_err(&with(two)),
        Some(EventLogError::BadDigestCount {
            offset: at,
            count: 2
        })
    );
    let sha1 = record(1, EV_IPL, &[(TPM_ALG_SHA1, vec![0; 20])], b"");
    assert_eq!(
        parse_err(&with(sha1)),
        Some(EventLogError::UnlistedAlgorithm {
            offset: at,
            algorithm: TPM_ALG_SHA1
        })
    );
    let mut huge = record(1, EV_IPL, &[(TPM_ALG_SHA384, vec![0; 48])], b"");
    let size_at = huge.len() - 4;
    huge[size_at..].copy_from_slice(&u32::MAX.to_le_bytes());
    let area = with(huge);
    let log = EventLog::parse(&area).unwrap();
    assert_eq!((log.len(), log.end()), (1, LogEnd::CutShort));
    let beyond = measured(5, EV_IPL, b"RTMR[4] does not exist");
    let area = with(beyond);
    let log = EventLog::parse(&area).unwrap();
    assert_eq!(
        log.replay(),
        Err(ReplayError::BadMrIndex {
            offset: at,
            mr_index: 5
        })
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(log) = EventLog::parse(&bytes) {
            prop_assert!(log.bytes().len() <= bytes.len());
            prop_assert_eq!(log.events().count(), log.len());
            let _ = log.replay();
        }
        let _ = Ccel::parse(&bytes);
    }

    #[test]
    fn a_mutated_log_parses_or_fails_but_never_panics(
        flips in proptest::collection::vec((0usize..2048, any::<u8>()), 1..8),
    ) {
        let mut area = edk2_area(&tdvf_like_records(), 2048);
        for (at, byte) in flips {
            if let Some(b) = area.get_mut(at) {
                *b = byte;
            }
        }
        if let Ok(log) = EventLog::parse(&area) {
            prop_assert_eq!(log.events().count(), log.len());
            let _ = log.replay();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CCEL
// ---------------------------------------------------------------------------------------------

fn ccel(laml: u64, lasa: u64) -> Vec<u8> {
    let mut t = b"CCEL".to_vec();
    t.extend(56u32.to_le_bytes());
    t.push(1); // revision
    t.push(0); // checksum, fixed below
    t.extend(b"TDXBOT");
    t.extend(b"TESTTABL");
    t.extend([0; 12]);
    t.extend([2, 0, 0, 0]);
    t.extend(laml.to_le_bytes());
    t.extend(lasa.to_le_bytes());
    let sum = t.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    t[9] = sum.wrapping_neg();
    t
}

#[test]
fn ccel_tables_are_parsed_and_checked() {
    let table = ccel(0x1_0000, 0x7f00_0000);
    let parsed = Ccel::parse(&table).unwrap();
    assert_eq!((parsed.cc_type, parsed.cc_subtype), (2, 0));
    assert_eq!(parsed.log_area_minimum_length, 0x1_0000);
    assert_eq!(parsed.log_area_start_address, 0x7f00_0000);
    assert_eq!(parsed.log_area(), 0x7f00_0000..0x7f01_0000);
    // A longer slice (a whole page) is fine.
    let mut page = table.clone();
    page.resize(4096, 0xAB);
    assert_eq!(Ccel::parse(&page), Ok(parsed));
    let mut bad = table.clone();
    bad[20] ^= 1;
    assert_eq!(Ccel::parse(&bad), Err(CcelError::BadChecksum));
    let mut bad = table.clone();
    bad[0] = b'X';
    assert!(matches!(Ccel::parse(&bad), Err(CcelError::BadSignature(_))));
    assert!(matches!(
        Ccel::parse(&table[..55]),
        Err(CcelError::TooShort { .. })
    ));
    let mut short = table.clone();
    short[4] = 52;
    assert_eq!(Ccel::parse(&short), Err(CcelError::BadLength(52)));
    for (laml, lasa) in [(0, 0x1000), (0x1000, 0), (0x2000, u64::MAX - 0x1000)] {
        assert_eq!(
            Ccel::parse(&ccel(laml, lasa)),
            Err(CcelError::BadLogArea {
                start: lasa,
                length: laml
            })
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The kernel's records: continue the firmware's log, measure into the model's RTMRs
// ---------------------------------------------------------------------------------------------

fn model() -> TdxModule {
    let model = TdxModule::new(ModelConfig::default());
    early::init(&model.vcpu(0), Policy::default()).unwrap();
    model
}

fn identity() -> IdentityMapped {
    // SAFETY: `back_current_stack` made the stack window identity mapped in the model.
    unsafe { IdentityMapped::new() }
}

#[test]
fn the_kernel_continues_the_firmware_log_and_it_replays_to_the_module() {
    let model = model();
    // SAFETY: the buffers passed to the module live on this stack.
    unsafe { back_current_stack(&model) };
    let cpu = model.vcpu(0);
    // The firmware's part: extend the module as the log says.
    let area = edk2_area(&tdvf_like_records(), 4096);
    let firmware = EventLog::parse(&area).unwrap();
    for event in firmware.events() {
        if let (Some(i), Some(d)) = (event.rtmr_index(), event.sha384()) {
            early::extend_rtmr_digest(&cpu, i as u8, d, &identity()).unwrap();
        }
    }
    let mut buffer = vec![0u8; 4096];
    let mut log = EventLogWriter::continue_log(&mut buffer, &firmware).unwrap();
    let digest = measure_event(
        &cpu,
        &mut log,
        2,
        EV_IPL,
        b"config: a=1",
        b"config",
        &identity(),
    )
    .unwrap();
    assert_eq!(digest, sha384(b"config: a=1"));
    measure_event(&cpu, &mut log, 3, EV_IPL, b"app", b"app", &identity()).unwrap();
    assert_eq!(log.records(), 12);
    let combined = EventLog::parse(log.bytes()).unwrap();
    assert_eq!(combined.len(), 12);
    let last = combined.events().last().unwrap();
    assert_eq!((last.mr_index, last.data), (4, &b"app"[..]));
    let replayed = combined.replay().unwrap();
    for (i, value) in replayed.iter().enumerate() {
        assert_eq!(*value, model.rtmr(i), "RTMR[{i}]");
    }
    assert_ne!(replayed, firmware.replay().unwrap());
}

#[test]
fn a_record_that_cannot_be_written_extends_nothing() {
    let model = model();
    // SAFETY: as above.
    unsafe { back_current_stack(&model) };
    let cpu = model.vcpu(0);
    let area = edk2_area(&[], 256);
    let firmware = EventLog::parse(&area).unwrap();
    let room = firmware.bytes().len() + 12 + 50 + 4 + 10;
    let mut buffer = vec![0u8; room];
    let mut log = EventLogWriter::continue_log(&mut buffer, &firmware).unwrap();
    let too_big = [0u8; 11];
    let full = measure_event(&cpu, &mut log, 2, EV_IPL, b"x", &too_big, &identity());
    assert!(matches!(
        full,
        Err(MeasureEventError::Log(LogWriteError::Full { .. }))
    ));
    assert_eq!(model.rtmr(2), [0; 48], "not extended");
    measure_event(&cpu, &mut log, 2, EV_IPL, b"x", &too_big[..10], &identity()).unwrap();
    assert_eq!(model.rtmr(2), chain(&[(2, sha384(b"x"))])[2]);
    assert!(matches!(
        measure_event(&cpu, &mut log, 4, EV_IPL, b"x", b"", &identity()),
        Err(MeasureEventError::Log(LogWriteError::BadRtmrIndex(4)))
    ));

    // A header with SHA-1 as well: the kernel cannot produce a complete record.
    let area = header(1, &[(TPM_ALG_SHA1, 20), (TPM_ALG_SHA384, 48)]);
    let firmware = EventLog::parse(&area).unwrap();
    let mut buffer = vec![0u8; 1024];
    let mut log = EventLogWriter::continue_log(&mut buffer, &firmware).unwrap();
    assert_eq!(
        measure_event(&cpu, &mut log, 1, EV_IPL, b"y", b"", &identity()),
        Err(MeasureEventError::Log(LogWriteError::UnsupportedAlgorithm(
            TPM_ALG_SHA1
        )))
    );
    assert_eq!(model.rtmr(1), [0; 48], "not extended");
    // A log without SHA-384 cannot be continued at all.
    let area = header(1, &[(TPM_ALG_SHA256, 32)]);
    let firmware = EventLog::parse(&area).unwrap();
    assert_eq!(
        EventLogWriter::continue_log(&mut buffer, &firmware).err(),
        Some(LogWriteError::NoSha384)
    );
}

#[test]
fn a_kernel_without_a_firmware_log_starts_its_own() {
    let model = model();
    // SAFETY: as above.
    unsafe { back_current_stack(&model) };
    let cpu = model.vcpu(0);
    let mut buffer = vec![0u8; 512];
    let mut log = EventLogWriter::new_sha384(&mut buffer).unwrap();
    measure_event(&cpu, &mut log, 2, EV_IPL, b"k", b"k", &identity()).unwrap();
    let parsed = EventLog::parse(log.bytes()).unwrap();
    assert_eq!(parsed.spec_id().header_index, 0);
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed.replay().unwrap()[2], model.rtmr(2));
}
