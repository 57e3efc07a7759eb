//! Multi-LoRA in a fixed number of tensor ops, for devices where every op is a kernel launch.
//!
//! The per-group generic path costs about six ops per adapter per projection: with 32 adapters
//! on a 30-layer model that is some 40,000 launches per decode step, which on a GPU is the
//! whole step time. A [`LoraStack`] concatenates the pairs of every adapter in the batch along
//! the rank (`A` rows `[R, in]`, `Bᵀ` rows `[R, out]`, `R = Σ r_i`, nothing padded), so one
//! shrink matmul computes `x·Aᵀ` for every row against every adapter, a `[T, R]` mask keeps
//! each row's own adapter's columns (multiplied by that adapter's scale) and zeroes the rest,
//! and one expand matmul adds the result: four ops per projection, whatever the adapter count.
//!
//! The masked columns are computed and thrown away, `T·R·(in + out)` multiply-adds instead of
//! `Σ_rows r·(in + out)`. For decode batches that is small next to the base projection on a
//! device that is launch-bound; a custom gathered (BGMV/SGMV) kernel removes it later. Zeroed
//! columns add exact zeros, so a row's result equals the per-group computation up to the
//! order of the matmul's sums.
//!
//! The stack is built once per batch composition (the engine caches it across layers' steps),
//! the mask once per step and rank layout.

use candle_core::{DType, Device, Tensor};

use crate::{KernelError, LoraPair, Result};

/// The pairs of several adapters for one projection, concatenated along the rank.
#[derive(Debug, Clone)]
pub struct LoraStack {
    a: Tensor,
    b_t: Tensor,
    members: Vec<StackMember>,
}

/// One adapter's place in a [`LoraStack`]: what its mask columns hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StackMember {
    /// Its rank: the number of columns it owns, after the previous members'.
    pub rank: usize,
    /// Its scale.
    pub scale: f32,
}

impl LoraStack {
    /// Concatenates `pairs` (all of one projection: same `in` and `out`), converted to `dtype`
    /// (the activations' dtype, so the matmuls need no per-step conversion).
    pub fn new(pairs: &[&LoraPair], dtype: DType) -> Result<Self> {
        let Some(first) = pairs.first() else {
            return Err(KernelError::Value {
                op: "lora stack",
                what: "pairs",
                got: "none".into(),
                expected: "at least one pair",
            });
        };
        let (in_dim, out_dim) = (first.in_dim(), first.out_dim());
        if let Some(p) = pairs.iter().find(|p| p.in_dim() != in_dim || p.out_dim() != out_dim) {
            return Err(KernelError::Shape {
                op: "lora stack",
                what: "pair",
                got: vec![p.out_dim(), p.rank(), p.in_dim()],
                expected: format!("[{out_dim}, r, {in_dim}] like the first pair"),
            });
        }
        let cat = |parts: Vec<Tensor>| -> Result<Tensor> {
            let parts = parts
                .into_iter()
                .map(|t| t.to_dtype(dtype))
                .collect::<candle_core::Result<Vec<_>>>()?;
            Ok(Tensor::cat(&parts, 0)?.contiguous()?)
        };
        Ok(Self {
            a: cat(pairs.iter().map(|p| p.a().clone()).collect())?,
            b_t: cat(pairs.iter().map(|p| p.b_t().clone()).collect())?,
            members: pairs
                .iter()
                .map(|p| StackMember { rank: p.rank(), scale: p.scale() })
                .collect(),
        })
    }

