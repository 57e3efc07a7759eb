//! A sequence under structured output: its grammar, where its answer is in it, and the
//! masking of each step's logits.

use std::sync::Arc;

use lorad_grammar::{Grammar, GrammarError, State, Vocab};

/// The constraint state of one sequence.
#[derive(Debug)]
pub(crate) struct Constrained {
    grammar: Arc<Grammar>,
    vocab: Arc<Vocab>,
    state: State,
}

impl Constrained {
    /// At the start of the answer.
    pub(crate) fn new(grammar: Arc<Grammar>, vocab: Arc<Vocab>) -> Self {
        let state = grammar.start();
        Self { grammar, vocab, state }
    }

    /// Sets every token that would leave the grammar to minus infinity. `ends` (end of
    /// sequence, stop tokens) keep their logits only when the answer is complete. Returns
    /// whether any token is left to sample.
    pub(crate) fn mask<'a>(
        &self,
        logits: &mut [f32],
        ends: impl IntoIterator<Item = &'a u32>,
    ) -> bool {
        let saved: Vec<(usize, f32)> = ends
            .into_iter()
            .filter_map(|&t| logits.get(t as usize).map(|&l| (t as usize, l)))
            .collect();
        self.grammar.mask(&self.vocab, &self.state).apply(logits);
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
        (!self.grammar.has_mask(&self.vocab, &self.state)).then(|| MaskJob {
            grammar: self.grammar.clone(),
            vocab: self.vocab.clone(),
            state: self.state.clone(),
        })
    }

    /// Follows a sampled token (not an end token).
    pub(crate) fn advance(&mut self, token: u32) -> Result<(), GrammarError> {
        self.state = self.grammar.advance_token(&self.vocab, &self.state, token)?;
        Ok(())
    }

    /// Whether nothing more can follow: the answer is complete.
    pub(crate) fn finished(&self) -> bool {
        !self.state.can_continue()
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
