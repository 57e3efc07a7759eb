//! GGUF (llama.cpp) models: metadata to [`ModelConfig`], tensors to dequantized Hugging Face
//! weights.

use std::collections::HashMap;
use std::io::{BufReader, Cursor};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};

use crate::chat::ChatTemplate;
use crate::config::{
    Arch, MAX_LAYERS, ModelConfig, RopeScaling, SlidingWindow, longrope_attention, served_context,
    size_problem, yarn_mscale,
};
use crate::error::ModelError;
use crate::fetch::{DEFAULT_GGUF_SHA256, DEFAULT_MODEL_ID};
use crate::tokenizer::Tokenizer;
use crate::weights::{
    Expected, LoadOptions, LoadedModel, Part, check_shape, expected_tensors, tensor_err,
};

/// Typed access to GGUF metadata, with errors naming the file and key.
#[derive(Clone, Copy)]
pub(crate) struct Meta<'a> {
    pub(crate) path: &'a Path,
    pub(crate) content: &'a Content,
}

impl<'a> Meta<'a> {
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.content.metadata.get(key)
    }

    fn require(&self, key: &str) -> Result<&'a Value, ModelError> {
        self.get(key).ok_or_else(|| ModelError::MissingMetadata {
            path: self.path.to_owned(),
            key: key.to_owned(),
        })
    }

    pub(crate) fn bad(&self, key: &str, reason: impl Into<String>) -> ModelError {
        ModelError::BadMetadata {
            path: self.path.to_owned(),
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    fn as_u64(&self, key: &str, v: &Value) -> Result<u64, ModelError> {
        let n: Option<u64> = match *v {
            Value::U8(x) => Some(x.into()),
            Value::U16(x) => Some(x.into()),
            Value::U32(x) => Some(x.into()),
            Value::U64(x) => Some(x),
            Value::I8(x) => u64::try_from(x).ok(),
            Value::I16(x) => u64::try_from(x).ok(),
            Value::I32(x) => u64::try_from(x).ok(),
            Value::I64(x) => u64::try_from(x).ok(),
            _ => None,
        };
        n.ok_or_else(|| self.bad(key, format!("expected a non-negative integer, found {v:?}")))
    }

    pub(crate) fn usize(&self, key: &str) -> Result<usize, ModelError> {
        let n = self.as_u64(key, self.require(key)?)?;
        usize::try_from(n).map_err(|_| self.bad(key, format!("{n} is too large")))
    }

    pub(crate) fn opt_usize(&self, key: &str) -> Result<Option<usize>, ModelError> {
        match self.get(key) {
            None => Ok(None),
            Some(_) => self.usize(key).map(Some),
        }
    }

    pub(crate) fn opt_u32(&self, key: &str) -> Result<Option<u32>, ModelError> {
        match self.opt_usize(key)? {
            None => Ok(None),
            Some(n) => u32::try_from(n).map(Some).map_err(|_| self.bad(key, "not a token id")),
        }
    }

    /// A float; f32 values are widened through their shortest decimal form so that e.g. an
    /// epsilon stored as f32 `1e-5` reads as f64 `1e-5`, not `9.99999974e-6`.
    pub(crate) fn opt_f64(&self, key: &str) -> Result<Option<f64>, ModelError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::F64(x)) => Ok(Some(*x)),
            Some(Value::F32(x)) => Ok(Some(x.to_string().parse().unwrap_or(f64::from(*x)))),
            Some(v) => Err(self.bad(key, format!("expected a float, found {v:?}"))),
        }
    }

    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>, ModelError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.bad(key, format!("expected a bool, found {v:?}"))),
        }
    }

    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<&'a str>, ModelError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.bad(key, format!("expected a string, found {:?}", v.value_type()))),
        }
    }

    pub(crate) fn str(&self, key: &str) -> Result<&'a str, ModelError> {
        self.require(key)?;
        self.opt_str(key)?.ok_or_else(|| self.bad(key, "missing"))
    }

    fn array(&self, key: &str) -> Result<&'a [Value], ModelError> {
        match self.require(key)? {
            Value::Array(a) => Ok(a),
            v => Err(self.bad(key, format!("expected an array, found {:?}", v.value_type()))),
        }
    }

    pub(crate) fn strings(&self, key: &str) -> Result<Vec<&'a str>, ModelError> {
        self.array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.as_str()),
                _ => Err(self.bad(key, format!("element {i} is not a string"))),
            })
            .collect()
    }

    pub(crate) fn f32s(&self, key: &str) -> Result<Vec<f32>, ModelError> {
        self.array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| match *v {
                Value::F32(x) => Ok(x),
                Value::F64(x) => Ok(x as f32),
                _ => Err(self.bad(key, format!("element {i} is not a number"))),
            })
            .collect()
    }

    pub(crate) fn i32s(&self, key: &str) -> Result<Vec<i32>, ModelError> {
        self.array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| match *v {
                Value::I32(x) => Ok(x),
                Value::U32(x) => i32::try_from(x).map_err(|_| self.bad(key, "value out of range")),
                _ => Err(self.bad(key, format!("element {i} is not an i32"))),
            })
            .collect()
    }
}

