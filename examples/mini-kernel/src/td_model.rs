//! Without TDX: tdx-boot's software TDX module, compiled into the kernel, plays the TD.
//!
//! The model is given the machine's real memory map (RAM as accepted private memory, with the
//! ranges the kernel declared unaccepted as pending) and the RAM itself as backing, so ACCEPT
//! really zeroes pages, TDREPORT really lands in the kernel's buffer and RTMR.EXTEND reads the
//! kernel's digest. The kernel keeps calling `tdcall::Hardware`: the real instruction raises
//! #UD here, and [`crate::ud_tdcall`] answers it from this model.

use alloc::boxed::Box;
use tdx_boot::e820::{MemoryMap, RegionKind};
use tdx_boot::model::{ModelConfig, PageState, TdxModule};
use tdx_boot::tdcall::{Regs, TdCall};

/// Builds the model for `map` and `num_vcpus` CPUs and routes TDCALL's #UD to it.
pub fn install<const N: usize>(map: &MemoryMap<N>, num_vcpus: u32) -> &'static TdxModule {
    let module: &'static TdxModule = Box::leak(Box::new(TdxModule::new(ModelConfig {
        num_vcpus,
        max_vcpus: num_vcpus,
        ..ModelConfig::default()
    })));
    for region in map.regions() {
        let (state, backed) = match region.kind {
            RegionKind::Unaccepted => (PageState::Unaccepted, true),
            RegionKind::Usable | RegionKind::AcpiReclaimable | RegionKind::AcpiNvs => {
                (PageState::Private, true)
            }
            RegionKind::Reserved => (PageState::Private, false),
            _ => continue,
        };
        module.add_memory(region.start, region.end, state);
        if backed {
            // SAFETY: the host view maps all RAM for good at HOST_VIEW_BASE + GPA, and the
            // model writes only what a TDX module would (pages being accepted, buffers the
            // kernel hands to TDCALLs), which the kernel treats exactly as on hardware.
            unsafe {
                module.add_backing(
                    region.start,
                    (crate::paging::HOST_VIEW_BASE + region.start) as *mut u8,
                    region.end - region.start,
                )
            };
        }
    }
    let answer = move |cpu: u32, regs: &mut Regs| {
        // SAFETY: the registers are the ones the interrupted TDCALL passed, under the contract
        // the caller of `Hardware::tdcall` already upheld for the real module.
        unsafe { module.vcpu(cpu).tdcall(regs) }
    };
    crate::ud_tdcall::install(Box::leak(Box::new(answer)));
    crate::model_ept::install(module);
    module
}
