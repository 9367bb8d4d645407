//! [`TdxLogger`]: `log::Log` over the TDVMCALL serial console (feature `log`).

use super::console::{SerialState, TdxSerial};
use crate::tdcall::TdCall;
use core::fmt::Write;
use core::sync::atomic::{AtomicU16, Ordering};
use log::{LevelFilter, Log, Metadata, Record};

/// How many times a record tries the logger's lock before writing without it (see
/// [`print`](super::print) for why a stuck lock must not silence the console).
const LOCK_ATTEMPTS: u32 = 1 << 20;

/// A `log::Log` that writes `[LEVEL target] message` lines to COM1 through TDVMCALL port IO.
///
/// ```no_run
/// use tdx_boot::early::TdxLogger;
/// use tdx_boot::tdcall::Hardware;
///
/// static LOGGER: TdxLogger<Hardware> = TdxLogger::new(Hardware, log::LevelFilter::Info);
/// log::set_logger(&LOGGER).ok();
/// log::set_max_level(LOGGER.level());
/// ```
pub struct TdxLogger<T: TdCall + Send + Sync> {
    tdx: T,
    level: LevelFilter,
    lock: spin::Mutex<()>,
    /// The packed [`SerialState`] of the UART, learned by earlier records.
    state: AtomicU16,
}

impl<T: TdCall + Send + Sync> TdxLogger<T> {
    /// A logger through `tdx` that passes records at `level` or more severe.
    pub const fn new(tdx: T, level: LevelFilter) -> Self {
        Self {
            tdx,
            level,
            lock: spin::Mutex::new(()),
            state: AtomicU16::new(SerialState::INITIAL.pack()),
        }
    }

    /// The most verbose level this logger writes (for `log::set_max_level`).
    pub const fn level(&self) -> LevelFilter {
        self.level
    }
}

impl<T: TdCall + Send + Sync> Log for TdxLogger<T> {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut guard = None;
        for _ in 0..LOCK_ATTEMPTS {
            guard = self.lock.try_lock();
            if guard.is_some() {
                break;
            }
            core::hint::spin_loop();
        }
        let mut serial = TdxSerial::new(&self.tdx);
        serial.set_state(SerialState::unpack(self.state.load(Ordering::Relaxed)));
        // Nothing useful can be done about a console the VMM refuses.
        let _ = writeln!(
            serial,
            "[{:<5} {}] {}",
            record.level(),
            record.target(),
            record.args()
        );
        self.state.store(serial.state().pack(), Ordering::Relaxed);
        drop(guard);
    }

    fn flush(&self) {}
}
