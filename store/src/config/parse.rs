//! Parsing `adapter_config.json` and the key policy (see the parent module docs).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::{PeftConfig, Resolver};
use crate::error::{StoreError, short_json};
use crate::pattern::Pattern;

/// What lorad does with a known config key.
#[derive(Debug, Clone, Copy)]
enum Policy {
    /// Parsed and honoured (see [`parse_config`]).
    Used,
    /// Cannot change inference on the original base model (informational, training-only or
    /// init-only settings); any value is accepted.
    Ignored,
    /// Turns on a feature lorad does not implement; must be default-like. The text says why.
    MustBeDefault(&'static str),
}

const VARIANT: &str = "it is a PEFT LoRA variant whose forward pass lorad does not implement";

/// Every key PEFT's `LoraConfig.to_dict()` produces (0.13 .. 0.20 and main), with lorad's policy.
const KNOWN_KEYS: &[(&str, Policy)] = &[
    ("alpha_pattern", Policy::Used),
    ("base_model_name_or_path", Policy::Used),
    ("bias", Policy::Used),
    ("exclude_modules", Policy::Used),
    ("fan_in_fan_out", Policy::Used),
    ("init_lora_weights", Policy::Used),
    ("layers_pattern", Policy::Used),
    ("layers_to_transform", Policy::Used),
    ("lora_alpha", Policy::Used),
    ("lora_dropout", Policy::Used),
    ("peft_type", Policy::Used),
    ("r", Policy::Used),
    ("rank_pattern", Policy::Used),
    ("target_modules", Policy::Used),
    ("task_type", Policy::Used),
    ("use_rslora", Policy::Used),
    ("auto_mapping", Policy::Ignored),
    ("inference_mode", Policy::Ignored),
    ("peft_version", Policy::Ignored),
    ("revision", Policy::Ignored),
    // Only meaningful together with `megatron_config`, which must be null.
    ("megatron_core", Policy::Ignored),
    // Only meaningful together with `use_qalora`, which must be false.
    ("qalora_group_size", Policy::Ignored),
    // Runtime-only (PEFT drops it on save).
    ("runtime_config", Policy::Ignored),
    // Initialisation settings: used once before training; the methods that also rewrite the
    // base weights are refused through `init_lora_weights`.
    ("corda_config", Policy::Ignored),
    ("eva_config", Policy::Ignored),
    ("loftq_config", Policy::Ignored),
    ("lora_ga_config", Policy::Ignored),
    // Only affects embeddings / modules_to_save, which lorad refuses anyway.
    ("ensure_weight_tying", Policy::Ignored),
    (
        "alora_invocation_tokens",
        Policy::MustBeDefault("activated LoRA adapts only tokens after an invocation sequence"),
    ),
    ("arrow_config", Policy::MustBeDefault(VARIANT)),
    ("kasa_config", Policy::MustBeDefault(VARIANT)),
    ("layer_replication", Policy::MustBeDefault("it duplicates base-model layers")),
    ("lora_bias", Policy::MustBeDefault("lorad applies no bias on lora_B")),
    (
        "megatron_config",
        Policy::MustBeDefault("Megatron parallel layers are not llama nn.Linear layers"),
    ),
    (
        "modules_to_save",
        Policy::MustBeDefault("the adapter carries full copies of base-model modules"),
    ),
    ("monteclora_config", Policy::MustBeDefault(VARIANT)),
    (
        "target_parameters",
        Policy::MustBeDefault("LoRA on raw parameters (e.g. MoE experts) is not supported"),
    ),
    ("trainable_token_indices", Policy::MustBeDefault("the adapter trains token embeddings")),
    ("use_bdlora", Policy::MustBeDefault(VARIANT)),
    (
        "use_dora",
        Policy::MustBeDefault(
            "DoRA's magnitude vector and weight normalisation are not implemented",
        ),
    ),
    ("use_qalora", Policy::MustBeDefault("QA-LoRA pools the input before lora_A")),
    ("velora_config", Policy::MustBeDefault(VARIANT)),
];

/// How the config selects modules (`target_modules` / `exclude_modules`).
#[derive(Debug)]
pub(crate) enum ModuleSpec {
    /// Key absent or null: PEFT falls back to its per-architecture list; the tensors decide.
    Unspecified,
    /// `"all-linear"`: every linear layer but the output head, i.e. all seven projections.
    AllLinear,
    /// A list: a module matches an entry equal to its path or to a dot-separated suffix of it.
    List(Vec<String>),
    /// A string: a Python regex that must match the whole module path.
    Regex(Pattern),
}

/// A parsed config plus what is needed to validate tensors against it.
#[derive(Debug)]
pub(crate) struct ParsedConfig {
    /// The public, normalised config (`target_modules` still empty: the tensors fill it).
    pub(crate) config: PeftConfig,
    targets: ModuleSpec,
    exclude: Option<ModuleSpec>,
}

impl ParsedConfig {
    /// Whether the config names its targets (if not, every module is fair game).
    pub(crate) fn targets_specified(&self) -> bool {
        !matches!(self.targets, ModuleSpec::Unspecified)
    }

