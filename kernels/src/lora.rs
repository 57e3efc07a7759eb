//! Batched multi-LoRA: `y = x·Wᵀ + Σ_rows scale_i · (x·A_iᵀ)·B_iᵀ`, the base term computed by the
//! caller, the LoRA term here for every row of the batch in one call.
//!
//! Each row names at most one adapter. Rows are handed in as *groups* (one per adapter present
//! in the batch), which is what both S-LoRA's MBGMV and Punica's SGMV consume. Ranks differ
//! between groups and nothing is padded to a common rank: the fused CPU kernel loops each row
//! over its own adapter's `r`; the generic path concatenates the groups' pairs along the rank
//! ([`LoraStack`]) so its op count does not grow with the number of adapters. Rows in no group
//! skip the LoRA term entirely.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use crate::cpu::{Weights, is_cpu_f32, is_cpu_weights, weights_of, with_f32};
use crate::lora_stack::{LoraStack, stack_mask};
use crate::simd::{Avx2, Portable, Simd};
use crate::{KernelError, KernelPath, Result};

/// One adapter's LoRA pair for one projection, in the layout the kernels read.
///
/// The scale stays separate from `B` and multiplies the rank-`r` intermediate `A·x` instead
/// (`r` multiplies per row, nothing next to the GEMVs): folding it into `B` would round every
/// element of a bf16 `B` a second time, and keeping it out lets an adapter saved in bf16 stay
/// bit-exact in bf16 on the device.
///
/// `B` is kept transposed (`[rank, out]`, contiguous): the expand step then adds `r` contiguous
/// rows of `Bᵀ` to the output, which vectorizes, where PEFT's `[out, rank]` layout would need
/// `out` dot products of length `r` (typically 8 to 64, too short to vectorize well).
#[derive(Debug, Clone)]
pub struct LoraPair {
    a: Tensor,
    b_t: Tensor,
    scale: f32,
}

impl LoraPair {
    /// `a` is PEFT's `lora_A.weight`, shape `[rank, in]`; `b` is PEFT's `lora_B.weight`, shape
    /// `[out, rank]`; `scale` is the adapter's scale for this pair (`alpha/r`, or `alpha/√r` for
    /// rsLoRA). Both are made contiguous; their dtypes may differ from the activations' (the
    /// fused CPU kernel reads f32 and bf16 weights as they are).
    pub fn new(a: Tensor, b: Tensor, scale: f32) -> Result<Self> {
        let (r, _in) = a.dims2()?;
        let (_out, rb) = b.dims2()?;
        if r != rb || r == 0 {
            return Err(KernelError::Shape {
                op: "lora",
                what: "B",
                got: b.dims().to_vec(),
                expected: format!("[out, {r}] matching A's rank (A is {:?})", a.dims()),
            });
        }
        if !scale.is_finite() {
            return Err(KernelError::Value {
                op: "lora",
                what: "scale",
                got: scale.to_string(),
                expected: "finite",
            });
        }
        Ok(Self { a: a.contiguous()?, b_t: b.t()?.contiguous()?, scale })
    }

    /// The rank `r`.
    pub fn rank(&self) -> usize {
        self.a.dims()[0]
    }

    /// Input features of the projection.
    pub fn in_dim(&self) -> usize {
        self.a.dims()[1]
    }

    /// Output features of the projection.
    pub fn out_dim(&self) -> usize {
        self.b_t.dims()[1]
    }

    /// `A`, `[rank, in]`.
    pub fn a(&self) -> &Tensor {
        &self.a
    }

    /// `Bᵀ` (unscaled), `[rank, out]`.
    pub fn b_t(&self) -> &Tensor {
        &self.b_t
    }

    /// The scale applied to `A·x`.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// Bytes the pair's weights occupy.
    pub fn bytes(&self) -> usize {
        self.a.elem_count() * self.a.dtype().size_in_bytes()
            + self.b_t.elem_count() * self.b_t.dtype().size_in_bytes()
    }
}

/// The batch rows (indices into `x`/`y`) that use one adapter.
#[derive(Debug, Clone, Copy)]
pub struct LoraGroup<'a> {
    /// The adapter's pair for this projection.
    pub pair: &'a LoraPair,
    /// Row indices; each row appears in at most one group.
    pub rows: &'a [u32],
}

