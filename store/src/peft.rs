//! Reading and writing PEFT adapter directories (`adapter_config.json` +
//! `adapter_model.safetensors`).
//!
//! Tensor names follow PEFT's `get_peft_model_state_dict` for a llama `*ForCausalLM`:
//! `base_model.model.model.layers.{i}.self_attn.{q,k,v,o}_proj.lora_{A,B}.weight` and
//! `...mlp.{gate,up,down}_proj.lora_{A,B}.weight`; names with an adapter-name infix
//! (`lora_A.default.weight`), which older or third-party savers produce, are accepted too.
//! `lora_A` is `[r, in_features]`, `lora_B` is `[out_features, r]`. Pairs on Phi-3's fused
//! `qkv_proj` / `gate_up_proj` import as one pair per projection ([`crate::site`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::adapter::{Adapter, BaseShape, LoraWeights, TargetModule};
use crate::config::{ParsedConfig, Resolver, parse_config, to_peft_json};
use crate::error::StoreError;
use crate::fsutil;
use crate::hash::content_hash;
use crate::site::Site;

/// Config file name inside an adapter directory.
pub(crate) const CONFIG_FILE: &str = "adapter_config.json";
/// Weights file name inside an adapter directory.
pub(crate) const WEIGHTS_FILE: &str = "adapter_model.safetensors";
const PICKLE_FILE: &str = "adapter_model.bin";
const KEY_PREFIX: &str = "base_model.model.model.layers.";

/// Element type for the tensors [`write_peft_dir`] stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorDtype {
    /// 32-bit float: lossless.
    F32,
    /// IEEE half: values round to nearest-even; magnitudes above 65504 are refused.
    F16,
    /// bfloat16: values round to nearest-even.
    BF16,
}

/// The raw bytes of an adapter directory, read once so that what is validated is exactly what
/// the registry then stores.
#[derive(Debug)]
pub(crate) struct PeftFiles {
    pub(crate) config_path: PathBuf,
    pub(crate) config: Vec<u8>,
    pub(crate) weights_path: PathBuf,
    pub(crate) weights: Vec<u8>,
}

impl PeftFiles {
    /// Reads `dir`'s config and weights; a pickle-only adapter gets its own error.
    pub(crate) fn read(dir: &Path) -> Result<Self, StoreError> {
        let config_path = dir.join(CONFIG_FILE);
        let weights_path = dir.join(WEIGHTS_FILE);
        if !weights_path.exists() {
            let pickle = dir.join(PICKLE_FILE);
            if pickle.exists() {
                return Err(StoreError::PickleNotSupported { path: pickle });
            }
            return Err(StoreError::MissingFile { dir: dir.to_path_buf(), file: WEIGHTS_FILE });
        }
        if !config_path.exists() {
            return Err(StoreError::MissingFile { dir: dir.to_path_buf(), file: CONFIG_FILE });
        }
        Ok(PeftFiles {
            config: fsutil::read(&config_path)?,
            config_path,
            weights: fsutil::read(&weights_path)?,
            weights_path,
        })
    }
}

/// Reads and fully validates the PEFT LoRA adapter in `dir` against `base`.
///
/// Everything the engine relies on is checked here, so a returned [`Adapter`] is safe to serve:
/// - the config: every key current PEFT writes is known and either honoured, ignored (it cannot
///   change inference on the original base: `lora_dropout`, `eva_config`, `revision`, ...) or
///   required at its default because it enables a feature lorad does not implement (`use_dora`,
///   `modules_to_save`, `bias` != `"none"`, `lora_bias`, `layer_replication`, base-mutating
///   `init_lora_weights` such as PiSSA/OLoRA/LoftQ, ...); unknown keys are accepted only with a
///   default-like value (`null`, `false`, `""`, `[]`, `{}`). `fan_in_fan_out: true` is reset to
///   false with a warning, as PEFT does for `nn.Linear`;
/// - the tensors: every `lora_A` paired with its `lora_B`, shapes matching `base`, layer indices
///   in range, ranks equal to `r` or the matching `rank_pattern` entry, only modules the config
///   targets (`target_modules` as a list, `"all-linear"` or regex; `exclude_modules`;
///   `layers_to_transform`), finite values. F32, F16, BF16 (and F64) are converted to f32.
///
/// Errors name the file, config field or tensor at fault.
pub fn read_peft_dir(dir: &Path, name: &str, base: &BaseShape) -> Result<Adapter, StoreError> {
    parse_peft(name, &PeftFiles::read(dir)?, base)
}

