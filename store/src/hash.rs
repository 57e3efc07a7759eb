//! The adapter content hash.
//!
//! The hash identifies an adapter's *math*, not its bytes on disk, so that the same adapter saved
//! in another dtype-preserving way (F32 written by lorad or by PEFT, re-imported, keys with or
//! without the `.default` infix, different JSON formatting or extra informational config keys)
//! hashes the same, while any change to a weight, rank or scale changes it.
//!
//! Encoding, version 1 — SHA-256 over the concatenation of:
//! 1. the ASCII bytes `lorad-adapter-v1\n`;
//! 2. a compact JSON header (no whitespace, fields in the order below), then `\n`:
//!    `{"modules":[{"layer":L,"module":"q_proj","rank":R,"scale":S,"tensors":[{"name":N,"shape":[R,IN]},{"name":N,"shape":[OUT,R]}]},...]}`
//!    with one entry per [`LoraWeights`] in the adapter's order (`(layer, module index)`), `S` the
//!    f32 scale in serde_json's shortest round-trip form, and `N` the canonical PEFT tensor name
//!    (`base_model.model.model.layers.L.self_attn.q_proj.lora_A.weight`, no adapter-name infix);
//! 3. for each entry in the same order, A's then B's values as f32 little-endian bytes.
//!
//! The resolved scale stands in for `r`, `lora_alpha`, `use_rslora` and the patterns: two configs
//! that give every module the same scale describe the same math. Tensors stored as F16/BF16 hash
//! their exact f32 conversions, so they differ from an F32 copy only if the values do.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::adapter::LoraWeights;

#[derive(Serialize)]
struct Header {
    modules: Vec<ModuleEntry>,
}

#[derive(Serialize)]
struct ModuleEntry {
    layer: usize,
    module: &'static str,
    rank: usize,
    scale: f32,
    tensors: [TensorEntry; 2],
}

#[derive(Serialize)]
struct TensorEntry {
    name: String,
    shape: [usize; 2],
}

/// Hex SHA-256 of `weights` per the module docs.
pub(crate) fn content_hash(weights: &[LoraWeights]) -> String {
    let per_row = |len: usize, rank: usize| len.checked_div(rank).unwrap_or(0);
    let header = Header {
        modules: weights
            .iter()
            .map(|w| ModuleEntry {
                layer: w.layer,
                module: w.module.peft_name(),
                rank: w.rank,
                scale: w.scale,
                tensors: [
                    TensorEntry {
                        name: w.module.tensor_name(w.layer, false),
                        shape: [w.rank, per_row(w.a.len(), w.rank)],
                    },
                    TensorEntry {
                        name: w.module.tensor_name(w.layer, true),
                        shape: [per_row(w.b.len(), w.rank), w.rank],
                    },
                ],
            })
            .collect(),
    };
    let mut h = Sha256::new();
    h.update(b"lorad-adapter-v1\n");
    // Serialising plain structs of numbers and strings cannot fail; an empty header would only
    // weaken the hash, never crash.
    h.update(serde_json::to_vec(&header).unwrap_or_default());
    h.update(b"\n");
    let mut buf = Vec::new();
    for w in weights {
        for values in [&w.a, &w.b] {
            buf.clear();
            buf.extend(values.iter().flat_map(|v| v.to_le_bytes()));
            h.update(&buf);
        }
    }
    hex::encode(h.finalize())
}