/// Parses the header (metadata and tensor directory) of the GGUF file at `path`; the reader
/// stays open for tensor data.
fn read_content(path: &Path) -> Result<(Content, BufReader<std::fs::File>), ModelError> {
    let file = std::fs::File::open(path).map_err(ModelError::io("opening", path))?;
    let mut reader = BufReader::new(file);
    let content = no_panic(|| Content::read(&mut reader))
        .map_err(|source| ModelError::Gguf { path: path.to_owned(), source: Box::new(source) })?;
    Ok((content, reader))
}

/// Runs a step of candle's GGUF reader with its panics turned into errors. The reader trusts
/// some header values (a `general.alignment` of 0 divides by zero; shapes whose element count
/// overflows), and a corrupt file must fail with an error naming it, not take the daemon down.
fn no_panic<T>(step: impl FnOnce() -> candle_core::Result<T>) -> candle_core::Result<T> {
    let _expected = crate::ExpectPanics::enter();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)).unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(candle_core::Error::Msg(format!("malformed GGUF: the reader failed on it ({what})")))
    })
}

/// The config of the GGUF file at `path`, reading only its header.
pub(crate) fn read_config(path: &Path) -> Result<ModelConfig, ModelError> {
    let (content, mut reader) = read_content(path)?;
    let rope = RopeTensors::read(path, &content, &mut reader)?;
    config_from_meta(Meta { path, content: &content }, rope)
}

