//! Measured boot and attestation as a TD kernel does them with tdx-boot's `attest`:
//! 1. find CCEL through the RSDP (in plain QEMU the fake firmware publishes one), read its log
//!    area from firmware (ACPI or reserved) memory only, replay it, and compare with a fresh
//!    TDREPORT;
//! 2. measure the kernel's events into RTMR[2], recorded in the kernel's log: a copy of the
//!    firmware's log in kernel memory with the kernel's records appended; it must replay to the
//!    RTMRs of a later TDREPORT, whose REPORTDATA binds the log (SHA-384 of its bytes);
//! 3. GetQuote through a shared buffer (`convert`) and the Linux buffer header, bounded polling,
//!    then the quote's fields checked against that TDREPORT.
//!
//! A verifier receives the quote and the kernel's log (here: its size and SHA-384 are printed;
//! a real kernel sends the bytes with the quote), checks the quote, checks that REPORTDATA holds
//! the log's SHA-384, replays the log and compares with the quote's RTMRs.

use crate::check;
use crate::fake_firmware;
use crate::measurement;
use crate::paging::Mapper;
use crate::platform::Platform;
use alloc::alloc::{Layout, alloc};
use alloc::vec;
use sha2::{Digest, Sha384};
use tdx_boot::attest::{
    CCEL_SIGNATURE, Ccel, EventLog, EventLogWriter, GetQuoteError, LINUX_POLL_INTERVAL_MS,
    LINUX_POLL_LIMIT, Quote, QuoteBuffer,
};
use tdx_boot::convert::{self, ConvertRange};
use tdx_boot::e820::{MemoryMap, RegionKind};
use tdx_boot::early::{self, IdentityMapped};
use tdx_boot::mpwk;
use tdx_boot::tdcall::{Hardware, TdReport};

/// Bytes of the GetQuote buffer (Linux uses 16 KiB; a version-4 quote with certification
/// data is a few KiB).
const QUOTE_BUFFER_LEN: usize = 16 * 1024;
/// Room the kernel's log keeps after the firmware's records.
const KERNEL_LOG_ROOM: usize = 4096;

/// `length` bytes at `address` if one firmware region (ACPI or reserved) of the map holds them:
/// the log area is firmware memory, and anything else (usable RAM the kernel may have reused,
/// unaccepted memory, MMIO) must not be read as a log.
fn log_area_bytes<const N: usize>(
    map: &MemoryMap<N>,
    address: u64,
    length: usize,
) -> Option<&'static [u8]> {
    crate::memory::firmware_bytes(
        map,
        address,
        length,
        &[
            RegionKind::AcpiReclaimable,
            RegionKind::AcpiNvs,
            RegionKind::Reserved,
        ],
    )
}

fn hex4(bytes: &[u8]) -> [u8; 4] {
    [bytes[0], bytes[1], bytes[2], bytes[3]]
}

fn fresh_report(report_data: &[u8; 64]) -> Option<TdReport> {
    // SAFETY: the kernel runs on its identity map (VA = GPA), and its stack is private.
    let phys = unsafe { IdentityMapped::new() };
    early::tdreport(&Hardware, report_data, &phys).ok()
}

fn rtmrs_of(report: &TdReport) -> [[u8; 48]; 4] {
    core::array::from_fn(|i| report.rtmr(i).copied().unwrap_or([0; 48]))
}