/// Returns `y + LoRA(x)` for all groups; `x` is `[T, in]`, `y` is `[T, out]`.
pub fn add_lora(
    y: &Tensor,
    x: &Tensor,
    groups: &[LoraGroup<'_>],
    path: KernelPath,
) -> Result<Tensor> {
    let mut out = add_lora_shared(&[y], x, &[groups], path)?;
    Ok(out.pop().unwrap_or_else(|| y.clone()))
}

/// [`add_lora`] for several projections that read the same input (q, k and v; gate and up):
/// returns `ys[p] + LoRA_p(x)` with `groups[p]` for every `p`. On the fused CPU path each row
/// computes all its projections in one parallel pass: one fork-join per call instead of one
/// per projection, which on a decode step of a small model is a measurable share of the
/// LoRA term's time. Results are bit for bit those of separate [`add_lora`] calls.
pub fn add_lora_shared(
    ys: &[&Tensor],
    x: &Tensor,
    groups: &[&[LoraGroup<'_>]],
    path: KernelPath,
) -> Result<Vec<Tensor>> {
    if ys.len() != groups.len() {
        return Err(KernelError::Shape {
            op: "lora",
            what: "projections",
            got: vec![ys.len(), groups.len()],
            expected: "one group list per output".into(),
        });
    }
    let (t, in_dim) = x.dims2()?;
    for (y, g) in ys.iter().zip(groups) {
        check(y, t, in_dim, g)?;
    }
    if groups.iter().all(|g| g.is_empty()) {
        return Ok(ys.iter().map(|y| (*y).clone()).collect());
    }
    let fused = path == KernelPath::Auto
        && is_cpu_f32(x)
        && ys.iter().all(|y| is_cpu_f32(y))
        && groups
            .iter()
            .flat_map(|g| g.iter())
            .all(|g| is_cpu_weights(&g.pair.a) && is_cpu_weights(&g.pair.b_t));
    if fused {
        return add_lora_cpu(ys, x, groups, in_dim);
    }
    // The generic term returns `y` itself for a projection no row adapts.
    ys.iter().zip(groups).map(|(y, g)| add_lora_generic(y, x, g)).collect()
}

/// Checks one projection's output and groups against `x`'s `t` rows of `in_dim`.
fn check(y: &Tensor, t: usize, in_dim: usize, groups: &[LoraGroup<'_>]) -> Result<()> {
    let (ty, out_dim) = y.dims2()?;
    if ty != t {
        return Err(KernelError::Shape {
            op: "lora",
            what: "y",
            got: y.dims().to_vec(),
            expected: format!("[{t}, out] (one row per row of x)"),
        });
    }
    let mut seen = vec![false; t];
    for g in groups {
        if g.pair.in_dim() != in_dim || g.pair.out_dim() != out_dim {
            return Err(KernelError::Shape {
                op: "lora",
                what: "adapter pair",
                got: vec![g.pair.out_dim(), g.pair.rank(), g.pair.in_dim()],
                expected: format!("[{out_dim}, r, {in_dim}]"),
            });
        }
        for &r in g.rows {
            let r = r as usize;
            if r >= t || seen[r] {
                return Err(KernelError::OutOfRange {
                    op: "lora",
                    what: "row",
                    index: r,
                    limit: t,
                });
            }
            seen[r] = true;
        }
    }
    Ok(())
}

/// One projection's pair as the fused kernel reads it: `A`, `Bᵀ`, rank, scale.
type CpuPair<'a> = (Weights<'a>, Weights<'a>, usize, f32);

/// BGMV on the CPU: each row gathers its own adapter's `A` and `B` and runs two GEMVs per
/// projection. Rows are independent, so they run in parallel, and a row's arithmetic never
/// depends on its batch.
fn add_lora_cpu(
    ys: &[&Tensor],
    x: &Tensor,
    groups: &[&[LoraGroup<'_>]],
    in_dim: usize,
) -> Result<Vec<Tensor>> {
    let t = x.dims()[0];
    // Hold every adapter's read guard for the duration of the kernel.
    let guards: Vec<Vec<_>> = groups
        .iter()
        .map(|gs| {
            gs.iter()
                .map(|g| (g.pair.a.storage_and_layout(), g.pair.b_t.storage_and_layout()))
                .collect()
        })
        .collect();
    // `row_pair[p][row]`: the pair row `row` uses in projection `p`, if any.
    let mut row_pair: Vec<Vec<Option<CpuPair<'_>>>> = Vec::with_capacity(ys.len());
    for (gs, gg) in groups.iter().zip(&guards) {
        let mut of_row = vec![None; t];
        for (g, ((sa, la), (sb, lb))) in gs.iter().zip(gg) {
            let (candle_core::Storage::Cpu(ca), candle_core::Storage::Cpu(cb)) = (&**sa, &**sb)
            else {
                return Err(KernelError::NotCpuF32 { op: "lora", what: "adapter" });
            };
            let a = weights_of(ca, la).ok_or(KernelError::NotCpuF32 { op: "lora", what: "A" })?;
            let b = weights_of(cb, lb).ok_or(KernelError::NotCpuF32 { op: "lora", what: "B" })?;
            for &r in g.rows {
                of_row[r as usize] = Some((a, b, g.pair.rank(), g.pair.scale));
            }
        }
        row_pair.push(of_row);
    }
    // Outputs of projections no row adapts stay as they are (no copy).
    let mut outs: Vec<Option<Vec<f32>>> = ys
        .iter()
        .zip(groups)
        .map(|(y, g)| match g.is_empty() {
            true => Ok(None),
            false => with_f32(y, "lora", "y", <[f32]>::to_vec).map(Some),
        })
        .collect::<Result<_>>()?;
    // Each row's slices of every adapted output (with its projection), so that a row's task
    // owns them.
    let mut rows: Vec<Vec<(usize, &mut [f32])>> =
        (0..t).map(|_| Vec::with_capacity(ys.len())).collect();
    for (p, (out, y)) in outs.iter_mut().zip(ys).enumerate() {
        let Some(out) = out else { continue };
        let out_dim = y.dims()[1];
        for (row, chunk) in rows.iter_mut().zip(out.chunks_mut(out_dim.max(1))) {
            row.push((p, chunk));
        }
    }
    let avx2 = Avx2::detect();
    with_f32(x, "lora", "x", |xs| {
        rows.par_iter_mut().enumerate().for_each(|(row, yrows)| {
            let xrow = &xs[row * in_dim..(row + 1) * in_dim];
            for (p, yrow) in yrows.iter_mut() {
                let Some((a, b_t, r, scale)) = row_pair[*p][row] else { continue };
                match avx2 {
                    Some(simd) => lora_row(simd, a, b_t, r, scale, xrow, yrow),
                    None => lora_row(Portable, a, b_t, r, scale, xrow, yrow),
                }
            }
        });
    })?;
    drop(rows);
    outs.into_iter()
        .zip(ys)
        .map(|(out, y)| match out {
            Some(out) => Ok(Tensor::from_vec(out, y.dims2()?, &Device::Cpu)?),
            None => Ok((*y).clone()),
        })
        .collect()
}

/// One row's LoRA term: shrink `v = scale·(A·x)` (`r` dot products over `in`), then expand
/// `y += Bᵀ·v` (output tiles held in registers across the `r` rows of `Bᵀ`).
#[inline(always)]
fn lora_row<S: Simd>(
    simd: S,
    a: Weights<'_>,
    b_t: Weights<'_>,
    r: usize,
    scale: f32,
    x: &[f32],
    y: &mut [f32],
) {
    let in_dim = x.len();
    let v: Vec<f32> = (0..r).map(|j| scale * a.dot_at(simd, j * in_dim, x)).collect();
    b_t.expand(simd, y, &v);
}

/// Device-generic twin: every group's pair in one [`LoraStack`], one shrink and one expand for
/// the whole batch (callers that run many steps over the same adapters cache the stack).
fn add_lora_generic(y: &Tensor, x: &Tensor, groups: &[LoraGroup<'_>]) -> Result<Tensor> {
    let used: Vec<&LoraGroup<'_>> = groups.iter().filter(|g| !g.rows.is_empty()).collect();
    if used.is_empty() {
        return Ok(y.clone());
    }
    let pairs: Vec<&LoraPair> = used.iter().map(|g| g.pair).collect();
    let stack = LoraStack::new(&pairs, x.dtype())?;
    let rows: Vec<&[u32]> = used.iter().map(|g| g.rows).collect();
    let mask = stack_mask(x.dims()[0], stack.members(), &rows, x.dtype(), x.device())?;
    stack.apply(y, x, &mask)
}
