//! Helpers shared by the `early_*` integration tests.
#![allow(dead_code)]

use tdx_boot::model::{ModelConfig, PageState, TdxModule};
use tdx_boot::tdcall::{Regs, TdAttributes, TdCall};

/// A model with `attributes` and otherwise default configuration.
pub fn model_with_attributes(attributes: TdAttributes) -> TdxModule {
    TdxModule::new(ModelConfig {
        attributes: attributes.bits(),
        ..Default::default()
    })
}

/// How far below the caller's frame the stack window reaches: deeper frames (the code under test
/// and the buffers it puts on the stack) live there.
const BELOW: usize = 512 * 1024;
/// How far above.
const ABOVE: usize = 16 * 1024;

/// Makes the stack around the caller private, backed, identity-mapped guest memory of `model`, so
/// buffers the code under test builds on the stack have GPA = virtual address, as in a kernel
/// running on identity-mapped page tables.
///
/// # Safety
///
/// The model may read and write the window while a TDCALL names a buffer in it; the caller only
/// passes GPAs of live buffers it owns (which is what the crate's helpers do).
#[inline(never)]
pub unsafe fn back_current_stack(model: &TdxModule) {
    let marker = 0u8;
    let here = core::ptr::from_ref(&marker).addr();
    let start = (here - BELOW) & !0xfff;
    let end = (here + ABOVE) & !0xfff;
    assert!(
        (end as u64) < model.shared_bit(),
        "the stack at {here:#x} is not below the shared bit: identity mapping impossible"
    );
    model.add_memory(start as u64, end as u64, PageState::Private);
    // SAFETY: the window is this thread's stack (and a margin the model never touches unless a
    // GPA in it is passed); the caller vouches for what is passed.
    let added = unsafe { model.add_backing(start as u64, start as *mut u8, (end - start) as u64) };
    assert!(added, "the stack window overlaps registered backing");
}

/// A `TdCall` that forwards to `inner` but lets a test rewrite the answer of chosen calls, for
/// failures the model cannot be told to produce (one specific field or direction).
pub struct Intercept<T, F> {
    pub inner: T,
    pub after: F,
}

impl<T: TdCall, F: Fn(&Regs, &mut Regs) + Sync> TdCall for Intercept<T, F> {
    unsafe fn tdcall(&self, regs: &mut Regs) {
        let input = *regs;
        // SAFETY: forwarded unchanged; the caller upholds the contract.
        unsafe { self.inner.tdcall(regs) };
        (self.after)(&input, regs);
    }
}
