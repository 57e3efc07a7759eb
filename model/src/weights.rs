//! Loading a base model from either supported format into one format-neutral [`LoadedModel`].
//!
//! Whatever the source, the result uses Hugging Face tensor names and layouts, so the engine and
//! PEFT-format LoRA adapters (which name `...q_proj` etc.) never see format differences.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::chat::ChatTemplate;
use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::tokenizer::Tokenizer;
use crate::{gguf, hf};

/// How to materialize the weights.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Element type of every weight: `F32` (the default), `BF16` or `F16`.
    pub dtype: DType,
    /// Where the weights live. Nothing in this crate assumes the CPU.
    pub device: Device,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { dtype: DType::F32, device: Device::Cpu }
    }
}

/// A base model ready for the engine: config, dequantized weights, tokenizer and chat template.
#[derive(Debug)]
pub struct LoadedModel {
    /// The id the model is served under (e.g. [`crate::DEFAULT_MODEL_ID`], else the file stem or
    /// directory name).
    pub name: String,
    /// Architecture hyper-parameters.
    pub config: ModelConfig,
    /// Every weight under its Hugging Face name, on the requested device and dtype; `lm_head.weight`
    /// is absent when `config.tie_word_embeddings`.
    pub weights: HashMap<String, Tensor>,
    /// The model's tokenizer.
    pub tokenizer: Tokenizer,
    /// The model's chat template (plain ChatML when it ships none).
    pub chat_template: ChatTemplate,
    /// Hex sha256 identifying the base weights: of the GGUF file, or of the safetensors files'
    /// bytes concatenated in sorted file-name order. Adapters record it to refuse a wrong base.
    pub base_hash: String,
}

/// Loads a model from a `.gguf` file or a Hugging Face directory (`config.json`, safetensors,
/// `tokenizer.json`).
///
/// GGUF tensors are dequantized at load (lorad runs dense matmuls, which are both faster and more
/// exact on CPU than candle's generic Q4 kernels), and GGUF's interleaved q/k rows are put back in
/// Hugging Face order.
pub fn load_model(path: &Path, opts: &LoadOptions) -> Result<LoadedModel, ModelError> {
    check_dtype(opts.dtype)?;
    match Source::detect(path)? {
        Source::Gguf => gguf::load(path, opts),
        Source::HfDir => hf::load(path, opts),
    }
}

/// Reads only the text side of a model, its tokenizer and chat template, without touching tensor
/// data: what tokenizing a Datanet needs, at a fraction of a full load's time and memory.
pub fn load_text(path: &Path) -> Result<(Tokenizer, ChatTemplate), ModelError> {
    match Source::detect(path)? {
        Source::Gguf => gguf::load_text(path),
        Source::HfDir => hf::load_text(path),
    }
}

/// Reads only the architecture config of a model (GGUF metadata or `config.json`), without
/// touching tensor data; used to check adapters against a base cheaply.
pub fn read_config(path: &Path) -> Result<ModelConfig, ModelError> {
    match Source::detect(path)? {
        Source::Gguf => gguf::read_config(path),
        Source::HfDir => hf::read_config(path),
    }
}

/// The base-model hash [`load_model`] reports as [`LoadedModel::base_hash`], computed without
/// loading: hex SHA-256 of the GGUF file, or of a Hugging Face directory's weight files
/// concatenated in load order. Adapters record it at import so that a server refuses an adapter
/// trained for another base.
pub fn base_hash(path: &Path) -> Result<String, ModelError> {
    use sha2::{Digest, Sha256};
    let files = match Source::detect(path)? {
        Source::Gguf => vec![path.to_owned()],
        Source::HfDir => hf::weight_files(path)?,
    };
    let mut hasher = Sha256::new();
    for file in files {
        let mut f = std::fs::File::open(&file).map_err(ModelError::io("opening", &file))?;
        std::io::copy(&mut f, &mut hasher).map_err(ModelError::io("reading", &file))?;
    }
    Ok(hex::encode(hasher.finalize()))
}

enum Source {
    Gguf,
    HfDir,
}

impl Source {
    fn detect(path: &Path) -> Result<Self, ModelError> {
        let meta = std::fs::metadata(path).map_err(ModelError::io("reading", path))?;
        if meta.is_dir() {
            if path.join("config.json").is_file() {
                return Ok(Self::HfDir);
            }
        } else if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
            return Ok(Self::Gguf);
        }
        Err(ModelError::NotAModel { path: path.to_owned() })
    }
}

fn check_dtype(dtype: DType) -> Result<(), ModelError> {
    match dtype {
        DType::F32 | DType::BF16 | DType::F16 => Ok(()),
        other => Err(ModelError::InvalidConfig {
            field: "dtype",
            reason: format!("{other:?} is not a weight dtype; use F32, BF16 or F16"),
        }),
    }
}

/// The role of one weight in a LLaMA-family block; each format maps it to its own name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Embed,
    Norm,
    LmHead,
    InputNorm,
    PostNorm,
    Q,
    K,
    V,
    O,
    QBias,
    KBias,
    VBias,
    QNorm,
    KNorm,
    Gate,
    Up,
    Down,
    /// Phi-3's fused q/k/v (`[q + 2 kv, hidden]`).
    Qkv,
    /// Phi-3's fused gate/up (`[2 intermediate, hidden]`, gate first).
    GateUp,
}

