//! Streaming detokenization: turning generated ids into text one id at a time.

use std::sync::Arc;

use crate::error::ModelError;

/// Turns a stream of token ids into text pieces, never splitting a UTF-8 character.
///
/// A byte-level token can end in the middle of a multi-byte character (emoji, CJK), and some
/// decoders change a token's text depending on what precedes it (SentencePiece drops the leading
/// space of the first token). So each step decodes a small window that starts one emitted chunk
/// back, for context, and emits only what the newest ids added, holding it back while it ends in
/// U+FFFD (an incomplete character). Special tokens are skipped. The concatenation of everything
/// [`push`](Self::push) and [`finish`](Self::finish) return equals
/// `Tokenizer::decode(all_ids, true)`.
///
/// Created by [`crate::Tokenizer::incremental_decoder`]; owns a shared handle on the vocabulary.
pub struct IncrementalDecoder {
    tokenizer: Arc<tokenizers::Tokenizer>,
    ids: Vec<u32>,
    /// Start of the context window: ids before it are fully emitted and no longer needed.
    prefix_offset: usize,
    /// End of what has been emitted.
    read_offset: usize,
}

impl std::fmt::Debug for IncrementalDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncrementalDecoder")
            .field("pending_ids", &&self.ids[self.read_offset..])
            .finish_non_exhaustive()
    }
}

impl IncrementalDecoder {
    pub(crate) fn new(tokenizer: Arc<tokenizers::Tokenizer>) -> Self {
        Self { tokenizer, ids: Vec::new(), prefix_offset: 0, read_offset: 0 }
    }

    fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        self.tokenizer.decode(ids, true).map_err(|source| ModelError::Tokenizer {
            context: "incremental decode".into(),
            source,
        })
    }

    /// Adds one generated id; returns the text it completes (often empty while a character is
    /// still incomplete, or for special tokens).
    pub fn push(&mut self, id: u32) -> Result<String, ModelError> {
        self.ids.push(id);
        self.emit(false)
    }

    /// Returns whatever is still held back (an incomplete character decodes as U+FFFD, exactly as
    /// the full decode would show it). Call once at the end of generation.
    pub fn finish(&mut self) -> Result<String, ModelError> {
        self.emit(true)
    }

    fn emit(&mut self, force: bool) -> Result<String, ModelError> {
        if self.read_offset == self.ids.len() {
            return Ok(String::new());
        }
        let prefix = self.decode(&self.ids[self.prefix_offset..self.read_offset])?;
        let full = self.decode(&self.ids[self.prefix_offset..])?;
        if !force && (full.len() <= prefix.len() || full.ends_with('\u{FFFD}')) {
            return Ok(String::new());
        }
        // The window text normally extends the prefix text; if a decoder rewrote the context
        // anyway, emit the whole window tail by character count rather than slicing mid-char.
        let new = match full.strip_prefix(prefix.as_str()) {
            Some(rest) => rest.to_owned(),
            None => full.chars().skip(prefix.chars().count()).collect(),
        };
        // Keep only the last emitted chunk as context, so memory and work stay bounded.
        self.ids.drain(..self.read_offset);
        self.prefix_offset = 0;
        self.read_offset = self.ids.len();
        Ok(new)
    }
}
