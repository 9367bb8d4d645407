//! TDCALL leaf numbers (RAX on entry) [TDX Module ABI].

/// TDG.VP.VMCALL: a call to the VMM (the [`super::vmcall`] sub-functions).
pub const VP_VMCALL: u64 = 0;
/// TDG.VP.INFO: the TD's execution environment.
pub const VP_INFO: u64 = 1;
/// TDG.MR.RTMR.EXTEND: extend one runtime measurement register.
pub const MR_RTMR_EXTEND: u64 = 2;
/// TDG.VP.VEINFO.GET: the information of the pending #VE.
pub const VP_VEINFO_GET: u64 = 3;
/// TDG.MR.REPORT: produce a TDREPORT.
pub const MR_REPORT: u64 = 4;
/// TDG.VP.CPUIDVE.SET: choose which CPUID leaves raise #VE.
pub const VP_CPUIDVE_SET: u64 = 5;
/// TDG.MEM.PAGE.ACCEPT: accept a pending private page.
pub const MEM_PAGE_ACCEPT: u64 = 6;
/// TDG.VM.RD: read a TD-scope metadata field.
pub const VM_RD: u64 = 7;
/// TDG.VM.WR: write a TD-scope metadata field.
pub const VM_WR: u64 = 8;