/// One tensor the architecture needs.
#[derive(Debug, Clone)]
pub(crate) struct Expected {
    /// Hugging Face name.
    pub(crate) name: String,
    /// Shape in Hugging Face layout ([out, in] for linear layers).
    pub(crate) shape: Vec<usize>,
    /// Block index, `None` for the global tensors.
    pub(crate) layer: Option<usize>,
    pub(crate) part: Part,
}

/// Replaces Phi-3's fused `qkv_proj` and `gate_up_proj` in `weights` by the seven projections
/// the rest of lorad reads (row ranges of the fused tensors, sharing their storage). A no-op
/// for the other families.
pub(crate) fn unfuse(
    path: &Path,
    c: &ModelConfig,
    weights: &mut HashMap<String, Tensor>,
) -> Result<(), ModelError> {
    if !c.fused_projections() {
        return Ok(());
    }
    let (q, kv, ff) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim, c.intermediate_size);
    for l in 0..c.num_layers {
        let p = format!("model.layers.{l}");
        for (fused, parts) in [
            (
                format!("{p}.self_attn.qkv_proj.weight"),
                vec![
                    ("self_attn.q_proj", 0, q),
                    ("self_attn.k_proj", q, kv),
                    ("self_attn.v_proj", q + kv, kv),
                ],
            ),
            (
                format!("{p}.mlp.gate_up_proj.weight"),
                vec![("mlp.gate_proj", 0, ff), ("mlp.up_proj", ff, ff)],
            ),
        ] {
            let t = weights.remove(&fused).ok_or_else(|| ModelError::MissingTensor {
                path: path.to_owned(),
                name: fused.clone(),
            })?;
            for (name, start, len) in parts {
                // Copied out, so every kernel sees a tensor of its own from offset 0.
                let part = t
                    .narrow(0, start, len)
                    .and_then(|v| v.copy())
                    .map_err(tensor_err(path, &fused))?;
                weights.insert(format!("{p}.{name}.weight"), part);
            }
        }
    }
    Ok(())
}

/// Every tensor `config` implies, with its shape, in a stable order.
pub(crate) fn expected_tensors(c: &ModelConfig) -> Vec<Expected> {
    let (h, q, kv, ff) =
        (c.hidden_size, c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim, c.intermediate_size);
    let global = |name: &str, shape: Vec<usize>, part| Expected {
        name: name.to_owned(),
        shape,
        layer: None,
        part,
    };
    let mut out = vec![
        global("model.embed_tokens.weight", vec![c.vocab_size, h], Part::Embed),
        global("model.norm.weight", vec![h], Part::Norm),
    ];
    if !c.tie_word_embeddings {
        out.push(global("lm_head.weight", vec![c.vocab_size, h], Part::LmHead));
    }
    for i in 0..c.num_layers {
        let mut parts = vec![
            ("input_layernorm.weight", vec![h], Part::InputNorm),
            ("post_attention_layernorm.weight", vec![h], Part::PostNorm),
            ("self_attn.q_proj.weight", vec![q, h], Part::Q),
            ("self_attn.k_proj.weight", vec![kv, h], Part::K),
            ("self_attn.v_proj.weight", vec![kv, h], Part::V),
            ("self_attn.o_proj.weight", vec![h, q], Part::O),
            ("mlp.gate_proj.weight", vec![ff, h], Part::Gate),
            ("mlp.up_proj.weight", vec![ff, h], Part::Up),
            ("mlp.down_proj.weight", vec![h, ff], Part::Down),
        ];
        if c.fused_projections() {
            parts.retain(|p| !matches!(p.2, Part::Q | Part::K | Part::V | Part::Gate | Part::Up));
            parts.extend([
                ("self_attn.qkv_proj.weight", vec![q + 2 * kv, h], Part::Qkv),
                ("mlp.gate_up_proj.weight", vec![2 * ff, h], Part::GateUp),
            ]);
        }
        if c.attention_bias {
            parts.extend([
                ("self_attn.q_proj.bias", vec![q], Part::QBias),
                ("self_attn.k_proj.bias", vec![kv], Part::KBias),
                ("self_attn.v_proj.bias", vec![kv], Part::VBias),
            ]);
        }
        if c.qk_norm() {
            parts.extend([
                ("self_attn.q_norm.weight", vec![c.head_dim], Part::QNorm),
                ("self_attn.k_norm.weight", vec![c.head_dim], Part::KNorm),
            ]);
        }
        out.extend(parts.into_iter().map(|(suffix, shape, part)| Expected {
            name: format!("model.layers.{i}.{suffix}"),
            shape,
            layer: Some(i),
            part,
        }));
    }
    out
}

/// Errors unless `actual` is `expected`'s shape; `name` is the tensor's name in the source format.
pub(crate) fn check_shape(
    path: &Path,
    name: &str,
    expected: &[usize],
    actual: &[usize],
) -> Result<(), ModelError> {
    if expected == actual {
        return Ok(());
    }
    Err(ModelError::TensorShape {
        path: path.to_owned(),
        name: name.to_owned(),
        expected: expected.to_vec(),
        actual: actual.to_vec(),
    })
}

/// Wraps a candle error about tensor `name` of the model at `path`.
pub(crate) fn tensor_err(path: &Path, name: &str) -> impl FnOnce(candle_core::Error) -> ModelError {
    let (path, name): (PathBuf, String) = (path.to_owned(), name.to_owned());
    move |source| ModelError::Tensor { path, name, source: Box::new(source) }
}
