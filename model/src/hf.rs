//! Hugging Face model directories: `config.json`, safetensors weights (single file or sharded with
//! `model.safetensors.index.json`), `tokenizer.json` and friends.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use candle_core::safetensors::SliceSafetensors;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::chat::ChatTemplate;
use crate::config::{
    Arch, MAX_LAYERS, ModelConfig, RopeScaling, SlidingWindow, longrope_attention, served_context,
    size_problem, yarn_mscale,
};
use crate::error::ModelError;
use crate::tokenizer::{Tokenizer, read_json_opt};
use crate::weights::{LoadOptions, LoadedModel, check_shape, expected_tensors, tensor_err};

/// Typed access to the fields of one JSON file, with errors naming the file and field.
struct Fields<'a> {
    path: &'a Path,
    json: &'a Json,
}

impl Fields<'_> {
    fn err(&self, field: &str, reason: impl Into<String>) -> ModelError {
        ModelError::ConfigField {
            path: self.path.to_owned(),
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    /// The field's value; JSON `null` counts as absent (transformers writes `"head_dim": null`).
    fn get(&self, field: &str) -> Option<&Json> {
        self.json.get(field).filter(|v| !v.is_null())
    }

    fn opt_usize(&self, field: &str) -> Result<Option<usize>, ModelError> {
        self.get(field)
            .map(|v| {
                v.as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| {
                    self.err(field, format!("expected a non-negative integer, found {v}"))
                })
            })
            .transpose()
    }

    fn usize(&self, field: &str) -> Result<usize, ModelError> {
        self.opt_usize(field)?.ok_or_else(|| self.err(field, "missing"))
    }

    fn opt_f64(&self, field: &str) -> Result<Option<f64>, ModelError> {
        self.get(field)
            .map(|v| {
                v.as_f64().ok_or_else(|| self.err(field, format!("expected a number, found {v}")))
            })
            .transpose()
    }

    fn opt_bool(&self, field: &str) -> Result<Option<bool>, ModelError> {
        self.get(field)
            .map(|v| {
                v.as_bool().ok_or_else(|| self.err(field, format!("expected a bool, found {v}")))
            })
            .transpose()
    }

    fn opt_str(&self, field: &str) -> Result<Option<&str>, ModelError> {
        self.get(field)
            .map(|v| {
                v.as_str().ok_or_else(|| self.err(field, format!("expected a string, found {v}")))
            })
            .transpose()
    }
}

fn read_json(path: &Path) -> Result<Json, ModelError> {
    read_json_opt(path)?.ok_or_else(|| ModelError::Io {
        action: "reading",
        path: path.to_owned(),
        source: std::io::ErrorKind::NotFound.into(),
    })
}

/// The config of the Hugging Face model directory `dir`, from its `config.json`.
pub(crate) fn read_config(dir: &Path) -> Result<ModelConfig, ModelError> {
    let path = dir.join("config.json");
    let json = read_json(&path)?;
    parse_config(Fields { path: &path, json: &json })
}

