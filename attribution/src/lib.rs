//! lorad's Proof of Attribution: which Datanet contributors' data shaped an answer.
//!
//! Two methods, as the research anchors split them (see `docs/attribution.md`):
//! - [`span`]: exact-match span tracing over a suffix array of a Datanet's tokens (infini-gram /
//!   OLMoTrace style), for the base or any large-corpus case.
//! - `grad`: projected-gradient influence (LoGra projection, DataInf / TRAK preconditioning) for
//!   adapters fine-tuned on a Datanet.

mod error;
pub mod grad;
pub mod planted;
pub mod span;
mod weights;

pub use error::AttributionError;
pub use weights::to_basis_points;

/// Result alias of this crate.
pub type Result<T, E = AttributionError> = std::result::Result<T, E>;
