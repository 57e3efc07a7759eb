//! The architecture hyper-parameters of a base model, whatever format it came from.
//!
//! Parsing lives with each format ([`crate::gguf`] for GGUF metadata, [`crate::hf`] for
//! `config.json`); this module holds the format-neutral result and the derived RoPE frequencies.

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// The model families lorad runs. All share the LLaMA block layout (RMSNorm, GQA attention with
/// rotary embeddings, SwiGLU MLP); they differ only in details carried by [`ModelConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// LLaMA 1/2/3, SmolLM, TinyLlama, ...
    Llama,
    /// Mistral (LLaMA layout; v0.1 attends within a sliding window).
    Mistral,
    /// Qwen2 / Qwen2.5: LLaMA layout plus biases on the q/k/v projections.
    Qwen2,
    /// Qwen3 (dense): LLaMA layout plus an RMSNorm over each query and key head before RoPE
    /// (`q_norm`, `k_norm`), no biases, a head width of its own (`head_dim`).
    Qwen3,
    /// Phi-3 / Phi-3.5 (dense): LLaMA layout with q/k/v stored as one `qkv_proj` and gate/up as
    /// one `gate_up_proj`, which the loaders split into the usual seven projections.
    Phi3,
}

impl Arch {
    /// The lowercase name used by Hugging Face's `model_type` and GGUF's `general.architecture`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Mistral => "mistral",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
            Self::Phi3 => "phi3",
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a model stretches RoPE beyond the context it was pre-trained with (`rope_scaling` in
/// `config.json`, `rope.scaling.*` metadata or a `rope_freqs.weight` tensor in GGUF).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rope_type", rename_all = "lowercase")]
pub enum RopeScaling {
    /// LLaMA 3.1's frequency-dependent scaling (transformers' `_compute_llama3_parameters`).
    Llama3 {
        /// How much the low frequencies are slowed down.
        factor: f64,
        /// Wavelengths longer than `original_max_position_embeddings / low_freq_factor` are
        /// scaled fully.
        low_freq_factor: f64,
        /// Wavelengths shorter than `original_max_position_embeddings / high_freq_factor` are
        /// kept.
        high_freq_factor: f64,
        /// The context length the model was pre-trained with.
        original_max_position_embeddings: usize,
    },
    /// Position interpolation: every frequency divided by `factor`.
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// YaRN ("NTK-by-parts" interpolation plus an attention temperature), as transformers'
    /// `_compute_yarn_parameters` and vLLM compute it.
    Yarn {
        /// How much longer the served context is than the pre-trained one.
        factor: f64,
        /// The context length the model was pre-trained with.
        original_max_position_embeddings: usize,
        /// Rotations above which a dimension is kept as it is (default 32).
        beta_fast: f64,
        /// Rotations below which a dimension is interpolated fully (default 1).
        beta_slow: f64,
        /// Multiplies `cos` and `sin` (so attention logits by its square); by default
        /// `0.1 ln(factor) + 1`.
        attention_factor: f64,
        /// Whether the ramp's ends are rounded to whole dimensions (transformers' default).
        truncate: bool,
    },
    /// One divisor per frequency, as llama.cpp stores LLaMA-3 scaling (`rope_freqs.weight`).
    Factors {
        /// `rope_freqs.weight`, one per frequency.
        divisors: Vec<f32>,
    },
    /// Phi-3's LongRoPE (the 128k variants, Phi-3.5): one divisor per frequency for short
    /// sequences and another for long ones, as transformers' `_compute_longrope_parameters` and
    /// its generate loop pick them ([`ModelConfig::long_rope_at`]).
    #[serde(rename = "longrope")]
    LongRope {
        /// Divisors while a sequence fits the pre-trained context.
        short_factor: Vec<f32>,
        /// Divisors once it does not.
        long_factor: Vec<f32>,
        /// The context length the model was pre-trained with.
        original_max_position_embeddings: usize,
        /// Multiplies `cos` and `sin`; by default `sqrt(1 + ln(s) / ln(original))` for a
        /// context stretched `s` times.
        attention_factor: f64,
    },
}

/// YaRN's attention temperature for a context stretched by `factor` (`0.1 · mscale · ln(factor)
/// + 1`, and 1 when not stretched).
pub(crate) fn yarn_mscale(factor: f64, mscale: f64) -> f64 {
    if factor <= 1.0 { 1.0 } else { 0.1 * mscale * factor.ln() + 1.0 }
}

/// The context a model serves: the checkpoint's `max_position_embeddings`, stretched by linear
/// scaling (times its factor) or YaRN (its pre-trained context times its factor), as vLLM
/// derives it.
pub(crate) fn served_context(
    max_position_embeddings: usize,
    scaling: Option<&RopeScaling>,
) -> usize {
    match scaling {
        Some(RopeScaling::Linear { factor }) => {
            max_position_embeddings.max((max_position_embeddings as f64 * factor) as usize)
        }
        Some(RopeScaling::Yarn { factor, original_max_position_embeddings, .. }) => {
            max_position_embeddings
                .max((*original_max_position_embeddings as f64 * factor) as usize)
        }
        _ => max_position_embeddings,
    }
}

/// Attention restricted to a sliding window (Mistral v0.1, Phi-3, Qwen with
/// `use_sliding_window`): in the layers it covers, a query at position `p` sees only positions
/// `p - size + 1 ..= p`, as Hugging Face, vLLM and llama.cpp all draw the boundary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlidingWindow {
    /// Positions a query sees, its own included.
    pub size: usize,
    /// One flag per layer: whether that layer attends within the window (the others attend to
    /// the whole context).
    pub layers: Vec<bool>,
}

impl RopeScaling {
    /// Checks the parameters are usable (for a head of `head_dim`), naming the one at fault.
    fn validate(&self, head_dim: usize) -> Result<(), ModelError> {
        let bad = |reason: String| Err(ModelError::InvalidConfig { field: "rope_scaling", reason });
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                bad(format!("{name} {v} is not positive"))
            }
        };
        match self {
            Self::Linear { factor } => positive("factor", *factor),
            Self::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                positive("factor", *factor)?;
                if !(*low_freq_factor > 0.0 && high_freq_factor > low_freq_factor) {
                    return bad(format!(
                        "need 0 < low_freq_factor ({low_freq_factor}) < high_freq_factor \
                         ({high_freq_factor})"
                    ));
                }
                if *original_max_position_embeddings == 0 {
                    return bad("original_max_position_embeddings is 0".into());
                }
                Ok(())
            }
            Self::Yarn {
                factor,
                original_max_position_embeddings,
                beta_fast,
                beta_slow,
                attention_factor,
                ..
            } => {
                positive("factor", *factor)?;
                positive("beta_fast", *beta_fast)?;
                positive("beta_slow", *beta_slow)?;
                positive("attention_factor", *attention_factor)?;
                if *original_max_position_embeddings == 0 {
                    return bad("original_max_position_embeddings is 0".into());
                }
                Ok(())
            }
            Self::Factors { divisors } => divisors_fit("frequency factors", divisors, head_dim),
            Self::LongRope {
                short_factor,
                long_factor,
                original_max_position_embeddings,
                attention_factor,
            } => {
                divisors_fit("short_factor", short_factor, head_dim)?;
                divisors_fit("long_factor", long_factor, head_dim)?;
                positive("attention_factor", *attention_factor)?;
                if *original_max_position_embeddings == 0 {
                    return bad("original_max_position_embeddings must be greater than 0".into());
                }
                Ok(())
            }
        }
    }
}

