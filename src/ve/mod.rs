//! #VE handling: CPUID, HLT, port IO, MSRs and MMIO become TDVMCALLs.

mod frame;
pub mod mmio;

pub use frame::{Frame, RFLAGS_IF};
