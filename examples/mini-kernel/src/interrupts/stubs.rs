//! Interrupt entry stubs, all made with tdx-boot's `entry_stub!`: a [`Frame`] of the interrupted
//! code for the handler, and `iretq` back with whatever the handler changed.
//!
//! Exceptions without an error code and the external vectors call [`super::dispatch`] with
//! their vector; #PF passes its error code to [`super::on_page_fault`] (without TDX it may be an
//! MMIO access to emulate); the other exceptions that push an error code are fatal in this
//! kernel. #UD and #VE have stubs of their own (the TDCALL emulation and tdx-boot's `ve_entry`).

use tdx_boot::entry_stub;
use tdx_boot::ve::Frame;

/// Stubs for vectors without an error code, each telling [`super::dispatch`] its vector.
macro_rules! dispatched {
    ($($name:ident = $vector:expr),* $(,)?) => {
        $(entry_stub!(
            /// An interrupt entry point.
            fn $name => super::dispatch, vector = $vector
        );)*
    };
}

/// Stubs for exceptions that push an error code, all fatal.
macro_rules! fatal_with_error_code {
    ($($name:ident = $vector:expr),* $(,)?) => {
        $(entry_stub!(
            /// An exception entry point.
            fn $name => super::fatal_with_error_code, vector = $vector, error_code
        );)*
    };
}

dispatched!(
    v0 = 0,
    v1 = 1,
    v2 = 2,
    v3 = 3,
    v4 = 4,
    v5 = 5,
    v7 = 7,
    v9 = 9,
    v15 = 15,
    v16 = 16,
    v18 = 18,
    v19 = 19,
    v22 = 22,
    v23 = 23,
    v24 = 24,
    v25 = 25,
    v26 = 26,
    v27 = 27,
    v28 = 28,
    v31 = 31,
);
fatal_with_error_code!(
    v8 = 8,
    v10 = 10,
    v11 = 11,
    v12 = 12,
    v13 = 13,
    v17 = 17,
    v21 = 21,
    v29 = 29,
    v30 = 30,
);

entry_stub!(
    /// The #PF entry point.
    fn page_fault => super::on_page_fault, vector = 14, error_code
);

// Vectors 32..=255 but the device, wake-IPI and spurious vectors share one stub; the
// dispatcher sees `EXTERNAL`.
entry_stub!(
    /// The entry point of every external vector the kernel does not expect.
    fn external => super::dispatch, vector = super::EXTERNAL
);

entry_stub!(
    /// The entry point of the x2APIC's spurious vector, which the kernel sets in its SVR.
    fn spurious => super::dispatch, vector = super::SPURIOUS as u64
);

entry_stub!(
    /// The entry point of the IPI that wakes a halted AP.
    fn wake_ipi => crate::x2apic::on_wake, vector = crate::x2apic::WAKE_VECTOR as u64
);

entry_stub!(
    /// The entry point of the device interrupt the kernel routes to itself.
    fn device => crate::external_interrupt::on_interrupt,
    vector = crate::external_interrupt::VECTOR as u64
);

// #UD: the TDCALL emulation.
entry_stub!(
    /// The #UD entry point.
    pub fn invalid_opcode => super::on_invalid_opcode
);

/// The entry stub of `vector`.
pub fn entry_for(vector: u8) -> usize {
    let stub: unsafe extern "C" fn() = match vector {
        0 => v0,
        1 => v1,
        2 => v2,
        3 => v3,
        4 => v4,
        5 => v5,
        6 => invalid_opcode,
        7 => v7,
        8 => v8,
        9 => v9,
        10 => v10,
        11 => v11,
        12 => v12,
        13 => v13,
        14 => page_fault,
        15 => v15,
        16 => v16,
        17 => v17,
        18 => v18,
        19 => v19,
        20 => tdx_boot::ve::ve_entry,
        21 => v21,
        22 => v22,
        23 => v23,
        24 => v24,
        25 => v25,
        26 => v26,
        27 => v27,
        28 => v28,
        29 => v29,
        30 => v30,
        31 => v31,
        crate::external_interrupt::VECTOR => device,
        crate::x2apic::WAKE_VECTOR => wake_ipi,
        super::SPURIOUS => spurious,
        _ => external,
    };
    stub as *const () as usize
}

const _: () = assert!(core::mem::size_of::<Frame>() == 160);
