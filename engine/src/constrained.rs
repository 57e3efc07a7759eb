//! A sequence under structured output: its grammar, where its answer is in it, and the
//! masking of each step's logits. A reasoning model's answer may hold the grammar back until
//! its thinking ends ([`Constrained::after`]), as vLLM does with a reasoning parser; for models
//! that think only sometimes (Qwen3), only when the answer opens its thinking.

use std::sync::Arc;

use lorad_grammar::{Grammar, GrammarError, State, Vocab};

/// The constraint state of one sequence.
#[derive(Debug)]
pub(crate) struct Constrained {
    grammar: Arc<Grammar>,
    vocab: Arc<Vocab>,
    state: State,
    /// While set, the answer is free: the grammar starts after this marker.
    deferred: Option<Deferred>,
}

/// The text before the grammar starts: everything up to and including `marker`.
#[derive(Debug)]
struct Deferred {
    marker: Vec<u8>,
    /// The answer's last bytes, enough to find the marker across tokens.
    tail: Vec<u8>,
    /// What the answer's first token must open with for the grammar to wait (Qwen3's
    /// `<think>`, one token in its vocabulary), until that token is sampled: the answer is then
    /// free only if it did. A token that merely begins the opening does not count: allowing it
    /// would let a model that was not going to think be steered, piece by piece, into it.
    opening: Option<Vec<u8>>,
}

impl Constrained {
    /// At the start of the answer.
    pub(crate) fn new(grammar: Arc<Grammar>, vocab: Arc<Vocab>) -> Self {
        let state = grammar.start();
        Self { grammar, vocab, state, deferred: None }
    }

    /// The grammar holds only after `marker` (a reasoning model's `</think>`): the text up to
    /// it is free, thinking included; what follows it in the same token is the grammar's first
    /// text.
    ///
    /// With `opening`, only an answer that opens with it waits (a model that may or may not
    /// think); one that does not follows the grammar from its first token.
    pub(crate) fn after(
        grammar: Arc<Grammar>,
        vocab: Arc<Vocab>,
        marker: &str,
        opening: Option<&str>,
    ) -> Self {
        let deferred = Deferred {
            marker: marker.as_bytes().to_vec(),
            tail: Vec::new(),
            opening: opening.map(|o| o.as_bytes().to_vec()),
        };
        Self { deferred: Some(deferred), ..Self::new(grammar, vocab) }
    }

    /// Whether the grammar is waiting for sure (not merely until the answer shows whether it
    /// opens its thinking).
    fn waiting(&self) -> bool {
        self.deferred.as_ref().is_some_and(|d| d.opening.is_none())
    }

    /// Sets every token that would leave the grammar to minus infinity. `ends` (end of
    /// sequence, stop tokens) keep their logits only when the answer is complete. Returns
    /// whether any token is left to sample.
    pub(crate) fn mask<'a>(
        &self,
        logits: &mut [f32],
        ends: impl IntoIterator<Item = &'a u32>,
    ) -> bool {
        if self.waiting() {
            return true;
        }
        let saved: Vec<(usize, f32)> = ends
            .into_iter()
            .filter_map(|&t| logits.get(t as usize).map(|&l| (t as usize, l)))
            .collect();
        let mask = self.grammar.mask(&self.vocab, &self.state);
        match &self.deferred {
            // Its first token: the grammar's first tokens, and those that open the thinking.
            Some(Deferred { opening: Some(opening), .. }) => {
                for (id, l) in (0u32..).zip(logits.iter_mut()) {
                    let opens =
                        || self.vocab.token_bytes(id).is_some_and(|b| b.starts_with(opening));
                    if !mask.allows(id) && !opens() {
                        *l = f32::NEG_INFINITY;
                    }
                }
            }
            _ => mask.apply(logits),
        }
        let complete = self.state.is_accepting();
        for (t, l) in saved {
            logits[t] = if complete { l } else { f32::NEG_INFINITY };
        }
        logits.iter().any(|l| l.is_finite())
    }

    /// The mask this sequence's next step needs, when it is not cached yet: computed on
    /// another thread while the forward pass runs, it is a cache hit by the time the step
    /// samples.
    pub(crate) fn mask_job(&self) -> Option<MaskJob> {
        (!self.waiting() && !self.grammar.has_mask(&self.vocab, &self.state)).then(|| MaskJob {
            grammar: self.grammar.clone(),
            vocab: self.vocab.clone(),
            state: self.state.clone(),
        })
    }

    /// Follows a sampled token (not an end token).
    pub(crate) fn advance(&mut self, token: u32) -> Result<(), GrammarError> {
        let Some(d) = &mut self.deferred else {
            self.state = self.grammar.advance_token(&self.vocab, &self.state, token)?;
            return Ok(());
        };
        // Control tokens have no text; they cannot hold the marker.
        let bytes = self.vocab.token_bytes(token).unwrap_or_default();
        if let Some(opening) = d.opening.take() {
            if !bytes.starts_with(&opening) {
                // It does not think: the grammar from this first token.
                self.deferred = None;
                self.state = self.grammar.advance_token(&self.vocab, &self.state, token)?;
                return Ok(());
            }
            // It thinks: free until the marker, which may already be in this token.
            d.tail.extend_from_slice(&bytes[opening.len()..]);
            return self.find_marker(token);
        }
        d.tail.extend_from_slice(bytes);
        self.find_marker(token)
    }

    /// Starts the grammar when the deferred text's tail holds the marker.
    fn find_marker(&mut self, token: u32) -> Result<(), GrammarError> {
        let Some(d) = &mut self.deferred else { return Ok(()) };
        let Some(at) = d.tail.windows(d.marker.len()).position(|w| w == d.marker.as_slice()) else {
            let keep = d.tail.len().saturating_sub(d.marker.len() - 1);
            d.tail.drain(..keep);
            return Ok(());
        };
        let rest = d.tail.split_off(at + d.marker.len());
        self.deferred = None;
        // Whitespace the grammar does not take at its start (a newline after `</think>`) is
        // left out of it; anything else must be the grammar's.
        self.state = self
            .grammar
            .advance_bytes(&self.state, &rest)
            .or_else(|| self.grammar.advance_bytes(&self.state, rest.trim_ascii_start()))
            .ok_or(GrammarError::Rejected(token))?;
        Ok(())
    }

    /// Whether the answer so far is a complete match (end-of-sequence may come now).
    pub(crate) fn complete(&self) -> bool {
        self.deferred.is_none() && self.state.is_accepting()
    }

    /// Whether nothing more can follow: the answer is complete.
    pub(crate) fn finished(&self) -> bool {
        self.deferred.is_none() && !self.state.can_continue()
    }
}

