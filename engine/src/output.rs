//! Turning sampled ids into text for the client: the model crate's incremental detokenizer
//! (never splits a UTF-8 character), plus stop strings that are never sent, not even in part.

use lorad_model::IncrementalDecoder;

use crate::{EngineError, Result};

/// Per-request output state.
#[derive(Debug)]
pub(crate) struct OutputState {
    decoder: IncrementalDecoder,
    /// Everything decoded so far (cut at a stop string once one is found).
    text: String,
    /// Bytes of `text` already sent.
    emitted: usize,
    stop: Vec<String>,
    max_stop: usize,
    /// A stop string matched: nothing after it may be sent.
    stopped: bool,
    /// The matched stop string ends the text instead of being cut (vLLM's
    /// `include_stop_str_in_output`).
    keep_stop: bool,
}

impl OutputState {
    pub(crate) fn new(stop: Vec<String>, keep_stop: bool, decoder: IncrementalDecoder) -> Self {
        let max_stop = stop.iter().map(String::len).max().unwrap_or(0);
        Self { decoder, text: String::new(), emitted: 0, stop, max_stop, stopped: false, keep_stop }
    }

    /// Adds a token; returns the text that may be sent now and whether a stop string matched.
    pub(crate) fn push(&mut self, id: u32) -> Result<(String, bool)> {
        let piece = self.decoder.push(id).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        self.text.push_str(&piece);
        if self.max_stop > 0 {
            let from = floor_boundary(&self.text, self.emitted.saturating_sub(self.max_stop));
            // The earliest match; at one position, the first stop string given.
            let hit = self
                .stop
                .iter()
                .filter_map(|s| self.text[from..].find(s.as_str()).map(|p| (from + p, s.len())))
                .min_by_key(|&(at, _)| at);
            if let Some((at, len)) = hit {
                let at = if self.keep_stop { at + len } else { at };
                self.text.truncate(at);
                let out = self.text[self.emitted.min(at)..].to_string();
                self.emitted = self.text.len();
                self.stopped = true;
                return Ok((out, true));
            }
        }
        let safe = self.text.len() - self.held_back();
        let out = self.text[self.emitted..safe].to_string();
        self.emitted = safe;
        Ok((out, false))
    }

    /// Text still held back (a possible stop-string prefix, an incomplete character), sent when
    /// generation ends for another reason than a stop string.
    pub(crate) fn flush(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        if let Ok(tail) = self.decoder.finish() {
            self.text.push_str(&tail);
        }
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
