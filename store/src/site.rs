//! Where a PEFT LoRA pair sits: one of the seven llama projections, or a module that holds
//! several of them fused (Phi-3's `self_attn.qkv_proj` = q, k, v and `mlp.gate_up_proj` =
//! gate, up, stacked along the output). A pair on a fused module is the same low-rank update
//! on each part: `A` shared, `B` cut into the parts' rows, so it imports as one pair per
//! projection and serves exactly as PEFT computes it on the fused layer.

use crate::adapter::{BaseShape, TargetModule};

/// A module PEFT can put a LoRA pair on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Site {
    /// One projection.
    One(TargetModule),
    /// Phi-3's `self_attn.qkv_proj`.
    Qkv,
    /// Phi-3's `mlp.gate_up_proj` (gate rows first).
    GateUp,
}

impl Site {
    /// The site PEFT names `name` (`q_proj`, ..., `qkv_proj`, `gate_up_proj`).
    pub(crate) fn from_peft_name(name: &str) -> Option<Self> {
        match name {
            "qkv_proj" => Some(Self::Qkv),
            "gate_up_proj" => Some(Self::GateUp),
            other => TargetModule::from_peft_name(other).map(Self::One),
        }
    }

    /// The projections it covers, in the fused tensor's row order.
    pub(crate) fn parts(self) -> &'static [TargetModule] {
        use TargetModule::*;
        static ALL: [TargetModule; 7] = TargetModule::ALL;
        match self {
            Self::One(m) => std::slice::from_ref(&ALL[m.index()]),
            Self::Qkv => &[QProj, KProj, VProj],
            Self::GateUp => &[GateProj, UpProj],
        }
    }

    /// PEFT's name for it.
    pub(crate) fn peft_name(self) -> &'static str {
        match self {
            Self::One(m) => m.peft_name(),
            Self::Qkv => "qkv_proj",
            Self::GateUp => "gate_up_proj",
        }
    }

    /// The decoder-layer submodule holding it.
    pub(crate) fn parent(self) -> &'static str {
        self.parts()[0].parent()
    }

    /// The module path PEFT matches patterns against, e.g. `model.layers.3.self_attn.qkv_proj`.
    pub(crate) fn module_path(self, layer: usize) -> String {
        format!("model.layers.{layer}.{}.{}", self.parent(), self.peft_name())
    }

    /// The canonical PEFT tensor name of its A (`is_b == false`) or B matrix.
    pub(crate) fn tensor_name(self, layer: usize, is_b: bool) -> String {
        let ab = if is_b { "lora_B" } else { "lora_A" };
        format!("base_model.model.{}.{ab}.weight", self.module_path(layer))
    }

    /// `(out_features, in_features)` of the module on `base`: the parts' outputs summed (they
    /// share their input).
    pub(crate) fn shape(self, base: &BaseShape) -> (usize, usize) {
        let parts = self.parts();
        (parts.iter().map(|&m| base.shape(m).0).sum(), base.shape(parts[0]).1)
    }

    /// `b` (`[out, rank]`, row-major) cut into each part's rows.
    pub(crate) fn split_b<'a>(
        self,
        base: &BaseShape,
        b: &'a [f32],
        rank: usize,
    ) -> Vec<(TargetModule, &'a [f32])> {
        let mut at = 0;
        self.parts()
            .iter()
            .map(|&m| {
                let len = base.shape(m).0 * rank;
                let rows = &b[at..at + len];
                at += len;
                (m, rows)
            })
            .collect()
    }
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.peft_name())
    }
}
