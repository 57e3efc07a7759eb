//! From document weights to contributor weights and integer basis points.

use std::collections::BTreeMap;

use crate::{AttributionError, Result};

/// Integer basis points summing to exactly 10,000 (largest-remainder method); shared with the
/// gradient method, so it lives at the crate root.
pub use crate::to_basis_points;

/// Sums `doc_weights` per contributor: `doc_to_contributor[doc]` is the contributor of document
/// (== Datanet record) `doc`. The result is by weight descending, then contributor ascending.
/// Summation follows the input order, so the same input gives bit-identical sums. A document
/// with no entry in `doc_to_contributor` is an [`AttributionError::InvalidInput`] error.
pub fn contributor_weights(
    doc_weights: &[(u32, f64)],
    doc_to_contributor: &[u32],
) -> Result<Vec<(u32, f64)>> {
    let mut sums: BTreeMap<u32, f64> = BTreeMap::new();
    for &(doc, w) in doc_weights {
        let Some(&c) = doc_to_contributor.get(doc as usize) else {
            return Err(AttributionError::InvalidInput(format!(
                "document {doc} has no contributor ({} documents mapped)",
                doc_to_contributor.len()
            )));
        };
        *sums.entry(c).or_insert(0.0) += w;
    }
    let mut out: Vec<(u32, f64)> = sums.into_iter().collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(out)
}
