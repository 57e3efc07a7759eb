//! A forward step's paged layout, checked and turned into index tensors once, then used by
//! every layer.
//!
//! The layout (which rows belong to which sequence, where each position's K/V lives) is the
//! same in all layers of a step. The generic device path needs it as tensors (gather indices,
//! masks): built per layer and per sequence, those cost a host-to-device copy and a dozen
//! launches each, which dominate a GPU decode step. [`PagedStep`] builds them once, on first
//! use, and batches the sequences into a few *buckets* of padded rectangles so that attention
//! is a fixed number of ops per bucket, not per sequence.
//!
//! Bucketing: sequences are sorted by new rows then context, and a bucket takes the next
//! sequence while its padded area (`n · q_max · len_max`) stays within twice the area its
//! sequences need, so padding at most doubles the attention work. A decode batch of similar
//! lengths is one bucket; a long prefill chunk never pads short decodes up to its size.

use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};

use crate::attention::{KvPool, PagedSeq, attention_cpu};
use crate::cpu::is_cpu_f32;
use crate::{KernelError, KernelPath, Result};

/// One step's sequences, validated against a pool geometry.
#[derive(Debug)]
pub struct PagedStep<'a> {
    seqs: Vec<PagedSeq<'a>>,
    /// The pool slot of every row, in row order.
    slots: Vec<u32>,
    rows: usize,
    block_size: usize,
    num_slots: usize,
    generic: OnceLock<GenericIndex>,
}

/// The device tensors of the generic path.
#[derive(Debug)]
struct GenericIndex {
    /// What they were built for: device, activation dtype, kv heads, head dim.
    key: (candle_core::DeviceLocation, DType, usize, usize),
    /// `[T, kv_heads, head_dim]` slot of each row, for `scatter_set`.
    write: Tensor,
    buckets: Vec<Bucket>,
    /// Row `t` of the output is row `out_index[t]` of the buckets' outputs, concatenated;
    /// `None` when that is the identity.
    out_index: Option<Tensor>,
}

/// Sequences attended together as one padded `[n, q_max] × [n, len]` rectangle.
#[derive(Debug)]
struct Bucket {
    n: usize,
    q_max: usize,
    /// `[n · q_max]` rows of `q` (padding rows repeat the sequence's first row).
    q_index: Tensor,
    /// The sequences in it, in row order.
    members: Vec<usize>,
    /// The positions the rows see in a layer attending to the whole context, built on first
    /// use (a model whose every layer slides never needs it).
    full: OnceLock<(Option<usize>, Span)>,
    /// The same in a sliding-window layer: only the positions some row's window reaches are
    /// gathered.
    windowed: OnceLock<(Option<usize>, Span)>,
}

/// The cached positions a bucket's rows attend to: per sequence, a run of consecutive
/// positions from its earliest visible one, padded to a common length.
#[derive(Debug)]
struct Span {
    len: usize,
    /// `[n · len]` pool slots (padding repeats the run's first slot).
    kv_index: Tensor,
    /// `[n, 1, 1, q_max, len]`: 0 where a row may attend, -inf elsewhere (causal, window and
    /// padding; a padding row attends to the run's first position only, so its softmax stays
    /// finite).
    mask: Tensor,
}

