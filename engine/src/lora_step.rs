//! The LoRA term of one forward step: which rows use which adapter, and the tensors each
//! projection's term needs, built once and used by every layer.
//!
//! On the CPU in f32 the fused kernel takes the groups as they are (each row reads its own
//! adapter's weights). Everywhere else (CUDA, other dtypes, or the generic path forced) a
//! per-adapter loop would cost some six tensor ops per adapter per projection, which on a GPU
//! is the whole step. There the term is split by the shape of each sequence's rows:
//!
//! * Short parts (decode tokens, short chunks) go through a [`LoraStack`] of every adapter in
//!   the step, one per group of projections that read the same input ([`ProjGroup`]: q/k/v,
//!   o, gate/up, down): a shrink, a mask, an expand and an add per projection, whatever the
//!   adapter count, at the price of computing each short row against every adapter's columns
//!   and masking the others out.
//! * A part of [`DENSE_ROWS`] rows or more (a prefill chunk) gets its own shrink and expand on
//!   its rows: masking would multiply its work by the number of adapters, and there are few
//!   such parts per step.
//!
//! Stacks are device copies of the step's adapters, cached while the set of adapters in the
//! batch stays the same (the decode steps of a running batch) and rebuilt when it changes. When
//! requests finish, the batch's adapters are a subset of the cached set: the stacks are kept
//! (the absent adapters' columns masked out) while at least half their adapters are in the
//! batch, so a finishing request does not cost a rebuild. The cache holds one set; its bytes
//! come on top of the adapter pool's budget, at most the size of one batch's adapters.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Mutex, MutexGuard};

use candle_core::{DType, Device, Tensor};
use lorad_kernels::{KernelPath, LoraGroup, LoraStack, StackMember, stack_mask};
use lorad_store::TargetModule;

use crate::Result;
use crate::adapters::ResidentAdapter;

/// Rows from which one sequence's part gets its own matmuls instead of a share of the stack.
pub(crate) const DENSE_ROWS: u32 = 16;

/// Stacks of the last batch composition.
#[derive(Debug, Default)]
pub(crate) struct StackCache {
    /// Adapter uids, ascending: the composition the stacks are for.
    key: Vec<u64>,
    /// Times the stacks were built (for tests and tuning).
    builds: usize,
    /// `stacks[layer][group]`: the stack of the adapters that target the group, if any.
    stacks: Vec<[Option<Stacked>; 4]>,
}

/// Projections that read the same input, whose LoRA terms share one stacked shrink.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ProjGroup {
    /// q, k and v (the attention input).
    Qkv,
    /// o (the attention output).
    O,
    /// gate and up (the MLP input).
    GateUp,
    /// down (the MLP activation).
    Down,
}

impl ProjGroup {
    const ALL: [ProjGroup; 4] = [ProjGroup::Qkv, ProjGroup::O, ProjGroup::GateUp, ProjGroup::Down];

    /// Its projections, in the order [`LoraStep::apply`] takes their outputs.
    pub(crate) fn modules(self) -> &'static [TargetModule] {
        match self {
            ProjGroup::Qkv => &[TargetModule::QProj, TargetModule::KProj, TargetModule::VProj],
            ProjGroup::O => &[TargetModule::OProj],
            ProjGroup::GateUp => &[TargetModule::GateProj, TargetModule::UpProj],
            ProjGroup::Down => &[TargetModule::DownProj],
        }
    }
}

impl StackCache {
    /// Times the stacks were built.
    pub(crate) fn builds(&self) -> usize {
        self.builds
    }
}

/// One group's stack: which of the cache's adapters its members are, and where each
/// projection's columns sit in its output.
#[derive(Debug)]
struct Stacked {
    stack: LoraStack,
    adapters: Vec<usize>,
    /// `(index in the group's modules, first column, width)` of each targeted projection.
    outs: Vec<(usize, usize, usize)>,
}

/// A mask depends on the member adapters and their ranks and scales (equal in most layers).
type MaskKey = Vec<(usize, usize, u32)>;

/// The LoRA side of one forward step.
pub(crate) struct LoraStep<'a> {
    /// The step's adapters by ascending uid, each with all its rows.
    groups: Vec<(&'a ResidentAdapter, Vec<u32>)>,
    path: KernelPath,
    generic: Option<Generic<'a>>,
}

