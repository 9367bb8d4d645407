//! What `volatile::VolatilePtr::read`/`write` compile to is decoded and emulated correctly.
//!
//! rust-osdev drivers access device registers through `VolatilePtr`; in a TD each access to a
//! shared MMIO page is a #VE whose instruction `ve::mmio::decode` must understand. The compiler
//! chooses that instruction, so this test does not guess it: each width's read and write runs
//! for real on a page mapped `PROT_NONE`, the fault stops at exactly the instruction the compiler
//! emitted (wherever inlining put it), and the SIGSEGV handler then does what tdx-boot's #VE
//! handler does: decode the bytes at RIP, emulate (`complete_read` with the device's value,
//! `write_value` for the device), advance RIP by the decoded length and resume. The function must
//! then return the device's value, or the device must have seen the written value, with the
//! access's width and direction.
//!
//! `cargo xtask test` runs this file in the debug and the release profile, the two ways a kernel
//! is built.

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

#[path = "common/ucontext.rs"]
mod ucontext;

use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::Mutex;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use tdx_boot::ve::mmio::decode;
use volatile::VolatilePtr;

/// The faulting page ("the device"), 0 when none.
static DEVICE_PAGE: AtomicUsize = AtomicUsize::new(0);
/// What the device answers to a read.
static DEVICE_VALUE: AtomicU64 = AtomicU64::new(0);
/// What the handler saw: accesses, their width, direction and written value.
static ACCESSES: AtomicU32 = AtomicU32::new(0);
static ACCESS_SIZE: AtomicUsize = AtomicUsize::new(0);
static ACCESS_WRITE: AtomicBool = AtomicBool::new(false);
static WRITTEN: AtomicU64 = AtomicU64::new(0);
static DECODE_FAILED: AtomicBool = AtomicBool::new(false);
/// One device at a time: the handler's state is process-wide.
static SERIAL: Mutex<()> = Mutex::new(());

const PAGE: usize = 4096;

