//! lorad's structured output: an answer constrained to JSON, a JSON Schema, a regular
//! expression or a list of choices, enforced while decoding.
//!
//! A constraint compiles to a byte-level context-free [`Grammar`]; a matcher [`State`] follows
//! the answer byte by byte; at each step [`Grammar::mask`] gives the tokens of the
//! vocabulary that keep the answer inside the grammar, and end-of-sequence is allowed when the
//! state [`State::is_accepting`]. Working on bytes, not characters, is what makes byte-level BPE
//! tokens that split a UTF-8 character come out right.
//!
//! - [`spec`]: [`Constraint`] (what the API takes) and the [`GrammarCache`].
//! - [`schema`]: JSON and JSON Schema to grammar.
//! - [`regex`](mod@regex): regular expressions to grammar.
//! - `gbnf`: GBNF grammars (llama.cpp's format) to grammar.
//! - [`tags`]: tagged JSON sections in free text (tool calls, structural tags).
//! - [`builder`]: building grammars in code.
//! - [`grammar`]: the compiled grammar and its matcher.
//! - [`vocab`]: the token trie and token masks.
//! - [`json`]: a JSON value that keeps key order.
//! - `numeric`: integers within bounds.
//! - [`bytes`]: byte sets.
//! - [`error`]: [`GrammarError`], the crate's single error type.

pub mod builder;
pub mod bytes;
pub mod error;
mod gbnf;
pub mod grammar;
pub mod json;
mod numeric;
pub mod regex;
pub mod schema;
pub mod spec;
pub mod tags;
pub mod vocab;

pub use builder::{Builder, Sym};
pub use bytes::ByteSet;
pub use error::GrammarError;
pub use grammar::{Grammar, State};
pub use json::Json;
pub use spec::{Constraint, GrammarCache};
pub use tags::{AfterTag, Tag, TagSpec};
pub use vocab::{MAX_CACHED_MASK_BYTES, TokenMask, Vocab, cached_mask_bytes};
