//! tdx-sim's host-independent logic: what a VMM and the TDX module do to build and run a TD,
//! written as plain functions over bytes and state so that it is tested on the host and linked
//! unchanged into the bare-metal hypervisor.
//!
//! - [`tdvf`]: the TDVF metadata of a firmware image (where each section goes, what is measured).
//! - [`td_hob`]: the TD HOB a VMM hands TDVF, built as QEMU builds it.
//! - [`mrtd`]: MRTD as the TDX module accumulates it while the VMM adds the initial pages.
//! - [`cpuid_rules`]: what the TDX module answers for CPUID, and what raises #VE.
//! - [`msr_rules`]: what the TDX module does for RDMSR/WRMSR: native, emulated, #VE or #GP.
//! - [`x2apic`]: a software x2APIC per TD vCPU (registers, priority, EOI, timer, IPIs).
//! - [`td_ioapic`]: the TD's IOAPIC in front of the machine's: entries as the TD wrote them, pins
//!   routed to the host and their interrupts to TD vCPUs.
//! - [`cmos`]: the q35 RAM layout and the CMOS memory-size registers TDVF reads.
//! - [`fw_cfg`]: the TD's fw_cfg: the kernel from an opt/ file, DMA emulated through TD memory.
//! - [`fault_address`]: the guest linear address of the access that faulted, for #VE.
//!
//! Everything read from a firmware image is untrusted: parsers return typed errors and never
//! panic or overflow.

#![cfg_attr(not(test), no_std)]

pub mod cmos;
pub mod cpuid_rules;
pub mod fault_address;
pub mod fw_cfg;
pub mod mrtd;
pub mod msr_rules;
pub mod td_hob;
pub mod td_ioapic;
pub mod tdvf;
pub mod x2apic;

#[cfg(test)]
mod testing;