/// Checks one positive divisor per frequency of a head of `head_dim`.
fn divisors_fit(what: &str, d: &[f32], head_dim: usize) -> Result<(), ModelError> {
    let bad = |reason: String| Err(ModelError::InvalidConfig { field: "rope_scaling", reason });
    if d.len() != head_dim / 2 {
        return bad(format!("{} {what} for a head of {head_dim} (want {})", d.len(), head_dim / 2));
    }
    match d.iter().find(|f| !(f.is_finite() && **f > 0.0)) {
        Some(f) => bad(format!("{what}: {f} is not positive")),
        None => Ok(()),
    }
}

/// LongRoPE's default attention factor for a context stretched `factor` times over
/// `original` positions: `sqrt(1 + ln(factor) / ln(original))`, 1 when not stretched.
pub(crate) fn longrope_attention(factor: f64, original: usize) -> f64 {
    if factor <= 1.0 || original < 2 {
        1.0
    } else {
        (1.0 + factor.ln() / (original as f64).ln()).sqrt()
    }
}

/// Hyper-parameters of a LLaMA-family decoder, in Hugging Face terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// The model family.
    pub arch: Arch,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP's gate/up projections.
    pub intermediate_size: usize,
    /// Number of decoder blocks.
    pub num_layers: usize,
    /// Number of query heads.
    pub num_heads: usize,
    /// Number of key/value heads (grouped-query attention when below `num_heads`).
    pub num_kv_heads: usize,
    /// Width of one attention head.
    pub head_dim: usize,
    /// Rows of the embedding matrix (and of the LM head).
    pub vocab_size: usize,
    /// Epsilon of every RMSNorm.
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    pub rope_theta: f64,
    /// Optional RoPE scaling.
    pub rope_scaling: Option<RopeScaling>,
    /// The longest context served: the checkpoint's, stretched by RoPE scaling the way vLLM
    /// derives it.
    pub max_position_embeddings: usize,
    /// The attention window of the layers that attend only to recent positions, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window: Option<SlidingWindow>,
    /// How many leading dimensions of each head RoPE rotates when not all of them
    /// (`partial_rotary_factor · head_dim`, Phi-4 mini's 0.75); the rest pass through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_rotary_dim: Option<usize>,
    /// Whether the LM head reuses `model.embed_tokens.weight` (then `lm_head.weight` is absent).
    pub tie_word_embeddings: bool,
    /// Whether q/k/v projections carry biases (Qwen2).
    pub attention_bias: bool,
}