/// All three steps; `rsdp` is the firmware's, `map` the kernel's memory map.
pub fn check<const N: usize>(
    platform: &Platform,
    map: &mut MemoryMap<N>,
    rsdp: u64,
    shared_mask: u64,
) {
    let rsdp = match platform {
        Platform::Td => rsdp,
        Platform::Model(_) => match fake_firmware::ccel::publish(map) {
            Ok(published) => {
                crate::kprintln!(
                    "fake firmware: measured {} events into RTMR[0..1] and published CCEL under its own RSDP {:#x}",
                    published.records,
                    published.rsdp
                );
                published.rsdp
            }
            Err(e) => {
                check!("event log", false, "fake firmware could not measure: {e}");
                return;
            }
        },
    };
    let map: &MemoryMap<N> = map;
    let ccel = mpwk::find_table(rsdp, CCEL_SIGNATURE, |address, length| {
        crate::memory::acpi_table_bytes(map, address, length)
    })
    .map_err(|e| alloc::format!("{e}"))
    .and_then(|table| Ccel::parse(table).map_err(|e| alloc::format!("{e}")));
    let firmware = match ccel {
        Ok(ccel) => match firmware_log(map, &ccel) {
            Some(log) => Some(log),
            None => return,
        },
        Err(why) if matches!(platform, Platform::Td) => {
            // Debian's TDVF (edk2 2022.11's OvmfPkgX64) is built without TdTcg2Dxe: it keeps no
            // CC event log. Then it must have measured nothing a verifier could not replay.
            let report = fresh_report(&[0; 64]);
            let untouched = report
                .as_ref()
                .is_some_and(|r| rtmrs_of(r).iter().all(|rtmr| rtmr == &[0; 48]));
            check!(
                "firmware event log",
                untouched,
                "no CCEL ({why}): the firmware keeps no CC event log, and a fresh TDREPORT's RTMR[0..3] are {}",
                if untouched {
                    "all zero (nothing measured, nothing to replay)"
                } else {
                    "not all zero: measurements no log explains"
                }
            );
            None
        }
        Err(why) => {
            check!("event log", false, "no CCEL: {why}");
            return;
        }
    };

    // The kernel's log: the firmware's, continued in kernel memory (or a log of its own when
    // the firmware keeps none).
    let firmware_len = firmware.as_ref().map_or(0, |f| f.bytes().len());
    let mut buffer = vec![0u8; firmware_len + KERNEL_LOG_ROOM];
    let started = match &firmware {
        Some(firmware) => EventLogWriter::continue_log(&mut buffer, firmware),
        None => EventLogWriter::new_sha384(&mut buffer),
    };
    let mut log = match started {
        Ok(log) => log,
        Err(e) => {
            check!("event log", false, "kernel log: {e}");
            return;
        }
    };
    let measured = measurement::measure_kernel(&mut log, platform);
    check!(
        "kernel measurements",
        measured.is_ok(),
        "{} into RTMR[2], each recorded in the kernel's log ({} bytes: the firmware's records, then the kernel's)",
        match &measured {
            Ok(n) => alloc::format!("{n} events measured"),
            Err(e) => alloc::format!("{e}"),
        },
        log.bytes().len()
    );
    let log_digest: [u8; 48] = Sha384::digest(log.bytes()).into();
    let mut report_data = [0u8; 64];
    report_data[..48].copy_from_slice(&log_digest);
    let Some(report) = fresh_report(&report_data) else {
        check!("event log", false, "TDG.MR.REPORT failed");
        return;
    };
    let combined = EventLog::parse(log.bytes());
    let replayed = combined.as_ref().ok().map(|l| (l.len(), l.replay()));
    let rtmrs = rtmrs_of(&report);
    let model_agrees = match platform {
        Platform::Model(module) => (0..4).all(|i| module.rtmr(i) == rtmrs[i]),
        Platform::Td => true,
    };
    match replayed {
        Some((events, Ok(values))) if values == rtmrs && model_agrees => check!(
            "event log",
            true,
            "{events} events replay to the TDREPORT's RTMRs (RTMR[2] {:02x?}..; log SHA-384 {:02x?}.. in REPORTDATA)",
            hex4(&rtmrs[2]),
            hex4(&log_digest)
        ),
        other => check!(
            "event log",
            false,
            "the kernel's log does not replay to the TDREPORT: {:?}",
            other.map(|(n, r)| (n, r.map(|v| v == rtmrs)))
        ),
    }

    check_quote(platform, &report, shared_mask);
}

/// The firmware's log from the CCEL's area, replayed against a fresh TDREPORT (the "firmware
/// event log" check); None after a failed check.
fn firmware_log<'m, const N: usize>(map: &'m MemoryMap<N>, ccel: &Ccel) -> Option<EventLog<'m>> {
    let area = usize::try_from(ccel.log_area_minimum_length)
        .ok()
        .and_then(|len| log_area_bytes(map, ccel.log_area_start_address, len));
    let Some(area) = area else {
        check!(
            "event log",
            false,
            "CCEL log area {:#x} + {:#x} is not in firmware memory",
            ccel.log_area_start_address,
            ccel.log_area_minimum_length
        );
        return None;
    };
    let firmware = match EventLog::parse(area) {
        Ok(log) => log,
        Err(e) => {
            check!("event log", false, "firmware log: {e}");
            return None;
        }
    };
    let before = fresh_report(&[0; 64]);
    let firmware_replay = firmware.replay();
    let verdict = match (&firmware_replay, &before) {
        (Ok(values), Some(report)) if *values == rtmrs_of(report) => Ok(()),
        (Ok(_), Some(_)) => Err(alloc::string::String::from("they differ")),
        (Err(e), _) => Err(alloc::format!("{e}")),
        (_, None) => Err(alloc::string::String::from("TDG.MR.REPORT failed")),
    };
    check!(
        "firmware event log",
        verdict.is_ok(),
        "CCEL at {:#x} (type {}), log area {} KiB in firmware memory, {} events (end: {:?}) replayed against a fresh TDREPORT's RTMR[0..3]: {}",
        ccel.log_area_start_address,
        ccel.cc_type,
        ccel.log_area_minimum_length >> 10,
        firmware.len(),
        firmware.end(),
        verdict.err().unwrap_or_else(|| "equal".into())
    );
    Some(firmware)
}

