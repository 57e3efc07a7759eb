//! The inner loops of the fused CPU kernels (dot products and axpys over f32 or bf16 weights),
//! in a portable build and, on x86-64 CPUs that have it, an AVX2 build chosen at run time.
//!
//! The workspace compiles for baseline x86-64, where these loops run four lanes wide; candle's
//! matmuls pick AVX2/AVX-512 at run time, so without the same here the LoRA term would run at
//! half the width of the base model next to it. Both builds do the same operations in the same
//! order (eight lanes, separate multiply and add, no FMA contraction, one fixed reduction), so
//! they give the same bits: which one runs never changes an answer.

use half::bf16;

/// One implementation of the inner loops. Chosen once per kernel call, never per row.
pub trait Simd: Copy + Send + Sync {
    /// `Σ a[i]·b[i]` over the shorter length, in [`crate::cpu::dot`]'s order.
    fn dot(self, a: &[f32], b: &[f32]) -> f32;
    /// [`Simd::dot`] with bf16 `a`, widened exactly.
    fn dot_bf16(self, a: &[bf16], b: &[f32]) -> f32;
    /// `[w·x[0], …, w·x[3]]`, each bit for bit [`Simd::dot`]`(w, x[i])`: `w` is read once
    /// for the four (a few decode rows against one weight row).
    fn dot4(self, w: &[f32], x: [&[f32]; 4]) -> [f32; 4] {
        x.map(|x| self.dot(w, x))
    }
    /// `out[i][j] = w[i]·x[j]`, each bit for bit [`Simd::dot`]`(w[i], x[j])`: a register tile
    /// of three weight rows by four input rows, every load used three or four times (batches
    /// of a few dozen decode rows against every weight row).
    fn dot3x4(self, w: [&[f32]; 3], x: [&[f32]; 4]) -> [[f32; 4]; 3] {
        w.map(|w| self.dot4(w, x))
    }
    /// `y[i] += alpha·x[i]`.
    fn axpy(self, y: &mut [f32], alpha: f32, x: &[f32]);
    /// [`Simd::axpy`] with bf16 `x`, widened exactly.
    fn axpy_bf16(self, y: &mut [f32], alpha: f32, x: &[bf16]);
    /// `y += Σ_j v[j]·bt[j]` where `bt` is `[v.len(), y.len()]` row-major: for every element,
    /// the products are added in order `j = 0, 1, …` (what `v.len()` axpys would do).
    fn expand(self, y: &mut [f32], v: &[f32], bt: &[f32]);
    /// [`Simd::expand`] with bf16 `bt`.
    fn expand_bf16(self, y: &mut [f32], v: &[f32], bt: &[bf16]);
}

/// The portable build (what baseline x86-64 and every other target run).
#[derive(Debug, Clone, Copy)]
pub struct Portable;

impl Simd for Portable {
    #[inline(always)]
    fn dot(self, a: &[f32], b: &[f32]) -> f32 {
        crate::cpu::dot(a, b)
    }
    #[inline(always)]
    fn dot_bf16(self, a: &[bf16], b: &[f32]) -> f32 {
        crate::cpu::dot_bf16(a, b)
    }
    #[inline(always)]
    fn axpy(self, y: &mut [f32], alpha: f32, x: &[f32]) {
        crate::cpu::axpy(y, alpha, x);
    }
    #[inline(always)]
    fn axpy_bf16(self, y: &mut [f32], alpha: f32, x: &[bf16]) {
        crate::cpu::axpy_bf16(y, alpha, x);
    }
    #[inline(always)]
    fn expand(self, y: &mut [f32], v: &[f32], bt: &[f32]) {
        let n = y.len();
        for (j, &vj) in v.iter().enumerate() {
            crate::cpu::axpy(y, vj, &bt[j * n..(j + 1) * n]);
        }
    }
    #[inline(always)]
    fn expand_bf16(self, y: &mut [f32], v: &[f32], bt: &[bf16]) {
        let n = y.len();
        for (j, &vj) in v.iter().enumerate() {
            crate::cpu::axpy_bf16(y, vj, &bt[j * n..(j + 1) * n]);
        }
    }
}

/// The AVX2 build. A value exists only where the CPU has AVX2 ([`Avx2::detect`]), which is what
/// makes calling its `target_feature` functions sound.
#[derive(Debug, Clone, Copy)]
pub struct Avx2 {
    _detected: (),
}