/// One LoRA matrix found in the file.
struct Found<'d> {
    stored_name: String,
    view: TensorView<'d>,
}

#[derive(Default)]
struct Pair<'d> {
    a: Option<Found<'d>>,
    b: Option<Found<'d>>,
}

/// [`read_peft_dir`] on bytes already in memory.
pub(crate) fn parse_peft(
    name: &str,
    files: &PeftFiles,
    base: &BaseShape,
) -> Result<Adapter, StoreError> {
    base.validate()?;
    let parsed = parse_config(&files.config, &files.config_path)?;
    let path = files.weights_path.as_path();
    let st = SafeTensors::deserialize(&files.weights)
        .map_err(|source| StoreError::Safetensors { path: path.to_path_buf(), source })?;

    let mut pairs: BTreeMap<(usize, Site), Pair<'_>> = BTreeMap::new();
    for (stored_name, view) in st.iter() {
        let (layer, module, is_b) =
            parse_key(stored_name).map_err(|reason| StoreError::UnexpectedTensor {
                path: path.to_path_buf(),
                tensor: stored_name.to_owned(),
                reason,
            })?;
        if layer >= base.num_layers {
            return Err(StoreError::LayerOutOfRange {
                path: path.to_path_buf(),
                tensor: stored_name.to_owned(),
                layer,
                num_layers: base.num_layers,
            });
        }
        if let Some(reason) = parsed.untargeted_reason(layer, &module.module_path(layer)) {
            return Err(StoreError::NotTargeted {
                path: path.to_path_buf(),
                tensor: stored_name.to_owned(),
                reason,
            });
        }
        let pair = pairs.entry((layer, module)).or_default();
        let slot = if is_b { &mut pair.b } else { &mut pair.a };
        if let Some(prev) = slot {
            return Err(StoreError::DuplicateTensor {
                path: path.to_path_buf(),
                first: prev.stored_name.clone(),
                second: stored_name.to_owned(),
            });
        }
        *slot = Some(Found { stored_name: stored_name.to_owned(), view });
    }
    if pairs.is_empty() {
        return Err(StoreError::EmptyAdapter { path: path.to_path_buf() });
    }

    let resolver =
        Resolver::new(&parsed.config).map_err(|(field, reason)| StoreError::InvalidConfig {
            path: files.config_path.clone(),
            field: field.to_owned(),
            reason,
        })?;
    let mut weights: Vec<LoraWeights> = Vec::with_capacity(pairs.len());
    for (&(layer, site), pair) in &pairs {
        for w in build_pair(path, base, &resolver, layer, site, pair)? {
            // A fused pair and a pair of one of its parts would both adapt that projection.
            if let Some(prev) = weights.iter().find(|p| (p.layer, p.module) == (w.layer, w.module))
            {
                return Err(StoreError::DuplicateTensor {
                    path: path.to_path_buf(),
                    first: prev.module.tensor_name(layer, false),
                    second: site.tensor_name(layer, false),
                });
            }
            weights.push(w);
        }
    }
    weights.sort_by_key(|w| (w.layer, w.module));
    warn_missing_targets(&parsed, base, &pairs, &files.weights_path);

    let mut config = parsed.config;
    let present: BTreeSet<TargetModule> = weights.iter().map(|w| w.module).collect();
    config.target_modules = present.into_iter().collect();
    let content_hash = content_hash(&weights);
    Ok(Adapter { name: name.to_owned(), config, weights, content_hash })
}

