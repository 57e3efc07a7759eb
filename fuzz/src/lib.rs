//! Seeded mutation fuzzing of the parsers that read bytes lorad did not write: model files,
//! adapter uploads, the adapter store on disk, Datanet records and files, attribution indexes,
//! structured-output constraints and light-client wire data (the daemon's API bodies are fuzzed
//! in its own tests, over the real model, with this crate's mutators).
//!
//! Each target in `tests/fuzz/` starts from valid inputs (seeds), derives mutated inputs from
//! them with a deterministic [`Mutator`] and feeds each to the parser, which must answer with a
//! value or an error — never a panic, an abort or a stack overflow. A [`Campaign`] runs one
//! target: a failing input is saved to a file and named with its seed and iteration, so a run
//! reproduces exactly. CI runs a few hundred inputs per target; `LORAD_FUZZ_ITERS` runs longer
//! campaigns (see README.md).
//!
//! There is no coverage feedback (that would need a nightly compiler and cargo-fuzz): the
//! mutations are aimed instead, at length and count fields (integers overwritten with boundary
//! values), truncations and duplications, and, for JSON inputs, at the tree ([`JsonMutator`]).
//!
//! - [`rng`]: the deterministic generator every mutation draws from.
//! - [`bytes`]: [`Mutator`], byte-level mutations.
//! - [`json`]: [`JsonMutator`], mutations of a JSON tree.
//! - [`campaign`]: [`Campaign`], running a target over mutated inputs.
//! - [`files`]: [`FileSet`], a directory of files with one replaced by the input.

pub mod bytes;
pub mod campaign;
pub mod files;
pub mod json;
pub mod rng;

pub use bytes::Mutator;
pub use campaign::{Campaign, Outcome};
pub use files::FileSet;
pub use json::JsonMutator;
pub use rng::Rng;
