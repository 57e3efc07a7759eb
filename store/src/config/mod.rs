//! `adapter_config.json`: parsing PEFT's `LoraConfig`, deciding which of its keys lorad can honour,
//! resolving per-module rank and scale, and writing the file back the way PEFT does.
//!
//! Key policy: every key current PEFT (up to 0.20) writes for a `LoraConfig` is in `parse`'s
//! `KNOWN_KEYS` table and is either honoured, ignored because it cannot change inference on the original base model,
//! or must hold its default because it enables a feature lorad does not implement. Keys lorad has
//! never heard of (a newer PEFT) are accepted only while their value is default-like (`null`,
//! `false`, `""`, `[]`, `{}`): new PEFT features are off by default, and a feature that is on may
//! change the math, so serving such an adapter silently would be wrong.
//!
//! The parser lives in `parse` (with the key table), the writer in `write`.

mod parse;
mod write;

use std::collections::BTreeMap;

use crate::adapter::TargetModule;
use crate::pattern::Pattern;

pub(crate) use parse::{ParsedConfig, parse_config};
pub(crate) use write::{to_peft_json, to_peft_json_naming};

/// A LoRA adapter's configuration, normalised.
///
/// `target_modules` lists the projections the adapter actually adapts (derived from its tensors
/// when read, in [`TargetModule::ALL`] order); the config file's own form (list, `"all-linear"`,
/// regex) is checked against the tensors and not kept. `fan_in_fan_out` is always `false` after
/// reading: PEFT resets it for `nn.Linear` layers (with a warning), and so does lorad.
#[derive(Debug, Clone, PartialEq)]
pub struct PeftConfig {
    /// Default LoRA rank.
    pub r: usize,
    /// Default LoRA alpha.
    pub lora_alpha: f64,
    /// The projections the adapter adapts.
    pub target_modules: Vec<TargetModule>,
    /// Rank-stabilised scaling: `alpha / sqrt(r)` instead of `alpha / r`.
    pub use_rslora: bool,
    /// PEFT's transposed-weight flag; `false` for llama `nn.Linear` layers (see type docs).
    pub fan_in_fan_out: bool,
    /// Per-module rank overrides. A key applies to a module whose path (e.g.
    /// `model.layers.3.self_attn.q_proj`) it matches entirely or as a dot-separated suffix, as a
    /// Python regex (PEFT's `get_pattern_key`); the first matching key in sorted order wins,
    /// which is PEFT's order for files it wrote (`json.dumps(..., sort_keys=True)`).
    pub rank_pattern: BTreeMap<String, usize>,
    /// Per-module alpha overrides, matched like `rank_pattern`.
    pub alpha_pattern: BTreeMap<String, f64>,
    /// The base model the adapter was trained on, if recorded.
    pub base_model_name_or_path: Option<String>,
    /// Only these decoder layers are adapted (`None`: all layers).
    pub layers_to_transform: Option<Vec<usize>>,
    /// PEFT task type (`"CAUSAL_LM"`), informational.
    pub task_type: Option<String>,
    /// Training-time dropout; kept only so a written config round-trips.
    pub lora_dropout: f64,
}

impl Default for PeftConfig {
    /// PEFT's `LoraConfig()` defaults (no targets).
    fn default() -> Self {
        PeftConfig {
            r: 8,
            lora_alpha: 8.0,
            target_modules: Vec::new(),
            use_rslora: false,
            fan_in_fan_out: false,
            rank_pattern: BTreeMap::new(),
            alpha_pattern: BTreeMap::new(),
            base_model_name_or_path: None,
            layers_to_transform: None,
            task_type: None,
            lora_dropout: 0.0,
        }
    }
}

/// Per-module rank and scale, with the patterns compiled once.
#[derive(Debug)]
pub(crate) struct Resolver<'a> {
    config: &'a PeftConfig,
    rank: Vec<(&'a str, Pattern, usize)>,
    alpha: Vec<(&'a str, Pattern, f64)>,
}

/// A module's resolved rank (with the field it came from, for errors) and scale.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub(crate) rank: usize,
    pub(crate) rank_source: String,
    pub(crate) scale: f32,
}

impl<'a> Resolver<'a> {
    /// Compiles the patterns; the error is `(field, reason)`.
    pub(crate) fn new(config: &'a PeftConfig) -> Result<Self, (&'static str, String)> {
        let compile = |field: &'static str, key: &str| {
            Pattern::parse_suffix_key(key)
                .map_err(|e| (field, format!("key `{key}` is not a pattern lorad supports: {e}")))
        };
        let mut rank = Vec::new();
        for (k, &v) in &config.rank_pattern {
            rank.push((k.as_str(), compile("rank_pattern", k)?, v));
        }
        let mut alpha = Vec::new();
        for (k, &v) in &config.alpha_pattern {
            alpha.push((k.as_str(), compile("alpha_pattern", k)?, v));
        }
        Ok(Resolver { config, rank, alpha })
    }

    /// PEFT's `LoraModel._create_and_replace`: first matching pattern key, else the defaults.
    /// `path` is the module's (`model.layers.3.self_attn.q_proj`).
    pub(crate) fn resolve(&self, path: &str) -> Resolved {
        let path = path.to_owned();
        let (rank, rank_source) = match self.rank.iter().find(|(_, p, _)| p.full_match(&path)) {
            Some((k, _, r)) => (*r, format!("rank_pattern[\"{k}\"]")),
            None => (self.config.r, "r".to_owned()),
        };
        let alpha = match self.alpha.iter().find(|(_, p, _)| p.full_match(&path)) {
            Some((_, _, a)) => *a,
            None => self.config.lora_alpha,
        };
        Resolved { rank, rank_source, scale: scale_for(alpha, rank, self.config.use_rslora) }
    }
}

/// PEFT's `scaling`: `alpha / r`, or `alpha / sqrt(r)` with rsLoRA. Computed in f64 like Python's
/// float division, then narrowed once.
pub(crate) fn scale_for(alpha: f64, rank: usize, use_rslora: bool) -> f32 {
    let r = rank as f64;
    (if use_rslora { alpha / r.sqrt() } else { alpha / r }) as f32
}