/// `rope`: the RoPE tensors the file has beside its weights.
fn config_from_meta(m: Meta<'_>, rope: RopeTensors) -> Result<ModelConfig, ModelError> {
    let arch_name = m.str("general.architecture")?;
    let arch = match arch_name {
        "llama" => Arch::Llama,
        "qwen2" => Arch::Qwen2,
        "qwen3" => Arch::Qwen3,
        "phi3" => Arch::Phi3,
        other => {
            return Err(ModelError::Unsupported {
                path: m.path.to_owned(),
                what: format!(
                    "general.architecture `{other}` (supported: llama, qwen2, qwen3, phi3)"
                ),
            });
        }
    };
    let key = |k: &str| format!("{arch_name}.{k}");
    let hidden_size = m.usize(&key("embedding_length"))?;
    let num_heads = m.usize(&key("attention.head_count"))?;
    let num_kv_heads = m.opt_usize(&key("attention.head_count_kv"))?.unwrap_or(num_heads);
    let head_dim = match m.opt_usize(&key("attention.key_length"))? {
        Some(d) => d,
        None if num_heads > 0 && hidden_size % num_heads == 0 => hidden_size / num_heads,
        None => return Err(m.bad(&key("attention.head_count"), "does not divide embedding_length")),
    };
    // Partial rotary embeddings (Phi-4 mini): the leading dimensions of each head.
    let partial_rotary_dim =
        m.opt_usize(&key("rope.dimension_count"))?.filter(|&rot| rot != head_dim);
    let rotary_dim = partial_rotary_dim.unwrap_or(head_dim);
    let max_pos = m.usize(&key("context_length"))?;
    for (name, values) in rope.named() {
        check_shape(m.path, name, &[rotary_dim / 2], &[values.len()])?;
        if let Some(bad) = values.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
            return Err(ModelError::Unsupported {
                path: m.path.to_owned(),
                what: format!("tensor `{name}` holding the divisor {bad}"),
            });
        }
    }
    let rope_scaling = rope_scaling(m, &key, max_pos, rope)?;
    let num_layers = m.usize(&key("block_count"))?;
    // Layer lists are sized by this count before the config is validated as a whole.
    if let Some(reason) = size_problem(num_layers, MAX_LAYERS) {
        return Err(m.bad(&key("block_count"), reason));
    }
    // llama.cpp's converters write a window for the families served here (Phi-3) that every
    // layer uses, as transformers applies it. (llama.cpp itself has turned Phi-3's window off
    // for now and warns that results may suffer; this follows the checkpoint.)
    let sliding_window = m
        .opt_usize(&key("attention.sliding_window"))?
        .map(|size| SlidingWindow { size, layers: vec![true; num_layers] });
    let vocab_size = match m.opt_usize(&key("vocab_size"))? {
        Some(v) => v,
        None => m.strings("tokenizer.ggml.tokens")?.len(),
    };
    let config = ModelConfig {
        arch,
        hidden_size,
        intermediate_size: m.usize(&key("feed_forward_length"))?,
        num_layers,
        num_heads,
        num_kv_heads,
        head_dim,
        vocab_size,
        rms_norm_eps: m.opt_f64(&key("attention.layer_norm_rms_epsilon"))?.ok_or_else(|| {
            ModelError::MissingMetadata {
                path: m.path.to_owned(),
                key: key("attention.layer_norm_rms_epsilon"),
            }
        })?,
        rope_theta: m.opt_f64(&key("rope.freq_base"))?.unwrap_or(10_000.0),
        max_position_embeddings: served_context(max_pos, rope_scaling.as_ref()),
        sliding_window,
        partial_rotary_dim,
        rope_scaling,
        tie_word_embeddings: !m.content.tensor_infos.contains_key("output.weight"),
        attention_bias: arch == Arch::Qwen2,
    };
    config.validate_file(m.path)?;
    Ok(config)
}

