//! Writing `adapter_config.json` the way PEFT does.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::PeftConfig;

/// PEFT release whose `adapter_config.json` layout [`crate::write_peft_dir`] reproduces.
pub(crate) const PEFT_FORMAT_VERSION: &str = "0.20.0";

/// `adapter_config.json` bytes as PEFT [`PEFT_FORMAT_VERSION`] writes them for this config:
/// every `LoraConfig` field, sorted keys, two-space indent, no trailing newline.
pub(crate) fn to_peft_json(c: &PeftConfig) -> Vec<u8> {
    let names: Vec<&str> = c.target_modules.iter().map(|t| t.peft_name()).collect();
    to_peft_json_naming(c, &names)
}

/// [`to_peft_json`] with `target_modules` spelled out by name (modules that are not one of the
/// seven projections: Phi-3's fused `qkv_proj` and `gate_up_proj`); `c.target_modules` is
/// ignored.
pub(crate) fn to_peft_json_naming(c: &PeftConfig, target_modules: &[&str]) -> Vec<u8> {
    // Built as a BTreeMap, then each object inserted in sorted order, so the output is sorted even
    // if another crate turns on serde_json's `preserve_order` feature.
    let mut m: BTreeMap<&str, Value> = BTreeMap::new();
    let null = Value::Null;
    for k in [
        "alora_invocation_tokens",
        "arrow_config",
        "auto_mapping",
        "corda_config",
        "eva_config",
        "exclude_modules",
        "layer_replication",
        "layers_pattern",
        "lora_ga_config",
        "megatron_config",
        "modules_to_save",
        "monteclora_config",
        "revision",
        "target_parameters",
        "trainable_token_indices",
        "use_bdlora",
        "velora_config",
    ] {
        m.insert(k, null.clone());
    }
    for k in ["ensure_weight_tying", "lora_bias", "use_dora", "use_qalora"] {
        m.insert(k, Value::Bool(false));
    }
    m.insert(
        "alpha_pattern",
        sorted_object(c.alpha_pattern.iter().map(|(k, &v)| (k, py_number(v)))),
    );
    m.insert(
        "base_model_name_or_path",
        c.base_model_name_or_path.clone().map_or(null.clone(), Value::String),
    );
    m.insert("bias", "none".into());
    m.insert("fan_in_fan_out", c.fan_in_fan_out.into());
    // save_pretrained always flips this to true in the file.
    m.insert("inference_mode", true.into());
    m.insert("init_lora_weights", true.into());
    m.insert(
        "layers_to_transform",
        c.layers_to_transform
            .as_ref()
            .map_or(null.clone(), |l| l.iter().map(|&i| Value::from(i)).collect()),
    );
    m.insert("loftq_config", Value::Object(Map::new()));
    m.insert("lora_alpha", py_number(c.lora_alpha));
    m.insert("lora_dropout", c.lora_dropout.into());
    m.insert("megatron_core", "megatron.core".into());
    m.insert("peft_type", "LORA".into());
    m.insert("peft_version", PEFT_FORMAT_VERSION.into());
    m.insert("qalora_group_size", 16.into());
    m.insert("r", c.r.into());
    m.insert(
        "rank_pattern",
        sorted_object(c.rank_pattern.iter().map(|(k, &v)| (k, Value::from(v)))),
    );
    m.insert("target_modules", target_modules.iter().map(|&t| Value::from(t)).collect());
    m.insert("task_type", c.task_type.clone().map_or(null, Value::String));
    m.insert("use_rslora", c.use_rslora.into());
    // Serialising a map of JSON values cannot fail.
    serde_json::to_vec_pretty(&m).unwrap_or_default()
}

fn sorted_object<'k>(items: impl Iterator<Item = (&'k String, Value)>) -> Value {
    let mut obj = Map::new();
    for (k, v) in items {
        obj.insert(k.clone(), v);
    }
    Value::Object(obj)
}

/// Integral values print as Python ints (`16`), as PEFT writes a `lora_alpha=16` it was given.
fn py_number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 { Value::from(v as i64) } else { Value::from(v) }
}
