//! The on-disk layout of a span index: file names, the JSON header and its validation.
//!
//! A span index is a directory of four files (see `docs/span-index.md`):
//! - `tokens.bin`: the corpus, every document preceded by the separator token, little-endian
//!   integers of `token_width` bytes;
//! - `sa.bin`: the suffix array over the corpus positions, little-endian `u32`;
//! - `docs.bin`: the corpus position of each document's first token, little-endian `u64`;
//! - `span-index.json`: [`SpanIndexHeader`].

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{AttributionError, Result};

/// Version of the layout written by this code; `open` refuses any other.
pub const FORMAT_VERSION: u32 = 1;

/// The header file's name.
pub(crate) const HEADER_FILE: &str = "span-index.json";
/// The corpus file's name.
pub(crate) const TOKENS_FILE: &str = "tokens.bin";
/// The suffix array file's name.
pub(crate) const SA_FILE: &str = "sa.bin";
/// The document table file's name.
pub(crate) const DOCS_FILE: &str = "docs.bin";
/// The data files whose hashes the header records, in the order they are written.
pub(crate) const DATA_FILES: [&str; 3] = [TOKENS_FILE, SA_FILE, DOCS_FILE];

/// Separator of a 2-byte-wide corpus: the largest `u16`, so it sorts after every real token.
pub(crate) const SEPARATOR_U16: u32 = 0xFFFF;
/// Separator of a 4-byte-wide corpus: the largest `u32`, so it sorts after every real token.
pub(crate) const SEPARATOR_U32: u32 = u32::MAX;

/// The most corpus positions an index can hold: suffix array entries are 32-bit and libsais's
/// 32-bit output is limited to `i32::MAX` entries.
pub(crate) const MAX_TOKENS: u64 = i32::MAX as u64;

/// `span-index.json`: what the data files hold, so `open` can check their sizes and `verify`
/// their content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanIndexHeader {
    /// Layout version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Bytes per token in `tokens.bin`: 2 when `vocab_size < 65535`, else 4.
    pub token_width: u32,
    /// Every real token is below this; the separator is not a real token.
    pub vocab_size: u64,
    /// Corpus positions: all documents' tokens plus one separator per document.
    pub num_tokens: u64,
    /// Documents (one per Datanet record, in record order).
    pub num_docs: u64,
    /// Hex SHA-256 of each data file, by file name.
    pub sha256: BTreeMap<String, String>,
}

/// Bytes per token for a vocabulary of `vocab_size` tokens: 2 as long as every token and the
/// separator `0xFFFF` fit a `u16` with the separator distinct from every token.
pub(crate) fn token_width_for(vocab_size: usize) -> u32 {
    if vocab_size < SEPARATOR_U16 as usize { 2 } else { 4 }
}

impl SpanIndexHeader {
    /// The separator value as stored in `tokens.bin`.
    pub fn separator(&self) -> u32 {
        if self.token_width == 2 { SEPARATOR_U16 } else { SEPARATOR_U32 }
    }

    /// Reads and validates `dir/span-index.json`.
    pub(crate) fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(HEADER_FILE);
        let bytes = std::fs::read(&path).map_err(AttributionError::io("reading", &path))?;
        let header: SpanIndexHeader = serde_json::from_slice(&bytes).map_err(|e| {
            AttributionError::Format { path: path.clone(), reason: format!("not a header: {e}") }
        })?;
        header.validate().map_err(|reason| AttributionError::Format { path, reason })?;
        Ok(header)
    }

    /// Checks the header's fields against each other; the reason when they disagree.
    fn validate(&self) -> Result<(), String> {
        if self.format_version != FORMAT_VERSION {
            return Err(format!(
                "format_version {} (this lorad reads {FORMAT_VERSION})",
                self.format_version
            ));
        }
        let vocab = usize::try_from(self.vocab_size)
            .map_err(|_| format!("vocab_size {} does not fit this machine", self.vocab_size))?;
        if self.vocab_size == 0 || self.vocab_size >= MAX_TOKENS {
            return Err(format!("vocab_size {} out of range", self.vocab_size));
        }
        let width = token_width_for(vocab);
        if self.token_width != width {
            return Err(format!(
                "token_width {} but a vocabulary of {} tokens is stored {width} bytes wide",
                self.token_width, self.vocab_size
            ));
        }
        if self.num_tokens > MAX_TOKENS {
            return Err(format!("num_tokens {} exceeds the limit {MAX_TOKENS}", self.num_tokens));
        }
        if self.num_docs > self.num_tokens {
            return Err(format!(
                "{} documents need at least as many separators, but num_tokens is {}",
                self.num_docs, self.num_tokens
            ));
        }
        if self.num_docs == 0 && self.num_tokens != 0 {
            return Err(format!("{} tokens but no documents", self.num_tokens));
        }
        if let Some(f) = DATA_FILES.iter().find(|f| !self.sha256.contains_key(**f)) {
            return Err(format!("no sha256 for {f}"));
        }
        Ok(())
    }
}