impl<'a> PagedStep<'a> {
    /// Checks `seqs` (rows in order without gaps, each within its block table and the pool's
    /// `num_slots` of `block_size`).
    pub fn new(seqs: &[PagedSeq<'a>], block_size: usize, num_slots: usize) -> Result<Self> {
        let mut next = 0;
        for s in seqs {
            let blocks_needed = s.len.div_ceil(block_size.max(1));
            if block_size == 0
                || s.q_start != next
                || s.q_len == 0
                || s.q_len > s.len
                || s.block_table.len() < blocks_needed
            {
                return Err(KernelError::Shape {
                    op: "attention",
                    what: "sequence layout",
                    got: vec![s.q_start, s.q_len, s.len, s.block_table.len()],
                    expected: format!("rows starting at {next}, 1 <= q_len <= len, enough blocks"),
                });
            }
            if let Some(&b) = s.block_table[..blocks_needed]
                .iter()
                .find(|&&b| (b as usize + 1) * block_size > num_slots)
            {
                return Err(KernelError::OutOfRange {
                    op: "attention",
                    what: "block",
                    index: b as usize,
                    limit: num_slots / block_size,
                });
            }
            next += s.q_len;
        }
        let mut slots = Vec::with_capacity(next);
        for s in seqs {
            slots.extend((s.len - s.q_len..s.len).map(|p| s.slot(p, block_size) as u32));
        }
        Ok(Self {
            seqs: seqs.to_vec(),
            slots,
            rows: next,
            block_size,
            num_slots,
            generic: OnceLock::new(),
        })
    }

    /// Rows (new tokens) in the step.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The pool slot of every row, in row order.
    pub fn slots(&self) -> &[u32] {
        &self.slots
    }

    fn check_pool(&self, pool: &KvPool, op: &'static str) -> Result<()> {
        if pool.block_size != self.block_size || pool.num_slots() != self.num_slots {
            return Err(KernelError::Shape {
                op,
                what: "pool",
                got: vec![pool.num_slots(), pool.block_size],
                expected: format!(
                    "{} slots in blocks of {} (the geometry the step was checked against)",
                    self.num_slots, self.block_size
                ),
            });
        }
        Ok(())
    }

    /// Writes row `t` of `k`/`v` (`[T, kv_heads, head_dim]`) at its position's slot.
    pub fn write_kv(&self, pool: &KvPool, k: &Tensor, v: &Tensor, path: KernelPath) -> Result<()> {
        self.check_pool(pool, "write_kv")?;
        let (t, kvh, hd) = k.dims3()?;
        if v.dims() != k.dims() || t != self.rows || pool.k.dims()[1..] != [kvh, hd] {
            return Err(KernelError::Shape {
                op: "write_kv",
                what: "k/v",
                got: k.dims().to_vec(),
                expected: format!("[{}, {:?}] matching the pool", self.rows, &pool.k.dims()[1..]),
            });
        }
        if t == 0 {
            return Ok(());
        }
        if path == KernelPath::Auto && is_cpu_f32(k) && is_cpu_f32(v) && is_cpu_f32(&pool.k) {
            // Shapes are checked above; slots are within the blocks checked in `new`.
            return crate::attention::scatter_rows_cpu(pool, k, v, &self.slots);
        }
        let idx = self.generic(k.device(), k.dtype(), kvh, hd)?;
        pool.k.scatter_set(&idx.write, &k.contiguous()?, 0)?;
        pool.v.scatter_set(&idx.write, &v.contiguous()?, 0)?;
        Ok(())
    }

    /// Causal attention of every row of `q` (`[T, heads, head_dim]`) against its sequence's
    /// cached K/V (this step's rows already written). Returns `[T, heads, head_dim]`. With a
    /// `window`, the row at position `p` sees only positions `p - window + 1 ..= p` (a sliding
    /// window layer; the boundary Hugging Face, vLLM and llama.cpp share).
    pub fn attend(
        &self,
        q: &Tensor,
        pool: &KvPool,
        scale: f32,
        window: Option<usize>,
        path: KernelPath,
    ) -> Result<Tensor> {
        self.check_pool(pool, "attention")?;
        if window == Some(0) {
            return Err(KernelError::Shape {
                op: "attention",
                what: "sliding window",
                got: vec![0],
                expected: "at least 1 position".into(),
            });
        }
        let (t, heads, hd) = q.dims3()?;
        let kvh = pool.k.dims()[1];
        if pool.k.dims()[2] != hd || kvh == 0 || heads % kvh != 0 || t != self.rows {
            return Err(KernelError::Shape {
                op: "attention",
                what: "q",
                got: q.dims().to_vec(),
                expected: format!(
                    "[{}, a multiple of {kvh} heads, {}] (the step's rows)",
                    self.rows,
                    pool.k.dims()[2]
                ),
            });
        }
        if path == KernelPath::Auto && is_cpu_f32(q) && is_cpu_f32(&pool.k) && is_cpu_f32(&pool.v) {
            return attention_cpu(q, pool, &self.seqs, scale, window);
        }
        if t == 0 {
            return Ok(q.clone());
        }
        let idx = self.generic(q.device(), q.dtype(), kvh, hd)?;
        let group = heads / kvh;
        let mut outs = Vec::with_capacity(idx.buckets.len());
        for b in &idx.buckets {
            let build = || self.span(&b.members, b.q_max, window, q.device(), q.dtype());
            let span = match window {
                None => cached(&b.full, None, build)?,
                Some(_) => cached(&b.windowed, window, build)?,
            };
            let (n, qm, lm) = (b.n, b.q_max, span.len);
            // [n·qm, heads, hd] -> [n, kvh, group·qm, hd] (head h = kv·group + g).
            let qs = q
                .index_select(&b.q_index, 0)?
                .reshape((n, qm, kvh, group, hd))?
                .permute((0, 2, 3, 1, 4))?
                .contiguous()?
                .reshape((n, kvh, group * qm, hd))?;
            let gather = |pool: &Tensor| -> Result<Tensor> {
                Ok(pool
                    .index_select(&span.kv_index, 0)?
                    .reshape((n, lm, kvh, hd))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let (k, v) = (gather(&pool.k)?, gather(&pool.v)?);
            let att = (qs.matmul(&k.t()?)? * f64::from(scale))?
                .reshape((n, kvh, group, qm, lm))?
                .broadcast_add(&span.mask)?;
            let att = candle_nn::ops::softmax_last_dim(&att)?.reshape((n, kvh, group * qm, lm))?;
            let o = att
                .matmul(&v)?
                .reshape((n, kvh, group, qm, hd))?
                .permute((0, 3, 1, 2, 4))?
                .contiguous()?
                .reshape((n * qm, heads, hd))?;
            outs.push(o);
        }
        // One bucket (the usual decode batch) comes back as it is: `cat` of one is a clone.
        let out = Tensor::cat(&outs, 0)?;
        Ok(match &idx.out_index {
            Some(i) => out.index_select(i, 0)?,
            None => out,
        })
    }

    /// The generic path's tensors for this device, dtype and head geometry: built on first use
    /// and kept for the step's other layers (a different geometry gets its own, uncached).
    fn generic(
        &self,
        dev: &Device,
        dtype: DType,
        kvh: usize,
        hd: usize,
    ) -> Result<Held<'_, GenericIndex>> {
        let key = (dev.location(), dtype, kvh, hd);
        if let Some(g) = self.generic.get() {
            if g.key == key {
                return Ok(Held::Cached(g));
            }
            return Ok(Held::Owned(self.build(dev, key)?));
        }
        let built = self.build(dev, key)?;
        Ok(Held::Cached(self.generic.get_or_init(|| built)))
    }

    fn build(
        &self,
        dev: &Device,
        key: (candle_core::DeviceLocation, DType, usize, usize),
    ) -> Result<GenericIndex> {
        let (_, _, kvh, hd) = key;
        let t = self.rows;
        let write = Tensor::from_slice(&self.slots, (t, 1, 1), dev)?
            .broadcast_as((t, kvh, hd))?
            .contiguous()?;
        let mut order: Vec<usize> = (0..self.seqs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse((self.seqs[i].q_len, self.seqs[i].len)));
        let mut buckets = Vec::new();
        let mut out_index = vec![0u32; t];
        let mut base = 0usize;
        let mut rest = &order[..];
        while let Some(&first) = rest.first() {
            let (q_max, len_max) = (self.seqs[first].q_len, self.seqs[first].len);
            let mut need = q_max * len_max;
            let mut n = 1;
            // Sorted by q_len then len, descending: the first member sets both maxima only
            // when its q_len is largest; track both anyway.
            let (mut qm, mut lm) = (q_max, len_max);
            while let Some(&i) = rest.get(n) {
                let s = &self.seqs[i];
                let (qm2, lm2) = (qm.max(s.q_len), lm.max(s.len));
                if (n + 1) * qm2 * lm2 > 2 * (need + s.q_len * s.len) {
                    break;
                }
                (qm, lm, need, n) = (qm2, lm2, need + s.q_len * s.len, n + 1);
            }
            // Row order inside a bucket keeps a plain decode batch's output in row order.
            let mut members = rest[..n].to_vec();
            members.sort_unstable();
            rest = &rest[n..];
            let mut q_index = Vec::with_capacity(n * qm);
            for (j, &si) in members.iter().enumerate() {
                let s = &self.seqs[si];
                for i in 0..qm {
                    if i < s.q_len {
                        q_index.push((s.q_start + i) as u32);
                        out_index[s.q_start + i] = (base + j * qm + i) as u32;
                    } else {
                        q_index.push(s.q_start as u32);
                    }
                }
            }
            buckets.push(Bucket {
                n,
                q_max: qm,
                q_index: Tensor::from_vec(q_index, n * qm, dev)?,
                full: OnceLock::new(),
                members,
                windowed: OnceLock::new(),
            });
            base += n * qm;
        }
        let identity = base == t && out_index.iter().enumerate().all(|(i, &o)| o as usize == i);
        let out_index = if identity { None } else { Some(Tensor::from_vec(out_index, t, dev)?) };
        Ok(GenericIndex { key, write, buckets, out_index })
    }

    /// What a bucket's rows attend to, within `window` if given: each sequence's run starts at
    /// the first position its earliest new row sees.
    fn span(
        &self,
        members: &[usize],
        qm: usize,
        window: Option<usize>,
        dev: &Device,
        dtype: DType,
    ) -> Result<Span> {
        let n = members.len();
        // Causal: new row i sees every position up to its own, and none that fell out of its
        // window.
        let visible = |s: &PagedSeq<'_>, i: usize| {
            let ctx = s.len - s.q_len + i + 1;
            (window.map_or(0, |w| ctx.saturating_sub(w)), ctx)
        };
        let start: Vec<usize> = members.iter().map(|&si| visible(&self.seqs[si], 0).0).collect();
        let len = members
            .iter()
            .zip(&start)
            .map(|(&si, &first)| self.seqs[si].len - first)
            .max()
            .unwrap_or(0);
        let mut kv_index = Vec::with_capacity(n * len);
        let mut mask = vec![f32::NEG_INFINITY; n * qm * len];
        for (j, (&si, &first)) in members.iter().zip(&start).enumerate() {
            let s = &self.seqs[si];
            let first_slot = s.slot(first, self.block_size) as u32;
            kv_index.extend(
                (first..first + len).map(|p| {
                    if p < s.len { s.slot(p, self.block_size) as u32 } else { first_slot }
                }),
            );
            for i in 0..qm {
                let row = &mut mask[(j * qm + i) * len..(j * qm + i + 1) * len];
                if i < s.q_len {
                    let (from, to) = visible(s, i);
                    row[from - first..to - first].fill(0.0);
                } else {
                    row[0] = 0.0;
                }
            }
        }
        Ok(Span {
            len,
            kv_index: Tensor::from_vec(kv_index, n * len, dev)?,
            mask: Tensor::from_vec(mask, (n, 1, 1, qm, len), dev)?.to_dtype(dtype)?,
        })
    }
}

/// The span `cell` holds for `window`, built into it on first use. One step serves every
/// layer, and the models served give their sliding layers one window, so the first is kept;
/// another is built for its caller alone.
fn cached(
    cell: &OnceLock<(Option<usize>, Span)>,
    window: Option<usize>,
    build: impl Fn() -> Result<Span>,
) -> Result<Held<'_, Span>> {
    if cell.get().is_none() {
        let _ = cell.set((window, build()?));
    }
    Ok(match cell.get() {
        Some((kept, span)) if *kept == window => Held::Cached(span),
        _ => Held::Owned(build()?),
    })
}

/// A value the step caches, or one built for a single call (another geometry or window).
enum Held<'s, T> {
    Cached(&'s T),
    Owned(T),
}

impl<T> std::ops::Deref for Held<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        match self {
            Held::Cached(v) => v,
            Held::Owned(v) => v,
        }
    }
}
