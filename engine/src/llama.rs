//! The llama-family forward pass (llama, mistral, qwen2, qwen3), batched over many sequences at once,
//! every projection taking each row's own LoRA.
//!
//! Written on candle tensors rather than candle-transformers' `Llama` because every linear layer
//! needs the per-row multi-LoRA term and the attention reads a paged KV cache shared by the
//! whole batch. The math per op lives in `lorad-kernels`.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};
use lorad_kernels::{KernelPath, PagedSeq, PagedStep, RopeTables};
use lorad_model::ModelConfig;
use lorad_store::{BaseShape, TargetModule};

use crate::adapters::ResidentAdapter;
use crate::kv::KvCache;
use crate::lora_step::{LoraStep, ProjGroup, StackCache};
use crate::weights::{BaseWeights, LayerWeights};
use crate::{EngineError, Result};

/// A loaded base model.
#[derive(Debug)]
pub struct Llama {
    cfg: ModelConfig,
    embed: Tensor,
    layers: Vec<LayerWeights>,
    norm: Tensor,
    lm_head: Tensor,
    /// [`rope_tables`], indexed by [`rope_row`].
    rope: RopeTables,
    /// Positions served.
    max_positions: usize,
    device: Device,
    dtype: DType,
    path: KernelPath,
    /// LoRA stacks of the last batch composition (generic path only).
    stacks: Mutex<StackCache>,
}

/// One sequence's share of a forward step.
#[derive(Debug, Clone, Copy)]
pub struct ForwardSeq<'a> {
    /// New tokens (a prefill chunk, or the one token to decode).
    pub tokens: &'a [u32],
    /// Position of `tokens[0]` (tokens already in the cache).
    pub start_pos: usize,
    /// Blocks covering positions `0 .. start_pos + tokens.len()`.
    pub block_table: &'a [u32],
    /// The adapter, if any.
    pub adapter: Option<&'a ResidentAdapter>,
    /// Whether to return logits for this sequence's last token.
    pub want_logits: bool,
    /// Return logits for every token of this chunk instead (scoring a prompt): one row per
    /// token, in order; overrides `want_logits`.
    pub all_logits: bool,
    /// The length of the request's prompt, by which LongRoPE picks its factors
    /// ([`ModelConfig::long_rope_at`]); for a one-shot prefill, `start_pos + tokens.len()`.
    pub prompt_len: usize,
}

impl Llama {
    /// Builds the model from Hugging Face-named weights (as `lorad_model::load_model` returns).
    pub fn new(cfg: &ModelConfig, weights: &HashMap<String, Tensor>) -> Result<Self> {
        let BaseWeights { embed, layers, norm, lm_head } = BaseWeights::gather(cfg, weights)?;
        let device = embed.device().clone();
        let dtype = embed.dtype();
        let rope = rope_tables(cfg, dtype, &device)?;
        let max_positions = cfg.max_position_embeddings;
        Ok(Self {
            max_positions,
            cfg: cfg.clone(),
            embed,
            layers,
            norm,
            lm_head,
            rope,
            device,
            dtype,
            path: KernelPath::Auto,
            stacks: Mutex::default(),
        })
    }

    /// Forces the device-generic kernels (tests pin the fused CPU kernels against them).
    pub fn set_kernel_path(&mut self, path: KernelPath) {
        self.path = path;
    }

