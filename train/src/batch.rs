//! Examples and the padded batches the differentiable forward consumes.

use std::ops::Range;

use candle_core::{Device, Tensor};

use crate::{Result, TrainError};

/// One training or attribution example: a token sequence whose tokens from `prompt_len` on are
/// the completion the loss covers (`prompt_len = 0`: every token after the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// Prompt and completion token ids, concatenated.
    pub tokens: Vec<u32>,
    /// How many leading tokens are context only.
    pub prompt_len: usize,
}

impl Example {
    /// Positions `t` whose next token `tokens[t + 1]` is a loss target.
    pub fn target_positions(&self) -> Range<usize> {
        self.prompt_len.max(1) - 1..self.tokens.len().saturating_sub(1)
    }

    /// Number of loss targets.
    pub fn num_targets(&self) -> usize {
        self.target_positions().len()
    }

    /// Checks the example fits a model with `vocab` tokens and `max_positions` positions.
    pub fn check(&self, index: usize, vocab: usize, max_positions: usize) -> Result<()> {
        let bad = |reason: String| Err(TrainError::Example { index, reason });
        if self.tokens.len() > max_positions {
            return bad(format!(
                "{} tokens exceed the model's {max_positions} positions",
                self.tokens.len()
            ));
        }
        if let Some(t) = self.tokens.iter().find(|&&t| t as usize >= vocab) {
            return bad(format!("token id {t} is outside the vocabulary of {vocab}"));
        }
        if self.num_targets() == 0 {
            return bad(format!(
                "no completion tokens to score ({} tokens, prompt {})",
                self.tokens.len(),
                self.prompt_len
            ));
        }
        Ok(())
    }
}

/// How a batch's per-token losses are weighted into the scalar that is differentiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossNorm {
    /// Mean over every target token of the batch (training: longer examples count more, as in
    /// Hugging Face's trainer).
    TokenMean,
    /// Sum over examples of each example's own mean (per-example gradients: each example's
    /// gradient is that of its mean loss, whatever else shares the batch).
    PerExample,
}

/// A padded batch: token ids `[B, T]` plus the flat rows whose logits are scored.
///
/// Padding goes at the end of each row and is never a target, so the causal mask alone keeps it
/// from influencing any scored position.
#[derive(Debug)]
pub struct Batch {
    pub(crate) tokens: Tensor,
    pub(crate) rows: Tensor,
    pub(crate) targets: Tensor,
    pub(crate) weights: Tensor,
    pub(crate) batch: usize,
    pub(crate) len: usize,
    pub(crate) num_targets: usize,
    /// Each example's prompt length (LongRoPE picks its factors by it, as serving does).
    pub(crate) prompt_lens: Vec<usize>,
}

impl Batch {
    /// Pads `examples` into one batch; every example must already have passed
    /// [`Example::check`].
    pub fn new(examples: &[&Example], norm: LossNorm, device: &Device) -> Result<Self> {
        let batch = examples.len();
        let len = examples.iter().map(|e| e.tokens.len()).max().unwrap_or(0);
        let num_targets: usize = examples.iter().map(|e| e.num_targets()).sum();
        if batch == 0 || num_targets == 0 {
            return Err(TrainError::Config("a batch needs at least one target token".into()));
        }
        let mut tokens = Vec::with_capacity(batch * len);
        let (mut rows, mut targets, mut weights) = (Vec::new(), Vec::new(), Vec::new());
        for (b, e) in examples.iter().enumerate() {
            tokens.extend_from_slice(&e.tokens);
            tokens.resize((b + 1) * len, 0);
            let w = match norm {
                LossNorm::TokenMean => 1.0 / num_targets as f32,
                LossNorm::PerExample => 1.0 / e.num_targets() as f32,
            };
            for t in e.target_positions() {
                rows.push((b * len + t) as u32);
                targets.push(e.tokens[t + 1]);
                weights.push(w);
            }
        }
        let m = rows.len();
        Ok(Self {
            tokens: Tensor::from_vec(tokens, (batch, len), device)?,
            rows: Tensor::from_vec(rows, m, device)?,
            targets: Tensor::from_vec(targets, m, device)?,
            weights: Tensor::from_vec(weights, m, device)?,
            batch,
            len,
            num_targets,
            prompt_lens: examples.iter().map(|e| e.prompt_len).collect(),
        })
    }

    /// Number of examples.
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// Number of scored tokens.
    pub fn num_targets(&self) -> usize {
        self.num_targets
    }
}