/// Most decoder layers a config may have. The bounds here sit far above every published model
/// (405B LLaMA: 126 layers, 16,384 wide, 128k vocabulary) and low enough that no product of
/// sizes overflows: a corrupt count fails as a named field instead of as an allocation of
/// terabytes that aborts the process.
pub(crate) const MAX_LAYERS: usize = 4096;
/// Widest hidden, MLP, head or projection width.
const MAX_WIDTH: usize = 1 << 20;
/// Most attention heads.
const MAX_HEADS: usize = 1 << 14;
/// Largest vocabulary.
const MAX_VOCAB: usize = 1 << 24;
/// Longest context.
const MAX_CONTEXT: usize = 1 << 28;

/// Why `value` is unusable as a size bounded by `max` (zero or past it), if it is; checked
/// before anything is sized by `value`.
pub(crate) fn size_problem(value: usize, max: usize) -> Option<String> {
    if value == 0 {
        Some("must be greater than 0".to_owned())
    } else if value > max {
        Some(format!("{value} is larger than any model lorad can load (at most {max})"))
    } else {
        None
    }
}

impl ModelConfig {
    /// Whether checkpoints store q/k/v as one `qkv_proj` and gate/up as one `gate_up_proj`
    /// (Phi-3).
    pub fn fused_projections(&self) -> bool {
        self.arch == Arch::Phi3
    }

    /// The window layer `layer` attends within, or `None` when it attends to the whole context.
    pub fn attention_window(&self, layer: usize) -> Option<usize> {
        let w = self.sliding_window.as_ref()?;
        w.layers.get(layer).copied().unwrap_or(false).then_some(w.size)
    }

