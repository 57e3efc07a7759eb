//! Scoring an answer's projected gradient against an index.

use serde::Serialize;

use super::index::GradIndex;
use crate::{AttributionError, Result};

/// How to score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scoring {
    /// Apply the index's preconditioner (`false`: plain gradient dot products).
    pub preconditioned: bool,
    /// Divide each record's score by its gradient norm (in the same metric): cosine-style
    /// scores, so that records the adapter fits badly (large gradients) do not top every query.
    pub normalized: bool,
    /// How many top records to keep.
    pub top_k: usize,
}

impl Default for Scoring {
    fn default() -> Self {
        Self { preconditioned: true, normalized: true, top_k: 10 }
    }
}

/// Scores of every record for one answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GradScores {
    /// Influence score per record, in index order.
    pub scores: Vec<f32>,
    /// The `top_k` records by score (ties: lower index first), with their scores.
    pub top: Vec<(usize, f32)>,
    /// Per contributor (index), the sum of its records' positive scores; only contributors with
    /// a positive sum, by contributor index.
    pub contributors: Vec<(u32, f64)>,
}

impl GradIndex {
    /// Scores every record against `query`, the answer's projected gradient (same probes).
    pub fn score(&self, query: &[f32], scoring: Scoring) -> Result<GradScores> {
        let h = self.header();
        if query.len() != h.dim {
            return Err(AttributionError::InvalidInput(format!(
                "query gradient has {} values, index {} has {}",
                query.len(),
                self.dir().display(),
                h.dim
            )));
        }
        let q = if scoring.preconditioned {
            self.preconditioner().apply(query)?
        } else {
            query.to_vec()
        };
        let scores: Vec<f32> = (0..self.len())
            .map(|i| {
                let s: f64 =
                    self.features(i).iter().zip(&q).map(|(&a, &b)| a as f64 * b as f64).sum();
                let n = if scoring.normalized { self.norm(i, scoring.preconditioned) } else { 1.0 };
                // A record with a zero gradient (nothing scored) has no influence either way.
                if n > 0.0 { (s / n as f64) as f32 } else { 0.0 }
            })
            .collect();
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        let top = order.iter().take(scoring.top_k).map(|&i| (i, scores[i])).collect();
        let mut per = vec![0f64; h.contributors.len()];
        for (r, &s) in h.records.iter().zip(&scores) {
            if s > 0.0 {
                per[r.contributor as usize] += s as f64;
            }
        }
        let contributors = per
            .into_iter()
            .enumerate()
            .filter(|(_, w)| *w > 0.0)
            .map(|(c, w)| (c as u32, w))
            .collect();
        Ok(GradScores { scores, top, contributors })
    }
}
