//! Turning sampled ids into text for the client: incremental detokenization that never splits
//! a UTF-8 character, and stop strings that are never sent, not even in part.

use lorad_model::Tokenizer;

use crate::{EngineError, Result};

/// Per-request output state.
#[derive(Debug)]
pub(crate) struct OutputState {
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
    /// Everything decoded so far (cut at a stop string once one is found).
    text: String,
    /// Bytes of `text` already sent.
    emitted: usize,
    stop: Vec<String>,
    max_stop: usize,
}

impl OutputState {
    pub(crate) fn new(stop: Vec<String>) -> Self {
        let max_stop = stop.iter().map(String::len).max().unwrap_or(0);
        Self {
            ids: Vec::new(),
            prefix_offset: 0,
            read_offset: 0,
            text: String::new(),
            emitted: 0,
            stop,
            max_stop,
        }
    }

    /// Adds a token; returns the text that may be sent now and whether a stop string matched.
    pub(crate) fn push(&mut self, id: u32, tok: &Tokenizer) -> Result<(String, bool)> {
        self.ids.push(id);
        let dec =
            |ids: &[u32]| tok.decode(ids, true).map_err(|e| EngineError::Tokenizer(e.to_string()));
        // Decode a small window: the text of ids[prefix..read] is already out; what the window
        // adds beyond it is new, unless it ends in a replacement char (an incomplete UTF-8
        // sequence that the next token will complete).
        let prefix = dec(&self.ids[self.prefix_offset..self.read_offset])?;
        let full = dec(&self.ids[self.prefix_offset..])?;
        if full.len() > prefix.len() && !full.ends_with('\u{FFFD}') {
            let piece = full.get(prefix.len()..).unwrap_or(&full);
            self.text.push_str(piece);
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
        }
        if self.max_stop > 0 {
            let from = floor_boundary(&self.text, self.emitted.saturating_sub(self.max_stop));
            let hit = self
                .stop
                .iter()
                .filter_map(|s| self.text[from..].find(s.as_str()).map(|p| from + p))
                .min();
            if let Some(at) = hit {
                self.text.truncate(at);
                let out = self.text[self.emitted.min(at)..].to_string();
                self.emitted = self.text.len();
                return Ok((out, true));
            }
        }
        let safe = self.text.len() - self.held_back();
        let out = self.text[self.emitted..safe].to_string();
        self.emitted = safe;
        Ok((out, false))
    }

    /// Text still held back (a possible stop-string prefix), sent when generation ends for
    /// another reason.
    pub(crate) fn flush(&mut self) -> String {
        let out = self.text[self.emitted..].to_string();
        self.emitted = self.text.len();
        out
    }

    /// Bytes at the end of `text` that could start a stop string.
    fn held_back(&self) -> usize {
        let pending = &self.text[self.emitted..];
        let mut hold = 0;
        for s in &self.stop {
            for k in (1..s.len().min(pending.len() + 1)).rev() {
                let cut = self.text.len() - k;
                if k > hold
                    && self.text.is_char_boundary(cut)
                    && s.as_bytes().starts_with(&self.text.as_bytes()[cut..])
                {
                    hold = k;
                    break;
                }
            }
        }
        hold
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
