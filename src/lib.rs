//! Guest-side Intel TDX boot for Rust kernels.
//!
//! `tdx-boot` consumes what TDVF (TDX's OVMF) or TD-shim hands a kernel and does the work every TD
//! guest kernel needs: the TDCALL/TDVMCALL ABI, #VE handling, AP wake-up through the ACPI MADT
//! mailbox, acceptance of unaccepted memory, private/shared conversion and a sanitized memory map.
//!
//! Every module above [`tdcall`] takes a `&impl TdCall`, so the same code runs on a real TDX module
//! ([`tdcall::Hardware`]) and on the software model (`model::TdxModule`, feature `model`).
//!
//! # The boot sequence
//!
//! ```text
//! firmware (TDVF)          tdx-boot                                  kernel
//! UEFI memory map   --->   e820: typed, sanitized MemoryMap   --->     frame allocator
//!                          early: detect, TdInfo, policy, console
//! #VE (vector 20)   --->   ve: stub -> VEINFO.GET -> TDVMCALL  --->     IDT vector 20
//! ACPI MADT         --->   mpwk: parse, wake APs via mailbox   --->     per-CPU entry
//! unaccepted memory --->   accept: fewest ACCEPTs, lazy, parallel
//!                          convert: private <-> shared (MapGPA)
//! ```
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "model")]
extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod accept;
pub mod convert;
pub mod e820;
pub mod early;
#[cfg(feature = "model")]
pub mod model;
pub mod mpwk;
pub mod tdcall;
pub mod ve;