    /// The window every layer attends within, when all of them do (Mistral v0.1, Phi-3): then
    /// a position's K/V is never read again once it fell out of the window of the newest one.
    pub fn uniform_window(&self) -> Option<usize> {
        let w = self.sliding_window.as_ref()?;
        w.layers.iter().all(|&l| l).then_some(w.size)
    }

    /// Whether each query and key head is RMS-normalized before RoPE (Qwen3's
    /// `self_attn.q_norm` / `k_norm`, `[head_dim]` weights).
    pub fn qk_norm(&self) -> bool {
        self.arch == Arch::Qwen3
    }

    /// The dimensions of each head RoPE rotates: all of them, or [`Self::partial_rotary_dim`].
    pub fn rotary_dim(&self) -> usize {
        self.partial_rotary_dim.unwrap_or(self.head_dim)
    }

    /// The `rotary_dim / 2` inverse RoPE frequencies `1 / theta^(2i / rotary_dim)` for the
    /// non-interleaved (Hugging Face) rotary layout, with the configured scaling applied.
    ///
    /// Computed in f64 and rounded once, as the reference implementation does, so long contexts
    /// do not accumulate f32 error in the angle.
    pub fn rope_inv_freq(&self) -> Vec<f32> {
        self.inv_freq(false)
    }

    /// LongRoPE's inverse frequencies for long sequences (`None` for every other RoPE).
    pub fn rope_inv_freq_long(&self) -> Option<Vec<f32>> {
        matches!(self.rope_scaling, Some(RopeScaling::LongRope { .. })).then(|| self.inv_freq(true))
    }

    /// Where LongRoPE switches to its long factors: the pre-trained context (`None` for every
    /// other RoPE).
    pub fn long_rope_after(&self) -> Option<usize> {
        match &self.rope_scaling {
            Some(RopeScaling::LongRope { original_max_position_embeddings, .. }) => {
                Some(*original_max_position_embeddings)
            }
            _ => None,
        }
    }

    /// Whether position `pos` of a sequence whose prompt is `prompt_len` tokens long rotates
    /// with LongRoPE's long factors: as in transformers' generate loop, which picks the factors
    /// per forward pass by the longest position in it, the prompt (one pass) is long when it
    /// outgrows the pre-trained context, and each generated token when it does.
    pub fn long_rope_at(&self, prompt_len: usize, pos: usize) -> bool {
        self.long_rope_after().is_some_and(|original| prompt_len.max(pos + 1) > original)
    }

