//! Speculative decoding by prompt lookup (vLLM's `ngram` method): the draft is what followed
//! the last occurrence of the sequence's final n tokens earlier in its own prompt or answer.
//! Summaries, edits, extraction and code answers repeat their input, so drafts are often
//! right, and one forward pass over the last token and k drafts costs about what one token
//! costs where decoding is bound by reading the weights.
//!
//! Verification needs no draft model and no rejection sampling: each of the k + 1 rows is
//! sampled in turn exactly as plain decoding would (same sampler, same random draws, same
//! penalties, stop strings and logprobs), and drafting stops at the first sampled token that
//! differs from the draft. Every token is thus drawn from the model's own distribution given
//! the tokens before it, and a seeded answer is the same with speculation on or off.

use crate::EngineError;

/// Prompt-lookup settings (vLLM's `--speculative-config` for `"method": "ngram"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NgramSpec {
    /// Draft tokens proposed per step (`num_speculative_tokens`).
    pub tokens: usize,
    /// Longest n-gram matched (`prompt_lookup_max`); longer matches are tried first.
    pub max_n: usize,
    /// Shortest n-gram matched (`prompt_lookup_min`).
    pub min_n: usize,
    /// No drafts in a step that decodes this many sequences or more (vLLM's
    /// `disable_by_batch_size`): a large batch already keeps the device busy, and its rows
    /// would pay for every rejected draft. `None`: never.
    pub disable_by_batch_size: Option<usize>,
}

impl NgramSpec {
    /// Checks the settings; errors name the vLLM field at fault.
    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |field: &'static str, reason: &str| {
            Err(EngineError::Config(format!("speculative_config.{field}: {reason}")))
        };
        if self.tokens == 0 || self.tokens > 16 {
            return bad("num_speculative_tokens", "must be 1 to 16");
        }
        if self.min_n == 0 {
            return bad("prompt_lookup_min", "must be at least 1");
        }
        if self.max_n < self.min_n || self.max_n > 64 {
            return bad("prompt_lookup_max", "must be at least prompt_lookup_min and at most 64");
        }
        if self.disable_by_batch_size == Some(0) {
            return bad("disable_by_batch_size", "must be at least 1");
        }
        Ok(())
    }

    /// Up to `limit` (at most [`Self::tokens`]) draft tokens for a sequence of `tokens`: what
    /// followed the most recent earlier occurrence of its last n tokens, for the longest n in
    /// `min_n..=max_n` that occurs. Empty when nothing matches.
    pub(crate) fn propose(&self, tokens: &[u32], limit: usize) -> Vec<u32> {
        let limit = limit.min(self.tokens);
        if limit == 0 {
            return Vec::new();
        }
        for n in (self.min_n..=self.max_n).rev() {
            if tokens.len() <= n {
                continue;
            }
            let tail = &tokens[tokens.len() - n..];
            // Start positions of earlier occurrences, latest first; the match must be followed
            // by at least one token that is not part of the tail itself.
            let found = (0..tokens.len() - n).rev().find(|&i| &tokens[i..i + n] == tail);
            if let Some(i) = found {
                let from = i + n;
                let to = (from + limit).min(tokens.len());
                return tokens[from..to].to_vec();
            }
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: NgramSpec =
        NgramSpec { tokens: 3, max_n: 3, min_n: 1, disable_by_batch_size: None };

    #[test]
    fn drafts_what_followed_the_latest_longest_match() {
        // "1 2 3 4 5 ... 1 2 3" → the 3-gram "1 2 3" matched at 0: drafts 4 5 6.
        assert_eq!(SPEC.propose(&[1, 2, 3, 4, 5, 6, 7, 1, 2, 3], 8), vec![4, 5, 6]);
        // The latest occurrence wins: "9 5" twice, the later followed by 8.
        assert_eq!(SPEC.propose(&[9, 5, 1, 9, 5, 8, 2, 9, 5], 8), vec![8, 2, 9]);
        // A longer match is preferred over a later shorter one.
        assert_eq!(SPEC.propose(&[4, 7, 5, 6, 7, 1, 4, 7], 8), vec![5, 6, 7]);
        // Drafts stop at the sequence's end and at the limit.
        assert_eq!(SPEC.propose(&[1, 2, 1], 8), vec![2, 1]);
        assert_eq!(SPEC.propose(&[1, 2, 3, 1, 2], 1), vec![3]);
    }

    #[test]
    fn no_match_no_draft() {
        assert!(SPEC.propose(&[1, 2, 3, 4], 8).is_empty());
        assert!(SPEC.propose(&[], 8).is_empty());
        assert!(SPEC.propose(&[5, 5], 0).is_empty());
        let strict = NgramSpec { min_n: 2, ..SPEC };
        assert!(strict.propose(&[1, 2, 3, 2], 8).is_empty(), "a 1-gram is below prompt_lookup_min");
    }

    #[test]
    fn validation_names_the_field() {
        let e = NgramSpec { tokens: 0, ..SPEC }.validate().unwrap_err();
        assert!(e.to_string().contains("num_speculative_tokens"), "{e}");
        let e = NgramSpec { min_n: 4, ..SPEC }.validate().unwrap_err();
        assert!(e.to_string().contains("prompt_lookup_max"), "{e}");
        let e = NgramSpec { disable_by_batch_size: Some(0), ..SPEC }.validate().unwrap_err();
        assert!(e.to_string().contains("disable_by_batch_size"), "{e}");
        assert!(SPEC.validate().is_ok());
    }
}
