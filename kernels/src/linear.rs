//! The base model's projections for a few rows at a time: `y = x·Wᵀ`.
//!
//! A decode step multiplies a handful of rows (one per running sequence, a few more with
//! speculative drafts) by every weight matrix. candle's CPU matmul streams the weights once
//! for a single row but packs them first for two or more, so two rows cost twice one. Here
//! each weight row is read once and dotted with every input row while it is in cache: the
//! step stays bound by reading the weights whatever the row count, up to [`SMALL_ROWS`].
//! Each output is one [`Simd::dot`] of a weight row and an input row, so a row's result never
//! depends on the others in its batch. Longer inputs (prefill chunks) and other devices take
//! candle's matmul, the generic twin the tests compare against.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use crate::KernelPath;
use crate::Result;
use crate::cpu::{is_cpu_f32, with_f32};
use crate::simd::{Avx2, Portable, Simd};

/// Most rows the fused kernel takes; longer inputs are a matmul's job.
/// (Measured on a 2-vCPU EPYC: the fused kernel is 1.8-3x faster than the matmul for 1-8
/// rows and slower past about 14 on the 49152-row LM head. On a 2-vCPU Xeon with the 3×4
/// tile: 1.4-2.6x faster for 4-12 rows on the projections, even on the LM head, and slower
/// from 32 rows, where the matmul's FMAs win: this kernel keeps `dot`'s separate multiply
/// and add, so its answers stay those of every other build.)
pub const SMALL_ROWS: usize = 12;
/// Weight rows per parallel task.
const CHUNK: usize = 36;

/// `x·wᵀ` for `x` `[t, in]` and `w` `[out, in]`: the fused CPU kernel for up to
/// [`SMALL_ROWS`] contiguous `f32` rows on the CPU under [`KernelPath::Auto`], else candle.
pub fn linear(x: &Tensor, w: &Tensor, path: KernelPath) -> Result<Tensor> {
    let (t, in_dim) = x.dims2()?;
    let (out_dim, w_in) = w.dims2()?;
    let fused = path == KernelPath::Auto && t <= SMALL_ROWS && is_cpu_f32(x) && is_cpu_f32(w);
    if !fused || w_in != in_dim || in_dim == 0 || t == 0 {
        // candle names a shape mismatch itself.
        return Ok(x.matmul(&w.t()?)?);
    }
    // Output-major while computing, so each task writes one contiguous run.
    let mut yt = vec![0f32; out_dim * t];
    let avx2 = Avx2::detect();
    with_f32(w, "linear", "weight", |ws| {
        with_f32(x, "linear", "x", |xs| match avx2 {
            Some(simd) => rows(simd, ws, xs, in_dim, t, &mut yt),
            None => rows(Portable, ws, xs, in_dim, t, &mut yt),
        })
    })??;
    let mut y = vec![0f32; t * out_dim];
    for (o, col) in yt.chunks_exact(t).enumerate() {
        for (m, &v) in col.iter().enumerate() {
            y[m * out_dim + o] = v;
        }
    }
    Ok(Tensor::from_vec(y, (t, out_dim), &Device::Cpu)?)
}

