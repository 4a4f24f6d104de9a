//! placeholder
pub fn conformance() {}
