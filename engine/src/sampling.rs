//! Token selection: greedy, temperature, top-k, top-p, min-p, presence/frequency and
//! repetition penalties, seeded.
//!
//! Each request owns its RNG (ChaCha8, seeded from the request's `seed`), so a seeded request
//! draws the same tokens whatever else shares its batch.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::logprobs::MAX_LOGPROBS;
use crate::{EngineError, Result};

/// Sampling parameters of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// Keep the `k` most likely tokens (0 = off).
    pub top_k: usize,
    /// Nucleus: keep the smallest set whose probability reaches `top_p` (1 = off).
    pub top_p: f32,
    /// Keep tokens at least `min_p` times as likely as the most likely one (0 = off; vLLM's).
    pub min_p: f32,
    /// OpenAI presence penalty, -2..=2.
    pub presence_penalty: f32,
    /// OpenAI frequency penalty, -2..=2.
    pub frequency_penalty: f32,
    /// vLLM's (and Hugging Face's) repetition penalty over prompt and output tokens: a
    /// positive logit is divided by it, a negative one multiplied (1 = off, > 1 discourages).
    pub repetition_penalty: f32,
    /// RNG seed; `None` draws one from the OS.
    pub seed: Option<u64>,
    /// Report each sampled token's log-probability and this many most likely alternatives
    /// (`Some(0)`: the sampled token's only; at most [`MAX_LOGPROBS`]); `None`: no logprobs.
    pub logprobs: Option<usize>,
    /// OpenAI's `logit_bias`: added to these tokens' logits before sampling (-100 bans a
    /// token, 100 all but forces it); each bias within -100..=100.
    pub logit_bias: Vec<(u32, f32)>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repetition_penalty: 1.0,
            seed: None,
            logprobs: None,
            logit_bias: Vec::new(),
        }
    }
}

impl SamplingParams {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        Self { temperature: 0.0, ..Self::default() }
    }

    /// Checks ranges, naming the API field at fault.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |field, reason: &str| Err(EngineError::InvalidParam { field, reason: reason.into() });
        if !self.temperature.is_finite() || !(0.0..=2.0).contains(&self.temperature) {
            return bad("temperature", "must be between 0 and 2");
        }
        if !self.top_p.is_finite() || self.top_p <= 0.0 || self.top_p > 1.0 {
            return bad("top_p", "must be greater than 0 and at most 1");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", "must be between 0 and 1");
        }
        if !self.repetition_penalty.is_finite() || self.repetition_penalty <= 0.0 {
            return bad("repetition_penalty", "must be greater than 0");
        }
        if !(-2.0..=2.0).contains(&self.presence_penalty) {
            return bad("presence_penalty", "must be between -2 and 2");
        }
        if !(-2.0..=2.0).contains(&self.frequency_penalty) {
            return bad("frequency_penalty", "must be between -2 and 2");
        }
        if self.logprobs.is_some_and(|n| n > MAX_LOGPROBS) {
            return bad("logprobs", "at most 20 alternatives per token");
        }
        if self.logit_bias.iter().any(|(_, b)| !(-100.0..=100.0).contains(b)) {
            return bad("logit_bias", "each bias must be between -100 and 100");
        }
        Ok(())
    }

    /// Whether this is greedy decoding.
    pub fn is_greedy(&self) -> bool {
        self.temperature < 1e-5 || self.top_k == 1
    }
}

/// Per-request sampler state.
#[derive(Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    counts: std::collections::HashMap<u32, u32>,
    /// Prompt and output tokens, kept only for the repetition penalty.
    seen: std::collections::HashSet<u32>,
}