impl Avx2 {
    /// `Some` when this CPU supports AVX2 (detected once per process).
    pub fn detect() -> Option<Avx2> {
        #[cfg(target_arch = "x86_64")]
        {
            static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
            if *AVX2.get_or_init(|| std::arch::is_x86_feature_detected!("avx2")) {
                return Some(Avx2 { _detected: () });
            }
        }
        None
    }
}

#[cfg(target_arch = "x86_64")]
impl Simd for Avx2 {
    #[inline(always)]
    fn dot(self, a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: an `Avx2` value exists only after detection found AVX2 on this CPU.
        unsafe { x86::dot(a, b) }
    }
    #[inline(always)]
    fn dot_bf16(self, a: &[bf16], b: &[f32]) -> f32 {
        // SAFETY: as in `dot`.
        unsafe { x86::dot_bf16(a, b) }
    }
    #[inline(always)]
    fn dot4(self, w: &[f32], x: [&[f32]; 4]) -> [f32; 4] {
        // SAFETY: as in `dot`.
        unsafe { x86::dot4(w, x) }
    }
    #[inline(always)]
    fn dot3x4(self, w: [&[f32]; 3], x: [&[f32]; 4]) -> [[f32; 4]; 3] {
        // SAFETY: as in `dot`.
        unsafe { x86::dot3x4(w, x) }
    }
    #[inline(always)]
    fn axpy(self, y: &mut [f32], alpha: f32, x: &[f32]) {
        // SAFETY: as in `dot`.
        unsafe { x86::axpy(y, alpha, x) }
    }
    #[inline(always)]
    fn axpy_bf16(self, y: &mut [f32], alpha: f32, x: &[bf16]) {
        // SAFETY: as in `dot`.
        unsafe { x86::axpy_bf16(y, alpha, x) }
    }
    #[inline(always)]
    fn expand(self, y: &mut [f32], v: &[f32], bt: &[f32]) {
        // SAFETY: as in `dot`.
        unsafe { x86::expand(y, v, bt) }
    }
    #[inline(always)]
    fn expand_bf16(self, y: &mut [f32], v: &[f32], bt: &[bf16]) {
        // SAFETY: as in `dot`.
        unsafe { x86::expand_bf16(y, v, bt) }
    }
}

#[cfg(not(target_arch = "x86_64"))]
impl Simd for Avx2 {
    // Unreachable: `detect` never returns a value off x86-64. Delegating keeps it total.
    fn dot(self, a: &[f32], b: &[f32]) -> f32 {
        Portable.dot(a, b)
    }
    fn dot_bf16(self, a: &[bf16], b: &[f32]) -> f32 {
        Portable.dot_bf16(a, b)
    }
    fn axpy(self, y: &mut [f32], alpha: f32, x: &[f32]) {
        Portable.axpy(y, alpha, x)
    }
    fn axpy_bf16(self, y: &mut [f32], alpha: f32, x: &[bf16]) {
        Portable.axpy_bf16(y, alpha, x)
    }
    fn expand(self, y: &mut [f32], v: &[f32], bt: &[f32]) {
        Portable.expand(y, v, bt)
    }
    fn expand_bf16(self, y: &mut [f32], v: &[f32], bt: &[bf16]) {
        Portable.expand_bf16(y, v, bt)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m256, _MM_HINT_T0, _mm_loadu_si128, _mm_prefetch, _mm256_add_ps, _mm256_castsi256_ps,
        _mm256_cvtepu16_epi32, _mm256_loadu_ps, _mm256_mul_ps, _mm256_set1_ps, _mm256_setzero_ps,
        _mm256_slli_epi32, _mm256_storeu_ps,
    };

    use half::bf16;

    /// How far ahead the dot products prefetch their weights. A LoRA row's shrink reads one
    /// adapter's `A` after another's, each a few to a few tens of KiB in a place of its own;
    /// the hardware prefetcher starts late on every one, and the loads wait on memory
    /// (measured: the whole LoRA term of a decode step 9 % faster with f32 weights, 14 % with
    /// bf16).
    const PREFETCH_BYTES: usize = 2048;