    /// Several projections' stacks over the same input (q, k and v; gate and up) as one: `A`s
    /// concatenated along the rank, `Bᵀ`s placed block-diagonally (each stack's rows write only
    /// its own projection's columns of the `[T, Σ out]` result), so the whole group takes one
    /// shrink, one mask and one expand. Members are the stacks' members in order.
    pub fn block_diagonal(stacks: &[LoraStack]) -> Result<Self> {
        let Some(first) = stacks.first() else {
            return Err(KernelError::Value {
                op: "lora stack",
                what: "stacks",
                got: "none".into(),
                expected: "at least one stack",
            });
        };
        let in_dim = first.a.dims()[1];
        if let Some(s) = stacks.iter().find(|s| s.a.dims()[1] != in_dim) {
            return Err(KernelError::Shape {
                op: "lora stack",
                what: "stack A",
                got: s.a.dims().to_vec(),
                expected: format!("[R, {in_dim}] (one input for the whole group)"),
            });
        }
        let total: usize = stacks.iter().map(LoraStack::out_dim).sum();
        let mut before = 0;
        let mut b_parts = Vec::with_capacity(stacks.len());
        for s in stacks {
            let after = total - before - s.out_dim();
            b_parts.push(s.b_t.pad_with_zeros(1, before, after)?);
            before += s.out_dim();
        }
        let a_parts: Vec<Tensor> = stacks.iter().map(|s| s.a.clone()).collect();
        Ok(Self {
            a: Tensor::cat(&a_parts, 0)?.contiguous()?,
            b_t: Tensor::cat(&b_parts, 0)?.contiguous()?,
            members: stacks.iter().flat_map(|s| s.members.iter().copied()).collect(),
        })
    }

    /// Output features (the width of [`LoraStack::delta`]).
    pub fn out_dim(&self) -> usize {
        self.b_t.dims()[1]
    }

    /// The members, in column order.
    pub fn members(&self) -> &[StackMember] {
        &self.members
    }

    /// `R`, the sum of the members' ranks.
    pub fn total_rank(&self) -> usize {
        self.a.dims()[0]
    }

    /// Bytes the stack holds on its device.
    pub fn bytes(&self) -> usize {
        (self.a.elem_count() + self.b_t.elem_count()) * self.a.dtype().size_in_bytes()
    }

    /// Returns `y + ((x·Aᵀ) ⊙ mask)·Bᵀ` for `x` `[T, in]`, `y` `[T, out]` and a mask from
    /// [`stack_mask`] for these members.
    pub fn apply(&self, y: &Tensor, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let d = self.delta(x, mask)?;
        if y.dims() != d.dims() {
            return Err(KernelError::Shape {
                op: "lora stack",
                what: "y",
                got: y.dims().to_vec(),
                expected: format!("{:?} (one row per row of x)", d.dims()),
            });
        }
        Ok((y + d.to_dtype(y.dtype())?)?)
    }

    /// The LoRA term alone, `((x·Aᵀ) ⊙ mask)·Bᵀ`, `[T, out]` in `x`'s dtype.
    pub fn delta(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (t, in_dim) = x.dims2()?;
        if in_dim != self.a.dims()[1] {
            return Err(KernelError::Shape {
                op: "lora stack",
                what: "x",
                got: x.dims().to_vec(),
                expected: format!("[T, {}]", self.a.dims()[1]),
            });
        }
        if mask.dims() != [t, self.total_rank()] {
            return Err(KernelError::Shape {
                op: "lora stack",
                what: "mask",
                got: mask.dims().to_vec(),
                expected: format!("[{t}, {}]", self.total_rank()),
            });
        }
        let v = (x.matmul(&self.a.t()?)? * mask)?;
        Ok(v.matmul(&self.b_t)?)
    }
}

/// The `[t, Σ rank]` mask of a stack with `members`: in row `r`, member `i`'s columns hold its
/// scale when `r` is in `rows[i]`, zero otherwise. Each row may appear in one member's rows.
pub fn stack_mask(
    t: usize,
    members: &[StackMember],
    rows: &[&[u32]],
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    if rows.len() != members.len() {
        return Err(KernelError::Shape {
            op: "lora stack",
            what: "row lists",
            got: vec![rows.len()],
            expected: format!("{} (one per member)", members.len()),
        });
    }
    let width: usize = members.iter().map(|m| m.rank).sum();
    let mut mask = vec![0f32; t * width];
    let mut col = 0;
    for (m, rows) in members.iter().zip(rows) {
        for &r in *rows {
            let r = r as usize;
            if r >= t {
                return Err(KernelError::OutOfRange {
                    op: "lora stack",
                    what: "row",
                    index: r,
                    limit: t,
                });
            }
            mask[r * width + col..r * width + col + m.rank].fill(m.scale);
        }
        col += m.rank;
    }
    Ok(Tensor::from_vec(mask, (t, width), device)?.to_dtype(dtype)?)
}
