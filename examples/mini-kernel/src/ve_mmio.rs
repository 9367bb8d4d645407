//! #VE on MMIO: an IOAPIC's version register, read through a shared, uncached mapping.
//!
//! A TD reaches an emulated device by mapping its GPA with the shared bit: the access then
//! leaves the TD as an EPT violation, which the TDX module delivers as a #VE, and tdx-boot's
//! handler decodes the instruction at RIP and performs it with #VE.RequestMMIO. The registers are
//! reached the way a rust-osdev driver reaches them, through `volatile::VolatilePtr` over a
//! `#[repr(C)]` register block: tdx-boot's `tests/ve_volatile.rs` shows that what
//! `VolatilePtr::read`/`write` compile to, at every width and in debug and release, is decoded
//! and emulated correctly. (`tdx_boot::ve::mmio_access` is the alternative when a driver wants
//! the single `mov` guaranteed rather than tested.)
//!
//! The device is the IOAPIC at 0xFEC0_0000, which QEMU emulates for a TD (with
//! `kernel-irqchip=split`, as TDX requires): write the register index 1 (IOAPICVER) to IOREGSEL
//! at +0x00, read IOWIN at +0x10. Without TDX the same code maps a page of the model's MMIO
//! space instead, where an IOAPIC register window answers with QEMU's IOAPIC version, and
//! QEMU's #PF on the shared mapping is turned into the #VE a TD would take
//! ([`crate::model_ept`]). Only the device's GPA and the expected answer differ.

use crate::check;
use crate::ioapic::{IOAPIC_GPA, IOAPICVER, IOREGSEL, IOWIN, IoApic};
use crate::paging;
use crate::platform::Platform;
use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU32, Ordering};
use tdx_boot::model::MmioDevice;
use tdx_boot::tdcall::leaf;

/// Where the model's IOAPIC register window sits without TDX: an unused GPA below 4 GiB, not
/// the real IOAPIC's, so nothing can mistake QEMU's own device for the emulated path.
pub const MODEL_IOAPIC_GPA: u64 = 0xfeb0_0000;

/// QEMU's IOAPIC version register: version 0x20, 24 redirection entries.
const QEMU_IOAPIC_VERSION: u32 = 0x0017_0020;

/// The model's IOAPIC: the register window, answering IOAPICVER with QEMU's value. Clones share
/// the index register, so the check can see what the kernel selected.
#[derive(Clone, Default)]
struct ModelIoApic {
    selected: Arc<AtomicU32>,
}

impl MmioDevice for ModelIoApic {
    fn read(&mut self, offset: u64, _size: u8) -> u64 {
        let selected = self.selected.load(Ordering::Relaxed);
        match (offset as usize, selected) {
            (IOREGSEL, _) => selected.into(),
            (IOWIN, IOAPICVER) => QEMU_IOAPIC_VERSION.into(),
            _ => 0,
        }
    }

    fn write(&mut self, offset: u64, _size: u8, value: u64) {
        if offset as usize == IOREGSEL {
            // IOREGSEL is an 8-bit register.
            self.selected.store(value as u32 & 0xff, Ordering::Relaxed);
        }
    }
}

/// The IOAPIC version register's fields.
#[derive(Clone, Copy)]
struct Version(u32);

impl Version {
    fn version(self) -> u8 {
        self.0 as u8
    }

    fn redirection_entries(self) -> u32 {
        ((self.0 >> 16) & 0xff) + 1
    }

    /// An IOAPIC's: version 0x11 (the 82093AA) up to 0x20 (chipset IOAPICs, QEMU's), and at
    /// least 2 and at most 240 inputs (the APIC architecture's limit). A missing device reads
    /// as all ones or zeros, which fails.
    fn is_plausible(self) -> bool {
        (0x11..=0x20).contains(&self.version()) && (2..=240).contains(&self.redirection_entries())
    }
}

/// Maps the IOAPIC (or the model's) shared and uncached and reads its version register through
/// two #VEs.
pub fn check(platform: &Platform, shared_mask: u64) {
    let (gpa, model) = match *platform {
        Platform::Td => (IOAPIC_GPA, None),
        Platform::Model(module) => {
            let device = ModelIoApic::default();
            module.add_mmio_device(MODEL_IOAPIC_GPA, 4096, Box::new(device.clone()));
            (MODEL_IOAPIC_GPA, Some((module, device)))
        }
    };
    let registers = match paging::map_device_shared(gpa, shared_mask) {
        Ok(registers) => registers,
        Err(e) => return check!("#VE MMIO", false, "mapping {gpa:#x} shared: {}", e.reason),
    };
    let ve_before = model
        .as_ref()
        .map(|(m, _)| m.tdcall_count(leaf::VP_VEINFO_GET));
    // SAFETY: the page was just mapped shared and uncached for good, interrupts are off and the
    // APs are not running yet: nothing else uses the window.
    let Some(mut ioapic) = (unsafe { IoApic::new(registers) }) else {
        return check!("#VE MMIO", false, "the IOAPIC mapping is null");
    };
    let version = Version(ioapic.read(IOAPICVER));
    // Without TDX: the exact answer, the selection the device saw, and one #VE per access.
    let model_agrees = model.as_ref().is_none_or(|(module, device)| {
        version.0 == QEMU_IOAPIC_VERSION
            && device.selected.load(Ordering::Relaxed) == IOAPICVER
            && ve_before.map(|before| module.tdcall_count(leaf::VP_VEINFO_GET) - before) == Some(2)
    });
    check!(
        "#VE MMIO",
        version.is_plausible() && model_agrees,
        "IOAPIC version register through a shared UC mapping of GPA {:#x} (IOREGSEL write, IOWIN \
         read, each a #VE): {:#010x}, version {:#04x}, {} redirection entries",
        gpa | shared_mask,
        version.0,
        version.version(),
        version.redirection_entries()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_ioapic_answers_through_its_window() {
        let mut device = ModelIoApic::default();
        device.write(IOREGSEL as u64, 4, 0x0100 | u64::from(IOAPICVER));
        assert_eq!(
            device.read(IOREGSEL as u64, 4),
            u64::from(IOAPICVER),
            "8-bit IOREGSEL"
        );
        assert_eq!(device.read(IOWIN as u64, 4), u64::from(QEMU_IOAPIC_VERSION));
        device.write(IOREGSEL as u64, 4, 0);
        assert_eq!(device.read(IOWIN as u64, 4), 0, "IOAPICID reads as 0");
        device.write(IOWIN as u64, 4, 0xffff_ffff);
        assert_eq!(
            device.selected.load(Ordering::Relaxed),
            0,
            "IOWIN writes select nothing"
        );
    }

    #[test]
    fn version_plausibility_takes_real_ioapics_and_refuses_missing_devices() {
        assert!(Version(QEMU_IOAPIC_VERSION).is_plausible());
        assert_eq!(Version(QEMU_IOAPIC_VERSION).redirection_entries(), 24);
        assert!(Version(0x0017_0011).is_plausible(), "82093AA");
        assert!(
            !Version(0xffff_ffff).is_plausible(),
            "nothing there (all ones)"
        );
        assert!(!Version(0).is_plausible(), "nothing there (zeros)");
        assert!(!Version(0x0000_0020).is_plausible(), "a single input");
        assert!(!Version(0x0017_0021).is_plausible(), "unknown version");
    }
}