    fn inv_freq(&self, long: bool) -> Vec<f32> {
        let dim = self.rotary_dim();
        let base: Vec<f64> =
            (0..dim / 2).map(|i| 1.0 / self.rope_theta.powf((2 * i) as f64 / dim as f64)).collect();
        let scaled: Vec<f64> = match self.rope_scaling.as_ref() {
            None => base,
            Some(RopeScaling::Linear { factor }) => base.into_iter().map(|f| f / factor).collect(),
            Some(RopeScaling::Factors { divisors }) => {
                base.into_iter().zip(divisors).map(|(f, d)| f / f64::from(*d)).collect()
            }
            Some(RopeScaling::LongRope { short_factor, long_factor, .. }) => {
                let divisors = if long { long_factor } else { short_factor };
                base.into_iter().zip(divisors).map(|(f, d)| f / f64::from(*d)).collect()
            }
            Some(&RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            }) => {
                // Port of transformers' `_compute_llama3_parameters`.
                let old_ctx = original_max_position_embeddings as f64;
                let low_freq_wavelen = old_ctx / low_freq_factor;
                let high_freq_wavelen = old_ctx / high_freq_factor;
                base.into_iter()
                    .map(|freq| {
                        let wavelen = 2.0 * std::f64::consts::PI / freq;
                        if wavelen < high_freq_wavelen {
                            freq
                        } else if wavelen > low_freq_wavelen {
                            freq / factor
                        } else {
                            let smooth = (old_ctx / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * freq / factor + smooth * freq
                        }
                    })
                    .collect()
            }
            Some(&RopeScaling::Yarn {
                factor,
                original_max_position_embeddings,
                beta_fast,
                beta_slow,
                truncate,
                ..
            }) => {
                // Port of transformers' `_compute_yarn_parameters`: dimensions that turn more
                // than `beta_fast` times over the pre-trained context keep their frequency,
                // those turning fewer than `beta_slow` times are interpolated by `factor`, and a
                // linear ramp blends the dimensions in between.
                let dim = self.rotary_dim() as f64;
                let ln_theta = self.rope_theta.ln();
                let ctx = original_max_position_embeddings as f64;
                let correction_dim = |rotations: f64| {
                    dim * (ctx / (rotations * 2.0 * std::f64::consts::PI)).ln() / (2.0 * ln_theta)
                };
                let (mut low, mut high) = (correction_dim(beta_fast), correction_dim(beta_slow));
                if truncate {
                    (low, high) = (low.floor(), high.ceil());
                }
                let (low, mut high) = (low.max(0.0), high.min(dim - 1.0));
                if low == high {
                    high += 0.001;
                }
                base.into_iter()
                    .enumerate()
                    .map(|(i, freq)| {
                        let interpolated = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                        freq / factor * interpolated + freq * (1.0 - interpolated)
                    })
                    .collect()
            }
        };
        scaled.into_iter().map(|f| f as f32).collect()
    }

    /// Parameters of the weights this config implies (the tied LM head counted once).
    pub fn parameter_count(&self) -> u64 {
        crate::weights::expected_tensors(self)
            .iter()
            .map(|e| e.shape.iter().product::<usize>() as u64)
            .sum()
    }

    /// What `cos` and `sin` are multiplied by (YaRN's attention temperature; 1 otherwise).
    pub fn rope_attention_factor(&self) -> f32 {
        match &self.rope_scaling {
            Some(RopeScaling::Yarn { attention_factor, .. })
            | Some(RopeScaling::LongRope { attention_factor, .. }) => *attention_factor as f32,
            _ => 1.0,
        }
    }

    /// [`Self::validate`], with an error naming the model file or directory at `path`.
    pub(crate) fn validate_file(&self, path: &std::path::Path) -> Result<(), ModelError> {
        self.validate().map_err(|e| match e {
            ModelError::InvalidConfig { field, reason } => {
                ModelError::ConfigField { path: path.to_owned(), field: field.to_owned(), reason }
            }
            other => other,
        })
    }

