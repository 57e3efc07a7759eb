//! In-memory adapter types: which projections a LoRA can target, the base shape it must fit, and
//! the resolved f32 weights the engine consumes.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::PeftConfig;
use crate::error::StoreError;

/// The seven llama-family projections a LoRA may target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetModule {
    /// `self_attn.q_proj`
    QProj,
    /// `self_attn.k_proj`
    KProj,
    /// `self_attn.v_proj`
    VProj,
    /// `self_attn.o_proj`
    OProj,
    /// `mlp.gate_proj`
    GateProj,
    /// `mlp.up_proj`
    UpProj,
    /// `mlp.down_proj`
    DownProj,
}

impl TargetModule {
    /// All seven, in the canonical order used for sorting and [`TargetModule::index`].
    pub const ALL: [TargetModule; 7] = [
        TargetModule::QProj,
        TargetModule::KProj,
        TargetModule::VProj,
        TargetModule::OProj,
        TargetModule::GateProj,
        TargetModule::UpProj,
        TargetModule::DownProj,
    ];

    /// The module's name in PEFT/transformers (`"q_proj"`, ..., `"down_proj"`).
    pub fn peft_name(self) -> &'static str {
        match self {
            TargetModule::QProj => "q_proj",
            TargetModule::KProj => "k_proj",
            TargetModule::VProj => "v_proj",
            TargetModule::OProj => "o_proj",
            TargetModule::GateProj => "gate_proj",
            TargetModule::UpProj => "up_proj",
            TargetModule::DownProj => "down_proj",
        }
    }

    /// Inverse of [`TargetModule::peft_name`] (exact match).
    pub fn from_peft_name(s: &str) -> Option<Self> {
        TargetModule::ALL.into_iter().find(|m| m.peft_name() == s)
    }

    /// Position in [`TargetModule::ALL`] (0..7).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The decoder-layer submodule holding this projection (`"self_attn"` or `"mlp"`).
    pub(crate) fn parent(self) -> &'static str {
        match self {
            TargetModule::QProj
            | TargetModule::KProj
            | TargetModule::VProj
            | TargetModule::OProj => "self_attn",
            TargetModule::GateProj | TargetModule::UpProj | TargetModule::DownProj => "mlp",
        }
    }

    /// The module path PEFT matches patterns against, e.g. `model.layers.3.self_attn.q_proj`.
    pub(crate) fn module_path(self, layer: usize) -> String {
        format!("model.layers.{layer}.{}.{}", self.parent(), self.peft_name())
    }

    /// The canonical PEFT tensor name of this module's A (`is_b == false`) or B matrix.
    pub(crate) fn tensor_name(self, layer: usize, is_b: bool) -> String {
        let ab = if is_b { "lora_B" } else { "lora_A" };
        format!("base_model.model.{}.{ab}.weight", self.module_path(layer))
    }
}

impl fmt::Display for TargetModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.peft_name())
    }
}

/// Shapes of the base model an adapter must fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BaseShape {
    /// Number of decoder layers.
    pub num_layers: usize,
    /// Model (residual stream) width.
    pub hidden_size: usize,
    /// Query projection width: attention heads × head dim.
    pub q_dim: usize,
    /// Key/value projection width: kv heads × head dim.
    pub kv_dim: usize,
    /// MLP inner width.
    pub intermediate_size: usize,
}

impl BaseShape {
    /// `(out_features, in_features)` of projection `m`, i.e. the shape of its `nn.Linear` weight.
    pub fn shape(&self, m: TargetModule) -> (usize, usize) {
        match m {
            TargetModule::QProj => (self.q_dim, self.hidden_size),
            TargetModule::KProj | TargetModule::VProj => (self.kv_dim, self.hidden_size),
            TargetModule::OProj => (self.hidden_size, self.q_dim),
            TargetModule::GateProj | TargetModule::UpProj => {
                (self.intermediate_size, self.hidden_size)
            }
            TargetModule::DownProj => (self.hidden_size, self.intermediate_size),
        }
    }

    /// Refuses zero dimensions, which would make every shape check vacuous.
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        let dims = [
            ("num_layers", self.num_layers),
            ("hidden_size", self.hidden_size),
            ("q_dim", self.q_dim),
            ("kv_dim", self.kv_dim),
            ("intermediate_size", self.intermediate_size),
        ];
        for (name, v) in dims {
            if v == 0 {
                return Err(StoreError::InvalidBaseShape { reason: format!("{name} is 0") });
            }
        }
        Ok(())
    }
}

/// One LoRA pair for one projection of one layer, in f32, with its scale already resolved
/// (`alpha / r`, or `alpha / sqrt(r)` with rsLoRA; `rank_pattern`/`alpha_pattern` honoured).
///
/// The delta it adds to the projection's output is `scale * b @ (a @ x)`.
#[derive(Clone, PartialEq)]
pub struct LoraWeights {
    /// Decoder layer index.
    pub layer: usize,
    /// Which projection.
    pub module: TargetModule,
    /// LoRA rank `r` of this pair.
    pub rank: usize,
    /// Multiplier applied to `b @ a`.
    pub scale: f32,
    /// `[rank, in]` row-major: PEFT's `lora_A.weight`.
    pub a: Vec<f32>,
    /// `[out, rank]` row-major: PEFT's `lora_B.weight`.
    pub b: Vec<f32>,
}

// Hand-written so that logging an adapter prints sizes, not millions of floats.
impl fmt::Debug for LoraWeights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoraWeights")
            .field("layer", &self.layer)
            .field("module", &self.module)
            .field("rank", &self.rank)
            .field("scale", &self.scale)
            .field("a.len", &self.a.len())
            .field("b.len", &self.b.len())
            .finish()
    }
}

/// A parsed, validated adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct Adapter {
    /// The adapter's name (registry name, or whatever the caller chose).
    pub name: String,
    /// Its configuration, normalised (see [`PeftConfig`]).
    pub config: PeftConfig,
    /// All LoRA pairs, sorted by `(layer, module.index())`.
    pub weights: Vec<LoraWeights>,
    /// Hex SHA-256 of the adapter's math (see [`Adapter::compute_content_hash`]).
    pub content_hash: String,
}

impl Adapter {
    /// The largest rank over all pairs (0 for an adapter without weights).
    pub fn max_rank(&self) -> usize {
        self.weights.iter().map(|w| w.rank).max().unwrap_or(0)
    }

    /// Total number of LoRA parameters (elements of every A and B).
    pub fn num_params(&self) -> usize {
        self.weights.iter().map(|w| w.a.len() + w.b.len()).sum()
    }

    /// Recomputes the content hash from `weights` (what [`Adapter::content_hash`] should hold).
    ///
    /// It is the hex SHA-256 of a versioned canonical encoding of the adapter's math: for every
    /// pair in order, its layer, module, rank, resolved f32 scale, canonical PEFT tensor names and
    /// shapes (as compact JSON), followed by all A and B values as f32 little-endian bytes. It
    /// ignores the on-disk dtype when the values are equal (F16/BF16 hash their exact f32
    /// conversions), key spelling, JSON formatting and config keys that do not affect the math.
    pub fn compute_content_hash(&self) -> String {
        crate::hash::content_hash(&self.weights)
    }
}