/// Checks one A/B pair against the base shape and the config, and converts it: one pair per
/// projection the site covers.
fn build_pair(
    path: &Path,
    base: &BaseShape,
    resolver: &Resolver<'_>,
    layer: usize,
    module: Site,
    pair: &Pair<'_>,
) -> Result<Vec<LoraWeights>, StoreError> {
    let missing = |present: &Found<'_>, is_b: bool| StoreError::MissingTensor {
        path: path.to_path_buf(),
        present: present.stored_name.clone(),
        missing: module.tensor_name(layer, is_b),
    };
    let (a, b) = match (&pair.a, &pair.b) {
        (Some(a), Some(b)) => (a, b),
        (Some(a), None) => return Err(missing(a, true)),
        (None, Some(b)) => return Err(missing(b, false)),
        // Cannot happen (an entry is created together with one of its halves); answered with
        // an error rather than a panic all the same.
        (None, None) => return Err(StoreError::EmptyAdapter { path: path.to_path_buf() }),
    };
    let resolved = resolver.resolve(&module.module_path(layer));
    let (out_f, in_f) = module.shape(base);
    let shape_err = |t: &Found<'_>, expected: Vec<usize>, reason: String| StoreError::TensorShape {
        path: path.to_path_buf(),
        tensor: t.stored_name.clone(),
        expected,
        actual: t.view.shape().to_vec(),
        reason,
    };
    let a_shape = a.view.shape();
    if a_shape.len() != 2 || a_shape[1] != in_f {
        let reason = format!("lora_A is [rank, in_features] and {module} has in_features={in_f}");
        return Err(shape_err(a, vec![resolved.rank, in_f], reason));
    }
    let b_shape = b.view.shape();
    if b_shape.len() != 2 || b_shape[0] != out_f {
        let reason =
            format!("lora_B is [out_features, rank] and {module} has out_features={out_f}");
        return Err(shape_err(b, vec![out_f, resolved.rank], reason));
    }
    let rank = a_shape[0];
    if b_shape[1] != rank {
        let reason = format!("lora_B's rank must equal lora_A's ({rank})");
        return Err(shape_err(b, vec![out_f, rank], reason));
    }
    if rank != resolved.rank {
        return Err(StoreError::RankMismatch {
            path: path.to_path_buf(),
            tensor: a.stored_name.clone(),
            expected: resolved.rank,
            actual: rank,
            source_field: resolved.rank_source,
        });
    }
    let (a, b) = (to_f32(path, a)?, to_f32(path, b)?);
    Ok(module
        .split_b(base, &b, rank)
        .into_iter()
        .map(|(m, b)| LoraWeights {
            layer,
            module: m,
            rank,
            scale: resolved.scale,
            a: a.clone(),
            b: b.to_vec(),
        })
        .collect())
}

/// Logs (does not fail) when the config targets modules that have no tensors: PEFT loads such an
/// adapter too, leaving those modules' `lora_B` at its zero init, i.e. unadapted.
fn warn_missing_targets(
    parsed: &ParsedConfig,
    base: &BaseShape,
    pairs: &BTreeMap<(usize, Site), Pair<'_>>,
    path: &Path,
) {
    if !parsed.targets_specified() {
        return;
    }
    // What the tensors adapt, fused pairs counted as their parts. (Fused sites are not looked
    // for: whether a base has them is not known here.)
    let covered: BTreeSet<(usize, TargetModule)> = pairs
        .keys()
        .flat_map(|&(layer, site)| site.parts().iter().map(move |&m| (layer, m)))
        .collect();
    let missing: Vec<String> = (0..base.num_layers)
        .flat_map(|layer| TargetModule::ALL.map(|m| (layer, m)))
        .filter(|&(layer, m)| {
            !covered.contains(&(layer, m))
                && parsed.untargeted_reason(layer, &m.module_path(layer)).is_none()
        })
        .map(|(layer, m)| m.module_path(layer))
        .collect();
    if let Some(first) = missing.first() {
        tracing::warn!(
            weights = %path.display(),
            count = missing.len(),
            first = %first,
            "config targets modules that have no LoRA tensors; they stay unadapted"
        );
    }
}

/// Splits a PEFT tensor name into `(layer, module, is_b)`; the error explains the refusal.
fn parse_key(key: &str) -> Result<(usize, Site, bool), String> {
    let special = [
        ("lora_magnitude_vector", "DoRA magnitude vectors (`use_dora`) are not supported"),
        ("lora_embedding_", "LoRA on embeddings is not supported"),
        ("modules_to_save", "`modules_to_save` copies are not supported"),
        ("original_module", "`modules_to_save` copies are not supported"),
        ("trainable_tokens", "`trainable_token_indices` is not supported"),
    ];
    for (needle, why) in special {
        if key.contains(needle) {
            return Err(why.to_owned());
        }
    }
    if key.contains("lora_B") && key.ends_with(".bias") {
        return Err("LoRA biases (`lora_bias`) are not supported".to_owned());
    }
    let generic = || {
        format!(
            "not a LoRA weight of a llama projection (expected \
             {KEY_PREFIX}N.{{self_attn|mlp}}.<proj>.lora_{{A|B}}[.<adapter>].weight)"
        )
    };
    let rest = key.strip_prefix(KEY_PREFIX).ok_or_else(generic)?;
    let parts: Vec<&str> = rest.split('.').collect();
    let (layer, parent, proj, ab) = match parts.as_slice() {
        [layer, parent, proj, ab, "weight"] | [layer, parent, proj, ab, _, "weight"] => {
            (*layer, *parent, *proj, *ab)
        }
        _ => return Err(generic()),
    };
    // Canonical decimal only, so "01" and "1" cannot both name layer 1.
    let canonical = !layer.is_empty()
        && layer.bytes().all(|b| b.is_ascii_digit())
        && (layer == "0" || !layer.starts_with('0'));
    let layer: usize = match layer.parse() {
        Ok(l) if canonical => l,
        _ => return Err(format!("layer index `{layer}` is not a decimal number")),
    };
    let module = Site::from_peft_name(proj).ok_or_else(|| {
        format!(
            "`{proj}` is not one of the seven llama projections (q/k/v/o/gate/up/down_proj) \
             or Phi-3's fused qkv_proj / gate_up_proj"
        )
    })?;
    if parent != module.parent() {
        return Err(format!("`{proj}` lives under `{}`, not `{parent}`", module.parent()));
    }
    let is_b = match ab {
        "lora_A" => false,
        "lora_B" => true,
        _ => return Err(generic()),
    };
    Ok((layer, module, is_b))
}