    /// Checks the values are usable together: non-zero sizes, heads divisible into KV groups, an
    /// even head width (RoPE rotates pairs), positive epsilon/theta, and sane RoPE scaling.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad =
            |field: &'static str, reason: String| Err(ModelError::InvalidConfig { field, reason });
        for (field, v, max) in [
            ("hidden_size", self.hidden_size, MAX_WIDTH),
            ("intermediate_size", self.intermediate_size, MAX_WIDTH),
            ("num_layers", self.num_layers, MAX_LAYERS),
            ("num_heads", self.num_heads, MAX_HEADS),
            ("num_kv_heads", self.num_kv_heads, MAX_HEADS),
            ("head_dim", self.head_dim, MAX_WIDTH),
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("max_position_embeddings", self.max_position_embeddings, MAX_CONTEXT),
        ] {
            if let Some(reason) = size_problem(v, max) {
                return bad(field, reason);
            }
        }
        if self.num_heads * self.head_dim > MAX_WIDTH {
            return bad(
                "num_heads",
                format!(
                    "{} heads of {} make a projection wider than {MAX_WIDTH}",
                    self.num_heads, self.head_dim
                ),
            );
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return bad(
                "num_kv_heads",
                format!("{} does not divide num_heads {}", self.num_kv_heads, self.num_heads),
            );
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad("head_dim", format!("{} is odd; RoPE needs an even width", self.head_dim));
        }
        if let Some(r) = self.partial_rotary_dim
            && (r == 0 || !r.is_multiple_of(2) || r > self.head_dim)
        {
            return bad(
                "partial_rotary_factor",
                format!(
                    "rotates {r} of {} dimensions (want an even number, 2 to all)",
                    self.head_dim
                ),
            );
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return bad("rms_norm_eps", format!("{} is not a positive number", self.rms_norm_eps));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return bad("rope_theta", format!("{} is not a positive number", self.rope_theta));
        }
        // Qwen2 always has q/k/v biases; the LLaMA-layout families supported here never do.
        let wants_bias = self.arch == Arch::Qwen2;
        if self.attention_bias != wants_bias {
            return bad("attention_bias", format!("must be {wants_bias} for {}", self.arch));
        }
        if let Some(s) = &self.rope_scaling {
            s.validate(self.rotary_dim())?;
        }
        if let Some(w) = &self.sliding_window {
            if w.size == 0 {
                return bad("sliding_window", "must be greater than 0".into());
            }
            if w.layers.len() != self.num_layers {
                return bad(
                    "sliding_window",
                    format!("names {} layers of {}", w.layers.len(), self.num_layers),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ModelConfig {
        ModelConfig {
            arch: Arch::Llama,
            hidden_size: 64,
            intermediate_size: 128,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 16,
            vocab_size: 100,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            rope_scaling: None,
            max_position_embeddings: 256,
            sliding_window: None,
            partial_rotary_dim: None,
            tie_word_embeddings: true,
            attention_bias: false,
        }
    }

    #[test]
    fn inv_freq_unscaled() {
        let f = cfg().rope_inv_freq();
        assert_eq!(f.len(), 8);
        assert_eq!(f[0], 1.0);
        assert!((f[1] - 10000f32.powf(-2.0 / 16.0)).abs() < 1e-7);
        assert!(f.windows(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn inv_freq_llama3() {
        let mut c = cfg();
        c.head_dim = 128;
        c.num_heads = 1;
        c.num_kv_heads = 1;
        c.rope_theta = 500000.0;
        let plain = c.rope_inv_freq();
        c.rope_scaling = Some(RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        });
        let scaled = c.rope_inv_freq();
        // High frequencies (short wavelengths) are untouched, the lowest are divided by `factor`.
        assert_eq!(scaled[0], plain[0]);
        assert!((scaled[63] - plain[63] / 8.0).abs() < 1e-12);
        // In between the scaling is monotone and bounded.
        assert!(scaled.iter().zip(&plain).all(|(s, p)| *s <= *p && *s >= *p / 8.0 - 1e-12));
        assert!(scaled.iter().zip(&plain).any(|(s, p)| *s < *p && *s > *p / 8.0));
    }

    #[test]
    fn inv_freq_linear_divides_every_frequency() {
        let plain = cfg().rope_inv_freq();
        let mut c = cfg();
        c.rope_scaling = Some(RopeScaling::Linear { factor: 4.0 });
        let scaled = c.rope_inv_freq();
        assert!(scaled.iter().zip(&plain).all(|(s, p)| (s - p / 4.0).abs() <= p * 1e-7));
        assert_eq!(c.rope_attention_factor(), 1.0);
    }

    fn qwen3_yarn(truncate: bool) -> ModelConfig {
        let mut c = cfg();
        (c.head_dim, c.num_heads, c.num_kv_heads, c.rope_theta) = (128, 1, 1, 1e6);
        c.rope_scaling = Some(RopeScaling::Yarn {
            factor: 4.0,
            original_max_position_embeddings: 32768,
            beta_fast: 32.0,
            beta_slow: 1.0,
            attention_factor: yarn_mscale(4.0, 1.0),
            truncate,
        });
        c
    }

    /// Qwen3's documented YaRN set-up (θ = 1e6, head 128, 32,768 pre-trained, factor 4). By hand
    /// from the paper's formula, dimension `128 · ln(32768 / (2π·r)) / (2 ln 1e6)` turns `r`
    /// times over the context: 23.60 for r = 32, 39.65 for r = 1; rounded out to 23 and 40.
    #[test]
    fn inv_freq_yarn_keeps_fast_dimensions_and_interpolates_slow_ones() {
        let mut plain = qwen3_yarn(true);
        plain.rope_scaling = None;
        let plain = plain.rope_inv_freq();
        let c = qwen3_yarn(true);
        let yarn = c.rope_inv_freq();
        let close = |a: f32, b: f32| (a - b).abs() <= b.abs() * 1e-6;
        for i in 0..=23 {
            assert_eq!(yarn[i], plain[i], "dimension {i} turns fast and is kept");
        }
        for i in 40..64 {
            assert!(close(yarn[i], plain[i] / 4.0), "dimension {i} is interpolated");
        }
        // Dimension 31 sits 8/17 of the way along the ramp from 23 to 40.
        let w = 8.0 / 17.0;
        assert!(close(yarn[31], plain[31] / 4.0 * w + plain[31] * (1.0 - w)), "{}", yarn[31]);
        assert!((c.rope_attention_factor() - (0.1 * 4f32.ln() + 1.0)).abs() < 1e-7);
        // Without rounding the ramp starts at 23.60 instead: dimension 23 is then still kept,
        // dimension 24 already blends a little less than with the rounded ramp.
        let exact = qwen3_yarn(false).rope_inv_freq();
        assert_eq!(exact[23], plain[23]);
        assert!(exact[24] > yarn[24] && exact[24] < plain[24]);
    }

    #[test]
    fn factors_divide_each_frequency_and_must_fit_the_head() {
        let plain = cfg().rope_inv_freq();
        let mut c = cfg();
        let d: Vec<f32> = (0..8).map(|i| 1.0 + i as f32).collect();
        c.rope_scaling = Some(RopeScaling::Factors { divisors: d.clone() });
        let got = c.rope_inv_freq();
        assert!(got.iter().zip(&plain).zip(&d).all(|((g, p), d)| (g - p / d).abs() <= p * 1e-7));
        c.rope_scaling = Some(RopeScaling::Factors { divisors: vec![1.0; 7] });
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("rope_scaling") && e.contains("7 frequency factors"), "{e}");
        c.rope_scaling = Some(RopeScaling::Factors { divisors: vec![0.0; 8] });
        assert!(c.validate().unwrap_err().to_string().contains("not positive"));
    }

    /// Every kind serializes and reads back (the enum is tagged by `rope_type`).
    #[test]
    fn scaling_kinds_round_trip_through_json() {
        let kinds = [
            qwen3_yarn(true).rope_scaling,
            Some(RopeScaling::Linear { factor: 2.0 }),
            Some(RopeScaling::Factors { divisors: vec![1.0, 2.0] }),
            Some(RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
            }),
        ];
        for k in kinds {
            let json = serde_json::to_string(&k).expect("serialize");
            assert_eq!(serde_json::from_str::<Option<RopeScaling>>(&json).expect("parse"), k);
        }
    }

    #[test]
    fn served_context_stretches() {
        let yarn = qwen3_yarn(true).rope_scaling;
        assert_eq!(served_context(40960, yarn.as_ref()), 131072);
        let linear = RopeScaling::Linear { factor: 4.0 };
        assert_eq!(served_context(4096, Some(&linear)), 16384);
        assert_eq!(served_context(32768, None), 32768);
    }

    /// LongRoPE: each set of divisors applied as transformers does (`1 / (factor · θ^(2i/d))`),
    /// and the long set from the first position past the pre-trained context, or from the
    /// start for a prompt that outgrows it.
    #[test]
    fn longrope_frequencies_and_when_they_switch() {
        let plain = cfg().rope_inv_freq();
        let mut c = cfg();
        let short: Vec<f32> = (0..8).map(|i| 1.0 + i as f32).collect();
        let long: Vec<f32> = (0..8).map(|i| 2.0 + 3.0 * i as f32).collect();
        c.rope_scaling = Some(RopeScaling::LongRope {
            short_factor: short.clone(),
            long_factor: long.clone(),
            original_max_position_embeddings: 8,
            attention_factor: 1.2,
        });
        assert!(c.validate().is_ok());
        let (s, l) = (c.rope_inv_freq(), c.rope_inv_freq_long().expect("long set"));
        for i in 0..8 {
            assert!((s[i] - plain[i] / short[i]).abs() <= plain[i] * 1e-6, "short {i}");
            assert!((l[i] - plain[i] / long[i]).abs() <= plain[i] * 1e-6, "long {i}");
        }
        assert_eq!((c.rope_attention_factor(), c.long_rope_after()), (1.2, Some(8)));
        // A 5-token prompt: short through position 7, long from 8 (when 9 > 8 positions).
        assert!(!c.long_rope_at(5, 0) && !c.long_rope_at(5, 7) && c.long_rope_at(5, 8));
        // An 8-token prompt still fits; a 9-token one is long from its first position.
        assert!(!c.long_rope_at(8, 7) && c.long_rope_at(9, 0));
        assert!(!cfg().long_rope_at(1000, 999) && cfg().rope_inv_freq_long().is_none());
        let json = serde_json::to_string(&c.rope_scaling).expect("serialize");
        assert!(json.contains(r#""rope_type":"longrope""#), "{json}");
        c.rope_scaling = Some(RopeScaling::LongRope {
            short_factor: short,
            long_factor: vec![1.0; 7],
            original_max_position_embeddings: 8,
            attention_factor: 1.2,
        });
        let e = c.validate().expect_err("7 factors for 8 frequencies").to_string();
        assert!(e.contains("7 long_factor for a head of 16"), "{e}");
    }

    #[test]
    fn sliding_window_per_layer_and_checked() {
        let mut c = cfg();
        assert_eq!(c.attention_window(0), None);
        c.sliding_window = Some(SlidingWindow { size: 8, layers: vec![false, true] });
        assert!(c.validate().is_ok());
        assert_eq!((c.attention_window(0), c.attention_window(1)), (None, Some(8)));
        assert_eq!(c.attention_window(2), None);
        assert_eq!(c.uniform_window(), None, "layer 0 attends to everything");
        c.sliding_window = Some(SlidingWindow { size: 8, layers: vec![true, true] });
        assert_eq!(c.uniform_window(), Some(8));
        // Configs saved before the field existed still read.
        let mut json = serde_json::to_value(cfg()).expect("serialize");
        assert!(json.get("sliding_window").is_none());
        json["sliding_window"] = serde_json::json!({"size": 8, "layers": [true, true]});
        let back: ModelConfig = serde_json::from_value(json).expect("parse");
        assert_eq!(back.attention_window(1), Some(8));
        for bad in [
            SlidingWindow { size: 0, layers: vec![true; 2] },
            SlidingWindow { size: 8, layers: vec![true; 3] },
        ] {
            c.sliding_window = Some(bad);
            let err = c.validate().expect_err("refused").to_string();
            assert!(err.contains("sliding_window"), "{err}");
        }
    }

    #[test]
    fn validate_names_field() {
        assert!(cfg().validate().is_ok());
        let mut c = cfg();
        c.num_kv_heads = 3;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("num_kv_heads"), "{e}");
        let mut c = cfg();
        c.head_dim = 15;
        assert!(c.validate().unwrap_err().to_string().contains("head_dim"));
        let mut c = cfg();
        c.hidden_size = 0;
        assert!(c.validate().unwrap_err().to_string().contains("hidden_size"));
    }
}
