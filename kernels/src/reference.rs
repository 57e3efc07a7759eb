//! Reference implementations: `f64` loops over row-major slices, written to be obviously right.
//! Every fast kernel is tested against these. They take plain slices so a test can build
//! inputs without any tensor library.

/// `x·wᵀ`: `x` is `[m, k]`, `w` is `[n, k]`, result `[m, n]`.
pub fn matmul_t(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut y = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            y[i * n + j] = (0..k).map(|p| f64::from(x[i * k + p]) * f64::from(w[j * k + p])).sum();
        }
    }
    y
}

/// RMSNorm of each row of `x` (`[m, d]`) with weight `w` (`[d]`).
pub fn rms_norm(x: &[f32], w: &[f32], d: usize, eps: f64) -> Vec<f64> {
    x.chunks(d)
        .flat_map(|row| {
            let ms = row.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / d as f64;
            let inv = 1.0 / (ms + eps).sqrt();
            row.iter()
                .zip(w)
                .map(move |(&v, &g)| f64::from(v) * inv * f64::from(g))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Hugging Face ("rotate half") RoPE of `x` (`[T, heads, d]`), row `t` at `positions[t]`.
pub fn rope(x: &[f32], heads: usize, d: usize, positions: &[u32], inv_freq: &[f32]) -> Vec<f64> {
    // The leading `2 · inv_freq.len()` dimensions rotate (all of them, but for a partial
    // rotary embedding); the rest pass through.
    let half = inv_freq.len();
    let mut y: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    for (t, &p) in positions.iter().enumerate() {
        for h in 0..heads {
            let base = (t * heads + h) * d;
            for i in 0..half {
                // Angles in f32, as HF computes them, then the rotation in f64.
                let a = p as f32 * inv_freq[i];
                let (c, s) = (f64::from(a.cos()), f64::from(a.sin()));
                let (x1, x2) = (f64::from(x[base + i]), f64::from(x[base + i + half]));
                y[base + i] = x1 * c - x2 * s;
                y[base + i + half] = x1 * s + x2 * c;
            }
        }
    }
    y
}

/// Causal GQA attention for one sequence: `q` is `[n, heads, d]` for the last `n` positions,
/// `k`/`v` are `[len, kv_heads, d]` for positions `0..len`. Returns `[n, heads, d]`. With a
/// `window`, position `p` sees only positions `p - window + 1 ..= p`.
#[allow(clippy::too_many_arguments)] // a reference spells every dimension out on purpose
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n: usize,
    len: usize,
    heads: usize,
    kv_heads: usize,
    d: usize,
    scale: f64,
    window: Option<usize>,
) -> Vec<f64> {
    let group = heads / kv_heads;
    let mut out = vec![0f64; n * heads * d];
    for i in 0..n {
        let ctx = len - n + i + 1;
        let first = window.map_or(0, |w| ctx.saturating_sub(w));
        for h in 0..heads {
            let kv = h / group;
            let qv = &q[(i * heads + h) * d..(i * heads + h + 1) * d];
            let scores: Vec<f64> = (first..ctx)
                .map(|j| {
                    let kr = &k[(j * kv_heads + kv) * d..(j * kv_heads + kv + 1) * d];
                    qv.iter().zip(kr).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum::<f64>()
                        * scale
                })
                .collect();
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            for (j, ej) in (first..).zip(&e) {
                let vr = &v[(j * kv_heads + kv) * d..(j * kv_heads + kv + 1) * d];
                for c in 0..d {
                    out[(i * heads + h) * d + c] += ej / sum * f64::from(vr[c]);
                }
            }
        }
    }
    out
}

/// LoRA delta of each row: `(x·Aᵀ)·Bᵀ` with `a` `[r, in]`, `b` `[out, r]` (scale folded in).
pub fn lora_delta(
    x: &[f32],
    a: &[f32],
    b: &[f32],
    m: usize,
    inp: usize,
    r: usize,
    out: usize,
) -> Vec<f64> {
    let mut y = vec![0f64; m * out];
    for i in 0..m {
        let v: Vec<f64> = (0..r)
            .map(|j| (0..inp).map(|p| f64::from(a[j * inp + p]) * f64::from(x[i * inp + p])).sum())
            .collect();
        for o in 0..out {
            y[i * out + o] = (0..r).map(|j| f64::from(b[o * r + j]) * v[j]).sum();
        }
    }
    y
}

/// Largest absolute difference between a result and its reference.
pub fn max_abs_diff(got: &[f32], want: &[f64]) -> f64 {
    got.iter().zip(want).map(|(&g, &w)| (f64::from(g) - w).abs()).fold(0.0, f64::max)
}