fn parse_config(f: Fields<'_>) -> Result<ModelConfig, ModelError> {
    let model_type = f.opt_str("model_type")?.ok_or_else(|| f.err("model_type", "missing"))?;
    let arch = match model_type {
        "llama" => Arch::Llama,
        "mistral" => Arch::Mistral,
        "qwen2" => Arch::Qwen2,
        "qwen3" => Arch::Qwen3,
        "phi3" => Arch::Phi3,
        other => {
            return Err(f.err(
                "model_type",
                format!(
                    "unsupported model type `{other}` (supported: llama, mistral, qwen2, qwen3, phi3)"
                ),
            ));
        }
    };
    if let Some(act) = f.opt_str("hidden_act")?
        && act != "silu"
    {
        return Err(f.err("hidden_act", format!("unsupported activation `{act}` (only silu)")));
    }
    // LLaMA's optional biases also cover o_proj and the MLP, which no supported family has.
    for field in ["attention_bias", "mlp_bias"] {
        if arch != Arch::Qwen2 && f.opt_bool(field)? == Some(true) {
            return Err(f.err(field, format!("biases are not supported for {arch}")));
        }
    }
    let hidden_size = f.usize("hidden_size")?;
    let num_heads = f.usize("num_attention_heads")?;
    let head_dim = match f.opt_usize("head_dim")? {
        Some(d) => d,
        None if num_heads > 0 && hidden_size % num_heads == 0 => hidden_size / num_heads,
        None => return Err(f.err("num_attention_heads", "does not divide hidden_size")),
    };
    // transformers 5 moved rope settings into `rope_parameters`; read either spelling.
    let rope_params = f.get("rope_parameters").map(|json| Fields { path: f.path, json });
    let rope_theta = match f.opt_f64("rope_theta")? {
        Some(t) => t,
        None => match &rope_params {
            Some(p) => p.opt_f64("rope_theta")?.unwrap_or(10_000.0),
            None => 10_000.0,
        },
    };
    let (scaling_field, scaling) = match f.get("rope_scaling") {
        Some(json) => ("rope_scaling", Some(Fields { path: f.path, json })),
        None => ("rope_parameters", rope_params),
    };
    let default_max_pos = match arch {
        Arch::Llama => 2048,
        Arch::Mistral | Arch::Qwen2 | Arch::Qwen3 => 32768,
        Arch::Phi3 => 4096,
    };
    let max_pos = f.opt_usize("max_position_embeddings")?.unwrap_or(default_max_pos);
    let rope_scaling = match scaling {
        Some(s) => parse_rope_scaling(&f, scaling_field, &s, max_pos)?,
        None => None,
    };
    let num_layers = f.usize("num_hidden_layers")?;
    // Layer lists are sized by this count before the config is validated as a whole.
    if let Some(reason) = size_problem(num_layers, MAX_LAYERS) {
        return Err(f.err("num_hidden_layers", reason));
    }
    let window = sliding_window(&f, arch, num_layers)?;
    // Phi-4 mini rotates 3/4 of each head (transformers: `int(head_dim · factor)` dimensions).
    let partial_rotary_dim = match f.opt_f64("partial_rotary_factor")? {
        None => None,
        Some(p) if p > 0.0 && p <= 1.0 => {
            Some((head_dim as f64 * p) as usize).filter(|&r| r != head_dim)
        }
        Some(p) => return Err(f.err("partial_rotary_factor", format!("{p} is not in (0, 1]"))),
    };
    let config = ModelConfig {
        arch,
        hidden_size,
        intermediate_size: f.usize("intermediate_size")?,
        num_layers,
        num_heads,
        num_kv_heads: f.opt_usize("num_key_value_heads")?.unwrap_or(num_heads),
        head_dim,
        vocab_size: f.usize("vocab_size")?,
        rms_norm_eps: f.opt_f64("rms_norm_eps")?.unwrap_or(1e-6),
        rope_theta,
        max_position_embeddings: served_context(max_pos, rope_scaling.as_ref()),
        sliding_window: window,
        partial_rotary_dim,
        rope_scaling,
        tie_word_embeddings: f.opt_bool("tie_word_embeddings")?.unwrap_or(false),
        attention_bias: arch == Arch::Qwen2,
    };
    config.validate_file(f.path)?;
    Ok(config)
}

