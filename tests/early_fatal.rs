//! Fatal errors: the 64-byte message (truncation on character boundaries) and, against the
//! model, what the host receives.

use core::fmt::Write;
use proptest::prelude::*;
use tdx_boot::early::FatalMessage;

#[test]
fn short_messages_pass_whole() {
    let m = FatalMessage::format(format_args!("code {} at {:#x}", 7, 0x1000));
    assert_eq!(m.as_str(), "code 7 at 0x1000");
    assert!(!m.is_truncated());
}

#[test]
fn exactly_64_bytes_is_not_truncated() {
    let text = "x".repeat(64);
    let m = FatalMessage::format(format_args!("{text}"));
    assert_eq!(m.as_str(), text);
    assert!(!m.is_truncated());
}

#[test]
fn long_messages_keep_their_first_64_bytes() {
    let text: String = (0..100)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let m = FatalMessage::format(format_args!("{text}"));
    assert_eq!(m.as_bytes(), &text.as_bytes()[..64]);
    assert!(m.is_truncated());
}

#[test]
fn a_character_straddling_byte_64_is_dropped_whole() {
    // 62 ASCII bytes, then a 4-byte character that would end at byte 66.
    let text = format!("{}{}", "a".repeat(62), '\u{1F980}');
    let m = FatalMessage::format(format_args!("{text}"));
    assert_eq!(m.as_str(), "a".repeat(62));
    assert!(m.is_truncated());
}

#[test]
fn text_after_a_truncation_is_not_appended() {
    // A later short piece would fit in the 2 bytes left; it must not follow a gap.
    let mut m = FatalMessage::new();
    m.write_str(&"a".repeat(62)).unwrap();
    m.write_str("\u{e9}\u{e9}").unwrap(); // 4 bytes: only the first fits...
    m.write_str("z").unwrap(); // ...and nothing after the cut.
    assert_eq!(m.as_str(), format!("{}\u{e9}", "a".repeat(62)));
    assert!(m.is_truncated());
}

proptest! {
    /// Any text, in any number of pieces: the message is the longest prefix of at most 64 bytes
    /// that ends on a character boundary.
    #[test]
    fn truncation_is_the_longest_valid_prefix(pieces in proptest::collection::vec(".{0,40}", 0..6)) {
        let whole: String = pieces.concat();
        let mut m = FatalMessage::new();
        for piece in &pieces {
            m.write_str(piece).unwrap();
        }
        let mut cut = whole.len().min(64);
        while !whole.is_char_boundary(cut) {
            cut -= 1;
        }
        prop_assert_eq!(m.as_str(), &whole[..cut]);
        prop_assert_eq!(m.is_truncated(), cut < whole.len());
    }
}

/// What the host receives, against the model's VMM.
#[cfg(feature = "model")]
mod with_model {
    use tdx_boot::early::{PANIC_ERROR_CODE, report_fatal};
    use tdx_boot::model::{ModelConfig, TdxModule};
    use tdx_boot::tdcall::VmcallStatus;
    use tdx_boot::tdcall::vmcall::{VmcallError, function};

    #[test]
    fn the_host_gets_code_and_message_and_the_console_the_whole_text() {
        let model = TdxModule::new(ModelConfig::default());
        let err = report_fatal(&model.vcpu(0), 0x1234, format_args!("boom {}", 7));
        // The VMM returned, which a fatal error must not take as success.
        assert_eq!(err, VmcallError::Vmm(VmcallStatus::Success));
        assert_eq!(model.fatal_error(), Some((0x1234, b"boom 7".to_vec())));
        assert_eq!(
            model.uart_output(),
            b"fatal error 0x1234: boom 7\r\n".to_vec()
        );
        assert_eq!(model.vmcall_count(function::REPORT_FATAL_ERROR), 1);
    }

    #[test]
    fn long_messages_are_cut_to_64_bytes_for_the_host_only() {
        let model = TdxModule::new(ModelConfig::default());
        let text: String = (0..90).map(|i| char::from(b'A' + (i % 26) as u8)).collect();
        report_fatal(&model.vcpu(0), PANIC_ERROR_CODE, format_args!("{text}"));
        let (code, message) = model.fatal_error().unwrap();
        assert_eq!(code, PANIC_ERROR_CODE);
        assert_eq!(message, text.as_bytes()[..64].to_vec());
        let console = String::from_utf8(model.uart_output()).unwrap();
        assert!(console.contains(&text), "{console}");
    }

    #[test]
    fn the_host_never_sees_half_a_character() {
        let model = TdxModule::new(ModelConfig::default());
        // 63 bytes of ASCII, then "é" (2 bytes) that would end at byte 65.
        let text = format!("{}é and more", "x".repeat(63));
        report_fatal(&model.vcpu(0), 9, format_args!("{text}"));
        let (_, message) = model.fatal_error().unwrap();
        assert_eq!(message, "x".repeat(63).into_bytes());
        assert!(std::str::from_utf8(&message).is_ok());
    }

    #[test]
    fn a_refusing_vmm_is_reported_back() {
        let model = TdxModule::new(ModelConfig::default());
        model.refuse_vmcall(
            function::REPORT_FATAL_ERROR,
            VmcallStatus::INVALID_OPERAND_RAW,
            1,
        );
        let err = report_fatal(&model.vcpu(0), 1, format_args!("x"));
        assert_eq!(err, VmcallError::Vmm(VmcallStatus::InvalidOperand));
        assert_eq!(model.fatal_error(), None);
    }
}
