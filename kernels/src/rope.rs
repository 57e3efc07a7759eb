//! Rotary position embedding in the Hugging Face ("rotate half", non-interleaved) layout. GGUF
//! stores q/k permuted for the interleaved form; the model loader un-permutes them so PEFT
//! adapters trained against HF weights apply unchanged, and this kernel matches that layout.

use candle_core::{DType, Device, Tensor};

use crate::{KernelError, Result};

/// Precomputed `cos`/`sin` tables, `[max_positions, head_dim / 2]`.
#[derive(Debug, Clone)]
pub struct RopeTables {
    /// scale · cos(pos · inv_freq).
    pub cos: Tensor,
    /// scale · sin(pos · inv_freq).
    pub sin: Tensor,
}

impl RopeTables {
    /// Tables for positions `0..max_positions` from the per-pair inverse frequencies (already
    /// scaled, e.g. llama3 rope scaling). Angles are computed in f32 as Hugging Face does.
    ///
    /// `scale` multiplies both tables (YaRN's attention temperature; 1 for every other RoPE), in
    /// f32 before the cast, as transformers does.
    pub fn new(
        inv_freq: &[f32],
        scale: f32,
        max_positions: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let half = inv_freq.len();
        let mut cos = Vec::with_capacity(max_positions * half);
        let mut sin = Vec::with_capacity(max_positions * half);
        for p in 0..max_positions {
            for &f in inv_freq {
                let a = p as f32 * f;
                cos.push(a.cos() * scale);
                sin.push(a.sin() * scale);
            }
        }
        let cos = Tensor::from_vec(cos, (max_positions, half), device)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, (max_positions, half), device)?.to_dtype(dtype)?;
        Ok(Self { cos, sin })
    }

    /// Number of positions covered.
    pub fn max_positions(&self) -> usize {
        self.cos.dims()[0]
    }
}

/// The tables' rows for one step's positions: gathered once, used by `q` and `k` of every layer.
#[derive(Debug, Clone)]
pub struct RopeAt {
    cos: Tensor,
    sin: Tensor,
}

impl RopeTables {
    /// Gathers the rows of `positions` (a `u32` tensor of length `T`).
    pub fn at(&self, positions: &Tensor) -> Result<RopeAt> {
        // Positions are the caller's to bound (the engine checks the context length): a check
        // here would read them back from the device every step.
        let cos = self.cos.index_select(positions, 0)?;
        let sin = self.sin.index_select(positions, 0)?;
        Ok(RopeAt { cos, sin })
    }
}

/// Rotates `x` (`[T, heads, head_dim]`), row `t` at position `positions[t]` (a `u32` tensor of
/// length `T`). Each row has its own position, so one call serves a batch mixing sequences.
pub fn apply_rope(x: &Tensor, tables: &RopeTables, positions: &Tensor) -> Result<Tensor> {
    apply_rope_at(x, &tables.at(positions)?)
}

/// [`apply_rope`] with the rows already gathered. Tables narrower than the head rotate its
/// leading dimensions only (a partial rotary embedding); the rest pass through unchanged.
pub fn apply_rope_at(x: &Tensor, at: &RopeAt) -> Result<Tensor> {
    let (t, _h, d) = x.dims3()?;
    let rot = 2 * at.cos.dims()[1];
    if rot == 0 || rot > d || at.cos.dims()[0] != t {
        return Err(KernelError::Shape {
            op: "rope",
            what: "x/positions",
            got: x.dims().to_vec(),
            expected: format!(
                "[{}, heads, at least {rot}] (one row per position)",
                at.cos.dims()[0],
            ),
        });
    }
    let rotate = |x: &Tensor| -> Result<Tensor> {
        let x4 = x.contiguous()?.unsqueeze(0)?;
        Ok(candle_nn::rotary_emb::rope_thd(&x4, &at.cos, &at.sin)?.squeeze(0)?)
    };
    if rot == d {
        return rotate(x);
    }
    let turned = rotate(&x.narrow(2, 0, rot)?)?;
    Ok(Tensor::cat(&[&turned, &x.narrow(2, rot, d - rot)?], 2)?)
}