fn parse_rope_scaling(
    f: &Fields<'_>,
    field: &str,
    s: &Fields<'_>,
    max_position_embeddings: usize,
) -> Result<Option<RopeScaling>, ModelError> {
    let kind = match s.opt_str("rope_type")? {
        Some(k) => Some(k),
        None => s.opt_str("type")?,
    };
    let named = |k: &str| format!("{field}.{k}");
    let num = |k: &str| s.opt_f64(k)?.ok_or_else(|| f.err(&named(k), "missing"));
    match kind {
        None | Some("default") => Ok(None),
        Some("llama3") => Ok(Some(RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: s
                .opt_usize("original_max_position_embeddings")?
                .ok_or_else(|| f.err(&named("original_max_position_embeddings"), "missing"))?,
        })),
        Some("linear") => Ok(Some(RopeScaling::Linear { factor: num("factor")? })),
        Some("yarn") => {
            let original =
                s.opt_usize("original_max_position_embeddings")?.unwrap_or(max_position_embeddings);
            // transformers 5 derives a missing factor from the two lengths (DeepSeek-V3 style).
            let factor = match s.opt_f64("factor")? {
                Some(v) => v,
                None if original > 0 => max_position_embeddings as f64 / original as f64,
                None => return Err(f.err(&named("factor"), "missing")),
            };
            // transformers: an explicit attention factor, else DeepSeek's `mscale` /
            // `mscale_all_dim` ratio when both are set, else the YaRN paper's default.
            let attention_factor = match (
                s.opt_f64("attention_factor")?,
                s.opt_f64("mscale")?.filter(|m| *m != 0.0),
                s.opt_f64("mscale_all_dim")?.filter(|m| *m != 0.0),
            ) {
                (Some(a), _, _) => a,
                (None, Some(m), Some(all)) => yarn_mscale(factor, m) / yarn_mscale(factor, all),
                _ => yarn_mscale(factor, 1.0),
            };
            Ok(Some(RopeScaling::Yarn {
                factor,
                original_max_position_embeddings: original,
                beta_fast: s.opt_f64("beta_fast")?.unwrap_or(32.0),
                beta_slow: s.opt_f64("beta_slow")?.unwrap_or(1.0),
                attention_factor,
                truncate: s.opt_bool("truncate")?.unwrap_or(true),
            }))
        }
        // Phi-3's first releases called it `su`; transformers reads both.
        Some("longrope" | "su") => {
            let factors = |k: &str| -> Result<Vec<f32>, ModelError> {
                let items = s
                    .get(k)
                    .and_then(Json::as_array)
                    .ok_or_else(|| f.err(&named(k), "missing (one number per frequency)"))?;
                items
                    .iter()
                    .map(|v| {
                        v.as_f64()
                            .map(|x| x as f32)
                            .ok_or_else(|| f.err(&named(k), format!("`{v}` is not a number")))
                    })
                    .collect()
            };
            // transformers: Phi-3 keeps the pre-trained length at the top level and stretches
            // by the ratio of the two; otherwise the scaling's own `factor` says how much.
            let (original, factor) = match f.opt_usize("original_max_position_embeddings")? {
                Some(o) if o > 0 => (o, max_position_embeddings as f64 / o as f64),
                _ => (
                    s.opt_usize("original_max_position_embeddings")?
                        .unwrap_or(max_position_embeddings),
                    s.opt_f64("factor")?.unwrap_or(1.0),
                ),
            };
            Ok(Some(RopeScaling::LongRope {
                short_factor: factors("short_factor")?,
                long_factor: factors("long_factor")?,
                original_max_position_embeddings: original,
                attention_factor: match s.opt_f64("attention_factor")? {
                    Some(a) => a,
                    None => longrope_attention(factor, original),
                },
            }))
        }
        Some(other) => Err(f.err(
            &named("rope_type"),
            format!(
                "unsupported RoPE scaling `{other}` (supported: llama3, linear, yarn, longrope)"
            ),
        )),
    }
}

/// The attention window of a model whose layers (some or all) attend only to the last `n`
/// tokens, as transformers reads it: every layer of Mistral and Phi-3 with a `sliding_window`;
/// Qwen's layers from `max_window_layers` on, when `use_sliding_window` is set; the layers
/// `layer_types` calls `sliding_attention`, when it is given.
fn sliding_window(
    f: &Fields<'_>,
    arch: Arch,
    num_layers: usize,
) -> Result<Option<SlidingWindow>, ModelError> {
    let Some(size) = f.opt_usize("sliding_window")? else {
        return Ok(None);
    };
    let qwen = matches!(arch, Arch::Qwen2 | Arch::Qwen3);
    // Qwen's configs write a window they do not use unless told to.
    if qwen && !f.opt_bool("use_sliding_window")?.unwrap_or(false) {
        return Ok(None);
    }
    let layers: Vec<bool> = if let Some(types) = f.get("layer_types").and_then(Json::as_array) {
        if types.len() != num_layers {
            return Err(
                f.err("layer_types", format!("{} entries for {num_layers} layers", types.len()))
            );
        }
        types.iter().map(|t| t.as_str() == Some("sliding_attention")).collect()
    } else {
        match arch {
            Arch::Mistral | Arch::Phi3 => vec![true; num_layers],
            Arch::Qwen2 | Arch::Qwen3 => {
                // transformers' default for both Qwen generations.
                let first = f.opt_usize("max_window_layers")?.unwrap_or(28);
                (0..num_layers).map(|l| l >= first).collect()
            }
            Arch::Llama => vec![false; num_layers],
        }
    };
    Ok(layers.contains(&true).then_some(SlidingWindow { size, layers }))
}