/// The RoPE scaling llama.cpp's metadata describes: `rope.scaling.type` `linear` or `yarn` (with
/// `rope.scaling.factor`, `original_context_length`, `attn_factor`, `yarn_beta_fast`,
/// `yarn_beta_slow`), per-frequency divisors in `rope_freqs.weight` (how llama.cpp stores
/// LLaMA-3 scaling), or Phi-3's LongRoPE factor tensors. (llama.cpp picks LongRoPE's set once,
/// by the context it is started with; lorad picks it per sequence as transformers does.)
fn rope_scaling(
    m: Meta<'_>,
    key: &dyn Fn(&str) -> String,
    max_pos: usize,
    rope: RopeTensors,
) -> Result<Option<RopeScaling>, ModelError> {
    let kind = m.opt_str(&key("rope.scaling.type"))?.unwrap_or("none");
    if rope.freqs.is_some() && kind != "none" {
        return Err(m.bad(&key("rope.scaling.type"), "set together with tensor rope_freqs.weight"));
    }
    let factor = || {
        m.opt_f64(&key("rope.scaling.factor"))?
            .ok_or_else(|| m.bad(&key("rope.scaling.factor"), "missing"))
    };
    let original = || -> Result<usize, ModelError> {
        Ok(m.opt_usize(&key("rope.scaling.original_context_length"))?.unwrap_or(max_pos))
    };
    match (kind, rope.short, rope.long) {
        // Phi-3's LongRoPE: llama.cpp's converter writes both factor sets as tensors, the
        // pre-trained length and the attention factor it derived as transformers does.
        ("none" | "longrope", Some(short_factor), Some(long_factor)) => {
            let original = original()?;
            let attention_factor = match m.opt_f64(&key("rope.scaling.attn_factor"))? {
                Some(a) => a,
                None => longrope_attention(max_pos as f64 / original.max(1) as f64, original),
            };
            Ok(Some(RopeScaling::LongRope {
                short_factor,
                long_factor,
                original_max_position_embeddings: original,
                attention_factor,
            }))
        }
        ("longrope", ..) | (_, Some(_), None) | (_, None, Some(_)) => {
            Err(ModelError::Unsupported {
                path: m.path.to_owned(),
                what: format!(
                    "LongRoPE without both `{}` and `{}`",
                    RopeTensors::SHORT,
                    RopeTensors::LONG
                ),
            })
        }
        ("none", None, None) => Ok(rope.freqs.map(|divisors| RopeScaling::Factors { divisors })),
        ("linear", None, None) => Ok(Some(RopeScaling::Linear { factor: factor()? })),
        ("yarn", None, None) => {
            let factor = factor()?;
            // ggml multiplies the configured attention factor by YaRN's own temperature.
            let attn = m.opt_f64(&key("rope.scaling.attn_factor"))?.unwrap_or(1.0);
            Ok(Some(RopeScaling::Yarn {
                factor,
                original_max_position_embeddings: original()?,
                beta_fast: m.opt_f64(&key("rope.scaling.yarn_beta_fast"))?.unwrap_or(32.0),
                beta_slow: m.opt_f64(&key("rope.scaling.yarn_beta_slow"))?.unwrap_or(1.0),
                attention_factor: attn * yarn_mscale(factor, 1.0),
                truncate: true,
            }))
        }
        (other, ..) => Err(ModelError::Unsupported {
            path: m.path.to_owned(),
            what: format!(
                "{} `{other}` (supported: linear, yarn, longrope)",
                key("rope.scaling.type")
            ),
        }),
    }
}

/// The RoPE tensors llama.cpp stores beside the weights: `rope_freqs.weight` (LLaMA 3's
/// per-frequency divisors) and Phi-3 LongRoPE's `rope_factors_short.weight` and
/// `rope_factors_long.weight`.
#[derive(Debug, Default)]
struct RopeTensors {
    freqs: Option<Vec<f32>>,
    short: Option<Vec<f32>>,
    long: Option<Vec<f32>>,
}

impl RopeTensors {
    const FREQS: &str = "rope_freqs.weight";
    const SHORT: &str = "rope_factors_short.weight";
    const LONG: &str = "rope_factors_long.weight";

    /// Those of them the file has.
    fn read<R: std::io::Read + std::io::Seek>(
        path: &Path,
        content: &Content,
        reader: &mut R,
    ) -> Result<Self, ModelError> {
        let mut one = |name: &str| -> Result<Option<Vec<f32>>, ModelError> {
            if !content.tensor_infos.contains_key(name) {
                return Ok(None);
            }
            let err = || tensor_err(path, name);
            let t = no_panic(|| content.tensor(reader, name, &Device::Cpu)).map_err(err())?;
            let t = no_panic(|| t.dequantize(&Device::Cpu)).map_err(err())?;
            t.flatten_all().and_then(|t| t.to_vec1::<f32>()).map(Some).map_err(err())
        };
        Ok(Self { freqs: one(Self::FREQS)?, short: one(Self::SHORT)?, long: one(Self::LONG)? })
    }

    /// Each present one, with its name.
    fn named(&self) -> impl Iterator<Item = (&'static str, &Vec<f32>)> {
        [(Self::FREQS, &self.freqs), (Self::SHORT, &self.short), (Self::LONG, &self.long)]
            .into_iter()
            .filter_map(|(name, v)| v.as_ref().map(|v| (name, v)))
    }
}