/// The generic path's per-step state.
struct Generic<'a> {
    cache: MutexGuard<'a, StackCache>,
    /// Rows the stack takes (those of short parts, ascending), and for each adapter its rows'
    /// places among them.
    short_rows: usize,
    short_of: Vec<Vec<u32>>,
    /// The step's adapter (index in `groups`) of each of the cache's adapters, if in the step.
    step_of: Vec<Option<usize>>,
    /// Gathers the stack's rows out of the step's rows; `None` when they are all of them.
    short_index: Option<Tensor>,
    /// Long parts: adapter, rows, and the rows as an index tensor for the scatter-add.
    dense: Vec<(usize, Range<u32>, Tensor)>,
    masks: RefCell<HashMap<MaskKey, Tensor>>,
    dtype: DType,
    device: Device,
}

impl<'a> LoraStep<'a> {
    /// `parts` gives each sequence's adapter (`None`: the base model) and rows, in row order,
    /// covering all `rows`; an adapter may have several. `fused` says whether the fused CPU
    /// kernel will take the term; otherwise the stacks in `cache` are made to match the step's
    /// adapters, in `dtype` on `device`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        parts: &[(Option<&'a ResidentAdapter>, Range<u32>)],
        rows: usize,
        path: KernelPath,
        fused: bool,
        cache: &'a Mutex<StackCache>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let mut groups: Vec<(&'a ResidentAdapter, Vec<u32>)> = Vec::new();
        for (a, r) in parts {
            let Some(a) = a else { continue };
            match groups.iter_mut().find(|(g, _)| g.uid() == a.uid()) {
                Some((_, rows)) => rows.extend(r.clone()),
                None => groups.push((a, r.clone().collect())),
            }
        }
        // By uid, so that the cache key does not depend on the sequences' order.
        groups.sort_by_key(|(a, _)| a.uid());
        if fused || groups.is_empty() {
            return Ok(Self { groups, path, generic: None });
        }
        // A panic while the cache was being replaced leaves the old, whole value or the new
        // one: never a half-built cache, so a poisoned lock is safe to take over.
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        let key: Vec<u64> = groups.iter().map(|(a, _)| a.uid()).collect();
        let subset = key.iter().all(|u| cache.key.binary_search(u).is_ok());
        if !subset || key.len() * 2 < cache.key.len() {
            // Drop the old stacks before building the new ones: peak memory one set.
            let builds = cache.builds + 1;
            *cache = StackCache::default();
            *cache = build(&groups, key.clone(), dtype)?;
            cache.builds = builds;
        }
        let step_of: Vec<Option<usize>> =
            cache.key.iter().map(|u| key.binary_search(u).ok()).collect();
        // The stack takes every row of short parts, base rows too (their mask rows are zero):
        // without long parts that is all rows, in order, and nothing needs gathering.
        let mut stacked: Vec<u32> = Vec::new();
        let mut short_of = vec![Vec::new(); groups.len()];
        let mut dense = Vec::new();
        for (a, r) in parts {
            let g = a.map(|a| groups.partition_point(|(b, _)| b.uid() < a.uid()));
            if r.len() as u32 >= DENSE_ROWS {
                if let Some(g) = g {
                    let idx: Vec<u32> = r.clone().collect();
                    dense.push((g, r.clone(), Tensor::from_vec(idx, r.len(), device)?));
                }
                continue;
            }
            for row in r.clone() {
                if let Some(g) = g {
                    short_of[g].push(stacked.len() as u32);
                }
                stacked.push(row);
            }
        }
        let all =
            stacked.len() == rows && stacked.iter().enumerate().all(|(i, &r)| r as usize == i);
        let short_rows = stacked.len();
        let short_index = if all || stacked.is_empty() {
            None
        } else {
            Some(Tensor::from_vec(stacked, short_rows, device)?)
        };
        Ok(Self {
            groups,
            path,
            generic: Some(Generic {
                cache,
                short_rows,
                short_of,
                step_of,
                short_index,
                dense,
                masks: RefCell::new(HashMap::new()),
                dtype,
                device: device.clone(),
            }),
        })
    }

    /// Adds the LoRA terms of `group`'s projections of `layer` to their outputs `ys` (base
    /// outputs, in [`ProjGroup::modules`] order), all computed from the input `x`.
    pub(crate) fn apply(
        &self,
        group: ProjGroup,
        layer: usize,
        ys: &mut [Tensor],
        x: &Tensor,
    ) -> Result<()> {
        let modules = group.modules();
        let Some(st) = &self.generic else {
            // The group's projections in one call: one pass over the rows for all of them.
            let lgs: Vec<Vec<LoraGroup<'_>>> = modules
                .iter()
                .map(|&m| {
                    self.groups
                        .iter()
                        .filter_map(|(a, rows)| {
                            a.pair(layer, m).map(|pair| LoraGroup { pair, rows })
                        })
                        .collect()
                })
                .collect();
            let lg: Vec<&[LoraGroup<'_>]> = lgs.iter().map(Vec::as_slice).collect();
            let inputs: Vec<&Tensor> = ys.iter().collect();
            let out = lorad_kernels::add_lora_shared(&inputs, x, &lg, self.path)?;
            for (y, o) in ys.iter_mut().zip(out) {
                *y = o;
            }
            return Ok(());
        };
        for (g, rows, idx) in &st.dense {
            let xs = x.narrow(0, rows.start as usize, rows.len())?;
            for (y, &m) in ys.iter_mut().zip(modules) {
                let Some(pair) = self.groups[*g].0.pair(layer, m) else { continue };
                let a = pair.a().to_dtype(xs.dtype())?;
                let v = (xs.matmul(&a.t()?)? * f64::from(pair.scale()))?;
                let d = v.matmul(&pair.b_t().to_dtype(xs.dtype())?)?.to_dtype(y.dtype())?;
                *y = y.index_add(idx, &d, 0)?;
            }
        }
        let Some(s) = st.cache.stacks.get(layer).and_then(|l| l[group as usize].as_ref()) else {
            return Ok(());
        };
        if st.short_rows == 0 || s.adapters.iter().all(|&c| st.rows_of(c).is_empty()) {
            return Ok(());
        }
        let mask = st.mask(s)?;
        let d = match &st.short_index {
            None => s.stack.delta(x, &mask)?,
            Some(idx) => s.stack.delta(&x.index_select(idx, 0)?, &mask)?,
        };
        for &(i, col, width) in &s.outs {
            let y = &mut ys[i];
            let di = d.narrow(1, col, width)?.to_dtype(y.dtype())?;
            *y = match &st.short_index {
                None => (&*y + di)?,
                Some(idx) => y.index_add(idx, &di.contiguous()?, 0)?,
            };
        }
        Ok(())
    }
}

