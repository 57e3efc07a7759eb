//! The llama-family forward as a differentiable function of LoRA parameters.
//!
//! Same math as the serving engine's `Llama::forward` (pinned against it by a test), but over a
//! padded `[B, T]` batch with a causal mask instead of a paged KV cache, and built only from candle
//! ops that have backward rules: `rms_norm_slow`, `rope_slow` and the plain softmax rather than
//! the fused kernels, which have none.

use std::collections::HashMap;

use candle_core::{CpuStorage, D, DType, Device, Layout, Shape, Tensor};
use lorad_engine::{BaseWeights, LayerWeights};
use lorad_model::ModelConfig;
use lorad_store::{BaseShape, TargetModule};

use crate::batch::Batch;
use crate::lora::LoraSet;
use crate::probe::ProbeBatch;
use crate::{Result, TrainError};

/// The frozen base model, differentiable with respect to LoRA parameters and probes.
#[derive(Debug)]
pub struct DiffLlama {
    cfg: ModelConfig,
    embed: Tensor,
    layers: Vec<LayerWeights>,
    norm: Tensor,
    lm_head: Tensor,
    /// [`lorad_engine::rope_tables`].
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

impl DiffLlama {
    /// Builds the model from Hugging Face-named weights (as `lorad_model::load_model` returns),
    /// converted to f32: gradients in bf16 are too coarse for attribution scores to be stable.
    pub fn new(cfg: &ModelConfig, weights: &HashMap<String, Tensor>) -> Result<Self> {
        let weights =
            BaseWeights::gather(cfg, weights).map_err(|e| TrainError::Weights(e.to_string()))?;
        Self::from_base(cfg, weights)
    }

