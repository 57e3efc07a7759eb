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
    /// Mistral (LLaMA layout; sliding-window attention is not used by lorad).
    Mistral,
    /// Qwen2 / Qwen2.5: LLaMA layout plus biases on the q/k/v projections.
    Qwen2,
    /// Qwen3 (dense): LLaMA layout plus an RMSNorm over each query and key head before RoPE
    /// (`q_norm`, `k_norm`), no biases, a head width of its own (`head_dim`).
    Qwen3,
}

impl Arch {
    /// The lowercase name used by Hugging Face's `model_type` and GGUF's `general.architecture`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Mistral => "mistral",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// LLaMA-3-style RoPE frequency scaling (`rope_scaling.rope_type == "llama3"` in `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    /// How much the low frequencies are slowed down.
    pub factor: f64,
    /// Wavelengths longer than `original_max_position_embeddings / low_freq_factor` are scaled fully.
    pub low_freq_factor: f64,
    /// Wavelengths shorter than `original_max_position_embeddings / high_freq_factor` are kept.
    pub high_freq_factor: f64,
    /// The context length the model was pre-trained with.
    pub original_max_position_embeddings: usize,
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
    /// Optional LLaMA-3 RoPE scaling.
    pub rope_scaling: Option<RopeScaling>,
    /// The longest context the model supports.
    pub max_position_embeddings: usize,
    /// Whether the LM head reuses `model.embed_tokens.weight` (then `lm_head.weight` is absent).
    pub tie_word_embeddings: bool,
    /// Whether q/k/v projections carry biases (Qwen2).
    pub attention_bias: bool,
}

impl ModelConfig {
    /// Whether each query and key head is RMS-normalized before RoPE (Qwen3's
    /// `self_attn.q_norm` / `k_norm`, `[head_dim]` weights).
    pub fn qk_norm(&self) -> bool {
        self.arch == Arch::Qwen3
    }

    /// The `head_dim / 2` inverse RoPE frequencies `1 / theta^(2i / head_dim)` for the
    /// non-interleaved (Hugging Face) rotary layout, with LLaMA-3 scaling applied when configured.
    ///
    /// Computed in f64 and rounded once, as the reference implementation does, so long contexts
    /// do not accumulate f32 error in the angle.
    pub fn rope_inv_freq(&self) -> Vec<f32> {
        let half = self.head_dim / 2;
        let base: Vec<f64> = (0..half)
            .map(|i| 1.0 / self.rope_theta.powf((2 * i) as f64 / self.head_dim as f64))
            .collect();
        let Some(s) = &self.rope_scaling else {
            return base.into_iter().map(|f| f as f32).collect();
        };
        // Port of transformers' `_compute_llama3_parameters`.
        let old_ctx = s.original_max_position_embeddings as f64;
        let low_freq_wavelen = old_ctx / s.low_freq_factor;
        let high_freq_wavelen = old_ctx / s.high_freq_factor;
        base.into_iter()
            .map(|freq| {
                let wavelen = 2.0 * std::f64::consts::PI / freq;
                let scaled = if wavelen < high_freq_wavelen {
                    freq
                } else if wavelen > low_freq_wavelen {
                    freq / s.factor
                } else {
                    let smooth = (old_ctx / wavelen - s.low_freq_factor)
                        / (s.high_freq_factor - s.low_freq_factor);
                    (1.0 - smooth) * freq / s.factor + smooth * freq
                };
                scaled as f32
            })
            .collect()
    }

    /// Checks the values are usable together: non-zero sizes, heads divisible into KV groups, an
    /// even head width (RoPE rotates pairs), positive epsilon/theta, and sane RoPE scaling.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad =
            |field: &'static str, reason: String| Err(ModelError::InvalidConfig { field, reason });
        for (field, v) in [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("num_kv_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
            ("vocab_size", self.vocab_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v == 0 {
                return bad(field, "must be greater than 0".into());
            }
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
            if !(s.factor.is_finite() && s.factor > 0.0) {
                return bad("rope_scaling", format!("factor {} is not positive", s.factor));
            }
            if !(s.low_freq_factor > 0.0 && s.high_freq_factor > s.low_freq_factor) {
                return bad(
                    "rope_scaling",
                    format!(
                        "need 0 < low_freq_factor ({}) < high_freq_factor ({})",
                        s.low_freq_factor, s.high_freq_factor
                    ),
                );
            }
            if s.original_max_position_embeddings == 0 {
                return bad("rope_scaling", "original_max_position_embeddings is 0".into());
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
        c.rope_scaling = Some(RopeScaling {
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
