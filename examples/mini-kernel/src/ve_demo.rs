//! #VE: delivering to tdx-boot's handler.

use tdx_boot::ve::Frame;

/// Handles vector 20; false if the handler could not.
pub fn handle(_frame: &mut Frame) -> bool {
    false
}
