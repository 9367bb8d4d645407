//! `loom` model checks of the bitmap claim protocol and the job cursor.
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release --features model
//! --lib loom_`. A fake module with one loom atomic per page panics on any second ACCEPT of a
//! page, so loom fails the check if any interleaving lets two CPUs accept the same unit.

use super::{AcceptJob, BitmapWord, ItemSizing, UnacceptedBitmap};
use crate::tdcall::{Regs, TdCall, TdxStatus, leaf};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use loom::thread;
use std::boxed::Box;
use std::vec::Vec;

const PAGE: u64 = 0x1000;

/// Pages `0..n` at GPA 0, 4 KiB host mapping; optionally refuses one page once.
struct FakeModule {
    accepted: Vec<AtomicU64>,
    fail_page_once: Option<(u64, AtomicBool)>,
}

impl FakeModule {
    fn new(pages: usize, fail_page_once: Option<u64>) -> Self {
        Self {
            accepted: (0..pages).map(|_| AtomicU64::new(0)).collect(),
            fail_page_once: fail_page_once.map(|p| (p, AtomicBool::new(false))),
        }
    }

    fn is_accepted(&self, page: usize) -> bool {
        self.accepted
            .get(page)
            .is_some_and(|p| p.load(Ordering::Relaxed) == 1)
    }
}

impl TdCall for FakeModule {
    unsafe fn tdcall(&self, regs: &mut Regs) {
        assert_eq!(regs.rax, leaf::MEM_PAGE_ACCEPT);
        if regs.rcx & 7 != 0 {
            regs.rax = TdxStatus::PAGE_SIZE_MISMATCH.raw();
            return;
        }
        let page = regs.rcx / PAGE;
        if let Some((failing, failed)) = &self.fail_page_once {
            if *failing == page && !failed.swap(true, Ordering::Relaxed) {
                regs.rax = TdxStatus::EPT_WALK_FAILED.raw();
                return;
            }
        }
        let slot = self
            .accepted
            .get(page as usize)
            .expect("page inside the fake TD");
        let before = slot.swap(1, Ordering::Relaxed);
        assert_eq!(before, 0, "page {page} accepted twice");
        regs.rax = TdxStatus::SUCCESS.raw();
    }
}

fn leaked_bitmap(module: &FakeModule, units: usize) -> &'static UnacceptedBitmap<'static> {
    let storage: &'static mut [BitmapWord] = Box::leak(Box::new([BitmapWord::new(0)]));
    // SAFETY: the fake module's pages stand for unaccepted memory that nothing uses.
    let bitmap = unsafe {
        UnacceptedBitmap::from_ranges(module, storage, 0, PAGE, [(0, units as u64 * PAGE)])
    }
    .expect("bitmap");
    Box::leak(Box::new(bitmap))
}

#[test]
fn loom_overlapping_ensure_accepted_accepts_each_unit_once() {
    loom::model(|| {
        let module = Arc::new(FakeModule::new(4, None));
        let bitmap = leaked_bitmap(&module, 4);
        let other = {
            let module = module.clone();
            thread::spawn(move || {
                bitmap
                    .ensure_accepted(&*module, PAGE, 4 * PAGE)
                    .expect("accept");
                (1..4).all(|p| module.is_accepted(p))
            })
        };
        // Ends on a unit boundary: the guard unit (page 2) is accepted too.
        bitmap
            .ensure_accepted(&*module, 0, 2 * PAGE)
            .expect("accept");
        assert!(
            (0..3).all(|p| module.is_accepted(p)),
            "returned before its units were accepted"
        );
        assert!(
            other.join().expect("thread"),
            "returned before its units were accepted"
        );
        assert_eq!(bitmap.unaccepted_bytes(), 0);
    });
}

#[test]
fn loom_a_failed_unit_is_released_and_accepted_by_a_waiter() {
    loom::model(|| {
        let module = Arc::new(FakeModule::new(2, Some(1)));
        let bitmap = leaked_bitmap(&module, 2);
        let other = {
            let module = module.clone();
            thread::spawn(move || bitmap.ensure_accepted(&*module, PAGE, 2 * PAGE).is_ok())
        };
        let first = bitmap.ensure_accepted(&*module, 0, 2 * PAGE);
        let other_ok = other.join().expect("thread");
        // Page 1 fails once: whoever hit it got an error, the unit went back to unaccepted.
        assert!(first.is_err() || !other_ok, "the injected failure was lost");
        let retry = bitmap.ensure_accepted(&*module, 0, 2 * PAGE);
        assert!(retry.is_ok());
        assert!(module.is_accepted(0) && module.is_accepted(1));
    });
}

#[test]
fn loom_job_cursor_hands_out_each_item_once() {
    loom::model(|| {
        let module = Arc::new(FakeModule::new(3, None));
        let ranges: &'static [core::ops::Range<u64>] = Box::leak(Box::new([0..3 * PAGE]));
        // SAFETY: the fake module's pages stand for unaccepted memory that nothing uses.
        let job = unsafe { AcceptJob::new(ranges, ItemSizing::Fixed(PAGE)) };
        let job: &'static AcceptJob<'static> = Box::leak(Box::new(job.expect("job")));
        let other = {
            let module = module.clone();
            thread::spawn(move || job.run(&*module).expect("run").bytes)
        };
        let mine = job.run(&*module).expect("run").bytes;
        assert_eq!(job.wait(), Ok(()));
        assert!(
            (0..3).all(|p| module.is_accepted(p)),
            "wait returned before the job settled"
        );
        assert_eq!(mine + other.join().expect("thread"), 3 * PAGE);
    });
}