    /// `None` when PEFT would put a LoRA on `module` of `layer`, else why not.
    /// `path` is the module's (`model.layers.3.self_attn.q_proj`).
    pub(crate) fn untargeted_reason(&self, layer: usize, path: &str) -> Option<String> {
        let path = path.to_owned();
        if let Some(exclude) = &self.exclude
            && spec_matches(exclude, &path)
        {
            return Some("excluded by `exclude_modules`".into());
        }
        // Mirrors PEFT's check_target_module_exists: the layer filter applies to list-form
        // targets (the null and "all-linear" forms become lists in PEFT) but not to a regex, and
        // an entry naming the exact module path bypasses it.
        let found = match &self.targets {
            ModuleSpec::Regex(p) => {
                return (!p.full_match(&path))
                    .then(|| "not matched by the `target_modules` regex".into());
            }
            ModuleSpec::List(list) if list.contains(&path) => return None,
            ModuleSpec::List(list) => list.iter().any(|t| path.ends_with(&format!(".{t}"))),
            ModuleSpec::Unspecified | ModuleSpec::AllLinear => true,
        };
        if !found {
            return Some("not listed in `target_modules`".into());
        }
        match &self.config.layers_to_transform {
            Some(layers) if !layers.contains(&layer) => {
                Some(format!("layer {layer} is not in `layers_to_transform`"))
            }
            _ => None,
        }
    }
}

fn spec_matches(spec: &ModuleSpec, path: &str) -> bool {
    match spec {
        ModuleSpec::Unspecified => false,
        ModuleSpec::AllLinear => true,
        ModuleSpec::List(list) => {
            list.iter().any(|t| t == path || path.ends_with(&format!(".{t}")))
        }
        ModuleSpec::Regex(p) => p.full_match(path),
    }
}

/// `null`, `false`, `""`, `[]`, `{}`: the values PEFT uses for "feature off".
fn is_default_like(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(_) => false,
    }
}

