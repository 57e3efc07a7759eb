//! Suffix-array span attribution (infini-gram index, OLMoTrace-style tracing): which Datanet
//! records an answer repeats verbatim. Layout, algorithm and defaults: `docs/span-index.md`.
//!
//! - [`format`](mod@format): the directory layout and [`SpanIndexHeader`];
//! - `build`: [`SpanIndex::build`] (libsais suffix array, atomic write) and [`SpanIndexStats`];
//! - `mapped`: the one place files are memory-mapped, and the typed zero-copy views;
//! - `search`: suffix array binary search (count, find, longest prefix), and why matches never
//!   cross documents;
//! - `index`: [`SpanIndex`]: open, verify, queries, document lookup;
//! - `attribute`: [`SpanIndex::attribute`], [`SpanParams`], [`Span`], [`SpanAttribution`];
//! - `weights`: [`contributor_weights`] and [`to_basis_points`].

mod attribute;
mod build;
pub mod format;
mod index;
mod mapped;
mod search;
mod weights;

pub use attribute::{DocHit, Span, SpanAttribution, SpanParams};
pub use build::SpanIndexStats;
pub use format::{FORMAT_VERSION, SpanIndexHeader};
pub use index::SpanIndex;
pub use weights::{contributor_weights, to_basis_points};