impl Sampler {
    /// A sampler for validated `params`.
    pub fn new(params: SamplingParams) -> Self {
        let seed = params.seed.unwrap_or_else(|| rand::rng().random());
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            params,
            counts: Default::default(),
            seen: Default::default(),
        }
    }

    /// Takes the prompt's tokens into account (the repetition penalty covers them).
    pub fn with_prompt(mut self, prompt: &[u32]) -> Self {
        if self.params.repetition_penalty != 1.0 {
            self.seen.extend(prompt);
        }
        self
    }

    /// How many alternatives to report with each sampled token's log-probability, if any.
    pub fn logprobs(&self) -> Option<usize> {
        self.params.logprobs
    }

    /// Records a generated token (for the penalties).
    pub fn observe(&mut self, token: u32) {
        *self.counts.entry(token).or_default() += 1;
        if self.params.repetition_penalty != 1.0 {
            self.seen.insert(token);
        }
    }

    /// Picks the next token from `logits` (one row, `f32`).
    pub fn sample(&mut self, logits: &mut [f32]) -> u32 {
        let p = &self.params;
        for &(tok, bias) in &p.logit_bias {
            if let Some(l) = logits.get_mut(tok as usize) {
                *l += bias;
            }
        }
        if p.repetition_penalty != 1.0 {
            for &tok in &self.seen {
                if let Some(l) = logits.get_mut(tok as usize) {
                    *l = if *l > 0.0 {
                        *l / p.repetition_penalty
                    } else {
                        *l * p.repetition_penalty
                    };
                }
            }
        }
        if p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 {
            for (&tok, &c) in &self.counts {
                if let Some(l) = logits.get_mut(tok as usize) {
                    *l -= p.presence_penalty + p.frequency_penalty * c as f32;
                }
            }
        }
        if p.is_greedy() {
            return argmax(logits);
        }
        // Candidates sorted by logit, descending; ties broken by id for determinism.
        let mut idx: Vec<u32> =
            (0..logits.len() as u32).filter(|&i| logits[i as usize].is_finite()).collect();
        if idx.is_empty() {
            return argmax(logits);
        }
        idx.sort_unstable_by(|&a, &b| {
            logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b))
        });
        if p.top_k > 0 && idx.len() > p.top_k {
            idx.truncate(p.top_k);
        }
        let max = logits[idx[0] as usize];
        let inv_t = 1.0 / p.temperature;
        let mut probs: Vec<f64> =
            idx.iter().map(|&i| f64::from((logits[i as usize] - max) * inv_t).exp()).collect();
        if p.min_p > 0.0 {
            // Relative to the most likely token (probs[0], unnormalised = 1).
            let keep = probs.iter().take_while(|&&q| q >= f64::from(p.min_p)).count().max(1);
            probs.truncate(keep);
            idx.truncate(keep);
        }
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|q| *q /= total);
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            let mut keep = probs.len();
            for (i, q) in probs.iter().enumerate() {
                acc += q;
                if acc >= f64::from(p.top_p) {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            idx.truncate(keep);
            let total: f64 = probs.iter().sum();
            probs.iter_mut().for_each(|q| *q /= total);
        }
        let r: f64 = self.rng.random();
        let mut acc = 0.0;
        for (i, q) in probs.iter().enumerate() {
            acc += q;
            if r < acc {
                return idx[i];
            }
        }
        idx[probs.len() - 1]
    }
}