    /// Lane `k` of the accumulator is the portable `acc[k]`; the reduction is the portable one.
    #[inline(always)]
    fn finish(acc: __m256, tail: f32) -> f32 {
        let mut l = [0f32; 8];
        // SAFETY: `l` has room for the 8 lanes written (unaligned store).
        unsafe { _mm256_storeu_ps(l.as_mut_ptr(), acc) };
        ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7])) + tail
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let mut acc = _mm256_setzero_ps();
        for c in 0..n / 8 {
            // SAFETY: `c * 8 + 8 <= n`, so both 8-float loads are inside their slices.
            let (x, y) = unsafe {
                (_mm256_loadu_ps(a.as_ptr().add(c * 8)), _mm256_loadu_ps(b.as_ptr().add(c * 8)))
            };
            // Once per cache line (16 floats); a prefetch never faults, past the end included.
            if c % 2 == 0 {
                _mm_prefetch::<_MM_HINT_T0>(
                    a.as_ptr().wrapping_add(c * 8 + PREFETCH_BYTES / 4).cast(),
                );
            }
            acc = _mm256_add_ps(acc, _mm256_mul_ps(x, y));
        }
        let mut tail = 0f32;
        for i in n / 8 * 8..n {
            tail += a[i] * b[i];
        }
        finish(acc, tail)
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn dot_bf16(a: &[bf16], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let mut acc = _mm256_setzero_ps();
        for c in 0..n / 8 {
            // SAFETY: `c * 8 + 8 <= n`: the 16-byte load covers bf16 elements `c*8..c*8+8` of
            // `a` (bf16 is a 2-byte `repr(transparent)` u16), the 8-float load those of `b`.
            let (raw, y) = unsafe {
                (
                    _mm_loadu_si128(a.as_ptr().add(c * 8).cast()),
                    _mm256_loadu_ps(b.as_ptr().add(c * 8)),
                )
            };
            // Once per cache line (32 bf16); a prefetch never faults, past the end included.
            if c % 4 == 0 {
                _mm_prefetch::<_MM_HINT_T0>(
                    a.as_ptr().wrapping_add(c * 8 + PREFETCH_BYTES / 2).cast(),
                );
            }
            // bf16 → f32 exactly: zero-extend to 32 bits, shift into the high half.
            let x = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(raw)));
            acc = _mm256_add_ps(acc, _mm256_mul_ps(x, y));
        }
        let mut tail = 0f32;
        for i in n / 8 * 8..n {
            tail += a[i].to_f32() * b[i];
        }
        finish(acc, tail)
    }

    /// Four of [`dot`] sharing the loads of `w`; each row's operations and order are `dot`'s.
    #[target_feature(enable = "avx2")]
    pub(super) fn dot4(w: &[f32], x: [&[f32]; 4]) -> [f32; 4] {
        let n = x.iter().fold(w.len(), |n, x| n.min(x.len()));
        if x.iter().any(|x| x.len().min(w.len()) != n) {
            // Unequal lengths: each row's own `dot` (its own length), as the contract says.
            return x.map(|x| dot(w, x));
        }
        let mut acc = [_mm256_setzero_ps(); 4];
        for c in 0..n / 8 {
            // SAFETY: `c * 8 + 8 <= n` and every slice holds at least `n` floats.
            let wv = unsafe { _mm256_loadu_ps(w.as_ptr().add(c * 8)) };
            for (a, x) in acc.iter_mut().zip(&x) {
                // SAFETY: as above.
                let xv = unsafe { _mm256_loadu_ps(x.as_ptr().add(c * 8)) };
                *a = _mm256_add_ps(*a, _mm256_mul_ps(wv, xv));
            }
        }
        let mut out = [0f32; 4];
        for (k, x) in x.iter().enumerate() {
            let mut tail = 0f32;
            for i in n / 8 * 8..n {
                tail += w[i] * x[i];
            }
            out[k] = finish(acc[k], tail);
        }
        out
    }

    /// Twelve of [`dot`] in registers (12 accumulators, three weight vectors, one input
    /// vector: the 16 AVX2 registers); each one's operations and order are `dot`'s.
    #[target_feature(enable = "avx2")]
    pub(super) fn dot3x4(w: [&[f32]; 3], x: [&[f32]; 4]) -> [[f32; 4]; 3] {
        let n = w[0].len();
        if w.iter().any(|w| w.len() != n) || x.iter().any(|x| x.len() != n) {
            // Unequal lengths: each pair's own `dot`, as the contract says.
            return w.map(|w| x.map(|x| dot(w, x)));
        }
        let mut acc = [[_mm256_setzero_ps(); 4]; 3];
        for c in 0..n / 8 {
            // SAFETY: `c * 8 + 8 <= n` and every slice holds exactly `n` floats.
            let wv = w.map(|w| unsafe { _mm256_loadu_ps(w.as_ptr().add(c * 8)) });
            for (j, x) in x.iter().enumerate() {
                // SAFETY: as above.
                let xv = unsafe { _mm256_loadu_ps(x.as_ptr().add(c * 8)) };
                for (i, wv) in wv.iter().enumerate() {
                    acc[i][j] = _mm256_add_ps(acc[i][j], _mm256_mul_ps(*wv, xv));
                }
            }
        }
        let mut out = [[0f32; 4]; 3];
        for (i, w) in w.iter().enumerate() {
            for (j, x) in x.iter().enumerate() {
                let mut tail = 0f32;
                for k in n / 8 * 8..n {
                    tail += w[k] * x[k];
                }
                out[i][j] = finish(acc[i][j], tail);
            }
        }
        out
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
        crate::cpu::axpy(y, alpha, x);
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn axpy_bf16(y: &mut [f32], alpha: f32, x: &[bf16]) {
        let n = y.len().min(x.len());
        let a = _mm256_set1_ps(alpha);
        for c in 0..n / 8 {
            // SAFETY: `c * 8 + 8 <= n`: the 16-byte load covers bf16 elements `c*8..c*8+8` of
            // `x`, the 8-float load and store those of `y`, which is borrowed mutably.
            unsafe {
                let raw = _mm_loadu_si128(x.as_ptr().add(c * 8).cast());
                let xv = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(raw)));
                let yp = y.as_mut_ptr().add(c * 8);
                _mm256_storeu_ps(yp, _mm256_add_ps(_mm256_loadu_ps(yp), _mm256_mul_ps(a, xv)));
            }
        }
        let done = n / 8 * 8;
        crate::cpu::axpy_bf16(&mut y[done..n], alpha, &x[done..n]);
    }

    /// Loads 8 weights starting at element `at` as f32.
    trait Load8: Copy {
        /// # Safety
        /// `at + 8` must not exceed `w.len()`, and the CPU must have AVX2.
        unsafe fn load8(w: &[Self], at: usize) -> __m256;
    }

    impl Load8 for f32 {
        #[inline(always)]
        unsafe fn load8(w: &[f32], at: usize) -> __m256 {
            // SAFETY: the caller guarantees `at + 8 <= w.len()` and AVX2.
            unsafe { _mm256_loadu_ps(w.as_ptr().add(at)) }
        }
    }

    impl Load8 for bf16 {
        #[inline(always)]
        unsafe fn load8(w: &[bf16], at: usize) -> __m256 {
            // SAFETY: the caller guarantees `at + 8 <= w.len()` (16 bytes of 2-byte bf16) and
            // AVX2.
            unsafe {
                let raw = _mm_loadu_si128(w.as_ptr().add(at).cast());
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(raw)))
            }
        }
    }

    /// Output tiles of `8·T` (`T` independent accumulators, for instruction-level parallelism:
    /// 32 outputs for f32 weights, 64 for bf16 so a tile reads two cache lines of every row
    /// either way), then of 8, each kept in registers across all `j`; the scalar tail uses the
    /// portable loop.
    /// Per element the order is the portable one: `y + v0·b0 + v1·b1 + …`.
    #[inline(always)]
    fn expand_tiles<W: Load8, const T: usize>(
        y: &mut [f32],
        v: &[f32],
        bt: &[W],
        tail: impl Fn(&mut [f32], f32, &[W]),
    ) {
        let n = y.len();
        let r = v.len();
        assert!(bt.len() >= r * n, "expand: Bᵀ holds {} values, needs {}", bt.len(), r * n);
        let mut o = 0;
        while o + 8 * T <= n {
            // SAFETY: `o + 8T <= n`, so the loads and stores of `y` stay inside it, and each
            // row `j < r` of `bt` is read at `j*n + o .. j*n + o + 8T <= r*n <= bt.len()`.
            // The caller (a `target_feature(avx2)` function) guarantees AVX2.
            unsafe {
                let p = y.as_mut_ptr().add(o);
                let mut acc: [__m256; T] = std::array::from_fn(|k| _mm256_loadu_ps(p.add(8 * k)));
                for (j, &vj) in v.iter().enumerate() {
                    let s = _mm256_set1_ps(vj);
                    let row = j * n + o;
                    // The tile after next of this row. `r` rows advance together, more streams
                    // than the hardware prefetcher follows: without this each tile waits for
                    // its loads from memory (measured: bf16 weights 1.6x faster from DRAM).
                    // A prefetch never faults, so the address may run past the slice.
                    let ahead = bt.as_ptr().wrapping_add(row + 16 * T).cast::<i8>();
                    for line in (0..8 * T * std::mem::size_of::<W>()).step_by(64) {
                        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line));
                    }
                    for (k, a) in acc.iter_mut().enumerate() {
                        *a = _mm256_add_ps(*a, _mm256_mul_ps(s, W::load8(bt, row + 8 * k)));
                    }
                }
                for (k, a) in acc.iter().enumerate() {
                    _mm256_storeu_ps(p.add(8 * k), *a);
                }
            }
            o += 8 * T;
        }
        while o + 8 <= n {
            // SAFETY: as above with one 8-wide tile.
            unsafe {
                let p = y.as_mut_ptr().add(o);
                let mut acc = _mm256_loadu_ps(p);
                for (j, &vj) in v.iter().enumerate() {
                    acc = _mm256_add_ps(
                        acc,
                        _mm256_mul_ps(_mm256_set1_ps(vj), W::load8(bt, j * n + o)),
                    );
                }
                _mm256_storeu_ps(p, acc);
            }
            o += 8;
        }
        if o < n {
            for (j, &vj) in v.iter().enumerate() {
                tail(&mut y[o..n], vj, &bt[j * n + o..(j + 1) * n]);
            }
        }
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn expand(y: &mut [f32], v: &[f32], bt: &[f32]) {
        expand_tiles::<f32, 4>(y, v, bt, crate::cpu::axpy);
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn expand_bf16(y: &mut [f32], v: &[f32], bt: &[bf16]) {
        expand_tiles::<bf16, 8>(y, v, bt, crate::cpu::axpy_bf16);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `n` seeded values in -0.5..0.5 (a linear congruential generator).
    pub(crate) fn values(seed: u32, n: usize) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    /// Both builds give the same bits (lengths with and without vector tails); the answers
    /// claimed reproducible across machines with and without AVX2 rest on this.
    #[test]
    fn avx2_matches_portable_bit_for_bit() {
        let Some(avx2) = Avx2::detect() else {
            eprintln!("SKIP: this CPU has no AVX2");
            return;
        };
        for n in [1usize, 7, 8, 77, 576, 1537] {
            let a = values(1, n);
            let b = values(2, n);
            let a16: Vec<bf16> = a.iter().map(|&v| bf16::from_f32(v)).collect();
            assert_eq!(Portable.dot(&a, &b).to_bits(), avx2.dot(&a, &b).to_bits(), "dot n={n}");
            assert_eq!(
                Portable.dot_bf16(&a16, &b).to_bits(),
                avx2.dot_bf16(&a16, &b).to_bits(),
                "dot_bf16 n={n}"
            );
            let (mut p, mut w) = (b.clone(), b.clone());
            Portable.axpy(&mut p, 0.3, &a);
            avx2.axpy(&mut w, 0.3, &a);
            assert_eq!(p, w, "axpy n={n}");
            Portable.axpy_bf16(&mut p, -1.7, &a16);
            avx2.axpy_bf16(&mut w, -1.7, &a16);
            assert_eq!(p, w, "axpy_bf16 n={n}");
            assert_ne!(p, b, "the axpys must change y");
            // The 3×4 tile: every entry bit for bit a lone dot, in both builds.
            let (w, x): (Vec<Vec<f32>>, Vec<Vec<f32>>) =
                ((5..8).map(|s| values(s, n)).collect(), (8..12).map(|s| values(s, n)).collect());
            let ws = [&w[0][..], &w[1][..], &w[2][..]];
            let xs = [&x[0][..], &x[1][..], &x[2][..], &x[3][..]];
            let want = ws.map(|w| xs.map(|x| Portable.dot(w, x).to_bits()));
            let got = |t: [[f32; 4]; 3]| t.map(|r| r.map(f32::to_bits));
            assert_eq!(got(Portable.dot3x4(ws, xs)), want, "portable dot3x4 n={n}");
            assert_eq!(got(avx2.dot3x4(ws, xs)), want, "dot3x4 n={n}");
            // Expand over r rows of Bᵀ = r axpys, element order included.
            for r in [1usize, 3, 16] {
                let bt = values(3, r * n);
                let bt16: Vec<bf16> = bt.iter().map(|&x| bf16::from_f32(x)).collect();
                let v = values(4, r);
                let mut axpys = b.clone();
                for j in 0..r {
                    Portable.axpy(&mut axpys, v[j], &bt[j * n..(j + 1) * n]);
                }
                let (mut p, mut w) = (b.clone(), b.clone());
                Portable.expand(&mut p, &v, &bt);
                avx2.expand(&mut w, &v, &bt);
                assert_eq!(p, axpys, "portable expand n={n} r={r}");
                assert_eq!(p, w, "expand n={n} r={r}");
                Portable.expand_bf16(&mut p, &v, &bt16);
                avx2.expand_bf16(&mut w, &v, &bt16);
                assert_eq!(p, w, "expand_bf16 n={n} r={r}");
            }
        }
    }
}
