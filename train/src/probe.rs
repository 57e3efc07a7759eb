//! LoGra-style projected per-example gradients of the LoRA parameters.
//!
//! For a linear map with input `x_t` and output gradient `d_t`, the weight gradient is
//! `sum_t d_t x_t^T`, and its projection `P_out (sum_t d_t x_t^T) P_in^T` equals
//! `sum_t (P_out d_t)(P_in x_t)^T`: projecting activations and output gradients separately gives
//! the projected gradient without ever forming the full one (LoGra). Autograd produces exactly
//! that sum as the gradient of a zero-valued side branch `P_out^T G P_in x` with `G = 0`
//! (GhostSuite's formulation), so each example's projected gradient is `dL/dG` of its own `G`.
//!
//! For a LoRA pair `y = W x + s B (A x)` (`A: [r, in]`, `B: [out, r]`):
//! - `A` gets the side branch `G_A (P_in x)` added to `A x`, with `G_A: [r, k_in]`, so
//!   `dL/dG_A = grad_A P_in^T` (identity on the rank side: `r` is already small);
//! - `B` gets `s P_out^T G_B (A x)` added to the output, with `G_B: [k_out, r]`, so
//!   `dL/dG_B = P_out grad_B`.
//!
//! One `G` per example of the batch (`[B, ...]`) makes every example's gradient come out of one
//! backward pass, since example `b`'s loss never reaches another example's `G`.

use candle_core::{DType, Device, Tensor, Var};
use lorad_store::TargetModule;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::batch::{Batch, Example, LossNorm};
use crate::lora::LoraSet;
use crate::model::DiffLlama;
use crate::{Result, TrainError};

/// Projection sizes and seed; an index and its queries must use the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProbeSpec {
    /// Rows of `P_in` (projected input width).
    pub k_in: usize,
    /// Rows of `P_out` (projected output width).
    pub k_out: usize,
    /// Seed of the projection matrices.
    pub seed: u64,
}

impl Default for ProbeSpec {
    /// 16 x 16 per projection: 256 values per rank-8 pair.
    fn default() -> Self {
        Self { k_in: 16, k_out: 16, seed: 0x10ad_a77b }
    }
}

/// The projection matrices for every pair of one [`LoraSet`], in its pair order.
#[derive(Debug)]
pub struct Probes {
    spec: ProbeSpec,
    /// Per pair, in the set's order: its rank, `P_in: [k_in, in]` and `P_out: [k_out, out]`.
    proj: Vec<ProbeProj>,
    index: Vec<[Option<usize>; 7]>,
}

#[derive(Debug)]
struct ProbeProj {
    rank: usize,
    p_in: Tensor,
    p_out: Tensor,
}

/// Seeded Gaussian `[rows, cols]` with variance `1 / rows`, so projections preserve norms in
/// expectation (Johnson-Lindenstrauss).
fn gaussian(seed: u64, rows: usize, cols: usize, device: &Device) -> Result<Tensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let sd = 1.0 / (rows as f32).sqrt();
    let v: Vec<f32> = (0..rows * cols)
        .map(|_| sd * <StandardNormal as Distribution<f32>>::sample(&StandardNormal, &mut rng))
        .collect();
    Ok(Tensor::from_vec(v, (rows, cols), device)?)
}

impl Probes {
    /// Projections for every pair of `lora`. Each matrix has its own stream derived from
    /// `(seed, layer, module, side)`, so it does not depend on which other pairs exist.
    pub fn new(lora: &LoraSet, spec: ProbeSpec, device: &Device) -> Result<Self> {
        if spec.k_in == 0 || spec.k_out == 0 {
            return Err(TrainError::Config("projection widths must be at least 1".into()));
        }
        let mut proj = Vec::with_capacity(lora.pairs().len());
        let mut num_layers = 0;
        for p in lora.pairs() {
            let (rank, in_f) = p.a.dims2()?;
            let out_f = p.b.dims()[0];
            let stream = |side: u64| {
                spec.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(
                    ((p.layer as u64) << 16) | ((p.module.index() as u64) << 4) | side,
                )
            };
            proj.push(ProbeProj {
                rank,
                p_in: gaussian(stream(0), spec.k_in, in_f, device)?,
                p_out: gaussian(stream(1), spec.k_out, out_f, device)?,
            });
            num_layers = num_layers.max(p.layer + 1);
        }
        let mut index = vec![[None; 7]; num_layers];
        for (i, p) in lora.pairs().iter().enumerate() {
            index[p.layer][p.module.index()] = Some(i);
        }
        Ok(Self { spec, proj, index })
    }

    /// The spec these probes were made with.
    pub fn spec(&self) -> ProbeSpec {
        self.spec
    }

    /// Length of each pair's block in a projected gradient: `r * k_in + k_out * r`.
    pub fn block_sizes(&self) -> Vec<usize> {
        self.proj.iter().map(|p| p.rank * (self.spec.k_in + self.spec.k_out)).collect()
    }