/// The safetensors files of `dir`, sorted by file name.
pub(crate) fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let index_path = dir.join("model.safetensors.index.json");
    let mut names = BTreeSet::new();
    if let Some(index) = read_json_opt(&index_path)? {
        let idx = Fields { path: &index_path, json: &index };
        let map = idx
            .get("weight_map")
            .and_then(Json::as_object)
            .ok_or_else(|| idx.err("weight_map", "missing or not an object"))?;
        for (tensor, file) in map {
            let file = file
                .as_str()
                .ok_or_else(|| idx.err(&format!("weight_map.{tensor}"), "not a file name"))?;
            names.insert(file.to_owned());
        }
    } else if dir.join("model.safetensors").is_file() {
        names.insert("model.safetensors".to_owned());
    } else {
        // Shards without an index (some exporters omit it): take every safetensors file.
        let entries = std::fs::read_dir(dir).map_err(ModelError::io("listing", dir))?;
        for entry in entries {
            let name = entry.map_err(ModelError::io("listing", dir))?.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".safetensors") {
                names.insert(name.into_owned());
            }
        }
    }
    if names.is_empty() {
        return Err(ModelError::Io {
            action: "reading",
            path: dir.join("model.safetensors"),
            source: std::io::ErrorKind::NotFound.into(),
        });
    }
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

/// Loads the Hugging Face model directory `dir` completely.
pub(crate) fn load(dir: &Path, opts: &LoadOptions) -> Result<LoadedModel, ModelError> {
    let config = read_config(dir)?;
    let expected = expected_tensors(&config);
    let mut weights: HashMap<String, Tensor> = HashMap::with_capacity(expected.len());
    let mut hasher = Sha256::new();
    // One file in memory at a time: hash it, then take the tensors it holds.
    for file in weight_files(dir)? {
        let bytes = std::fs::read(&file).map_err(ModelError::io("reading", &file))?;
        hasher.update(&bytes);
        let st = SliceSafetensors::new(&bytes).map_err(|source| ModelError::Safetensors {
            path: file.clone(),
            source: Box::new(source),
        })?;
        for e in &expected {
            if weights.contains_key(&e.name) {
                continue;
            }
            let Ok(view) = st.get(&e.name) else { continue };
            check_shape(&file, &e.name, &e.shape, view.shape())?;
            let t = st
                .load(&e.name, &opts.device)
                .and_then(|t| t.to_dtype(opts.dtype))
                .map_err(tensor_err(&file, &e.name))?;
            weights.insert(e.name.clone(), t);
        }
    }
    if let Some(e) = expected.iter().find(|e| !weights.contains_key(&e.name)) {
        return Err(ModelError::MissingTensor { path: dir.to_owned(), name: e.name.clone() });
    }
    crate::weights::unfuse(dir, &config, &mut weights)?;
    let (tokenizer, chat_template) = load_text(dir)?;
    Ok(LoadedModel {
        name: dir_name(dir),
        config,
        weights,
        tokenizer,
        chat_template,
        base_hash: hex::encode(hasher.finalize()),
    })
}

/// Tokenizer and chat template of the Hugging Face directory `dir`, without its weights.
pub(crate) fn load_text(dir: &Path) -> Result<(Tokenizer, ChatTemplate), ModelError> {
    let tokenizer = Tokenizer::from_hf_dir(dir)?;
    let chat_template =
        read_chat_template(dir)?.with_special_tokens(tokenizer.bos_token(), tokenizer.eos_token());
    Ok((tokenizer, chat_template))
}

/// `chat_template.jinja` (what recent transformers saves, and prefers), else the
/// `chat_template` of `tokenizer_config.json` (a string, or a list of named templates of which
/// `default` is used), else plain ChatML.
fn read_chat_template(dir: &Path) -> Result<ChatTemplate, ModelError> {
    let jinja = dir.join("chat_template.jinja");
    match std::fs::read_to_string(&jinja) {
        Ok(src) => return ChatTemplate::new(&src),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ModelError::io("reading", &jinja)(e)),
    }
    let path = dir.join("tokenizer_config.json");
    let Some(json) = read_json_opt(&path)? else { return Ok(ChatTemplate::chatml()) };
    let f = Fields { path: &path, json: &json };
    match f.get("chat_template") {
        None => Ok(ChatTemplate::chatml()),
        Some(Json::String(src)) => ChatTemplate::new(src),
        Some(Json::Array(list)) => {
            let default =
                list.iter().find(|t| t.get("name").and_then(Json::as_str) == Some("default"));
            match default.and_then(|t| t.get("template")).and_then(Json::as_str) {
                Some(src) => ChatTemplate::new(src),
                None => Err(f.err("chat_template", "a list without a `default` template")),
            }
        }
        Some(other) => Err(f.err("chat_template", format!("expected a string, found {other}"))),
    }
}

/// The served name of a model directory: its last path component (resolving `.` and the like).
fn dir_name(dir: &Path) -> String {
    let canonical = dir.canonicalize().ok();
    let named = canonical.as_deref().unwrap_or(dir);
    match named.file_name() {
        Some(n) => n.to_string_lossy().into_owned(),
        None => named.display().to_string(),
    }
}
