//! Paged KV cache writes and causal grouped-query attention over it.
//!
//! One pool per layer holds K and V for every sequence as `[num_slots, kv_heads, head_dim]`,
//! `slot = block · block_size + offset` (the vLLM layout). A sequence owns a *block table*; its
//! token at position `p` lives in slot `table[p / bs] · bs + p % bs`. Fixed-size blocks let the
//! engine admit and free sequences without fragmentation or copies, and let one kernel call
//! serve a batch that mixes prefill chunks and single decode tokens of many sequences.

use candle_core::{CpuStorage, Device, InplaceOp2, Layout, Tensor};
use rayon::prelude::*;

use crate::cpu::{dot, is_cpu_f32, slice_of, slice_of_mut, with_f32};
use crate::step::PagedStep;
use crate::{KernelError, KernelPath, Result};

/// One layer's K/V pool.
#[derive(Debug, Clone)]
pub struct KvPool {
    /// Keys, `[num_slots, kv_heads, head_dim]`.
    pub k: Tensor,
    /// Values, same shape.
    pub v: Tensor,
    /// Tokens per block.
    pub block_size: usize,
}

impl KvPool {
    /// A zeroed pool of `num_blocks` blocks.
    pub fn zeros(
        num_blocks: usize,
        block_size: usize,
        kv_heads: usize,
        head_dim: usize,
        dtype: candle_core::DType,
        device: &Device,
    ) -> Result<Self> {
        let shape = (num_blocks * block_size, kv_heads, head_dim);
        Ok(Self {
            k: Tensor::zeros(shape, dtype, device)?,
            v: Tensor::zeros(shape, dtype, device)?,
            block_size,
        })
    }

    /// Total slots.
    pub fn num_slots(&self) -> usize {
        self.k.dims()[0]
    }
}

/// A sequence's part of one forward step.
#[derive(Debug, Clone, Copy)]
pub struct PagedSeq<'a> {
    /// Blocks holding positions `0..len`.
    pub block_table: &'a [u32],
    /// Tokens in the cache once this step's K/V are written (the attention context).
    pub len: usize,
    /// First row of this sequence in `q`.
    pub q_start: usize,
    /// Rows this step; they are positions `len - q_len .. len`.
    pub q_len: usize,
}

impl PagedSeq<'_> {
    /// Slot of position `p`.
    #[inline]
    pub fn slot(&self, p: usize, block_size: usize) -> usize {
        self.block_table[p / block_size] as usize * block_size + p % block_size
    }
}

/// Writes row `t` of `k`/`v` (`[T, kv_heads, head_dim]`) into slot `slots[t]` of the pool.
pub fn write_kv(
    pool: &KvPool,
    k: &Tensor,
    v: &Tensor,
    slots: &[u32],
    path: KernelPath,
) -> Result<()> {
    let (t, kvh, hd) = k.dims3()?;
    let pool_dims = pool.k.dims();
    if v.dims() != k.dims() || slots.len() != t || pool_dims[1..] != [kvh, hd] {
        return Err(KernelError::Shape {
            op: "write_kv",
            what: "k/v",
            got: k.dims().to_vec(),
            expected: format!(
                "[{}, {:?}] rows matching the pool and slot list",
                slots.len(),
                &pool_dims[1..]
            ),
        });
    }
    if let Some(&bad) = slots.iter().find(|&&s| s as usize >= pool.num_slots()) {
        return Err(KernelError::OutOfRange {
            op: "write_kv",
            what: "slot",
            index: bad as usize,
            limit: pool.num_slots(),
        });
    }
    if t == 0 {
        return Ok(());
    }
    if path == KernelPath::Auto && is_cpu_f32(k) && is_cpu_f32(v) && is_cpu_f32(&pool.k) {
        scatter_rows_cpu(pool, k, v, slots)?;
    } else {
        let idx = Tensor::from_slice(slots, t, k.device())?
            .reshape((t, 1, 1))?
            .broadcast_as((t, kvh, hd))?
            .contiguous()?;
        pool.k.scatter_set(&idx, &k.contiguous()?, 0)?;
        pool.v.scatter_set(&idx, &v.contiguous()?, 0)?;
    }
    Ok(())
}

/// The fused CPU write: row `t` of `k`/`v` copied in place into slot `slots[t]` of the pool.
/// The caller has checked the shapes and that every slot is in the pool.
pub(crate) fn scatter_rows_cpu(pool: &KvPool, k: &Tensor, v: &Tensor, slots: &[u32]) -> Result<()> {
    let (_, kvh, hd) = k.dims3()?;
    let op = ScatterRows { slots, row: kvh * hd };
    pool.k.inplace_op2(k, &op)?;
    pool.v.inplace_op2(v, &op)?;
    Ok(())
}