    /// Pair `i`'s projection matrices `(P_in: [k_in, in], P_out: [k_out, out])`.
    pub fn matrices(&self, i: usize) -> Option<(&Tensor, &Tensor)> {
        self.proj.get(i).map(|p| (&p.p_in, &p.p_out))
    }

    /// Total length of one projected gradient.
    pub fn dim(&self) -> usize {
        self.block_sizes().iter().sum()
    }
}

/// The probes' zero variables for one batch.
#[derive(Debug)]
pub struct ProbeBatch<'a> {
    probes: &'a Probes,
    vars: Vec<(Var, Var)>,
}

/// One pair's side branches within a batch.
#[derive(Debug)]
pub(crate) struct PairProbe<'a> {
    proj: &'a ProbeProj,
    g_a: &'a Var,
    g_b: &'a Var,
}

impl<'a> ProbeBatch<'a> {
    /// Zero side-branch variables for a batch of `batch` examples.
    pub fn new(probes: &'a Probes, batch: usize, device: &Device) -> Result<Self> {
        let (ki, ko) = (probes.spec.k_in, probes.spec.k_out);
        let vars = probes
            .proj
            .iter()
            .map(|p| {
                Ok((
                    Var::zeros((batch, p.rank, ki), DType::F32, device)?,
                    Var::zeros((batch, ko, p.rank), DType::F32, device)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { probes, vars })
    }

    pub(crate) fn get(&self, layer: usize, module: TargetModule) -> Option<PairProbe<'_>> {
        let i = self.probes.index.get(layer)?[module.index()]?;
        let (g_a, g_b) = &self.vars[i];
        Some(PairProbe { proj: &self.probes.proj[i], g_a, g_b })
    }
}

impl PairProbe<'_> {
    /// `G_A (P_in x)` per example, `[B * T, r]`; added to `A x`.
    pub(crate) fn side_a(&self, x: &Tensor, b: usize, t: usize) -> Result<Tensor> {
        let k = self.proj.p_in.dims()[0];
        let px = x.matmul(&self.proj.p_in.t()?)?.reshape((b, t, k))?;
        Ok(px.matmul(&self.g_a.as_tensor().t()?)?.reshape((b * t, self.proj.rank))?)
    }

    /// `s P_out^T G_B z` per example, `[B * T, out]`; `z = A x` (`[B * T, r]`).
    pub(crate) fn side_b(&self, z: &Tensor, b: usize, t: usize) -> Result<Tensor> {
        let ko = self.proj.p_out.dims()[0];
        let gz = z.reshape((b, t, self.proj.rank))?.matmul(&self.g_b.as_tensor().t()?)?;
        // The pair's scale `s` is applied by the caller to the whole delta, this branch included.
        Ok(gz.reshape((b * t, ko))?.matmul(&self.proj.p_out)?)
    }
}

/// Projected gradient of each example's mean completion loss with respect to `lora`'s
/// parameters, one `Vec` of [`Probes::dim`] values per example, blocks in pair order (`G_A` then
/// `G_B`, row-major). Examples are processed `batch_size` at a time; the result does not depend on
/// the batching beyond floating-point summation order within a matmul.
pub fn projected_gradients(
    model: &DiffLlama,
    lora: &LoraSet,
    probes: &Probes,
    examples: &[Example],
    batch_size: usize,
    mut progress: impl FnMut(usize),
) -> Result<Vec<Vec<f32>>> {
    let cfg = model.config();
    for (i, e) in examples.iter().enumerate() {
        e.check(i, cfg.vocab_size, cfg.max_position_embeddings)?;
    }
    let dim = probes.dim();
    let mut out = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(batch_size.max(1)) {
        let refs: Vec<&Example> = chunk.iter().collect();
        let batch = Batch::new(&refs, LossNorm::PerExample, model.device())?;
        let pb = ProbeBatch::new(probes, chunk.len(), model.device())?;
        let loss = model.loss(&batch, Some(lora), Some(&pb))?;
        let grads = loss.backward()?;
        let mut per_pair = Vec::with_capacity(pb.vars.len() * 2);
        for (g_a, g_b) in &pb.vars {
            let ga = grads.get(g_a.as_tensor()).cloned().unwrap_or(g_a.as_tensor().zeros_like()?);
            let gb = grads.get(g_b.as_tensor()).cloned().unwrap_or(g_b.as_tensor().zeros_like()?);
            per_pair.push(ga.flatten_from(1)?.to_vec2::<f32>()?);
            per_pair.push(gb.flatten_from(1)?.to_vec2::<f32>()?);
        }
        for b in 0..chunk.len() {
            let mut v = Vec::with_capacity(dim);
            for block in &per_pair {
                v.extend_from_slice(&block[b]);
            }
            out.push(v);
        }
        progress(chunk.len());
    }
    Ok(out)
}
