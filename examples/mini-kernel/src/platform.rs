//! Where the TD's answers come from: the TDX module of a real TD, or tdx-boot's model.

use tdx_boot::model::TdxModule;

/// Where the TD's answers come from.
pub enum Platform {
    /// A real TD: TDCALL reaches the TDX module.
    Td,
    /// No TDX: the software module answers TDCALL's #UD.
    Model(&'static TdxModule),
}

impl Platform {
    /// The model, when there is no TDX.
    pub fn model(&self) -> Option<&'static TdxModule> {
        match self {
            Platform::Model(module) => Some(module),
            Platform::Td => None,
        }
    }
}