/// A token mask to compute ahead of sampling.
#[derive(Debug)]
pub(crate) struct MaskJob {
    grammar: Arc<Grammar>,
    vocab: Arc<Vocab>,
    state: State,
}

impl MaskJob {
    /// Computes the mask into the grammar's cache.
    pub(crate) fn run(self) {
        self.grammar.mask(&self.vocab, &self.state);
    }
}

#[cfg(test)]
mod tests {
    use lorad_grammar::Constraint;

    use super::*;

    const TOKENS: &[&str] =
        &["x", "</", "think", ">\n", "{", "}", "</think>{", "</think>x", " ", "<think>", "<"];

    fn deferred(opening: Option<&str>) -> Constrained {
        let grammar = Arc::new(Constraint::JsonObject.compile().expect("grammar"));
        let vocab = Arc::new(Vocab::new(TOKENS.iter().map(|t| Some(t.as_bytes().to_vec()))));
        Constrained::after(grammar, vocab, "</think>", opening)
    }

    fn after() -> Constrained {
        deferred(None)
    }

    fn id(t: &str) -> u32 {
        TOKENS.iter().position(|x| *x == t).expect("token") as u32
    }

    /// The tokens `mask` leaves samplable.
    fn allowed(c: &Constrained) -> Vec<&'static str> {
        let mut logits = vec![0f32; TOKENS.len()];
        c.mask(&mut logits, &[]);
        TOKENS.iter().zip(&logits).filter(|(_, l)| l.is_finite()).map(|(t, _)| *t).collect()
    }

    #[test]
    fn the_grammar_starts_after_the_marker() {
        let mut c = after();
        // Thinking: anything goes, nothing is finished, no mask to compute.
        assert_eq!(allowed(&c), TOKENS);
        assert!(c.mask_job().is_none() && !c.finished());
        for t in [0, 1, 0, 1, 2] {
            c.advance(t).expect("free text");
        }
        assert_eq!(allowed(&c), TOKENS, "`</` then `x`: not the marker");
        c.advance(3).expect("`>\\n` closes the thinking split across tokens");
        // The grammar now: a JSON object, the newline after the marker left out of it.
        assert_eq!(allowed(&c), ["{"]);
        c.advance(4).expect("{");
        c.advance(5).expect("}");
        assert!(c.finished());
        // The marker and the grammar's first text in one token.
        let mut c = after();
        c.advance(6).expect("`</think>{`");
        assert!(allowed(&c).contains(&"}") && !allowed(&c).contains(&"{"), "{:?}", allowed(&c));
        // Text after the marker that the grammar refuses is an error.
        let mut c = after();
        assert!(c.advance(7).is_err());
    }

    /// Qwen3: the grammar waits only for an answer that opens with `<think>`.
    #[test]
    fn an_answer_that_may_think_waits_only_when_it_opens_its_thinking() {
        let c = deferred(Some("<think>"));
        // Its first token: the grammar's first tokens, or the one that opens the thinking
        // (not `<`, which only begins it).
        assert_eq!(allowed(&c), ["{", "<think>"]);
        assert!(!c.finished());
        // It thinks: free until `</think>`, then the grammar.
        let mut c = deferred(Some("<think>"));
        c.advance(id("<think>")).expect("<think>");
        assert_eq!(allowed(&c), TOKENS);
        c.advance(id("x")).expect("thinking");
        c.advance(id("</think>{")).expect("end of thinking and the grammar's `{`");
        assert!(allowed(&c).contains(&"}") && !allowed(&c).contains(&"x"));
        c.advance(id("}")).expect("}");
        assert!(c.finished());
        // It does not think: the grammar from the first token.
        let mut c = deferred(Some("<think>"));
        c.advance(id("{")).expect("{");
        assert_eq!(allowed(&c), ["}", " "]);
        c.advance(id("}")).expect("}");
        assert!(c.finished());
        // A token that neither opens the thinking nor fits the grammar is refused.
        assert!(deferred(Some("<think>")).advance(id("x")).is_err());
    }
}
