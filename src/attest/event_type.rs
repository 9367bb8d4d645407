//! TCG event types (PC Client Platform Firmware Profile, "Events") that CC logs use.

/// Informational; never extended (the Spec ID header, StartupLocality, ...).
pub const EV_NO_ACTION: u32 = 0x0000_0003;
/// The boundary between pre-OS and OS-present measurements.
pub const EV_SEPARATOR: u32 = 0x0000_0004;
/// A firmware or software event tag.
pub const EV_EVENT_TAG: u32 = 0x0000_0006;
/// Measurements by the OS loader or the OS (GRUB logs command lines with it).
pub const EV_IPL: u32 = 0x0000_000D;
/// An EFI action string.
pub const EV_EFI_ACTION: u32 = 0x8000_0007;
/// A UEFI application loaded from a boot option (the kernel's PE image).
pub const EV_EFI_BOOT_SERVICES_APPLICATION: u32 = 0x8000_0003;
/// A firmware blob with a description (TDVF: the TD HOB, the configuration volume).
pub const EV_EFI_PLATFORM_FIRMWARE_BLOB2: u32 = 0x8000_000A;
/// Handoff tables with a description (TDVF: the ACPI tables it installed).
pub const EV_EFI_HANDOFF_TABLES2: u32 = 0x8000_000B;
