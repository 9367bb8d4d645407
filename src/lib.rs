// The crate documentation is README.md, so its usage example is compiled and run as a doc test.
#![doc = include_str!("../README.md")]
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "model")]
extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod accept;
pub mod attest;
mod bytes;
pub mod convert;
pub mod e820;
pub mod early;
#[cfg(feature = "model")]
pub mod model;
pub mod mpwk;
pub mod tdcall;
pub mod ve;