/// Parses and vets `adapter_config.json` (`path` is only used in errors).
pub(crate) fn parse_config(bytes: &[u8], path: &Path) -> Result<ParsedConfig, StoreError> {
    let root: Value = serde_json::from_slice(bytes)
        .map_err(|source| StoreError::InvalidJson { path: path.to_path_buf(), source })?;
    let Value::Object(obj) = root else {
        return Err(invalid(path, "(root)", "expected a JSON object"));
    };
    for (key, value) in &obj {
        let policy = KNOWN_KEYS.iter().find(|(k, _)| k == key).map(|&(_, p)| p);
        match policy {
            Some(Policy::Used | Policy::Ignored) => {}
            Some(Policy::MustBeDefault(why)) if !is_default_like(value) => {
                return Err(unsupported(path, key, value, why));
            }
            Some(Policy::MustBeDefault(_)) => {}
            None if !is_default_like(value) => {
                return Err(StoreError::UnknownConfigKey {
                    path: path.to_path_buf(),
                    key: key.clone(),
                    value: short_json(value),
                });
            }
            None => {}
        }
    }
    let get = |k: &str| obj.get(k).filter(|v| !v.is_null());

    if let Some(v) = get("peft_type")
        && v.as_str() != Some("LORA")
    {
        return Err(unsupported(path, "peft_type", v, "lorad serves LoRA adapters only"));
    }
    if let Some(v) = get("bias")
        && v.as_str() != Some("none")
    {
        return Err(unsupported(path, "bias", v, "lorad applies no trained bias terms"));
    }
    if let Some(v) = get("init_lora_weights") {
        check_init(path, v)?;
    }

    let r = match get("r") {
        None => 8,
        Some(v) => positive_int(v).ok_or_else(|| invalid(path, "r", "expected an integer >= 1"))?,
    };
    let lora_alpha = match get("lora_alpha") {
        None => 8.0,
        Some(v) => finite(v).ok_or_else(|| invalid(path, "lora_alpha", "expected a number"))?,
    };
    let use_rslora = bool_field(path, &obj, "use_rslora")?;
    if bool_field(path, &obj, "fan_in_fan_out")? {
        // PEFT does exactly this for nn.Linear targets (LoraModel._create_new_module).
        tracing::warn!(
            config = %path.display(),
            "fan_in_fan_out is set to True but the target modules are nn.Linear; setting it to False as PEFT does"
        );
    }
    let lora_dropout = match get("lora_dropout") {
        None => 0.0,
        Some(v) => finite(v).ok_or_else(|| invalid(path, "lora_dropout", "expected a number"))?,
    };

    let mut rank_pattern = BTreeMap::new();
    for (k, v) in object_field(path, &obj, "rank_pattern")? {
        let rank = positive_int(v).ok_or_else(|| {
            invalid(path, "rank_pattern", format!("`{k}`: expected an integer >= 1"))
        })?;
        rank_pattern.insert(k.clone(), rank);
    }
    let mut alpha_pattern = BTreeMap::new();
    for (k, v) in object_field(path, &obj, "alpha_pattern")? {
        let alpha = finite(v)
            .ok_or_else(|| invalid(path, "alpha_pattern", format!("`{k}`: expected a number")))?;
        alpha_pattern.insert(k.clone(), alpha);
    }

    let targets = match get("target_modules") {
        None => ModuleSpec::Unspecified,
        Some(v) => target_spec(path, v)?,
    };
    let exclude = match get("exclude_modules") {
        Some(v) if !is_default_like(v) => Some(module_spec(path, "exclude_modules", v)?),
        _ => None,
    };

    let layers_to_transform = match get("layers_to_transform") {
        None => None,
        Some(v) => {
            let items: Vec<&Value> = match v {
                Value::Array(a) => a.iter().collect(),
                single => vec![single],
            };
            let mut layers = Vec::with_capacity(items.len());
            for item in items {
                let layer =
                    item.as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| {
                        invalid(
                            path,
                            "layers_to_transform",
                            "expected a layer index or a list of them",
                        )
                    })?;
                layers.push(layer);
            }
            // PEFT treats an empty list as "no layer filter".
            (!layers.is_empty()).then_some(layers)
        }
    };
    if layers_to_transform.is_some() && matches!(targets, ModuleSpec::Regex(_)) {
        return Err(invalid(
            path,
            "layers_to_transform",
            "cannot be used when `target_modules` is a regex string (PEFT refuses this too)",
        ));
    }
    check_layers_pattern(path, get("layers_pattern"), layers_to_transform.is_some())?;

    let config = PeftConfig {
        r,
        lora_alpha,
        target_modules: Vec::new(),
        use_rslora,
        fan_in_fan_out: false,
        rank_pattern,
        alpha_pattern,
        base_model_name_or_path: opt_string(path, &obj, "base_model_name_or_path")?,
        layers_to_transform,
        task_type: opt_string(path, &obj, "task_type")?,
        lora_dropout,
    };
    // Compile the patterns now so a bad one fails the import, not a later load.
    Resolver::new(&config).map_err(|(field, reason)| invalid(path, field, reason))?;
    Ok(ParsedConfig { config, targets, exclude })
}

/// Accepts the initialisations that leave the base model untouched.
fn check_init(path: &Path, v: &Value) -> Result<(), StoreError> {
    const MUTATES_BASE: &str = "this initialisation rewrites the base weights, so the adapter only \
        works on that modified base; re-save it with PEFT's \
        `path_initial_model_for_weight_conversion`, which produces a plain LoRA";
    match v {
        Value::Bool(_) => Ok(()),
        Value::String(s) => match s.as_str() {
            "gaussian" | "eva" | "orthogonal" => Ok(()),
            "olora" | "corda" | "lora_ga" => {
                Err(unsupported(path, "init_lora_weights", v, MUTATES_BASE))
            }
            s if s.starts_with("pissa") => {
                Err(unsupported(path, "init_lora_weights", v, MUTATES_BASE))
            }
            "loftq" => Err(unsupported(
                path,
                "init_lora_weights",
                v,
                "LoftQ adapters are trained against a quantised copy of the base weights",
            )),
            "mica" => Err(unsupported(path, "init_lora_weights", v, VARIANT)),
            _ => Err(unsupported(path, "init_lora_weights", v, "unknown initialisation")),
        },
        _ => Err(invalid(path, "init_lora_weights", "expected a boolean or a string")),
    }
}

