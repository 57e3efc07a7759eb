//! Direct access to CPU tensor memory for the fused kernels.
//!
//! candle exposes a tensor's storage behind a read lock ([`Tensor::storage_and_layout`]); the
//! helpers here turn that into a plain `&[f32]` for contiguous `f32` CPU tensors and refuse
//! everything else, so each kernel can fall back to its generic path.

use candle_core::{CpuStorage, DType, Device, Layout, Storage, Tensor};
use half::bf16;

use crate::simd::Simd;

use crate::{KernelError, Result};

/// True when the fused CPU kernels can read `t` in place.
pub fn is_cpu_f32(t: &Tensor) -> bool {
    matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32 && t.is_contiguous()
}

/// Runs `f` on the contiguous `f32` contents of a CPU tensor.
pub fn with_f32<R>(
    t: &Tensor,
    op: &'static str,
    what: &'static str,
    f: impl FnOnce(&[f32]) -> R,
) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Err(KernelError::NotCpuF32 { op, what });
    };
    let data = slice_of(cpu, layout).ok_or(KernelError::NotCpuF32 { op, what })?;
    Ok(f(data))
}

/// The contiguous `f32` view of a CPU storage under `layout`, if it has one.
pub fn slice_of<'a>(cpu: &'a CpuStorage, layout: &Layout) -> Option<&'a [f32]> {
    let data = cpu.as_slice::<f32>().ok()?;
    let (start, end) = layout.contiguous_offsets()?;
    data.get(start..end)
}

/// A contiguous CPU weight matrix the fused kernels can read without converting it first.
#[derive(Debug, Clone, Copy)]
pub enum Weights<'a> {
    /// Full precision.
    F32(&'a [f32]),
    /// bf16, widened to f32 inside the dot product: half the memory traffic of f32, which is
    /// what a memory-bound GEMV over many distinct adapters pays for.
    Bf16(&'a [bf16]),
}

impl Weights<'_> {
    /// Dot product of elements `start..start + x.len()` with `x`.
    #[inline(always)]
    pub fn dot_at<S: Simd>(&self, simd: S, start: usize, x: &[f32]) -> f32 {
        match self {
            Weights::F32(w) => simd.dot(&w[start..start + x.len()], x),
            Weights::Bf16(w) => simd.dot_bf16(&w[start..start + x.len()], x),
        }
    }

    /// `y += Σ_j v[j]·w[j]` with `w` read as `[v.len(), y.len()]` row-major (see
    /// [`Simd::expand`]).
    #[inline(always)]
    pub fn expand<S: Simd>(&self, simd: S, y: &mut [f32], v: &[f32]) {
        match self {
            Weights::F32(w) => simd.expand(y, v, w),
            Weights::Bf16(w) => simd.expand_bf16(y, v, w),
        }
    }
}

/// bf16 → f32: bf16 is the top half of an f32, so this is exact and a shift the compiler
/// vectorizes.
#[inline(always)]
fn widen(v: bf16) -> f32 {
    f32::from_bits(u32::from(v.to_bits()) << 16)
}

/// The contiguous f32 or bf16 view of a CPU storage under `layout`, if it has one.
pub fn weights_of<'a>(cpu: &'a CpuStorage, layout: &Layout) -> Option<Weights<'a>> {
    let (start, end) = layout.contiguous_offsets()?;
    match cpu {
        CpuStorage::F32(v) => v.get(start..end).map(Weights::F32),
        CpuStorage::BF16(v) => v.get(start..end).map(Weights::Bf16),
        _ => None,
    }
}

/// True when `t` is a contiguous CPU tensor [`weights_of`] can read.
pub fn is_cpu_weights(t: &Tensor) -> bool {
    matches!(t.device(), Device::Cpu)
        && matches!(t.dtype(), DType::F32 | DType::BF16)
        && t.is_contiguous()
}

/// Mutable twin of [`slice_of`], for in-place ops.
pub fn slice_of_mut<'a>(cpu: &'a mut CpuStorage, layout: &Layout) -> Option<&'a mut [f32]> {
    let (start, end) = layout.contiguous_offsets()?;
    match cpu {
        CpuStorage::F32(v) => v.get_mut(start..end),
        _ => None,
    }
}

/// Dot product written so the compiler vectorizes it: eight independent accumulators break
/// the add dependency chain. The summation order is fixed by the slice length alone, so a row's
/// result never depends on what else is in the batch (batch invariance).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let chunks = n / 8;
    for c in 0..chunks {
        let (x, y) = (&a[c * 8..c * 8 + 8], &b[c * 8..c * 8 + 8]);
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut tail = 0f32;
    for i in chunks * 8..n {
        tail += a[i] * b[i];
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// [`dot`] with a bf16 left side. bf16 is the top half of an f32, so widening is a 16-bit shift
/// the compiler vectorizes; the accumulation order is [`dot`]'s, so results are batch invariant.
#[inline(always)]
pub fn dot_bf16(a: &[bf16], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let chunks = n / 8;
    for c in 0..chunks {
        let (x, y) = (&a[c * 8..c * 8 + 8], &b[c * 8..c * 8 + 8]);
        for k in 0..8 {
            acc[k] += widen(x[k]) * y[k];
        }
    }
    let mut tail = 0f32;
    for i in chunks * 8..n {
        tail += widen(a[i]) * b[i];
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// `y += alpha * x`, vectorizable.
#[inline(always)]
pub fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// [`axpy`] with a bf16 `x`.
#[inline(always)]
pub fn axpy_bf16(y: &mut [f32], alpha: f32, x: &[bf16]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += alpha * widen(xi);
    }
}
