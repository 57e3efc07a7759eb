//! Batched multi-LoRA: `y = x·Wᵀ + Σ_rows scale_i · (x·A_iᵀ)·B_iᵀ`, the base term computed by the
//! caller, the LoRA term here for every row of the batch in one call.
//!
//! Each row names at most one adapter. Rows are handed in as *groups* (one per adapter present
//! in the batch), which is what both S-LoRA's MBGMV and Punica's SGMV consume. Ranks differ
//! between groups and nothing is padded to a common rank: the fused CPU kernel loops each row
//! over its own adapter's `r`, the generic path runs one shrink and one expand matmul per group.
//! Rows in no group skip the LoRA term entirely.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use crate::cpu::{dot, is_cpu_f32, with_f32};
use crate::{KernelError, KernelPath, Result};

/// One adapter's LoRA pair for one projection, in the layout the kernels read.
#[derive(Debug, Clone)]
pub struct LoraPair {
    a: Tensor,
    b: Tensor,
}

impl LoraPair {
    /// `a` is PEFT's `lora_A.weight`, shape `[rank, in]`; `b_scaled` is PEFT's `lora_B.weight`
    /// multiplied by the adapter's scale (`alpha/r`, or `alpha/√r` for rsLoRA), shape
    /// `[out, rank]`. Folding the scale into `B` once at load saves a multiply per element per
    /// step. Both are made contiguous.
    pub fn new(a: Tensor, b_scaled: Tensor) -> Result<Self> {
        let (r, _in) = a.dims2()?;
        let (_out, rb) = b_scaled.dims2()?;
        if r != rb || r == 0 {
            return Err(KernelError::Shape {
                op: "lora",
                what: "B",
                got: b_scaled.dims().to_vec(),
                expected: format!("[out, {r}] matching A's rank (A is {:?})", a.dims()),
            });
        }
        Ok(Self { a: a.contiguous()?, b: b_scaled.contiguous()? })
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
        self.b.dims()[0]
    }

    /// `A`, `[rank, in]`.
    pub fn a(&self) -> &Tensor {
        &self.a
    }

    /// `scale·B`, `[out, rank]`.
    pub fn b(&self) -> &Tensor {
        &self.b
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
    let (t, in_dim) = x.dims2()?;
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
    if groups.is_empty() {
        return Ok(y.clone());
    }
    let fused = path == KernelPath::Auto
        && is_cpu_f32(x)
        && is_cpu_f32(y)
        && groups.iter().all(|g| is_cpu_f32(&g.pair.a) && is_cpu_f32(&g.pair.b));
    if fused { add_lora_cpu(y, x, groups, in_dim, out_dim) } else { add_lora_generic(y, x, groups) }
}

/// BGMV on the CPU: each row gathers its own adapter's `A` and `B` and runs two GEMVs. Rows are
/// independent, so they run in parallel, and a row's arithmetic never depends on its batch.
fn add_lora_cpu(
    y: &Tensor,
    x: &Tensor,
    groups: &[LoraGroup<'_>],
    in_dim: usize,
    out_dim: usize,
) -> Result<Tensor> {
    let t = x.dims()[0];
    let mut out = with_f32(y, "lora", "y", <[f32]>::to_vec)?;
    // Hold every adapter's read guard for the duration of the kernel.
    let guards: Vec<_> = groups
        .iter()
        .map(|g| (g.pair.a.storage_and_layout(), g.pair.b.storage_and_layout()))
        .collect();
    let mut slices: Vec<(&[f32], &[f32], usize)> = Vec::with_capacity(groups.len());
    for (g, ((sa, la), (sb, lb))) in groups.iter().zip(&guards) {
        let (candle_core::Storage::Cpu(ca), candle_core::Storage::Cpu(cb)) = (&**sa, &**sb) else {
            return Err(KernelError::NotCpuF32 { op: "lora", what: "adapter" });
        };
        let a =
            crate::cpu::slice_of(ca, la).ok_or(KernelError::NotCpuF32 { op: "lora", what: "A" })?;
        let b =
            crate::cpu::slice_of(cb, lb).ok_or(KernelError::NotCpuF32 { op: "lora", what: "B" })?;
        slices.push((a, b, g.pair.rank()));
    }
    let mut row_group = vec![u32::MAX; t];
    for (gi, g) in groups.iter().enumerate() {
        for &r in g.rows {
            row_group[r as usize] = gi as u32;
        }
    }
    with_f32(x, "lora", "x", |xs| {
        out.par_chunks_mut(out_dim).enumerate().for_each(|(row, yrow)| {
            let gi = row_group[row];
            if gi == u32::MAX {
                return;
            }
            let (a, b, r) = slices[gi as usize];
            let xrow = &xs[row * in_dim..(row + 1) * in_dim];
            // Shrink: v = A·x (r dot products over `in`).
            let v: Vec<f32> = (0..r).map(|j| dot(&a[j * in_dim..(j + 1) * in_dim], xrow)).collect();
            // Expand: y += (scale·B)·v. B is [out, r] row-major, so each output is one short
            // contiguous dot of length r.
            for (o, yo) in yrow.iter_mut().enumerate() {
                *yo += dot(&b[o * r..(o + 1) * r], &v);
            }
        });
    })?;
    Ok(Tensor::from_vec(out, (t, out_dim), &Device::Cpu)?)
}

/// Device-generic twin: per group gather rows, shrink, expand, scatter-add back.
fn add_lora_generic(y: &Tensor, x: &Tensor, groups: &[LoraGroup<'_>]) -> Result<Tensor> {
    let mut out = y.clone();
    for g in groups {
        if g.rows.is_empty() {
            continue;
        }
        let idx = Tensor::from_slice(g.rows, g.rows.len(), x.device())?;
        let xs = x.index_select(&idx, 0)?;
        let v = xs.matmul(&g.pair.a.t()?)?;
        let d = v.matmul(&g.pair.b.t()?)?.to_dtype(y.dtype())?;
        out = out.index_add(&idx, &d, 0)?;
    }
    Ok(out)
}