/// lorad's module paths are `model.layers.N...`; a pattern must accept `layers` to fit them.
fn check_layers_pattern(
    path: &Path,
    v: Option<&Value>,
    has_layers: bool,
) -> Result<(), StoreError> {
    let Some(v) = v.filter(|v| !is_default_like(v)) else { return Ok(()) };
    if !has_layers {
        return Err(invalid(
            path,
            "layers_pattern",
            "requires `layers_to_transform` (PEFT refuses this too)",
        ));
    }
    let patterns: Vec<&str> = match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let fits = patterns.iter().any(|p| Pattern::parse(p).is_ok_and(|p| p.full_match("layers")));
    if fits {
        Ok(())
    } else {
        Err(unsupported(
            path,
            "layers_pattern",
            v,
            "lorad's llama models keep their decoder layers at `model.layers.N`",
        ))
    }
}

fn target_spec(path: &Path, v: &Value) -> Result<ModuleSpec, StoreError> {
    let spec = module_spec(path, "target_modules", v)?;
    match &spec {
        ModuleSpec::List(list) => {
            for entry in list {
                let last = entry.rsplit('.').next().unwrap_or(entry);
                if crate::site::Site::from_peft_name(last).is_none() {
                    return Err(unsupported(
                        path,
                        "target_modules",
                        v,
                        &format!(
                            "`{entry}` is not one of the seven llama projections \
                             (q/k/v/o/gate/up/down_proj), or Phi-3's fused qkv_proj / \
                             gate_up_proj, that lorad can adapt"
                        ),
                    ));
                }
            }
        }
        ModuleSpec::Regex(p) => {
            // The regex is matched against every module of the real model in PEFT; catch the
            // non-projection linear/embedding modules it could also have adapted.
            for other in ["model.embed_tokens", "lm_head"] {
                if p.full_match(other) {
                    return Err(unsupported(
                        path,
                        "target_modules",
                        v,
                        &format!("it also matches `{other}`, which lorad cannot adapt"),
                    ));
                }
            }
        }
        ModuleSpec::Unspecified | ModuleSpec::AllLinear => {}
    }
    Ok(spec)
}

fn module_spec(path: &Path, field: &str, v: &Value) -> Result<ModuleSpec, StoreError> {
    match v {
        Value::Null => Ok(ModuleSpec::Unspecified),
        // The shorthand exists for `target_modules` only; in `exclude_modules` it is a regex.
        Value::String(s) if field == "target_modules" && s.eq_ignore_ascii_case("all-linear") => {
            Ok(ModuleSpec::AllLinear)
        }
        Value::String(s) => Pattern::parse(s).map(ModuleSpec::Regex).map_err(|e| {
            unsupported(path, field, v, &format!("regex not supported by lorad: {e}"))
        }),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(ModuleSpec::List)
            .ok_or_else(|| invalid(path, field, "expected a string or a list of strings")),
        _ => Err(invalid(path, field, "expected a string or a list of strings")),
    }
}

fn positive_int(v: &Value) -> Option<usize> {
    v.as_u64().filter(|&n| n >= 1).and_then(|n| usize::try_from(n).ok())
}

fn finite(v: &Value) -> Option<f64> {
    v.as_f64().filter(|x| x.is_finite())
}

fn bool_field(path: &Path, obj: &Map<String, Value>, field: &str) -> Result<bool, StoreError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(invalid(path, field, "expected true or false")),
    }
}

fn object_field<'o>(
    path: &Path,
    obj: &'o Map<String, Value>,
    field: &str,
) -> Result<Vec<(&'o String, &'o Value)>, StoreError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(o)) => Ok(o.iter().collect()),
        Some(_) => Err(invalid(path, field, "expected an object")),
    }
}

fn opt_string(
    path: &Path,
    obj: &Map<String, Value>,
    field: &str,
) -> Result<Option<String>, StoreError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(path, field, "expected a string")),
    }
}

fn invalid(path: &Path, field: &str, reason: impl Into<String>) -> StoreError {
    StoreError::InvalidConfig {
        path: path.to_path_buf(),
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn unsupported(path: &Path, field: &str, value: &Value, reason: &str) -> StoreError {
    StoreError::Unsupported {
        path: path.to_path_buf(),
        field: field.to_owned(),
        value: short_json(value),
        reason: reason.to_owned(),
    }
}
