//! The published shared-bit mask: absent before `init`, set once, never silently changed. One
//! test only, because the mask is process-global.
#![cfg(feature = "model")]

use tdx_boot::early::{self, EarlyError, Policy};
use tdx_boot::model::{ModelConfig, TdxModule};
use tdx_boot::tdcall::TdAttributes;

#[test]
fn the_mask_is_published_once_and_only_on_success() {
    assert_eq!(early::shared_mask(), None);

    // A refused TD publishes nothing.
    let refused = TdxModule::new(ModelConfig {
        gpaw: 52,
        attributes: TdAttributes::empty().bits(),
        ..Default::default()
    });
    assert!(early::init(&refused.vcpu(0), Policy::default()).is_err());
    assert_eq!(early::shared_mask(), None);

    let td52 = TdxModule::new(ModelConfig {
        gpaw: 52,
        ..Default::default()
    });
    let td = early::init(&td52.vcpu(0), Policy::default()).unwrap();
    assert_eq!(td.shared_mask(), 1 << 51);
    assert_eq!(early::shared_mask(), Some(1 << 51));

    // The same TD again (another vCPU): same mask, fine.
    assert!(early::init(&td52.vcpu(1), Policy::default()).is_ok());

    // A module reporting another GPAW later is an error, and the mask stays.
    let td48 = TdxModule::new(ModelConfig::default());
    assert_eq!(
        early::init(&td48.vcpu(0), Policy::default()),
        Err(EarlyError::SharedMaskChanged {
            published: 1 << 51,
            reported: 1 << 47
        })
    );
    assert_eq!(early::shared_mask(), Some(1 << 51));
}
