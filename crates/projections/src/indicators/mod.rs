//! Indicator tables (`shared/spec/indicators.md`): per agency and period, rolled up by grouping, with targets,
//! procedure coverage and scorecards.

pub mod check;
pub mod engine;
pub mod form;
pub mod life;
pub mod profile;
pub mod query;
pub mod render;
pub mod scheme;
pub mod scorecard;
pub mod table;

pub use engine::{Engine, FoldError, Loader};
pub use profile::{Definitions, Form, Profile, Profiles};
pub use table::{Counts, Group, Row};
