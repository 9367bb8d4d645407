#![no_main]
//! The MMIO decoder on arbitrary bytes: it must never panic, never report an instruction longer
//! than its input or than 15 bytes, and must give the same answer for any longer input.

use tdx_boot::ve::Frame;
use tdx_boot::ve::mmio::{MmioError, decode};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let result = decode(data);
    if let Ok(mmio) = result {
        assert!(mmio.insn_len() <= data.len());
        assert!(mmio.insn_len() <= 15);
        assert!(matches!(mmio.size(), 1 | 2 | 4 | 8));
        // The instruction alone decodes to the same thing: nothing past it was read.
        assert_eq!(decode(&data[..mmio.insn_len()]), result);
        // Applying it must not panic either.
        let mut frame = Frame {
            rax: 0x0123_4567_89ab_cdef,
            ..Frame::default()
        };
        let _ = mmio.write_value(&frame);
        // Nor computing its address from extreme registers (wrapping, never overflowing).
        let extreme = Frame {
            rip: u64::MAX,
            rdi: u64::MAX,
            ..Frame::default()
        };
        let _ = mmio.linear_address(&extreme);
        mmio.complete_read(&mut frame, u64::MAX);
    }
    if data.len() < 15 && result != Err(MmioError::Truncated) {
        // More bytes after a decision cannot change it.
        let mut longer = data.to_vec();
        longer.extend_from_slice(&[0xff; 15]);
        assert_eq!(decode(&longer), result);
    }
});
