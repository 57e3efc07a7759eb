//! Log-probabilities of sampled tokens (OpenAI's `logprobs`): the sampled token's and the most
//! likely alternatives', each `ln softmax(logits)` of the model's own distribution, before
//! penalties, temperature, top-k and top-p (vLLM's default, `raw_logprobs`): what the model
//! believed, whatever the request then did with it.

/// Most alternatives a request may ask for per token (vLLM's default `max_logprobs`; OpenAI
/// allows 5 on completions and 20 on chat).
pub const MAX_LOGPROBS: usize = 20;

/// One generated token's log-probability and its most likely alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// The sampled token.
    pub token: u32,
    /// Its log-probability.
    pub logprob: f32,
    /// The `n` most likely tokens with their log-probabilities, most likely first (ties: the
    /// lower id first); the sampled token appears here only if it is among them.
    pub top: Vec<(u32, f32)>,
}

/// The log-probability of `token` under `logits` (one row of raw model logits) and the `top`
/// most likely tokens. Sums run in `f64`; tokens whose logit is not finite have probability 0.
pub fn token_logprob(logits: &[f32], token: u32, top: usize) -> TokenLogprob {
    let max = logits.iter().copied().filter(|l| l.is_finite()).fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits
        .iter()
        .filter(|l| l.is_finite())
        .map(|&l| (f64::from(l) - f64::from(max)).exp())
        .sum();
    let lse = f64::from(max) + sum.ln();
    let lp = |l: f32| if l.is_finite() { (f64::from(l) - lse) as f32 } else { f32::NEG_INFINITY };
    // The `top` best (logit descending, id ascending), kept sorted in a small vector: one pass
    // over the vocabulary, no sort of it.
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(top + 1);
    if top > 0 {
        for (id, &l) in logits.iter().enumerate() {
            if !l.is_finite() || (best.len() == top && best.last().is_some_and(|&(_, w)| l <= w)) {
                continue;
            }
            let at = best.partition_point(|&(_, w)| w >= l);
            best.insert(at, (id as u32, l));
            best.truncate(top);
        }
    }
    let raw = logits.get(token as usize).copied().unwrap_or(f32::NEG_INFINITY);
    TokenLogprob {
        token,
        logprob: lp(raw),
        top: best.into_iter().map(|(id, l)| (id, lp(l))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Log-softmax written the slow, obvious way.
    fn reference(logits: &[f32]) -> Vec<f64> {
        let z: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
        logits.iter().map(|&l| f64::from(l) - z.ln()).collect()
    }

    #[test]
    fn matches_log_softmax_and_ranks_the_alternatives() {
        let logits = [0.5f32, 3.0, -1.0, 3.0, 2.0, 10.0, -7.5];
        let want = reference(&logits);
        for token in 0..logits.len() as u32 {
            let got = token_logprob(&logits, token, 3);
            assert!((f64::from(got.logprob) - want[token as usize]).abs() < 1e-6);
            // 10.0 first, then the tie 3.0/3.0 by lower id.
            let ids: Vec<u32> = got.top.iter().map(|t| t.0).collect();
            assert_eq!(ids, [5, 1, 3]);
            for (id, l) in &got.top {
                assert!((f64::from(*l) - want[*id as usize]).abs() < 1e-6);
            }
        }
        let total: f64 = (0..logits.len() as u32)
            .map(|t| f64::from(token_logprob(&logits, t, 0).logprob).exp())
            .sum();
        assert!((total - 1.0).abs() < 1e-6, "probabilities sum to {total}");
    }

    #[test]
    fn masked_logits_have_zero_probability_and_top_is_bounded() {
        let logits = [f32::NEG_INFINITY, 1.0, 1.0];
        let got = token_logprob(&logits, 0, 10);
        assert_eq!(got.logprob, f32::NEG_INFINITY);
        assert_eq!(got.top.len(), 2, "only finite logits are alternatives: {:?}", got.top);
        assert!((got.top[0].1 - 0.5f32.ln()).abs() < 1e-6);
        assert!(token_logprob(&logits, 1, 0).top.is_empty());
        // An id outside the vocabulary cannot have been sampled; it is -inf, not a panic.
        assert_eq!(token_logprob(&logits, 99, 1).logprob, f32::NEG_INFINITY);
    }
}
