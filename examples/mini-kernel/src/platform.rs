//! Where the TD's answers come from: the TDX module of a real TD, or tdx-boot's model.

use core::sync::atomic::{AtomicBool, Ordering};
use tdx_boot::model::TdxModule;

/// Where the TD's answers come from.
pub enum Platform {
    /// A real TD: TDCALL reaches the TDX module.
    Td,
    /// No TDX: the software module answers TDCALL's #UD.
    Model(&'static TdxModule),
}

impl Platform {
    /// The model, when there is no TDX.
    pub fn model(&self) -> Option<&'static TdxModule> {
        match self {
            Platform::Model(module) => Some(module),
            Platform::Td => None,
        }
    }
}

static IN_TD: AtomicBool = AtomicBool::new(false);

/// Records that the kernel runs in a real TD. Called once, first thing in `efi_main`, so that
/// the console, the exit and the halts (which run before the boot has a [`Platform`] and in
/// fatal paths that have none) talk to the VMM with TDVMCALLs instead of instructions that
/// would raise #VE.
pub fn set_in_td() {
    IN_TD.store(true, Ordering::Relaxed);
}

/// Whether the kernel runs in a real TD (CPUID leaf 0x21 said so).
pub fn in_td() -> bool {
    IN_TD.load(Ordering::Relaxed)
}
