//! Private -> shared -> private with tdx-boot's `convert`: the kernel's page tables, the TLB
//! on every CPU, MapGPA to the VMM, and the ACCEPT that zeroes the page on its way back.

use crate::check;
use crate::paging::{self, Mapper};
use crate::platform::Platform;
use alloc::alloc::{Layout, alloc};
use tdx_boot::convert::{self, ConvertRange};
use tdx_boot::tdcall::Hardware;

/// Pages converted in the round trip.
pub const PAGES: u64 = 4;

/// What the round trip observed.
pub struct RoundTrip {
    pub range: ConvertRange,
    pub shared_mapping: bool,
    pub shared_stats: convert::MapGpaStats,
    pub private_mapping_restored: bool,
    pub zeroed_after: bool,
    pub error: Option<convert::ConvertError>,
}

/// Converts a fresh buffer to shared and back; `while_shared` runs in between (the caller
/// checks the VMM's view there).
pub fn round_trip(shared_mask: u64, while_shared: impl FnOnce(&ConvertRange)) -> RoundTrip {
    let len = PAGES * 4096;
    let layout = Layout::from_size_align(len as usize, 4096).unwrap_or(Layout::new::<u8>());
    // SAFETY: non-zero size; the buffer is leaked (after conversion it is zeroed memory).
    let buffer = unsafe { alloc(layout) };
    assert!(!buffer.is_null(), "heap exhausted");
    // SAFETY: freshly allocated and exclusively ours.
    unsafe { core::ptr::write_bytes(buffer, 0xa5, len as usize) };
    let range = ConvertRange {
        va: buffer as u64,
        gpa: buffer as u64,
        len,
    };
    let mut mapper = Mapper { shared_mask };
    let mut outcome = RoundTrip {
        range,
        shared_mapping: false,
        shared_stats: Default::default(),
        private_mapping_restored: false,
        zeroed_after: false,
        error: None,
    };
    // SAFETY: nothing else knows the buffer; its contents are expendable.
    match unsafe { convert::make_shared(&Hardware, &mut mapper, shared_mask, range) } {
        Ok(stats) => outcome.shared_stats = stats,
        Err(e) => {
            outcome.error = Some(e);
            return outcome;
        }
    }
    outcome.shared_mapping = paging::is_mapped_shared(range.va, shared_mask);
    while_shared(&range);
    // SAFETY: as above; the VMM is done with it.
    if let Err(e) = unsafe { convert::make_private(&Hardware, &mut mapper, shared_mask, range) } {
        outcome.error = Some(e);
        return outcome;
    }
    outcome.private_mapping_restored = !paging::is_mapped_shared(range.va, shared_mask);
    // SAFETY: the buffer is private and accepted again; nobody else uses it.
    let bytes = unsafe { core::slice::from_raw_parts(buffer, len as usize) };
    outcome.zeroed_after = bytes.iter().all(|&b| b == 0);
    outcome
}

/// A buffer to shared and back.
pub fn check(platform: &Platform, shared_mask: u64) {
    let mut vmm_saw_shared = matches!(platform, Platform::Td);
    let trip = round_trip(shared_mask, |range| {
        if let Platform::Model(module) = platform {
            vmm_saw_shared = (0..PAGES).all(|p| {
                module.page_state(range.gpa + p * 4096) == tdx_boot::model::PageState::Shared
            });
        }
    });
    let vmm_sees_private = match platform {
        Platform::Model(module) => {
            module.page_state(trip.range.gpa) == tdx_boot::model::PageState::Private
        }
        Platform::Td => true,
    };
    check!(
        "shared conversion round trip",
        trip.error.is_none()
            && trip.shared_mapping
            && vmm_saw_shared
            && trip.private_mapping_restored
            && vmm_sees_private
            && trip.zeroed_after,
        "{} KiB at {:#x}: shared (PTE bit {:#x}, MapGPA {} calls / {} retries, VMM view shared: {vmm_saw_shared}), \
         then private again (accepted, zeroed: {}){}",
        trip.range.len >> 10,
        trip.range.gpa,
        shared_mask,
        trip.shared_stats.calls,
        trip.shared_stats.retries,
        trip.zeroed_after,
        trip.error
            .map(|e| alloc::format!(" error {e:?}"))
            .unwrap_or_default()
    );
}
