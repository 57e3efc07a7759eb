//! Gathering a base model's weights by their Hugging Face names, shape-checked once, for every
//! forward built on them (the serving engine's and the trainer's differentiable twin).

use std::collections::HashMap;

use candle_core::{DType, Tensor};
use lorad_model::ModelConfig;
use lorad_store::TargetModule;

use crate::llama::{base_shape, projection_weight_name};
use crate::{EngineError, Result};

/// One decoder layer's weights. Projections are `[out, in]` as in Hugging Face checkpoints.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    /// `input_layernorm`.
    pub input_norm: Tensor,
    /// `post_attention_layernorm`.
    pub post_norm: Tensor,
    /// Indexed by `TargetModule::index()`.
    pub proj: [Tensor; 7],
    /// q/k/v biases (qwen2).
    pub bias: [Option<Tensor>; 3],
    /// RMSNorm weights over each query and key head, `[head_dim]` (qwen3's `q_norm`, `k_norm`).
    pub qk_norm: Option<[Tensor; 2]>,
}

/// Every weight a llama-family forward reads.
#[derive(Debug, Clone)]
pub struct BaseWeights {
    /// `model.embed_tokens.weight`.
    pub embed: Tensor,
    /// The decoder layers.
    pub layers: Vec<LayerWeights>,
    /// `model.norm.weight`.
    pub norm: Tensor,
    /// `lm_head.weight`, or the embedding when they are tied.
    pub lm_head: Tensor,
}

fn get(w: &HashMap<String, Tensor>, name: &str) -> Result<Tensor> {
    w.get(name).cloned().ok_or_else(|| EngineError::Weights(format!("missing tensor {name}")))
}

impl BaseWeights {
    /// Takes the weights `cfg` needs out of Hugging Face-named `weights` (as
    /// `lorad_model::load_model` returns), checking every projection's shape.
    pub fn gather(cfg: &ModelConfig, weights: &HashMap<String, Tensor>) -> Result<Self> {
        let embed = get(weights, "model.embed_tokens.weight")?;
        let shape = base_shape(cfg);
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let p = |m: TargetModule| -> Result<Tensor> {
                let name = projection_weight_name(l, m);
                let t = get(weights, &name)?;
                let (out, inp) = shape.shape(m);
                if t.dims() != [out, inp] {
                    return Err(EngineError::Weights(format!(
                        "{name} has shape {:?}, expected [{out}, {inp}]",
                        t.dims()
                    )));
                }
                Ok(t)
            };
            let [q, k, v, o, g, u, d] = TargetModule::ALL.map(p);
            let bias = if cfg.attention_bias {
                let b = |n: &str| {
                    get(weights, &format!("model.layers.{l}.self_attn.{n}.bias")).map(Some)
                };
                [b("q_proj")?, b("k_proj")?, b("v_proj")?]
            } else {
                [None, None, None]
            };
            let qk_norm = if cfg.qk_norm() {
                let n = |n: &str| get(weights, &format!("model.layers.{l}.self_attn.{n}.weight"));
                Some([n("q_norm")?, n("k_norm")?])
            } else {
                None
            };
            layers.push(LayerWeights {
                input_norm: get(weights, &format!("model.layers.{l}.input_layernorm.weight"))?,
                post_norm: get(
                    weights,
                    &format!("model.layers.{l}.post_attention_layernorm.weight"),
                )?,
                proj: [q?, k?, v?, o?, g?, u?, d?],
                bias,
                qk_norm,
            });
        }
        let lm_head = match weights.get("lm_head.weight") {
            Some(t) => t.clone(),
            None if cfg.tie_word_embeddings => embed.clone(),
            None => {
                return Err(EngineError::Weights(
                    "missing tensor lm_head.weight (embeddings are not tied)".into(),
                ));
            }
        };
        Ok(Self { embed, layers, norm: get(weights, "model.norm.weight")?, lm_head })
    }

    /// Every weight in `dtype` (shared, not copied, where it already is; a tied LM head stays
    /// one tensor).
    pub fn to_dtype(self, dtype: DType) -> Result<Self> {
        let tied = self.lm_head.id() == self.embed.id();
        let c = |t: Tensor| t.to_dtype(dtype);
        let embed = c(self.embed)?;
        let lm_head = if tied { embed.clone() } else { c(self.lm_head)? };
        let layers = self
            .layers
            .into_iter()
            .map(|l| {
                let [q, k, v, o, g, u, d] = l.proj;
                let [bq, bk, bv] = l.bias;
                let ob = |b: Option<Tensor>| b.map(c).transpose();
                Ok(LayerWeights {
                    input_norm: c(l.input_norm)?,
                    post_norm: c(l.post_norm)?,
                    proj: [c(q)?, c(k)?, c(v)?, c(o)?, c(g)?, c(u)?, c(d)?],
                    bias: [ob(bq)?, ob(bk)?, ob(bv)?],
                    qk_norm: match l.qk_norm {
                        Some([qn, kn]) => Some([c(qn)?, c(kn)?]),
                        None => None,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { embed, layers, norm: c(self.norm)?, lm_head })
    }
}
