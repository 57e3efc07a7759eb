//! PEFT directories for bases whose checkpoints fuse projections (Phi-3, Phi-3.5 and Phi-4
//! mini: `self_attn.qkv_proj`, `mlp.gate_up_proj`), which transformers' PEFT and vLLM can only
//! attach LoRA pairs to by the fused modules' names.
//!
//! lorad keeps one pair per projection. On a fused module the pairs of its parts stack into one
//! exact pair: `A` their `A`s one above the other (rank `Σ rᵢ`), `B` block-diagonal, each part's
//! `sᵢ·Bᵢ` in its own rows and its own rank columns, zeros elsewhere. Then `B·A` is each part's
//! `sᵢ·Bᵢ·Aᵢ` in that part's rows, and with `lora_alpha = r` PEFT's scale is 1. Projections
//! that are not fused are written the same way, their scale folded into `B`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::StoreError;
use crate::adapter::{Adapter, BaseShape, TargetModule};
use crate::config::to_peft_json_naming;
use crate::peft::{TensorDtype, check_writable, write_files};
use crate::site::Site;

/// The modules of a fused-projection decoder layer, in its order.
const SITES: [Site; 4] =
    [Site::Qkv, Site::One(TargetModule::OProj), Site::GateUp, Site::One(TargetModule::DownProj)];

/// One pair on a module of the fused layout.
struct FusedPair {
    layer: usize,
    site: Site,
    rank: usize,
    /// `[rank, in]`.
    a: Vec<f32>,
    /// `[out, rank]`.
    b: Vec<f32>,
}

/// Writes `adapter` (pairs per projection, on a base of shape `base`) as a PEFT directory whose
/// pairs sit on the fused modules, as [`crate::read_peft_dir`] and PEFT read them back: the
/// same update on every projection, to rounding in `dtype`.
pub fn write_peft_dir_fused(
    dir: &Path,
    adapter: &Adapter,
    dtype: TensorDtype,
    base: &BaseShape,
) -> Result<(), StoreError> {
    check_writable(adapter)?;
    let bad = |reason: String| StoreError::InvalidAdapter { name: adapter.name.clone(), reason };
    let mut by_site: BTreeMap<(usize, Site), Vec<&crate::LoraWeights>> = BTreeMap::new();
    for w in &adapter.weights {
        let (out, inp) = base.shape(w.module);
        if w.a.len() != w.rank * inp || w.b.len() != out * w.rank || w.layer >= base.num_layers {
            return Err(bad(format!(
                "{}: does not fit the base ([{out}, {inp}] in {} layers)",
                w.module.module_path(w.layer),
                base.num_layers
            )));
        }
        let site = match w.module {
            TargetModule::QProj | TargetModule::KProj | TargetModule::VProj => Site::Qkv,
            TargetModule::GateProj | TargetModule::UpProj => Site::GateUp,
            m => Site::One(m),
        };
        by_site.entry((w.layer, site)).or_default().push(w);
    }
    let pairs: Vec<FusedPair> =
        by_site.into_iter().map(|((layer, site), parts)| fuse(base, layer, site, &parts)).collect();

    // Every pair at scale 1: `lora_alpha = r`, the most common rank as the default and the
    // others by pattern (each module's whole path, which PEFT matches only to itself).
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for p in &pairs {
        *counts.entry(p.rank).or_default() += 1;
    }
    let r =
        counts.iter().max_by_key(|&(rank, n)| (n, std::cmp::Reverse(rank))).map_or(1, |(&r, _)| r);
    let mut config = adapter.config.clone();
    config.r = r;
    config.lora_alpha = r as f64;
    config.use_rslora = false;
    config.rank_pattern.clear();
    config.alpha_pattern.clear();
    for p in pairs.iter().filter(|p| p.rank != r) {
        let path = p.site.module_path(p.layer);
        config.rank_pattern.insert(path.clone(), p.rank);
        config.alpha_pattern.insert(path, p.rank as f64);
    }
    let names: Vec<&str> = SITES
        .iter()
        .filter(|s| pairs.iter().any(|p| p.site == **s))
        .map(|s| s.peft_name())
        .collect();
    let mut tensors = Vec::with_capacity(pairs.len() * 2);
    for p in &pairs {
        let (out, inp) = p.site.shape(base);
        tensors.push((p.site.tensor_name(p.layer, false), vec![p.rank, inp], p.a.as_slice()));
        tensors.push((p.site.tensor_name(p.layer, true), vec![out, p.rank], p.b.as_slice()));
    }
    write_files(dir, &adapter.name, &to_peft_json_naming(&config, &names), &tensors, dtype)
}

/// The exact pair on `site` of `layer` for its parts' pairs (checked to fit `base`).
fn fuse(base: &BaseShape, layer: usize, site: Site, parts: &[&crate::LoraWeights]) -> FusedPair {
    let rank: usize = parts.iter().map(|w| w.rank).sum();
    let (out, _) = site.shape(base);
    let mut a = Vec::with_capacity(parts.iter().map(|w| w.a.len()).sum());
    let mut b = vec![0f32; out * rank];
    let mut col = 0;
    for w in parts {
        a.extend_from_slice(&w.a);
        // The part's rows of the fused output.
        let row0: usize =
            site.parts().iter().take_while(|&&m| m != w.module).map(|&m| base.shape(m).0).sum();
        for (i, row) in w.b.chunks_exact(w.rank).enumerate() {
            let dst = &mut b[(row0 + i) * rank + col..(row0 + i) * rank + col + w.rank];
            for (d, &v) in dst.iter_mut().zip(row) {
                *d = v * w.scale;
            }
        }
        col += w.rank;
    }
    FusedPair { layer, site, rank, a, b }
}
