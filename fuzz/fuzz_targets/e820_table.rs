#![no_main]
// Placeholder until the parser lands; replaced by the module's owner.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = data;
});
