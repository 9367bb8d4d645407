#![no_main]
//! TD HOB reader: arbitrary lists never panic or loop; accepted ones yield a sanitized map that
//! covers every memory resource with kinds at least as restrictive, and iteration agrees with
//! validation (it ends exactly at the end marker).

use libfuzzer_sys::fuzz_target;
use tdx_boot::e820::{Handoff, Hob, HobList, MemoryMap};
use tdx_boot_fuzz::{assert_covered, assert_sanitized, raw_or_framed};

/// A valid PHIT, so that half the inputs explore the HOBs after it instead of the header.
fn with_handoff(rest: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(56 + rest.len());
    bytes.extend_from_slice(&1u16.to_le_bytes());
    bytes.extend_from_slice(&56u16.to_le_bytes());
    bytes.resize(56, 0);
    bytes.extend_from_slice(rest);
    bytes
}

fuzz_target!(|data: &[u8]| {
    let Some(data) = raw_or_framed(data, |_, rest| with_handoff(rest)) else {
        return;
    };
    // The PHIT's length under either EfiEndOfHobList convention, reading only the input.
    if let Some(handoff) = Handoff::decode(&data) {
        let read = |at: u64| -> Option<[u8; 8]> {
            let at = usize::try_from(at).ok()?;
            data.get(at..at.checked_add(8)?)?.try_into().ok()
        };
        if let Some(len) = handoff.list_len(0, read) {
            assert!(len >= 56 && len % 8 == 0);
        }
    }
    let Ok(list) = HobList::parse(&data) else {
        return;
    };
    assert!(matches!(list.iter().next(), Some(Hob::Handoff(_))));
    let walked: usize = list
        .iter()
        .map(|hob| match hob {
            Hob::Handoff(_) => 56,
            Hob::MemoryAllocation(_) | Hob::ResourceDescriptor(_) => 48,
            Hob::GuidExtension { data, .. } => 24 + data.len(),
            Hob::Other { body, .. } => 8 + body.len(),
        })
        .sum();
    // Handoff and fixed-size HOBs may be longer than their fields; the walk never overshoots.
    assert!(walked + 8 <= list.as_bytes().len());
    let _ = list.guid_extensions().count();

    let mut map = MemoryMap::<32>::new();
    let result = list.read_into(&mut map);
    assert_sanitized(map.regions());
    if result.is_ok() {
        for r in list.resource_descriptors() {
            if let Some(kind) = r.kind() {
                if r.length != 0 {
                    assert_covered(map.regions(), r.start, r.start + r.length, kind);
                }
            }
        }
    }
});