/// Converts a tensor to f32 and refuses NaN/infinity, which would poison every request using it.
fn to_f32(path: &Path, t: &Found<'_>) -> Result<Vec<f32>, StoreError> {
    let data = t.view.data();
    let values: Vec<f32> = match t.view.dtype() {
        Dtype::F32 => {
            data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
        }
        Dtype::F16 => {
            data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
        }
        Dtype::BF16 => {
            data.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
        }
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        other => {
            return Err(StoreError::TensorDtype {
                path: path.to_path_buf(),
                tensor: t.stored_name.clone(),
                dtype: format!("{other:?}"),
            });
        }
    };
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        return Err(StoreError::NonFinite {
            path: path.to_path_buf(),
            tensor: t.stored_name.clone(),
            index,
        });
    }
    Ok(values)
}

/// Writes `adapter` as a PEFT adapter directory (created if missing): `adapter_config.json`
/// exactly as PEFT 0.20 writes it for the equivalent `LoraConfig` (every key, sorted, two-space
/// indent) and `adapter_model.safetensors` with PEFT's canonical tensor names and
/// `{"format": "pt"}` metadata, so PEFT, vLLM and lorad itself can load it.
///
/// The adapter is checked first (pairs consistent, config reproducing every pair's rank and
/// scale, values finite and representable in `dtype`), so whatever is written reads back. Each
/// file is replaced atomically.
pub fn write_peft_dir(dir: &Path, adapter: &Adapter, dtype: TensorDtype) -> Result<(), StoreError> {
    check_writable(adapter)?;
    let mut tensors: Vec<(String, Vec<usize>, &[f32])> =
        Vec::with_capacity(adapter.weights.len() * 2);
    for w in &adapter.weights {
        let in_f = w.a.len() / w.rank;
        let out_f = w.b.len() / w.rank;
        tensors.push((w.module.tensor_name(w.layer, false), vec![w.rank, in_f], &w.a));
        tensors.push((w.module.tensor_name(w.layer, true), vec![out_f, w.rank], &w.b));
    }
    write_files(dir, &adapter.name, &to_peft_json(&adapter.config), &tensors, dtype)
}