/// `yt[o·t + m] = w[o]·x[m]`, weight rows in parallel chunks. With four input rows or more,
/// three weight rows at a time go through a 3×4 register tile ([`Simd::dot3x4`]), which
/// loads each vector for three or four products instead of one weight vector per four.
fn rows<S: Simd>(simd: S, w: &[f32], x: &[f32], in_dim: usize, t: usize, yt: &mut [f32]) {
    let row = |m: usize| &x[m * in_dim..(m + 1) * in_dim];
    yt.par_chunks_mut(CHUNK * t).zip(w.par_chunks(CHUNK * in_dim)).for_each(|(yc, wc)| {
        // Whole triples of weight rows go through the tile, the rest (and fewer than four
        // input rows) one weight row at a time.
        let tiled = if t >= 4 { wc.len() / (3 * in_dim) * 3 } else { 0 };
        let (w3, w1) = wc.split_at(tiled * in_dim);
        let (y3, y1) = yc.split_at_mut(tiled * t);
        for (ys, ws) in y3.chunks_exact_mut(3 * t).zip(w3.chunks_exact(3 * in_dim)) {
            let (y0, rest) = ys.split_at_mut(t);
            let (y1, y2) = rest.split_at_mut(t);
            let w = [&ws[..in_dim], &ws[in_dim..2 * in_dim], &ws[2 * in_dim..]];
            let mut m = 0;
            while m + 4 <= t {
                let tile = simd.dot3x4(w, [row(m), row(m + 1), row(m + 2), row(m + 3)]);
                for (y, v) in [&mut *y0, &mut *y1, &mut *y2].into_iter().zip(tile) {
                    y[m..m + 4].copy_from_slice(&v);
                }
                m += 4;
            }
            for (y, wrow) in [y0, y1, y2].into_iter().zip(w) {
                one_row(simd, wrow, &row, m, t, y);
            }
        }
        for (yo, wrow) in y1.chunks_exact_mut(t).zip(w1.chunks_exact(in_dim)) {
            one_row(simd, wrow, &row, 0, t, yo);
        }
    });
}

/// `yo[m] = wrow·x[m]` for the input rows `from..t`, four at a time.
fn one_row<'x, S: Simd>(
    simd: S,
    wrow: &[f32],
    row: &impl Fn(usize) -> &'x [f32],
    from: usize,
    t: usize,
    yo: &mut [f32],
) {
    let mut m = from;
    while m + 4 <= t {
        let four = simd.dot4(wrow, [row(m), row(m + 1), row(m + 2), row(m + 3)]);
        yo[m..m + 4].copy_from_slice(&four);
        m += 4;
    }
    match t - m {
        0 => {}
        1 => yo[m] = simd.dot(wrow, row(m)),
        // Two or three left: one more pass of four, the last row repeated (its results
        // dropped), still reads the weight row once.
        left => {
            let r = |k: usize| row((m + k).min(t - 1));
            let four = simd.dot4(wrow, [r(0), r(1), r(2), r(3)]);
            yo[m..].copy_from_slice(&four[..left]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::tests::values;

    #[test]
    fn matches_matmul_and_rows_do_not_depend_on_the_batch() -> Result<()> {
        let (in_dim, out_dim) = (77, 130);
        let w = Tensor::from_vec(values(1, out_dim * in_dim), (out_dim, in_dim), &Device::Cpu)?;
        let x =
            Tensor::from_vec(values(2, SMALL_ROWS * in_dim), (SMALL_ROWS, in_dim), &Device::Cpu)?;
        let all = linear(&x, &w, KernelPath::Auto)?.to_vec2::<f32>()?;
        let reference = linear(&x, &w, KernelPath::Generic)?.to_vec2::<f32>()?;
        for (a, b) in all.iter().flatten().zip(reference.iter().flatten()) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        for t in [1, 2, 3, 4, 5, 6, 7, 9] {
            let part = linear(&x.narrow(0, 3, t)?, &w, KernelPath::Auto)?.to_vec2::<f32>()?;
            for (m, row) in part.iter().enumerate() {
                assert_eq!(
                    row,
                    &all[3 + m],
                    "row {m} of {t} differs from the same row of SMALL_ROWS"
                );
            }
        }
        // Past SMALL_ROWS it is candle's matmul; a shape mismatch is candle's error.
        let long = Tensor::from_vec(values(3, 20 * in_dim), (20, in_dim), &Device::Cpu)?;
        assert_eq!(linear(&long, &w, KernelPath::Auto)?.dims(), &[20, out_dim]);
        assert!(linear(&x.narrow(1, 0, 10)?.contiguous()?, &w, KernelPath::Auto).is_err());
        Ok(())
    }
}