    /// Builds the model from weights already gathered (shared with the serving engine where they
    /// are f32; converted, so copied, otherwise).
    pub fn from_base(cfg: &ModelConfig, weights: BaseWeights) -> Result<Self> {
        let weights =
            weights.to_dtype(DType::F32).map_err(|e| TrainError::Weights(e.to_string()))?;
        let BaseWeights { embed, layers, norm, lm_head } = weights;
        let device = embed.device().clone();
        // The serving engine's RoPE tables, in f32: the same angles, computed once.
        let rope = lorad_engine::rope_tables(cfg, DType::F32, &device)
            .map_err(|e| TrainError::Weights(e.to_string()))?;
        Ok(Self {
            cfg: cfg.clone(),
            embed,
            layers,
            norm,
            lm_head,
            cos: rope.cos,
            sin: rope.sin,
            device,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Adapter-facing projection shapes.
    pub fn base_shape(&self) -> BaseShape {
        lorad_engine::base_shape(&self.cfg)
    }

    /// The batch's loss: each scored token's negative log-likelihood times its weight, summed.
    pub fn loss(
        &self,
        batch: &Batch,
        lora: Option<&LoraSet>,
        probes: Option<&ProbeBatch<'_>>,
    ) -> Result<Tensor> {
        let logp = self.target_log_probs(batch, lora, probes)?;
        Ok((logp * &batch.weights)?.sum_all()?.neg()?)
    }

    /// Log-probability of every scored token, `[M]`, in the batch's row order.
    pub fn target_log_probs(
        &self,
        batch: &Batch,
        lora: Option<&LoraSet>,
        probes: Option<&ProbeBatch<'_>>,
    ) -> Result<Tensor> {
        let h = self.hidden(batch, lora, probes)?;
        let h = h.index_select(&batch.rows, 0)?;
        let h = candle_nn::ops::rms_norm_slow(&h, &self.norm, self.cfg.rms_norm_eps as f32)?;
        let logits = frozen_linear(&h, &self.lm_head)?;
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        Ok(logp.gather(&batch.targets.unsqueeze(1)?, 1)?.squeeze(1)?)
    }

    /// Final hidden states before the last norm, `[B * T, hidden]`.
    fn hidden(
        &self,
        batch: &Batch,
        lora: Option<&LoraSet>,
        probes: Option<&ProbeBatch<'_>>,
    ) -> Result<Tensor> {
        let cfg = &self.cfg;
        let (b, t) = (batch.batch, batch.len);
        let n = b * t;
        let (heads, kvh, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let eps = cfg.rms_norm_eps as f32;
        let scale = 1.0 / (hd as f64).sqrt();
        if t > cfg.max_position_embeddings {
            return Err(TrainError::Config(format!(
                "batch length {t} exceeds the model's {} positions",
                cfg.max_position_embeddings
            )));
        }
        // `[T, half]` tables, or under LongRoPE `[B, 1, T, half]`: each example's positions with
        // the factors serving gives them (by its prompt's length), so what is trained and
        // attributed is what is served.
        let (cos, sin) = if cfg.long_rope_after().is_some() {
            let rows: Vec<u32> = (0..b)
                .flat_map(|i| {
                    let prompt = batch.prompt_lens.get(i).copied().unwrap_or(0);
                    (0..t).map(move |p| lorad_engine::rope_row(cfg, prompt, p))
                })
                .collect();
            let rows = Tensor::from_vec(rows, b * t, &self.device)?;
            let pick = |table: &Tensor| -> Result<Tensor> {
                let half = table.dim(1)?;
                Ok(table.index_select(&rows, 0)?.reshape((b, 1, t, half))?)
            };
            (pick(&self.cos)?, pick(&self.sin)?)
        } else {
            (self.cos.narrow(0, 0, t)?, self.sin.narrow(0, 0, t)?)
        };
        let full_mask = causal_mask(t, None, &self.device)?;
        let window_mask = match &cfg.sliding_window {
            Some(w) => Some(causal_mask(t, Some(w.size), &self.device)?),
            None => None,
        };
        let mut x = self.embed.index_select(&batch.tokens.flatten_all()?, 0)?;
        for (l, layer) in self.layers.iter().enumerate() {
            let linear = |m: TargetModule, input: &Tensor| -> Result<Tensor> {
                let mut y = frozen_linear(input, &layer.proj[m.index()])?;
                if let Some(Some(bias)) = layer.bias.get(m.index()) {
                    y = y.broadcast_add(bias)?;
                }
                let Some(pair) = lora.and_then(|s| s.pair(l, m)) else { return Ok(y) };
                let z = input.matmul(&pair.a.t()?)?;
                let probe = probes.and_then(|p| p.get(l, m));
                let z_in = match &probe {
                    Some(p) => (&z + p.side_a(input, b, t)?)?,
                    None => z.clone(),
                };
                let mut delta = z_in.matmul(&pair.b.t()?)?;
                if let Some(p) = &probe {
                    delta = (delta + p.side_b(&z, b, t)?)?;
                }
                Ok((y + (delta * pair.scale as f64)?)?)
            };
            let h = candle_nn::ops::rms_norm_slow(&x, &layer.input_norm, eps)?;
            let q = linear(TargetModule::QProj, &h)?;
            let k = linear(TargetModule::KProj, &h)?;
            let v = linear(TargetModule::VProj, &h)?;
            let (q, k) = match &layer.qk_norm {
                // Qwen3: each head RMS-normalized over its own width, before RoPE.
                Some([qn, kn]) => (
                    candle_nn::ops::rms_norm_slow(&q.reshape((n * heads, hd))?, qn, eps)?,
                    candle_nn::ops::rms_norm_slow(&k.reshape((n * kvh, hd))?, kn, eps)?,
                ),
                None => (q, k),
            };
            // [B, T, heads, hd] -> [B, heads, T, hd]
            let q = q.reshape((b, t, heads, hd))?.transpose(1, 2)?.contiguous()?;
            let k = k.reshape((b, t, kvh, hd))?.transpose(1, 2)?.contiguous()?;
            let v = v.reshape((b, t, kvh, hd))?.transpose(1, 2)?.contiguous()?;
            let q = rope(&q, &cos, &sin)?;
            let k = rope(&k, &cos, &sin)?;
            let (k, v) = (repeat_kv(&k, heads / kvh)?, repeat_kv(&v, heads / kvh)?);
            let mask = match (cfg.attention_window(l), &window_mask) {
                (Some(_), Some(m)) => m,
                _ => &full_mask,
            };
            let att = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask)?;
            let att = candle_nn::ops::softmax(&att, D::Minus1)?;
            let o = att.matmul(&v)?.transpose(1, 2)?.reshape((n, heads * hd))?;
            x = (x + linear(TargetModule::OProj, &o)?)?;
            let h = candle_nn::ops::rms_norm_slow(&x, &layer.post_norm, eps)?;
            let act =
                (linear(TargetModule::GateProj, &h)?.silu()? * linear(TargetModule::UpProj, &h)?)?;
            x = (x + linear(TargetModule::DownProj, &act)?)?;
        }
        Ok(x)
    }
}

/// `[T, T]` additive mask: 0 where query `q` (row) may see key `k` (column), that is on and
/// below the diagonal and, with a sliding `window`, where `q - k < window`; -inf elsewhere.
fn causal_mask(t: usize, window: Option<usize>, device: &Device) -> Result<Tensor> {
    let w = window.unwrap_or(usize::MAX);
    let m: Vec<f32> = (0..t * t)
        .map(|i| {
            let (q, k) = (i / t, i % t);
            if k > q || q - k >= w { f32::NEG_INFINITY } else { 0.0 }
        })
        .collect();
    Ok(Tensor::from_vec(m, (t, t), device)?)
}

/// RoPE of `x` (`[B, heads, T, hd]`) with `[T, rot / 2]` tables, or `[B, 1, T, rot / 2]` ones
/// (per example): its leading `rot` dimensions rotate ("rotate half": pairs `i`, `i + rot/2`;
/// all of them but for a partial rotary embedding), the rest pass through.
fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let d = x.dims4()?.3;
    let half = cos.dim(D::Minus1)?;
    if cos.rank() == 2 && 2 * half == d {
        return Ok(candle_nn::rotary_emb::rope_slow(x, cos, sin)?);
    }
    let (x1, x2) = (x.narrow(3, 0, half)?, x.narrow(3, half, half)?);
    let turned1 = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
    let turned2 = (x1.broadcast_mul(sin)? + x2.broadcast_mul(cos)?)?;
    let mut parts = vec![turned1, turned2];
    if 2 * half < d {
        parts.push(x.narrow(3, 2 * half, d - 2 * half)?);
    }
    Ok(Tensor::cat(&parts, 3)?)
}

/// `[B, kvh, T, hd]` -> `[B, kvh * groups, T, hd]`, each KV head shared by `groups` query heads.
fn repeat_kv(x: &Tensor, groups: usize) -> Result<Tensor> {
    if groups == 1 {
        return Ok(x.clone());
    }
    let (b, kvh, t, hd) = x.dims4()?;
    Ok(x.unsqueeze(2)?.broadcast_as((b, kvh, groups, t, hd))?.reshape((b, kvh * groups, t, hd))?)
}

/// `x @ w^T` for a frozen `w` (`[out, in]`).
///
/// candle's matmul backward always computes the gradient of both operands; for a frozen weight
/// that is a wasted `[out, in]` product per call, as much work again as the forward. This op's
/// backward returns the input's gradient only (on the CPU; other devices take the plain matmul).
fn frozen_linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() || !x.track_op() {
        return Ok(x.matmul(&w.t()?)?);
    }
    Ok(x.contiguous()?.apply_op1(FrozenLinear { w: w.clone() })?)
}

struct FrozenLinear {
    w: Tensor,
}

impl candle_core::CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("frozen-linear: only f32 inputs are supported");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("frozen-linear: input must be contiguous");
        };
        let x = Tensor::from_slice(&data[start..end], layout.shape(), &Device::Cpu)?;
        let y = x.matmul(&self.w.t()?)?;
        let shape = y.shape().clone();
        Ok((CpuStorage::F32(y.flatten_all()?.to_vec1()?), shape))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad_res.matmul(&self.w)?))
    }
}
