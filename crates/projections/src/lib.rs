//! Read models folded from the log. Each is a pure fold over stored events: rebuilding it from position 1 gives
//! what incremental updates gave.

pub mod catalogue;
pub mod indicators;

pub use catalogue::Catalogue;