#[test]
fn loom_background_job_and_ensure_accepted_share_units() {
    loom::model(|| {
        let module = Arc::new(FakeModule::new(3, None));
        let bitmap = leaked_bitmap(&module, 3);
        // One item over the whole (one-word) bitmap.
        let job: &'static AcceptJob<'static> = Box::leak(Box::new(
            AcceptJob::over_bitmap(bitmap, ItemSizing::Fixed(32 * PAGE)).expect("job"),
        ));
        let background = {
            let module = module.clone();
            thread::spawn(move || job.run(&*module).expect("run").bytes)
        };
        bitmap
            .ensure_accepted(&*module, 2 * PAGE, 3 * PAGE)
            .expect("accept");
        assert!(
            module.is_accepted(2),
            "returned before its unit was accepted"
        );
        let by_background = background.join().expect("thread");
        assert_eq!(job.wait(), Ok(()));
        bitmap
            .ensure_accepted(&*module, 0, 3 * PAGE)
            .expect("accept");
        assert!((0..3).all(|p| module.is_accepted(p)));
        assert!(by_background <= 3 * PAGE);
    });
}

#[test]
fn loom_a_failure_gives_back_every_unit_claimed_after_it() {
    loom::model(|| {
        // Units 0, 1, 2 and 4 are pending (3 is accepted) and page 0 fails once. While the
        // other CPU holds unit 1, this CPU claims {0}, {2} and {4} at once: three runs, the
        // first of which fails with the others claimed. Every claim must be given back, or
        // the final `ensure_accepted` would wait forever.
        let module = Arc::new(FakeModule::new(5, Some(0)));
        let storage: &'static mut [BitmapWord] = Box::leak(Box::new([BitmapWord::new(0)]));
        let pending = [(0, 3 * PAGE), (4 * PAGE, 5 * PAGE)];
        // SAFETY: the fake module's pages stand for unaccepted memory that nothing uses.
        let bitmap = unsafe { UnacceptedBitmap::from_ranges(&*module, storage, 0, PAGE, pending) };
        let bitmap: &'static UnacceptedBitmap<'static> =
            Box::leak(Box::new(bitmap.expect("bitmap")));
        let other = {
            let module = module.clone();
            thread::spawn(move || bitmap.ensure_accepted(&*module, PAGE, PAGE + 1).is_ok())
        };
        let mine = bitmap.ensure_accepted(&*module, 0, 5 * PAGE);
        assert!(mine.is_err(), "the injected failure was lost");
        assert!(other.join().expect("thread"));
        assert!(bitmap.ensure_accepted(&*module, 0, 5 * PAGE).is_ok());
        assert!([0, 1, 2, 4].iter().all(|&p| module.is_accepted(p)));
        assert!(
            !module.is_accepted(3),
            "an accepted unit was accepted again"
        );
        assert_eq!(bitmap.unaccepted_bytes(), 0);
    });
}

#[test]
fn loom_wait_reports_a_failure_on_another_cpu() {
    loom::model(|| {
        let module = Arc::new(FakeModule::new(2, Some(1)));
        let ranges: &'static [core::ops::Range<u64>] = Box::leak(Box::new([0..2 * PAGE]));
        // SAFETY: the fake module's pages stand for unaccepted memory that nothing uses.
        let job = unsafe { AcceptJob::new(ranges, ItemSizing::Fixed(PAGE)) };
        let job: &'static AcceptJob<'static> = Box::leak(Box::new(job.expect("job")));
        let other = {
            let module = module.clone();
            thread::spawn(move || job.run(&*module).is_err())
        };
        let mine_failed = job.run(&*module).is_err();
        // Whichever CPU took page 1 failed; `wait` sees it even if the other CPU did.
        assert_eq!(job.wait(), Err(PAGE));
        assert!(mine_failed != other.join().expect("thread"));
    });
}

#[test]
fn loom_a_zero_pending_count_publishes_every_accept() {
    // Two units: this CPU accepts both (unit 1 as the guard unit), which takes the count to
    // zero; the other CPU needs unit 1 and may find it claimed, accept it itself, or see the
    // count at zero and return at once. Whichever way it returns, the ACCEPT of unit 1 must
    // happen-before its return (the fake module's page flags are relaxed atomics, so a return
    // that is not synchronized with the accepting CPU can read the flag stale).
    loom::model(|| {
        let module = Arc::new(FakeModule::new(2, None));
        let bitmap = leaked_bitmap(&module, 2);
        let other = {
            let module = module.clone();
            thread::spawn(move || {
                bitmap
                    .ensure_accepted(&*module, PAGE, PAGE + 1)
                    .expect("accept");
                module.is_accepted(1)
            })
        };
        bitmap.ensure_accepted(&*module, 0, PAGE).expect("accept");
        assert!(module.is_accepted(0) && module.is_accepted(1));
        assert!(
            other.join().expect("thread"),
            "returned before unit 1 was accepted"
        );
        assert!(!bitmap.needs_accept(0, 2 * PAGE));
        assert_eq!(bitmap.unaccepted_bytes(), 0);
    });
}