/// Writes a PEFT directory: `config` as `adapter_config.json` and `tensors` (name, shape,
/// row-major values) in `dtype` as `adapter_model.safetensors` with `{"format": "pt"}`
/// metadata, each file replaced atomically. `name` names the adapter in errors.
pub(crate) fn write_files(
    dir: &Path,
    name: &str,
    config: &[u8],
    tensors: &[(String, Vec<usize>, &[f32])],
    dtype: TensorDtype,
) -> Result<(), StoreError> {
    let bad = |reason: String| StoreError::InvalidAdapter { name: name.to_owned(), reason };
    let mut encoded: Vec<(&str, &[usize], Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (tensor, shape, values) in tensors {
        let bytes = encode(values, dtype).ok_or_else(|| {
            bad(format!("tensor `{tensor}` has a value {dtype:?} cannot represent"))
        })?;
        encoded.push((tensor, shape, bytes));
    }
    let st_dtype = match dtype {
        TensorDtype::F32 => Dtype::F32,
        TensorDtype::F16 => Dtype::F16,
        TensorDtype::BF16 => Dtype::BF16,
    };
    let mut views = Vec::with_capacity(encoded.len());
    for (tensor, shape, bytes) in &encoded {
        let view = TensorView::new(st_dtype, shape.to_vec(), bytes)
            .map_err(|e| bad(format!("tensor `{tensor}`: {e}")))?;
        views.push((*tensor, view));
    }
    let metadata = HashMap::from([("format".to_owned(), "pt".to_owned())]);
    let weights = safetensors::serialize(views, Some(metadata))
        .map_err(|e| bad(format!("serialising tensors: {e}")))?;

    std::fs::create_dir_all(dir).map_err(|e| StoreError::io("creating", dir, e))?;
    fsutil::write_atomic(&dir.join(CONFIG_FILE), config)?;
    fsutil::write_atomic(&dir.join(WEIGHTS_FILE), &weights)
}

/// Refuses an in-memory adapter whose files would not read back as the same adapter.
pub(crate) fn check_writable(adapter: &Adapter) -> Result<(), StoreError> {
    let bad = |reason: String| StoreError::InvalidAdapter { name: adapter.name.clone(), reason };
    if adapter.weights.is_empty() {
        return Err(bad("it has no weights".into()));
    }
    let resolver = Resolver::new(&adapter.config)
        .map_err(|(field, reason)| bad(format!("`{field}`: {reason}")))?;
    let mut seen = BTreeSet::new();
    for w in &adapter.weights {
        let what = w.module.module_path(w.layer);
        if !seen.insert((w.layer, w.module)) {
            return Err(bad(format!("{what} appears twice")));
        }
        if w.rank == 0
            || w.a.is_empty()
            || w.b.is_empty()
            || w.a.len() % w.rank != 0
            || w.b.len() % w.rank != 0
        {
            return Err(bad(format!(
                "{what}: rank {} does not divide a.len()={} and b.len()={}",
                w.rank,
                w.a.len(),
                w.b.len()
            )));
        }
        if !adapter.config.target_modules.contains(&w.module) {
            return Err(bad(format!("{what}: `{}` is not in config.target_modules", w.module)));
        }
        if let Some(layers) = &adapter.config.layers_to_transform
            && !layers.contains(&w.layer)
        {
            return Err(bad(format!("{what}: layer not in config.layers_to_transform")));
        }
        let r = resolver.resolve(&w.module.module_path(w.layer));
        let tolerance = 1e-6 * r.scale.abs().max(1.0);
        if r.rank != w.rank || (r.scale - w.scale).abs() > tolerance {
            return Err(bad(format!(
                "{what}: the config gives rank {} and scale {} but the weights have rank {} and scale {}",
                r.rank, r.scale, w.rank, w.scale
            )));
        }
    }
    Ok(())
}

/// Little-endian bytes of `values` in `dtype`; `None` if a value is or becomes non-finite.
fn encode(values: &[f32], dtype: TensorDtype) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(values.len() * 4);
    for &v in values {
        v.is_finite().then_some(())?;
        match dtype {
            TensorDtype::F32 => out.extend(v.to_le_bytes()),
            TensorDtype::F16 => {
                let h = half::f16::from_f32(v);
                h.is_finite().then_some(())?;
                out.extend(h.to_le_bytes());
            }
            TensorDtype::BF16 => {
                let h = half::bf16::from_f32(v);
                h.is_finite().then_some(())?;
                out.extend(h.to_le_bytes());
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::parse_key;
    use crate::adapter::TargetModule;
    use crate::site::Site;

    #[test]
    fn keys_with_and_without_adapter_infix() {
        let k = "base_model.model.model.layers.12.mlp.down_proj.lora_B.weight";
        assert_eq!(parse_key(k), Ok((12, Site::One(TargetModule::DownProj), true)));
        let k = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight";
        assert_eq!(parse_key(k), Ok((0, Site::One(TargetModule::QProj), false)));
        let k = "base_model.model.model.layers.3.mlp.gate_up_proj.lora_B.weight";
        assert_eq!(parse_key(k), Ok((3, Site::GateUp, true)));
    }

    #[test]
    fn bad_keys_say_why() {
        let cases = [
            ("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector", "use_dora"),
            ("base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias", "lora_bias"),
            ("base_model.model.model.embed_tokens.lora_embedding_A", "embeddings"),
            ("base_model.model.lm_head.weight", "expected"),
            ("base_model.model.model.layers.01.self_attn.q_proj.lora_A.weight", "decimal"),
            ("base_model.model.model.layers.0.mlp.q_proj.lora_A.weight", "self_attn"),
            ("base_model.model.model.layers.0.self_attn.qkvo_proj.lora_A.weight", "seven"),
            ("base_model.model.model.layers.0.mlp.qkv_proj.lora_A.weight", "self_attn"),
            ("base_model.model.model.layers.0.self_attn.q_proj.lora_C.weight", "expected"),
        ];
        for (key, needle) in cases {
            let err = parse_key(key).expect_err(key);
            assert!(err.contains(needle), "{key}: {err}");
        }
    }
}