impl Generic<'_> {
    /// The stacked rows (places) of the cache's adapter `c`: none when it is not in the step.
    fn rows_of(&self, c: usize) -> &[u32] {
        self.step_of.get(c).copied().flatten().map_or(&[], |g| &self.short_of[g][..])
    }

    /// The mask of `s` over the short rows, made once per step and member layout.
    fn mask(&self, s: &Stacked) -> Result<Tensor> {
        let key: MaskKey = s
            .adapters
            .iter()
            .zip(s.stack.members())
            .map(|(&g, m)| (g, m.rank, m.scale.to_bits()))
            .collect();
        let mut masks = self.masks.borrow_mut();
        if let Some(m) = masks.get(&key) {
            return Ok(m.clone());
        }
        let rows: Vec<&[u32]> = s.adapters.iter().map(|&c| self.rows_of(c)).collect();
        let members: Vec<StackMember> = s.stack.members().to_vec();
        let m = stack_mask(self.short_rows, &members, &rows, self.dtype, &self.device)?;
        masks.insert(key, m.clone());
        Ok(m)
    }
}

/// Stacks for every layer and projection group some adapter of `groups` targets.
fn build(
    groups: &[(&ResidentAdapter, Vec<u32>)],
    key: Vec<u64>,
    dtype: DType,
) -> Result<StackCache> {
    let layers = groups.iter().map(|(a, _)| a.layers.len()).max().unwrap_or(0);
    let mut stacks = Vec::with_capacity(layers);
    for l in 0..layers {
        let mut per: [Option<Stacked>; 4] = Default::default();
        for group in ProjGroup::ALL {
            let (mut parts, mut adapters, mut outs) = (Vec::new(), Vec::new(), Vec::new());
            let mut col = 0;
            for (i, &m) in group.modules().iter().enumerate() {
                let (members, pairs): (Vec<usize>, Vec<_>) = groups
                    .iter()
                    .enumerate()
                    .filter_map(|(g, (a, _))| a.pair(l, m).map(|p| (g, p)))
                    .unzip();
                if pairs.is_empty() {
                    continue;
                }
                let stack = LoraStack::new(&pairs, dtype)?;
                outs.push((i, col, stack.out_dim()));
                col += stack.out_dim();
                adapters.extend(members);
                parts.push(stack);
            }
            if !parts.is_empty() {
                // Of one stack, that is the stack itself.
                let stack = LoraStack::block_diagonal(&parts)?;
                per[group as usize] = Some(Stacked { stack, adapters, outs });
            }
        }
        stacks.push(per);
    }
    Ok(StackCache { key, builds: 0, stacks })
}
