//! How a run ends: the summary line `cargo xtask` reads, then QEMU's exit with a status that
//! says whether the TD's kernel passed its checks.

use crate::exits::Stop;
use crate::td::Td;
use crate::{EXIT_SIM_FAILURE, exit_qemu, println};

/// The value the kernel writes to the debug-exit port when every check passed.
const KERNEL_SUCCESS: u32 = 0x10;

/// Prints what happened and ends the run.
pub fn finish(td: &Td, tdvf_sha256: &[u8], stop: Stop) -> ! {
    let c = td.counters;
    let mut hex = [0u8; 64];
    for (i, byte) in tdvf_sha256.iter().take(32).enumerate() {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        hex[2 * i] = DIGITS[usize::from(byte >> 4)];
        hex[2 * i + 1] = DIGITS[usize::from(byte & 0xf)];
    }
    let hex = core::str::from_utf8(&hex).unwrap_or("?");
    let (why, code) = match &stop {
        Stop::DebugExit(code) => (alloc::format!("the TD exited with {code:#x}"), *code),
        Stop::FatalError(code, message) => (
            alloc::format!(
                "the TD reported a fatal error {code:#x}: {}",
                alloc::string::String::from_utf8_lossy(message)
            ),
            EXIT_SIM_FAILURE,
        ),
        Stop::Shutdown { vcpu, rip } => (
            alloc::format!("vCPU {vcpu} shut down (triple fault) at RIP {rip:#x}"),
            EXIT_SIM_FAILURE,
        ),
        Stop::Died { vcpu, rip, why } => (
            alloc::format!("the TD died on vCPU {vcpu} at RIP {rip:#x}: {why}"),
            EXIT_SIM_FAILURE,
        ),
        Stop::AllHalted => (
            "every vCPU halted with nothing to wake it".into(),
            EXIT_SIM_FAILURE,
        ),
    };
    println!(
        "tdx-sim: {why} after {} VM exits; {} device interrupts routed from the machine's IOAPIC into the TD",
        c.exits, c.device_interrupts
    );
    // A kernel that never printed its final line passed nothing.
    let (passed, failed) = td.serial.checks().unwrap_or((0, 0));
    let code = if code == KERNEL_SUCCESS && (passed == 0 || failed != 0) {
        EXIT_SIM_FAILURE
    } else {
        code
    };
    println!(
        "tdx-sim: {} EPT-violation #VE, {} with a valid guest linear address",
        c.ept_ve, c.ept_ve_with_linear_address
    );
    println!(
        "tdx-sim: TDVF {hex} ran as a TD: {} TDCALLs ({} ACCEPT, {} TDG.VP.VMCALL), {} #VE injected; kernel checks: {passed} passed, {failed} failed",
        c.tdcalls, c.accepts, c.vmcalls, c.ve_injected,
    );
    exit_qemu(code)
}