/// In-place row scatter for the CPU pool.
struct ScatterRows<'a> {
    slots: &'a [u32],
    row: usize,
}

impl InplaceOp2 for ScatterRows<'_> {
    fn name(&self) -> &'static str {
        "lorad-write-kv"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dl: &Layout,
        src: &CpuStorage,
        sl: &Layout,
    ) -> candle_core::Result<()> {
        let src =
            slice_of(src, sl).ok_or_else(|| candle_core::Error::Msg("write_kv src".into()))?;
        let dst =
            slice_of_mut(dst, dl).ok_or_else(|| candle_core::Error::Msg("write_kv pool".into()))?;
        for (t, &s) in self.slots.iter().enumerate() {
            let s = s as usize;
            dst[s * self.row..(s + 1) * self.row]
                .copy_from_slice(&src[t * self.row..(t + 1) * self.row]);
        }
        Ok(())
    }
}

/// Causal attention for every row of `q` (`[T, heads, head_dim]`) against its sequence's cached
/// K/V (which must already include this step's rows), within a sliding `window` if given.
/// Returns `[T, heads, head_dim]`. `seqs` must cover the rows of `q` in order, without gaps. A
/// forward pass over many layers builds one [`PagedStep`] instead and calls
/// [`PagedStep::attend`] per layer.
pub fn paged_attention(
    q: &Tensor,
    pool: &KvPool,
    seqs: &[PagedSeq<'_>],
    scale: f32,
    window: Option<usize>,
    path: KernelPath,
) -> Result<Tensor> {
    PagedStep::new(seqs, pool.block_size, pool.num_slots())?.attend(q, pool, scale, window, path)
}

/// The fused CPU kernel: every row in parallel, each over its own sequence's slots (the last
/// `window` of them, given one).
pub(crate) fn attention_cpu(
    q: &Tensor,
    pool: &KvPool,
    seqs: &[PagedSeq<'_>],
    scale: f32,
    window: Option<usize>,
) -> Result<Tensor> {
    let (t, heads, hd) = q.dims3()?;
    let kvh = pool.k.dims()[1];
    let group = heads / kvh;
    let bs = pool.block_size;
    let mut row_seq = Vec::with_capacity(t);
    for (si, s) in seqs.iter().enumerate() {
        row_seq.extend((0..s.q_len).map(|i| (si as u32, i as u32)));
    }
    let mut out = vec![0f32; t * heads * hd];
    with_f32(q, "attention", "q", |qs| {
        with_f32(&pool.k, "attention", "k pool", |ks| {
            with_f32(&pool.v, "attention", "v pool", |vs| {
                out.par_chunks_mut(heads * hd).enumerate().for_each(|(row, orow)| {
                    let (si, i) = row_seq[row];
                    let s = &seqs[si as usize];
                    // Causal: the i-th new row sees every cached position up to its own (and
                    // none that fell out of its window).
                    let ctx = s.len - s.q_len + i as usize + 1;
                    let first = window.map_or(0, |w| ctx.saturating_sub(w));
                    let slots: Vec<usize> = (first..ctx).map(|p| s.slot(p, bs)).collect();
                    let mut scores = vec![0f32; slots.len()];
                    for h in 0..heads {
                        let kv = h / group;
                        let qv = &qs[(row * heads + h) * hd..(row * heads + h + 1) * hd];
                        let mut max = f32::NEG_INFINITY;
                        for (sc, &slot) in scores.iter_mut().zip(&slots) {
                            let off = (slot * kvh + kv) * hd;
                            *sc = dot(qv, &ks[off..off + hd]) * scale;
                            max = max.max(*sc);
                        }
                        let mut sum = 0f32;
                        for sc in scores.iter_mut() {
                            *sc = (*sc - max).exp();
                            sum += *sc;
                        }
                        let inv = 1.0 / sum;
                        let o = &mut orow[h * hd..(h + 1) * hd];
                        for (sc, &slot) in scores.iter().zip(&slots) {
                            let off = (slot * kvh + kv) * hd;
                            let p = sc * inv;
                            for (oi, vi) in o.iter_mut().zip(&vs[off..off + hd]) {
                                *oi += p * vi;
                            }
                        }
                    }
                });
            })
        })
    })???;
    Ok(Tensor::from_vec(out, (t, heads, hd), &Device::Cpu)?)
}