/// Index of the largest logit; the lowest id wins ties.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_max_and_lowest_on_ties() {
        let mut s = Sampler::new(SamplingParams::greedy());
        assert_eq!(s.sample(&mut [0.1, 3.0, 3.0, -1.0]), 1);
    }

    #[test]
    fn seeded_sampling_is_reproducible_and_respects_top_k() {
        let params =
            SamplingParams { temperature: 1.0, top_k: 2, seed: Some(42), ..Default::default() };
        let logits = [1.0f32, 0.5, 0.9, 0.2, 0.0];
        let draw = || {
            let mut s = Sampler::new(params.clone());
            (0..64).map(|_| s.sample(&mut logits.to_vec())).collect::<Vec<_>>()
        };
        let a = draw();
        assert_eq!(a, draw());
        assert!(a.iter().all(|&t| t == 0 || t == 2), "top_k=2 allows only ids 0 and 2: {a:?}");
        assert!(a.contains(&0) && a.contains(&2));
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        // p(0) ≈ 0.84 at temperature 1, so top_p 0.5 keeps token 0 only.
        let params =
            SamplingParams { temperature: 1.0, top_p: 0.5, seed: Some(1), ..Default::default() };
        let mut s = Sampler::new(params);
        for _ in 0..32 {
            assert_eq!(s.sample(&mut [3.0, 1.0, 0.5, 0.0]), 0);
        }
    }

    #[test]
    fn penalties_push_away_repeated_tokens() {
        let mut s =
            Sampler::new(SamplingParams { frequency_penalty: 2.0, ..SamplingParams::greedy() });
        s.observe(0);
        s.observe(0);
        assert_eq!(s.sample(&mut [3.0, 0.0]), 1);
    }

    #[test]
    fn logit_bias_bans_and_forces_tokens() {
        let greedy = |bias: Vec<(u32, f32)>| {
            Sampler::new(SamplingParams { logit_bias: bias, ..SamplingParams::greedy() })
                .sample(&mut [3.0, 2.0, 0.0])
        };
        assert_eq!(greedy(vec![]), 0);
        assert_eq!(greedy(vec![(0, -100.0)]), 1, "banned");
        assert_eq!(greedy(vec![(2, 100.0)]), 2, "forced");
        let params = SamplingParams {
            logit_bias: vec![(1, -100.0), (2, -100.0)],
            seed: Some(5),
            ..Default::default()
        };
        let mut s = Sampler::new(params);
        assert!((0..64).all(|_| s.sample(&mut [0.0, 0.0, 0.0]) == 0), "only token 0 is left");
        let e = SamplingParams { logit_bias: vec![(0, 101.0)], ..Default::default() };
        assert!(e.validate().unwrap_err().to_string().starts_with("logit_bias"));
    }

    #[test]
    fn min_p_keeps_tokens_near_the_top() {
        // At temperature 1, token 1 is e^-1 ≈ 0.37 times as likely as token 0, token 2 e^-3.
        let draw = |min_p: f32| {
            let params = SamplingParams { min_p, seed: Some(3), ..Default::default() };
            let mut s = Sampler::new(params);
            (0..200)
                .map(|_| s.sample(&mut [3.0, 2.0, 0.0]))
                .collect::<std::collections::BTreeSet<_>>()
        };
        assert_eq!(draw(0.3), [0, 1].into());
        assert_eq!(draw(0.5), [0].into());
        assert_eq!(draw(0.0), [0, 1, 2].into());
    }

    #[test]
    fn repetition_penalty_covers_prompt_and_output() {
        let greedy = |rp: f32, prompt: &[u32], out: &[u32], logits: &mut [f32]| {
            let mut s =
                Sampler::new(SamplingParams { repetition_penalty: rp, ..SamplingParams::greedy() })
                    .with_prompt(prompt);
            out.iter().for_each(|&t| s.observe(t));
            s.sample(logits)
        };
        assert_eq!(greedy(1.0, &[0], &[], &mut [3.0, 2.0]), 0);
        // 3.0 / 2 = 1.5 < 2.0: the prompt's token 0 loses.
        assert_eq!(greedy(2.0, &[0], &[], &mut [3.0, 2.0]), 1);
        // Output tokens count too; a negative logit is multiplied (pushed further down).
        assert_eq!(greedy(2.0, &[], &[0], &mut [3.0, 2.0]), 1);
        assert_eq!(greedy(2.0, &[1], &[], &mut [-1.0, -0.6]), 0);
        let e = SamplingParams { repetition_penalty: 0.0, ..Default::default() };
        assert!(e.validate().unwrap_err().to_string().starts_with("repetition_penalty"));
        let e = SamplingParams { min_p: 1.5, ..Default::default() };
        assert!(e.validate().unwrap_err().to_string().starts_with("min_p"));
    }

    #[test]
    fn validation_names_the_field() {
        let e = SamplingParams { top_p: 0.0, ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().starts_with("top_p"));
        let e = SamplingParams { temperature: 3.0, ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().starts_with("temperature"));
    }
}