/// The GGUF name of an expected tensor (llama.cpp's `LLM_TENSOR_NAMES`).
fn gguf_name(e: &Expected) -> String {
    let global = match e.part {
        Part::Embed => Some("token_embd.weight"),
        Part::Norm => Some("output_norm.weight"),
        Part::LmHead => Some("output.weight"),
        _ => None,
    };
    if let Some(g) = global {
        return g.to_owned();
    }
    let suffix = match e.part {
        Part::InputNorm => "attn_norm.weight",
        Part::PostNorm => "ffn_norm.weight",
        Part::Q => "attn_q.weight",
        Part::K => "attn_k.weight",
        Part::V => "attn_v.weight",
        Part::O => "attn_output.weight",
        Part::QBias => "attn_q.bias",
        Part::KBias => "attn_k.bias",
        Part::VBias => "attn_v.bias",
        Part::QNorm => "attn_q_norm.weight",
        Part::KNorm => "attn_k_norm.weight",
        Part::Gate => "ffn_gate.weight",
        Part::Up => "ffn_up.weight",
        Part::Down => "ffn_down.weight",
        Part::Qkv => "attn_qkv.weight",
        // llama.cpp keeps Phi-3's fused gate/up under the up projection's name.
        Part::GateUp => "ffn_up.weight",
        Part::Embed | Part::Norm | Part::LmHead => "",
    };
    format!("blk.{}.{suffix}", e.layer.unwrap_or(0))
}

/// Inverse of llama.cpp's `permute` for a q or k projection `[n_heads * head_dim, in]`.
///
/// llama.cpp's converter reorders each head's rows from the Hugging Face "rotate half" layout to
/// the interleaved-pairs layout its RoPE kernel wants; undoing it lets the engine (and PEFT
/// adapters trained on Hugging Face weights) use the same rows as the original checkpoint.
pub(crate) fn unpermute_qk(w: &Tensor, n_heads: usize) -> candle_core::Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    let half = rows / n_heads / 2;
    w.reshape((n_heads, half, 2, cols))?.transpose(1, 2)?.contiguous()?.reshape((rows, cols))
}

/// Loads the GGUF file at `path` completely.
pub(crate) fn load(path: &Path, opts: &LoadOptions) -> Result<LoadedModel, ModelError> {
    // One read serves both the hash and the tensors; the page cache makes a second pass cheap, but
    // hashing from memory on another core hides its cost entirely behind dequantization.
    let bytes = std::fs::read(path).map_err(ModelError::io("reading", path))?;
    std::thread::scope(|s| {
        let hasher = s.spawn(|| hex::encode(Sha256::digest(&bytes)));
        let parsed = load_parsed(path, &bytes, opts);
        // The hashing thread cannot panic (no fallible step), but if it somehow did, report a hash
        // that matches nothing rather than panicking the caller.
        let base_hash = hasher.join().unwrap_or_default();
        let (config, weights, tokenizer, chat_template) = parsed?;
        let name = if base_hash == DEFAULT_GGUF_SHA256 {
            DEFAULT_MODEL_ID.to_owned()
        } else {
            file_stem(path)
        };
        Ok(LoadedModel { name, config, weights, tokenizer, chat_template, base_hash })
    })
}

type Parsed = (ModelConfig, HashMap<String, Tensor>, Tokenizer, ChatTemplate);

/// Tokenizer and chat template of the GGUF file at `path`, from its header alone.
pub(crate) fn load_text(path: &Path) -> Result<(Tokenizer, ChatTemplate), ModelError> {
    let (content, _) = read_content(path)?;
    text_from_meta(Meta { path, content: &content })
}

fn text_from_meta(meta: Meta<'_>) -> Result<(Tokenizer, ChatTemplate), ModelError> {
    let tokenizer = Tokenizer::from_gguf_meta(meta)?;
    let chat_template = match meta.opt_str("tokenizer.chat_template")? {
        Some(src) => ChatTemplate::new(src)?,
        None => ChatTemplate::chatml(),
    }
    .with_special_tokens(tokenizer.bos_token(), tokenizer.eos_token());
    Ok((tokenizer, chat_template))
}

