//! The sampling side of a step: a sequence's logits rows become its next tokens (with
//! stop conditions, structured output, logprobs and speculative drafts' verification) and the
//! events its client reads.

use std::sync::atomic::Ordering;

use super::{Part, Scheduler};
use crate::constrained::Constrained;
use crate::fairness::OUTPUT_WEIGHT;
use crate::logprobs::{TokenLogprob, token_logprob};
use crate::request::{FinishReason, GenerationEvent};

impl Scheduler {
    /// Sends the log-probabilities of the prompt tokens that `rows` (one per token of `part`)
    /// predict: the row at position `p` gives the distribution of token `p + 1`.
    pub(super) fn score_prompt(&mut self, part: Part, rows: &[Vec<f32>]) {
        let s = &mut self.running[part.seq];
        let Some(alternatives) = s.prompt_logprobs else { return };
        let mut out = Vec::new();
        for (k, row) in rows.iter().enumerate() {
            let next = part.start + k + 1;
            if next == s.prompt_scored && next < s.prompt_len {
                out.push(token_logprob(row, s.tokens[next], alternatives));
                s.prompt_scored += 1;
            }
        }
        if !out.is_empty() {
            let _ = s.tx.send(GenerationEvent::Prompt { logprobs: out });
        }
    }

    /// Samples running sequence `i`'s rows in turn, one per input token (its last, then each
    /// draft), as plain decoding would, until a sampled token differs from the draft or the
    /// answer ends: every token comes from the model's distribution given the ones before it
    /// (`speculative.rs`). The verified drafts' K/V count as computed.
    pub(super) fn verify(
        &mut self,
        i: usize,
        draft: &[u32],
        rows: Vec<Vec<f32>>,
    ) -> Option<FinishReason> {
        let mut accepted = 0;
        let mut end = None;
        for (j, mut row) in rows.into_iter().enumerate() {
            end = self.sample_one(i, &mut row);
            let last = self.running[i].tokens.last().copied();
            if end.is_some() || j >= draft.len() || last != Some(draft[j]) {
                break;
            }
            accepted += 1;
        }
        self.running[i].computed += accepted;
        self.stats.spec_draft_tokens.fetch_add(draft.len(), Ordering::Relaxed);
        self.stats.spec_accepted_tokens.fetch_add(accepted, Ordering::Relaxed);
        if self.cfg.prefix_caching {
            self.register_full_blocks(i);
        }
        end
    }

    /// Samples the next token of running sequence `i`; returns a finish reason when it is done.
    pub(super) fn sample_one(&mut self, i: usize, logits: &mut [f32]) -> Option<FinishReason> {
        let s = &mut self.running[i];
        if s.max_tokens == 0 {
            // Scoring only: the prompt's log-probabilities were the answer.
            return Some(FinishReason::Length);
        }
        // Log-probabilities are of the model's own distribution: taken before the sampler
        // applies penalties to `logits` in place.
        let raw = s.sampler.logprobs().map(|n| (n, logits.to_vec()));
        if s.generated() < s.min_tokens {
            for &t in self.eos.iter().chain(&s.stop_token_ids) {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        // Nothing may follow when the answer is complete but `min_tokens` bans its end, or
        // when no token of the vocabulary continues an incomplete answer: a dead end (the
        // constraint needs a byte no token has, or it went past the matcher's ambiguity
        // limit). The answer ends either way; a dead end is counted and logged, since the
        // client receives text the constraint does not accept.
        if let Some(c) = &s.constraint
            && !c.mask(logits, self.eos.iter().chain(&s.stop_token_ids))
        {
            if !c.complete() {
                self.stats.grammar_dead_ends.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    generated = s.generated(),
                    "structured output: no token continues the constrained answer; it ends \
                     incomplete"
                );
            }
            return Some(FinishReason::Stop);
        }
        let tok = s.sampler.sample(logits);
        let logprobs: Vec<TokenLogprob> =
            raw.map(|(n, raw)| token_logprob(&raw, tok, n)).into_iter().collect();
        s.sampler.observe(tok);
        s.tokens.push(tok);
        self.stats.generated_tokens.fetch_add(1, Ordering::Relaxed);
        if let Some(v) = &mut self.fair {
            v.charge(&s.tenant, 1, OUTPUT_WEIGHT);
        }
        // A constrained answer ends at end-of-sequence even with `ignore_eos`: the grammar
        // only offers it once nothing else can complete the answer.
        let eos_ends = !s.ignore_eos || s.constraint.is_some();
        if (eos_ends && self.eos.contains(&tok)) || s.stop_token_ids.contains(&tok) {
            let _ = s.tx.send(GenerationEvent::Delta {
                text: String::new(),
                tokens: vec![tok],
                logprobs,
            });
            return Some(FinishReason::Stop);
        }
        if let Some(c) = &mut s.constraint
            && let Err(e) = c.advance(tok)
        {
            let _ = s.tx.send(GenerationEvent::Error(e.to_string()));
            return Some(FinishReason::Stop);
        }
        match s.out.push(tok) {
            Ok((text, stopped)) => {
                let _ = s.tx.send(GenerationEvent::Delta { text, tokens: vec![tok], logprobs });
                if stopped || s.constraint.as_ref().is_some_and(Constrained::finished) {
                    return Some(FinishReason::Stop);
                }
            }
            Err(e) => {
                let _ = s.tx.send(GenerationEvent::Error(e.to_string()));
                return Some(FinishReason::Stop);
            }
        }
        if s.generated() >= s.max_tokens || s.tokens.len() >= self.max_seq_len {
            return Some(FinishReason::Length);
        }
        None
    }
}