/// GetQuote for `report` and the quote's fields against it.
fn check_quote(platform: &Platform, report: &TdReport, shared_mask: u64) {
    let layout = Layout::from_size_align(QUOTE_BUFFER_LEN, 4096).unwrap_or(Layout::new::<u8>());
    // SAFETY: non-zero size; the buffer is leaked (the VMM may hold it after a timeout).
    let buffer = unsafe { alloc(layout) };
    assert!(!buffer.is_null(), "heap exhausted");
    let range = ConvertRange {
        va: buffer as u64,
        gpa: buffer as u64,
        len: QUOTE_BUFFER_LEN as u64,
    };
    let mut mapper = Mapper { shared_mask };
    // SAFETY: nothing else knows the buffer; its contents are expendable.
    if let Err(e) = unsafe { convert::make_shared(&Hardware, &mut mapper, shared_mask, range) } {
        check!("quote", false, "shared buffer: {e:?}");
        return;
    }
    // In a TD the kernel reaches the page through its shared mapping. Without TDX an entry with
    // the shared bit (bit 47) faults on TCG's 40-bit physical addresses, so the kernel uses the
    // RAM alias the model's host view maps: the same memory the model's VMM reads and writes.
    let va = match platform {
        Platform::Td => buffer,
        Platform::Model(_) => (crate::paging::HOST_VIEW_BASE + range.gpa) as *mut u8,
    };
    // SAFETY: `va` reaches the buffer, now shared at its identity GPA (plus the shared bit),
    // owned here and touched only through the value.
    let quote_buffer = unsafe { QuoteBuffer::new(va, range.gpa | shared_mask, QUOTE_BUFFER_LEN) };
    let mut out = vec![0u8; QUOTE_BUFFER_LEN];
    // Linux's bounded wait: look once a second, at most 30 times (the event-notify vector would
    // need an interrupt handler; the kernel polls).
    let wait = |attempt: u32| {
        crate::tsc::delay_us(LINUX_POLL_INTERVAL_MS * 1000);
        attempt + 1 < LINUX_POLL_LIMIT
    };
    let result = quote_buffer.and_then(|mut b| b.request(&Hardware, report, wait, &mut out));
    if !matches!(result, Err(GetQuoteError::Timeout)) {
        // SAFETY: the VMM is done with the buffer (the status is final).
        let _ = unsafe { convert::make_private(&Hardware, &mut mapper, shared_mask, range) };
    }
    let quote = result.and_then(|len| {
        Quote::parse(out.get(..len).unwrap_or_default()).map_err(GetQuoteError::Quote)
    });
    match quote {
        Ok(quote) => {
            let mr_td = quote.mr_td() == report.mrtd();
            let rtmrs = (0..4).all(|i| quote.rtmr(i) == report.rtmr(i));
            let data = quote.report_data() == report.report_data();
            check!(
                "quote",
                mr_td && rtmrs && data,
                "GetQuote: version {} quote of {} bytes; MRTD {}, RTMR[0..3] {}, REPORTDATA {} the TDREPORT's",
                quote.version(),
                quote.len(),
                if mr_td { "matches" } else { "DIFFERS from" },
                if rtmrs { "match" } else { "DIFFER from" },
                if data { "matches" } else { "DIFFERS from" }
            );
        }
        // A TD on a host without a quote generation service cannot get a quote: not the
        // kernel's failure, and said so.
        Err(GetQuoteError::ServiceUnavailable) if matches!(platform, Platform::Td) => {
            crate::kprintln!("mini-kernel: quote: the host has no quoting service (skipped)");
        }
        Err(e) => check!("quote", false, "{e}"),
    }
}
