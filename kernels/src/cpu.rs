//! Direct access to CPU tensor memory for the fused kernels.
//!
//! candle exposes a tensor's storage behind a read lock ([`Tensor::storage_and_layout`]); the
//! helpers here turn that into a plain `&[f32]` for contiguous `f32` CPU tensors and refuse
//! everything else, so each kernel can fall back to its generic path.

use candle_core::{CpuStorage, DType, Device, Layout, Storage, Tensor};

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
#[inline]
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

/// `y += alpha * x`, vectorizable.
#[inline]
pub fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}
