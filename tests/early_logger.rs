//! `TdxLogger` (feature `log`): records reach the UART as `[LEVEL target] message` lines and
//! the level filter holds. One test only, because `log::set_logger` is process-global.
#![cfg(all(feature = "log", feature = "model"))]

use tdx_boot::early::TdxLogger;
use tdx_boot::model::{ModelConfig, TdxModule, Vcpu};

#[test]
fn records_reach_the_uart_filtered_by_level() {
    let model: &'static TdxModule = Box::leak(Box::new(TdxModule::new(ModelConfig::default())));
    let logger: &'static TdxLogger<Vcpu<'static>> = Box::leak(Box::new(TdxLogger::new(
        model.vcpu(0),
        log::LevelFilter::Info,
    )));
    log::set_logger(logger).unwrap();
    log::set_max_level(log::LevelFilter::Trace);

    log::info!(target: "boot", "memory: {} MiB", 512);
    log::debug!(target: "boot", "filtered out");
    log::error!("bad {}", "news");

    let text = String::from_utf8(model.uart_output()).unwrap();
    assert_eq!(
        text,
        "[INFO  boot] memory: 512 MiB\r\n[ERROR early_logger] bad news\r\n"
    );
    assert_eq!(logger.level(), log::LevelFilter::Info);
}
