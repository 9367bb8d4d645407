//! The global console: install once, print from anywhere, and never deadlock when a print
//! happens while another is in progress (a panic in the middle of a line). One test only,
//! because the console is process-global.
#![cfg(feature = "model")]

use core::fmt;
use tdx_boot::early::{self, ConsoleError};
use tdx_boot::model::{ModelConfig, TdxModule};
use tdx_boot::tdcall::vmcall::function;

/// A value whose formatting prints to the console itself, as a panic inside `Display` would.
struct Reentrant;

impl fmt::Display for Reentrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        early::print(format_args!("[inner]")).map_err(|_| fmt::Error)?;
        f.write_str("tail")
    }
}

#[test]
fn the_global_console_prints_and_survives_reentry() {
    assert_eq!(
        early::print(format_args!("lost")),
        Err(ConsoleError::NotInstalled)
    );
    assert_eq!(early::configure_console(), Err(ConsoleError::NotInstalled));
    let model: &'static TdxModule = Box::leak(Box::new(TdxModule::new(ModelConfig::default())));
    let vcpu = Box::leak(Box::new(model.vcpu(0)));
    assert!(early::install_console(vcpu));
    let other = Box::leak(Box::new(model.vcpu(1)));
    assert!(
        !early::install_console(other),
        "only the first install counts"
    );
    assert!(early::installed_console().is_some());

    // The model's UART does not confirm a FIFO, so printing still reads the status per byte.
    early::configure_console().unwrap();
    let io_before = model.vmcall_count(function::IO);
    early::print(format_args!("boot {}\n", 1)).unwrap();
    assert_eq!(model.vmcall_count(function::IO) - io_before, 2 * 8);
    assert_eq!(model.uart_output(), b"boot 1\r\n".to_vec());

    // The inner print finds the lock taken, gives up waiting and writes anyway.
    early::print(format_args!("outer {Reentrant}\n")).unwrap();
    assert_eq!(
        model.uart_output(),
        b"boot 1\r\nouter [inner]tail\r\n".to_vec()
    );

    // Several threads: every line arrives whole.
    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || {
                for i in 0..10 {
                    early::print(format_args!("t{t} line {i}\n")).unwrap();
                }
            });
        }
    });
    let text = String::from_utf8(model.uart_output()).unwrap();
    for t in 0..4 {
        for i in 0..10 {
            assert!(text.contains(&format!("t{t} line {i}\r\n")), "{text}");
        }
    }
}