    /// Times the generic path has built its LoRA stacks (once per change of the batch's
    /// adapters that the cached stacks cannot serve).
    pub fn lora_stack_builds(&self) -> usize {
        self.stacks.lock().map_or_else(|e| e.into_inner().builds(), |c| c.builds())
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The weights' dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Adapter-facing projection shapes.
    pub fn base_shape(&self) -> BaseShape {
        base_shape(&self.cfg)
    }

    /// [`Llama::forward`], on the CPU run on a rayon worker: the hundreds of parallel sections
    /// of a step (matmuls, the LoRA term, norms) then fork from inside the pool, where a call
    /// from outside hands each one over and sleeps until it is done (measured on 2 cores:
    /// +6 % tokens/s on the base at a batch of 32, +12 % with 32 adapters, +23 % at 100). A
    /// GPU step stays on the calling thread, where its CUDA context is current.
    pub fn forward_pooled(&self, seqs: &[ForwardSeq<'_>], kv: &KvCache) -> Result<Tensor> {
        if self.device().is_cpu() {
            rayon::scope(|_| self.forward(seqs, kv))
        } else {
            self.forward(seqs, kv)
        }
    }

    /// Runs one step for all `seqs`: writes their new K/V into `kv` and returns `f32` logits,
    /// one row per sequence with `want_logits` (one per token with `all_logits`), in order.
    pub fn forward(&self, seqs: &[ForwardSeq<'_>], kv: &KvCache) -> Result<Tensor> {
        let cfg = &self.cfg;
        let (heads, kvh, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let mut tokens = Vec::new();
        let mut positions = Vec::new();
        let mut paged = Vec::with_capacity(seqs.len());
        let mut logit_rows = Vec::new();
        // Each sequence's adapter and rows.
        let mut parts: Vec<(Option<&ResidentAdapter>, Range<u32>)> = Vec::new();
        for s in seqs {
            if s.tokens.is_empty() {
                return Err(EngineError::EmptyPrompt);
            }
            let q_start = tokens.len();
            let len = s.start_pos + s.tokens.len();
            if len > self.max_positions {
                return Err(EngineError::ContextLength {
                    max: self.max_positions,
                    requested: len,
                    prompt: len,
                    completion: 0,
                });
            }
            if s.block_table.len() * kv.block_size < len {
                return Err(EngineError::Config(format!("block table too short for {len} tokens")));
            }
            tokens.extend_from_slice(s.tokens);
            positions.extend((s.start_pos..len).map(|p| rope_row(cfg, s.prompt_len, p)));
            paged.push(PagedSeq {
                block_table: s.block_table,
                len,
                q_start,
                q_len: s.tokens.len(),
            });
            parts.push((s.adapter, (q_start as u32)..(tokens.len() as u32)));
            if s.all_logits {
                logit_rows.extend(q_start as u32..tokens.len() as u32);
            } else if s.want_logits {
                logit_rows.push(tokens.len() as u32 - 1);
            }
        }
        if tokens.iter().any(|&t| t as usize >= cfg.vocab_size) {
            return Err(EngineError::Tokenizer(format!(
                "token id out of range (vocab {})",
                cfg.vocab_size
            )));
        }
        let t = tokens.len();
        let dev = &self.device;
        let Some(pool0) = kv.pools.first() else {
            return Err(EngineError::Config("KV cache has no layers".into()));
        };
        // Everything that is the same in every layer is built once: the paged layout (and its
        // index tensors on the generic path), the rotary rows, the LoRA stacks and masks.
        let step = PagedStep::new(&paged, kv.block_size, pool0.num_slots())?;
        let fused = self.path == KernelPath::Auto && dev.is_cpu() && self.dtype == DType::F32;
        let lora = LoraStep::new(&parts, t, self.path, fused, &self.stacks, self.dtype, dev)?;
        let tok = Tensor::from_vec(tokens, t, dev)?;
        let rope = self.rope.at(&Tensor::from_vec(positions, t, dev)?)?;
        let scale = 1.0 / (hd as f32).sqrt();
        let eps = cfg.rms_norm_eps as f32;
        let mut x = self.embed.index_select(&tok, 0)?;
        for (l, layer) in self.layers.iter().enumerate() {
            let base = |m: TargetModule, input: &Tensor| -> Result<Tensor> {
                let y = lorad_kernels::linear(input, &layer.proj[m.index()], self.path)?;
                Ok(match layer.bias.get(m.index()) {
                    Some(Some(b)) => y.broadcast_add(b)?,
                    _ => y,
                })
            };
            // Base projections of a group, then the group's LoRA terms (one shared shrink on
            // the generic path).
            let project = |group: ProjGroup, input: &Tensor| -> Result<Vec<Tensor>> {
                let mut ys =
                    group.modules().iter().map(|&m| base(m, input)).collect::<Result<Vec<_>>>()?;
                lora.apply(group, l, &mut ys, input)?;
                Ok(ys)
            };
            let h = lorad_kernels::rms_norm(&x, &layer.input_norm, eps)?;
            let [q, k, v] = fixed(project(ProjGroup::Qkv, &h)?)?;
            let (q, k) = match &layer.qk_norm {
                // Qwen3: each head RMS-normalized over its own width, before RoPE.
                Some([qn, kn]) => (
                    lorad_kernels::rms_norm(&q.reshape((t * heads, hd))?, qn, eps)?,
                    lorad_kernels::rms_norm(&k.reshape((t * kvh, hd))?, kn, eps)?,
                ),
                None => (q, k),
            };
            let q = lorad_kernels::apply_rope_at(&q.reshape((t, heads, hd))?, &rope)?;
            let k = lorad_kernels::apply_rope_at(&k.reshape((t, kvh, hd))?, &rope)?;
            let v = v.reshape((t, kvh, hd))?;
            let pool = &kv.pools[l];
            step.write_kv(pool, &k, &v.contiguous()?, self.path)?;
            let att = step.attend(&q, pool, scale, cfg.attention_window(l), self.path)?;
            let [o] = fixed(project(ProjGroup::O, &att.reshape((t, heads * hd))?)?)?;
            x = (x + o)?;
            let h = lorad_kernels::rms_norm(&x, &layer.post_norm, eps)?;
            let [gate, up] = fixed(project(ProjGroup::GateUp, &h)?)?;
            let act = lorad_kernels::swiglu(&gate, &up)?;
            let [down] = fixed(project(ProjGroup::Down, &act)?)?;
            x = (x + down)?;
        }
        if logit_rows.is_empty() {
            return Ok(Tensor::zeros((0, cfg.vocab_size), DType::F32, dev)?);
        }
        let n = logit_rows.len();
        let rows = Tensor::from_vec(logit_rows, n, dev)?;
        let last = x.index_select(&rows, 0)?;
        let last = lorad_kernels::rms_norm(&last, &self.norm, eps)?;
        Ok(lorad_kernels::linear(&last, &self.lm_head, self.path)?.to_dtype(DType::F32)?)
    }
}

/// The RoPE tables of `cfg`: a row per position; with LongRoPE, the short factors' rows for the
/// positions below the pre-trained context (the only ones that use them) come first and the long
/// factors' rows for every position follow. [`rope_row`] says which row a position takes.
pub fn rope_tables(cfg: &ModelConfig, dtype: DType, device: &Device) -> Result<RopeTables> {
    let scale = cfg.rope_attention_factor();
    let max = cfg.max_position_embeddings;
    let short = RopeTables::new(&cfg.rope_inv_freq(), scale, short_rows(cfg), dtype, device)?;
    let Some(long) = cfg.rope_inv_freq_long() else { return Ok(short) };
    let long = RopeTables::new(&long, scale, max, dtype, device)?;
    Ok(RopeTables {
        cos: Tensor::cat(&[&short.cos, &long.cos], 0)?,
        sin: Tensor::cat(&[&short.sin, &long.sin], 0)?,
    })
}

/// The row of [`rope_tables`] that position `pos` of a sequence with a `prompt_len`-token prompt
/// rotates with ([`ModelConfig::long_rope_at`] picks LongRoPE's set).
pub fn rope_row(cfg: &ModelConfig, prompt_len: usize, pos: usize) -> u32 {
    let row = if cfg.long_rope_at(prompt_len, pos) { short_rows(cfg) + pos } else { pos };
    row as u32
}

/// Rows of the first (or only) set of [`rope_tables`].
fn short_rows(cfg: &ModelConfig) -> usize {
    let max = cfg.max_position_embeddings;
    cfg.long_rope_after().map_or(max, |original| original.min(max))
}

/// Hugging Face name of projection `m`'s weight in layer `layer`
/// (`model.layers.{layer}.self_attn.q_proj.weight`, `model.layers.{layer}.mlp.up_proj.weight`, …).
pub fn projection_weight_name(layer: usize, m: TargetModule) -> String {
    let sub = match m {
        TargetModule::GateProj | TargetModule::UpProj | TargetModule::DownProj => "mlp",
        _ => "self_attn",
    };
    format!("model.layers.{layer}.{sub}.{}.weight", m.peft_name())
}

/// Adapter-facing projection shapes of a config.
pub fn base_shape(cfg: &ModelConfig) -> BaseShape {
    BaseShape {
        num_layers: cfg.num_layers,
        hidden_size: cfg.hidden_size,
        q_dim: cfg.num_heads * cfg.head_dim,
        kv_dim: cfg.num_kv_heads * cfg.head_dim,
        intermediate_size: cfg.intermediate_size,
    }
}

/// A group's outputs as an array of its size.
fn fixed<const N: usize>(ys: Vec<Tensor>) -> Result<[Tensor; N]> {
    let n = ys.len();
    ys.try_into().map_err(|_| EngineError::Config(format!("{n} projection outputs, expected {N}")))
}
