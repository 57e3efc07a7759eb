//! The block-diagonal preconditioner: per block, `(F + lambda I)^-1` with `F` the empirical Fisher
//! (uncentred covariance) of the records' projected gradients in that block.

use crate::{AttributionError, Result};

/// Default damping: `lambda = DAMPING_FACTOR * trace(F) / min(n, d)` per block (see
/// [`Preconditioner::fit`]).
pub const DAMPING_FACTOR: f64 = 1.0;

/// Inverse damped Fisher blocks, row-major `d_b x d_b` each.
#[derive(Debug, Clone, PartialEq)]
pub struct Preconditioner {
    /// Block widths, in feature order.
    pub blocks: Vec<usize>,
    /// Damping used per block.
    pub lambdas: Vec<f64>,
    /// The inverses, concatenated.
    pub inverses: Vec<f32>,
}

impl Preconditioner {
    /// Computes the preconditioner of `features` (`n` rows of `sum(blocks)` values) with damping
    /// `lambda = damping_factor * trace(F) / min(n, d)` per block: the mean of `F`'s non-zero
    /// eigenvalues, scale-free whatever the block's gradient magnitude.
    ///
    /// Why not DataInf's `0.1 * mean(diag(F))` (`= 0.1 * trace / d`): with fewer records than
    /// block dimensions (`n < d`, the usual case per LoRA pair) `F` has a large null space, and a
    /// damping far below the data's eigenvalues weights query directions that no training record
    /// spans ten times above the ones they do, so noise dominates. Measured on the planted
    /// 8-contributor test (48 records, `d = 256`): AUC 0.89 with DataInf's rule, 1.00 with this one.
    pub fn fit(features: &[Vec<f32>], blocks: &[usize], damping_factor: f64) -> Result<Self> {
        let dim: usize = blocks.iter().sum();
        if features.is_empty() {
            return Err(AttributionError::InvalidInput("no features to precondition".into()));
        }
        if let Some(row) = features.iter().position(|f| f.len() != dim) {
            return Err(AttributionError::InvalidInput(format!(
                "feature row {row} has {} values, blocks sum to {dim}",
                features[row].len()
            )));
        }
        let n = features.len() as f64;
        let mut lambdas = Vec::with_capacity(blocks.len());
        let mut inverses = Vec::with_capacity(blocks.iter().map(|d| d * d).sum());
        let mut start = 0;
        for &d in blocks {
            // F = (1/n) sum_i g g^T, accumulated in f64 in record order (deterministic).
            let mut f = vec![0f64; d * d];
            for row in features {
                let g = &row[start..start + d];
                for a in 0..d {
                    let ga = g[a] as f64;
                    if ga == 0.0 {
                        continue;
                    }
                    for b in a..d {
                        f[a * d + b] += ga * g[b] as f64;
                    }
                }
            }
            for a in 0..d {
                for b in a..d {
                    let v = f[a * d + b] / n;
                    f[a * d + b] = v;
                    f[b * d + a] = v;
                }
            }
            let trace = (0..d).map(|a| f[a * d + a]).sum::<f64>();
            let rank_bound = features.len().min(d) as f64;
            // An all-zero block (a pair no record reaches) still gets a positive damping.
            let lambda = (damping_factor * trace / rank_bound).max(1e-12);
            for a in 0..d {
                f[a * d + a] += lambda;
            }
            let inv = spd_inverse(&f, d).ok_or_else(|| {
                AttributionError::InvalidInput(format!(
                    "preconditioner block at feature {start} is not positive definite"
                ))
            })?;
            inverses.extend(inv.iter().map(|&v| v as f32));
            lambdas.push(lambda);
            start += d;
        }
        Ok(Self { blocks: blocks.to_vec(), lambdas, inverses })
    }

    /// Identity preconditioning (plain gradient dot products), for comparison.
    pub fn identity(blocks: &[usize]) -> Self {
        let mut inverses = Vec::new();
        for &d in blocks {
            for a in 0..d {
                inverses.extend((0..d).map(|b| if a == b { 1.0 } else { 0.0 }));
            }
        }
        Self { blocks: blocks.to_vec(), lambdas: vec![0.0; blocks.len()], inverses }
    }

