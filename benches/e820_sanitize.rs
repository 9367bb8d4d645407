//! Placeholder until the module's benchmark lands.
fn main() {}
