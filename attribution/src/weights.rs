//! Turning non-negative influence weights into integer basis points.

/// Integer basis points summing to exactly 10,000 for non-negative `weights`, by the
/// largest-remainder method (remainders tied: smaller key first). Zero, negative and non-finite
/// weights get nothing and are left out; if nothing is positive the result is empty.
///
/// Basis points, not floats, because receipts and settlement pay out integers: the split must
/// add up exactly, the same on every machine.
pub fn to_basis_points<K: Copy + Ord>(weights: &[(K, f64)]) -> Vec<(K, u32)> {
    let mut pos: Vec<(K, f64)> =
        weights.iter().copied().filter(|(_, w)| w.is_finite() && *w > 0.0).collect();
    pos.sort_by_key(|e| e.0);
    let total: f64 = pos.iter().map(|(_, w)| w).sum();
    if pos.is_empty() || !total.is_finite() || total <= 0.0 {
        return Vec::new();
    }
    let mut out: Vec<(K, u32, f64)> = pos
        .iter()
        .map(|&(k, w)| {
            let exact = w / total * 10_000.0;
            let floor = exact.floor();
            (k, floor as u32, exact - floor)
        })
        .collect();
    let given: u32 = out.iter().map(|e| e.1).sum();
    let mut order: Vec<usize> = (0..out.len()).collect();
    order.sort_by(|&a, &b| out[b].2.total_cmp(&out[a].2).then(out[a].0.cmp(&out[b].0)));
    for &i in order.iter().cycle().take(10_000u32.saturating_sub(given) as usize) {
        out[i].1 += 1;
    }
    out.into_iter().filter(|e| e.1 > 0).map(|(k, bps, _)| (k, bps)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_to_ten_thousand_with_deterministic_ties() {
        let b = to_basis_points(&[(2u32, 1.0), (0, 1.0), (1, 1.0)]);
        assert_eq!(b, vec![(0, 3334), (1, 3333), (2, 3333)]);
        let b = to_basis_points(&[(5u32, 0.2), (3, 0.0), (7, -1.0), (9, 0.6)]);
        assert_eq!(b, vec![(5, 2500), (9, 7500)]);
        assert!(to_basis_points::<u32>(&[(1, 0.0)]).is_empty());
        assert!(to_basis_points::<u32>(&[]).is_empty());
        let many: Vec<(u32, f64)> = (0..97).map(|i| (i, 1.0 + (i % 7) as f64)).collect();
        assert_eq!(to_basis_points(&many).iter().map(|e| e.1).sum::<u32>(), 10_000);
    }
}