    /// `K q`, block by block.
    pub fn apply(&self, q: &[f32]) -> Result<Vec<f32>> {
        let dim: usize = self.blocks.iter().sum();
        if q.len() != dim {
            return Err(AttributionError::InvalidInput(format!(
                "query gradient has {} values, the index {dim}",
                q.len()
            )));
        }
        let mut out = vec![0f32; dim];
        let (mut start, mut off) = (0, 0);
        for &d in &self.blocks {
            let k = &self.inverses[off..off + d * d];
            for a in 0..d {
                let row = &k[a * d..(a + 1) * d];
                let s: f64 =
                    row.iter().zip(&q[start..start + d]).map(|(&x, &y)| x as f64 * y as f64).sum();
                out[start + a] = s as f32;
            }
            start += d;
            off += d * d;
        }
        Ok(out)
    }
}

/// Inverse of a symmetric positive definite `d x d` matrix by Cholesky (`None` if not SPD).
fn spd_inverse(m: &[f64], d: usize) -> Option<Vec<f64>> {
    // L L^T = m.
    let mut l = vec![0f64; d * d];
    for i in 0..d {
        for j in 0..=i {
            let mut s = m[i * d + j];
            for k in 0..j {
                s -= l[i * d + k] * l[j * d + k];
            }
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * d + i] = s.sqrt();
            } else {
                l[i * d + j] = s / l[j * d + j];
            }
        }
    }
    // Solve L L^T X = I column by column.
    let mut inv = vec![0f64; d * d];
    let mut y = vec![0f64; d];
    for col in 0..d {
        for i in 0..d {
            let mut s = if i == col { 1.0 } else { 0.0 };
            for k in 0..i {
                s -= l[i * d + k] * y[k];
            }
            y[i] = s / l[i * d + i];
        }
        for i in (0..d).rev() {
            let mut s = y[i];
            for k in i + 1..d {
                s -= l[k * d + i] * inv[k * d + col];
            }
            inv[i * d + col] = s / l[i * d + i];
        }
    }
    Some(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_times_matrix_is_identity() {
        let d = 5;
        let mut m = vec![0f64; d * d];
        for i in 0..d {
            for j in 0..d {
                m[i * d + j] = 1.0 / (1.0 + (i + j) as f64) + if i == j { 1.0 } else { 0.0 };
            }
        }
        let inv = spd_inverse(&m, d).unwrap();
        for i in 0..d {
            for j in 0..d {
                let s: f64 = (0..d).map(|k| m[i * d + k] * inv[k * d + j]).sum();
                assert!((s - if i == j { 1.0 } else { 0.0 }).abs() < 1e-10);
            }
        }
        assert!(spd_inverse(&[1.0, 2.0, 2.0, 1.0], 2).is_none());
    }

    #[test]
    fn preconditioned_query_solves_the_damped_system() {
        let feats = vec![vec![1.0, 0.0, 2.0], vec![0.5, 1.0, -1.0], vec![0.0, 2.0, 0.0]];
        let p = Preconditioner::fit(&feats, &[2, 1], 0.1).unwrap();
        // Block 0: trace (1.25 + 5) / 3 over min(3, 2); block 1: 5 / 3 over min(3, 1).
        assert!((p.lambdas[0] - 0.1 * (6.25 / 3.0) / 2.0).abs() < 1e-12);
        let q = [1.0f32, -1.0, 3.0];
        let kq = p.apply(&q).unwrap();
        // Block 0: F = mean g g^T over the first two columns, plus lambda.
        let f = [
            (1.0 + 0.25) / 3.0 + p.lambdas[0],
            0.5 / 3.0,
            0.5 / 3.0,
            (1.0 + 4.0) / 3.0 + p.lambdas[0],
        ];
        let back =
            [f[0] * kq[0] as f64 + f[1] * kq[1] as f64, f[2] * kq[0] as f64 + f[3] * kq[1] as f64];
        assert!((back[0] - 1.0).abs() < 1e-5 && (back[1] + 1.0).abs() < 1e-5, "{back:?}");
        let f2 = (4.0 + 1.0) / 3.0 + p.lambdas[1];
        assert!((f2 * kq[2] as f64 - 3.0).abs() < 1e-5);
        assert!((p.lambdas[1] - 0.1 * 5.0 / 3.0).abs() < 1e-12);
    }
}