fn load_parsed(path: &Path, bytes: &[u8], opts: &LoadOptions) -> Result<Parsed, ModelError> {
    let content = no_panic(|| Content::read(&mut Cursor::new(bytes)))
        .map_err(|source| ModelError::Gguf { path: path.to_owned(), source: Box::new(source) })?;
    let meta = Meta { path, content: &content };
    let rope = RopeTensors::read(path, &content, &mut Cursor::new(bytes))?;
    let config = config_from_meta(meta, rope)?;
    let (tokenizer, chat_template) = text_from_meta(meta)?;
    let mut weights = load_weights(path, bytes, &content, &config, opts)?;
    crate::weights::unfuse(path, &config, &mut weights)?;
    Ok((config, weights, tokenizer, chat_template))
}

fn load_weights(
    path: &Path,
    bytes: &[u8],
    content: &Content,
    config: &ModelConfig,
    opts: &LoadOptions,
) -> Result<HashMap<String, Tensor>, ModelError> {
    let expected = expected_tensors(config);
    // Check names and shapes from the directory first so a bad file fails before any work.
    for e in &expected {
        let name = gguf_name(e);
        let info = content.tensor_infos.get(&name).ok_or_else(|| ModelError::MissingTensor {
            path: path.to_owned(),
            name: name.clone(),
        })?;
        check_shape(path, &name, &e.shape, info.shape.dims())?;
    }
    // Dequantization is CPU work per tensor: spread it over the cores when the target is the CPU
    // (on an accelerator the device does the work and one feeding thread suffices).
    let threads = match opts.device {
        Device::Cpu => std::thread::available_parallelism().map_or(1, |n| n.get()).min(8),
        _ => 1,
    };
    let loaded: Vec<Result<Vec<(String, Tensor)>, ModelError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let mine: Vec<&Expected> = expected.iter().skip(t).step_by(threads).collect();
                s.spawn(move || {
                    mine.into_iter()
                        .map(|e| load_one(path, bytes, content, config, opts, e))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(ModelError::Gguf {
                        path: path.to_owned(),
                        source: Box::new(candle_core::Error::Msg(
                            "a weight-loading thread panicked".into(),
                        )),
                    })
                })
            })
            .collect()
    });
    let mut weights = HashMap::with_capacity(expected.len());
    for chunk in loaded {
        weights.extend(chunk?);
    }
    Ok(weights)
}

fn load_one(
    path: &Path,
    bytes: &[u8],
    content: &Content,
    config: &ModelConfig,
    opts: &LoadOptions,
    e: &Expected,
) -> Result<(String, Tensor), ModelError> {
    let name = gguf_name(e);
    let err = || tensor_err(path, &name);
    let q =
        no_panic(|| content.tensor(&mut Cursor::new(bytes), &name, &opts.device)).map_err(err())?;
    let mut w = no_panic(|| q.dequantize(&opts.device)).map_err(err())?;
    if config.arch == Arch::Llama {
        match e.part {
            Part::Q => w = unpermute_qk(&w, config.num_heads).map_err(err())?,
            Part::K => w = unpermute_qk(&w, config.num_kv_heads).map_err(err())?,
            _ => {}
        }
    }
    let w = w.to_dtype(opts.dtype).map_err(err())?;
    Ok((e.name.clone(), w))
}

fn file_stem(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    stem.unwrap_or_else(|| PathBuf::from(path).display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permute() -> candle_core::Result<()> {
        let (n, hd, cols) = (3, 8, 5);
        let w =
            Tensor::arange(0f32, (n * hd * cols) as f32, &Device::Cpu)?.reshape((n * hd, cols))?;
        let un = unpermute_qk(&w, n)?;
        let back = crate::testing::llama_cpp_permute_rows(&un.to_vec2::<f32>()?, n);
        assert_eq!(back, w.to_vec2::<f32>()?);
        assert_ne!(un.to_vec2::<f32>()?, w.to_vec2::<f32>()?);
        Ok(())
    }
}