/// The #VE handler's work on the host: the fault plays the EPT violation on a shared GPA.
extern "C" fn on_device_fault(
    _: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    let page = DEVICE_PAGE.load(Ordering::SeqCst);
    // SAFETY: the kernel passes valid siginfo and ucontext to an SA_SIGINFO handler.
    let (address, gregs) = unsafe {
        (
            (*info).si_addr() as usize,
            &mut (*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs,
        )
    };
    if page == 0 || !(page..page + PAGE).contains(&address) {
        // Not the device: let the fault kill the process as it would have.
        // SAFETY: resetting a disposition is async-signal-safe.
        unsafe { libc::signal(libc::SIGSEGV, libc::SIG_DFL) };
        return;
    }
    let rip = ucontext::rip(gregs) as usize;
    // SAFETY: RIP is the faulting instruction in this program's mapped code; no x86 instruction
    // is longer than 15 bytes and the text segment goes on past any access in these functions.
    let code = unsafe { std::slice::from_raw_parts(rip as *const u8, 15) };
    ACCESSES.fetch_add(1, Ordering::SeqCst);
    let Ok(mmio) = decode(code) else {
        // Let the instruction complete on real memory so the test can report the failure.
        DECODE_FAILED.store(true, Ordering::SeqCst);
        // SAFETY: the device page is ours; making it accessible ends the faults.
        unsafe {
            libc::mprotect(
                page as *mut libc::c_void,
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        return;
    };
    let mut frame = ucontext::frame_from(gregs);
    ACCESS_SIZE.store(mmio.size(), Ordering::SeqCst);
    ACCESS_WRITE.store(mmio.is_write(), Ordering::SeqCst);
    if mmio.is_write() {
        WRITTEN.store(mmio.write_value(&frame), Ordering::SeqCst);
    } else {
        mmio.complete_read(&mut frame, DEVICE_VALUE.load(Ordering::SeqCst));
    }
    frame.rip += mmio.insn_len() as u64;
    ucontext::store_frame(gregs, &frame);
}

/// A `PROT_NONE` page standing for a shared MMIO page, with the fault handler installed.
struct Device {
    page: *mut u8,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Device {
    fn new() -> Self {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| ucontext::install(&[libc::SIGSEGV], on_device_fault));
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: an anonymous private mapping of one page, inaccessible.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(page, libc::MAP_FAILED);
        DEVICE_PAGE.store(page as usize, Ordering::SeqCst);
        ACCESSES.store(0, Ordering::SeqCst);
        DECODE_FAILED.store(false, Ordering::SeqCst);
        Device {
            page: page.cast(),
            _serial: serial,
        }
    }

    /// A register of type `T` at `offset` (naturally aligned, as device registers are).
    fn register<T>(&self, offset: usize) -> VolatilePtr<'static, T> {
        assert_eq!(offset % size_of::<T>(), 0);
        let pointer = NonNull::new(self.page.wrapping_add(offset).cast::<T>()).expect("mapped");
        // SAFETY: the pointer is aligned and inside the page, which stays mapped (it is never
        // unmapped); every access faults into the handler, which emulates it.
        unsafe { VolatilePtr::new(pointer) }
    }

    /// The access the handler emulated: (width, is_write); exactly one must have happened.
    fn single_access(&self) -> (usize, bool) {
        assert!(
            !DECODE_FAILED.load(Ordering::SeqCst),
            "ve::mmio::decode refused the instruction"
        );
        assert_eq!(
            ACCESSES.load(Ordering::SeqCst),
            1,
            "one MMIO access, not split or merged"
        );
        ACCESSES.store(0, Ordering::SeqCst);
        (
            ACCESS_SIZE.load(Ordering::SeqCst),
            ACCESS_WRITE.load(Ordering::SeqCst),
        )
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        DEVICE_PAGE.store(0, Ordering::SeqCst);
    }
}

/// Values whose every byte differs, so a wrong width, extension or register shows.
const VALUES: [u64; 3] = [
    0x8192_a3b4_c5d6_e7f8,
    0x0102_0304_0506_0708,
    0xffff_ffff_ffff_ffff,
];

macro_rules! accessors {
    ($($read:ident, $write:ident: $ty:ty;)*) => {$(
        #[inline(never)]
        fn $read(register: VolatilePtr<'_, $ty>) -> $ty {
            register.read()
        }
        #[inline(never)]
        fn $write(register: VolatilePtr<'_, $ty>, value: $ty) {
            register.write(value)
        }
    )*};
}

accessors! {
    read_u8, write_u8: u8;
    read_u16, write_u16: u16;
    read_u32, write_u32: u32;
    read_u64, write_u64: u64;
}

macro_rules! check_width {
    ($device:expr, $read:ident, $write:ident, $ty:ty) => {{
        let width = size_of::<$ty>();
        for offset in [0, 0x10, PAGE - width] {
            for value in VALUES {
                DEVICE_VALUE.store(value, Ordering::SeqCst);
                let register = black_box($device.register::<$ty>(offset));
                assert_eq!(
                    $read(register),
                    value as $ty,
                    "{width}-byte read at +{offset:#x}"
                );
                assert_eq!($device.single_access(), (width, false));

                $write(black_box(register), black_box(value as $ty));
                assert_eq!($device.single_access(), (width, true));
                assert_eq!(
                    WRITTEN.load(Ordering::SeqCst),
                    u64::from(value as $ty),
                    "{width}-byte write at +{offset:#x}"
                );
            }
        }
    }};
}

#[test]
fn volatile_reads_and_writes_of_every_width_are_decoded_and_emulated() {
    let device = Device::new();
    check_width!(device, read_u8, write_u8, u8);
    check_width!(device, read_u16, write_u16, u16);
    check_width!(device, read_u32, write_u32, u32);
    check_width!(device, read_u64, write_u64, u64);
}

#[test]
fn the_harness_sees_an_instruction_the_decoder_refuses() {
    // A read-modify-write (`add [rdi], eax`) is no MMIO form the decoder takes: the handler
    // must report it, so a passing test above means the decoder really took each access.
    let device = Device::new();
    let register = device.register::<u32>(0);
    let pointer = register.as_raw_ptr().as_ptr();
    // SAFETY: the page faults into the handler, which makes it accessible on a refusal; the
    // instruction then completes on the (zeroed) page.
    unsafe {
        core::arch::asm!("add dword ptr [{0}], eax", in(reg) pointer, in("eax") 1u32, options(nostack))
    };
    assert!(DECODE_FAILED.load(Ordering::SeqCst));
}
