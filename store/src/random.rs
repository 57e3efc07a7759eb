//! Deterministic random adapters for tests and benchmarks.
//!
//! PEFT initialises `lora_B` to zero, which makes a fresh adapter a no-op and any test built on it
//! vacuous. These adapters have non-zero A and B instead:
//! - A ~ U(-1/sqrt(in), 1/sqrt(in)): the bound of PEFT's own kaiming-uniform(a=sqrt(5)) init of
//!   `lora_A`, so each element of `A @ x` has about the magnitude of an element of `x` / sqrt(3);
//! - B ~ U(-0.05, 0.05): small enough that the delta `scale * B @ A @ x` stays around 5-10% of the
//!   activation scale at rank 8 with scale 2 (`sqrt(r) * 0.05/sqrt(3) * |x|/sqrt(3) * scale`), i.e.
//!   clearly visible in logits but not enough to derail generation.
//!
//! Every tensor draws from its own stream, seeded from `(seed, layer, module, A/B)`, so a tensor's
//! values do not depend on which other layers or targets were requested.

use std::collections::BTreeSet;

use crate::adapter::{Adapter, BaseShape, LoraWeights, TargetModule};
use crate::config::{PeftConfig, scale_for};
use crate::hash::content_hash;

/// What [`random_adapter`] should generate.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomAdapterSpec {
    /// LoRA rank of every pair (0 is treated as 1).
    pub rank: usize,
    /// `lora_alpha`.
    pub alpha: f64,
    /// Projections to adapt (duplicates ignored; stored in [`TargetModule::ALL`] order).
    pub targets: Vec<TargetModule>,
    /// rsLoRA scaling (`alpha / sqrt(rank)`).
    pub use_rslora: bool,
    /// Layers to adapt (`None`: all). Indices beyond the base model are dropped; the list is
    /// recorded as `layers_to_transform`.
    pub layers: Option<Vec<usize>>,
    /// PRNG seed.
    pub seed: u64,
}

impl Default for RandomAdapterSpec {
    /// Rank 8, alpha 16, q_proj and v_proj on every layer, seed 0: PEFT's most common setup.
    fn default() -> Self {
        RandomAdapterSpec {
            rank: 8,
            alpha: 16.0,
            targets: vec![TargetModule::QProj, TargetModule::VProj],
            use_rslora: false,
            layers: None,
            seed: 0,
        }
    }
}

/// Generates a deterministic adapter fitting `base` (same spec and seed, same values, on every
/// platform). With no targets or no valid layers the adapter has no weights.
pub fn random_adapter(name: &str, base: &BaseShape, spec: &RandomAdapterSpec) -> Adapter {
    let rank = spec.rank.max(1);
    let targets: Vec<TargetModule> =
        spec.targets.iter().copied().collect::<BTreeSet<_>>().into_iter().collect();
    let layers_to_transform: Option<Vec<usize>> = spec.layers.as_ref().map(|layers| {
        let set: BTreeSet<usize> =
            layers.iter().copied().filter(|&l| l < base.num_layers).collect();
        set.into_iter().collect()
    });
    let layers: Vec<usize> = match &layers_to_transform {
        Some(l) => l.clone(),
        None => (0..base.num_layers).collect(),
    };
    let scale = scale_for(spec.alpha, rank, spec.use_rslora);

    let mut weights = Vec::with_capacity(layers.len() * targets.len());
    for &layer in &layers {
        for &module in &targets {
            let (out_f, in_f) = base.shape(module);
            let a_bound = 1.0 / (in_f.max(1) as f32).sqrt();
            weights.push(LoraWeights {
                layer,
                module,
                rank,
                scale,
                a: uniform(stream_seed(spec.seed, layer, module, false), rank * in_f, a_bound),
                b: uniform(stream_seed(spec.seed, layer, module, true), out_f * rank, 0.05),
            });
        }
    }
    let config = PeftConfig {
        r: rank,
        lora_alpha: spec.alpha,
        target_modules: targets,
        use_rslora: spec.use_rslora,
        layers_to_transform,
        task_type: Some("CAUSAL_LM".to_owned()),
        ..PeftConfig::default()
    };
    let content_hash = content_hash(&weights);
    Adapter { name: name.to_owned(), config, weights, content_hash }
}

fn stream_seed(seed: u64, layer: usize, module: TargetModule, is_b: bool) -> u64 {
    let id = ((layer as u64) << 4) | ((module.index() as u64) << 1) | u64::from(is_b);
    // Two mixing rounds so that nearby (seed, id) pairs give unrelated streams.
    mix(mix(seed) ^ id.wrapping_mul(0xD6E8_FEB8_6659_FD93))
}

/// `n` values uniform in `[-bound, bound)`.
fn uniform(seed: u64, n: usize, bound: f32) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            // 24 random bits: exactly representable in f32, so the mapping is platform-exact.
            let u = (mix(state) >> 40) as f32 / (1u32 << 24) as f32;
            (2.0 * u - 1.0) * bound
        })
        .collect()
}

/// splitmix64's output function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
