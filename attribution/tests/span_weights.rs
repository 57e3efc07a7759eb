//! Document weights → contributor weights → integer basis points.

use lorad_attribution::AttributionError;
use lorad_attribution::span::{contributor_weights, to_basis_points};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[test]
fn basis_points_sum_to_ten_thousand() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    for _ in 0..500 {
        let n = rng.random_range(1..60);
        let w: Vec<(u32, f64)> = (0..n)
            .map(|k| (k, if rng.random_bool(0.2) { 0.0 } else { rng.random_range(0.0..1e6) }))
            .collect();
        let bps = to_basis_points(&w);
        if w.iter().all(|e| e.1 == 0.0) {
            assert!(bps.is_empty());
            continue;
        }
        assert_eq!(bps.iter().map(|e| e.1).sum::<u32>(), 10_000, "{w:?}");
        let total: f64 = w.iter().map(|e| e.1).sum();
        for &(k, b) in &bps {
            // Largest remainder: each share is its exact quota rounded down or up.
            let exact = w[k as usize].1 / total * 10_000.0;
            assert!((f64::from(b) - exact).abs() < 1.0 + 1e-6, "{k}: {b} vs {exact}");
            assert!(b > 0);
        }
        // Deterministic, and independent of the input order.
        let mut shuffled = w.clone();
        shuffled.reverse();
        assert_eq!(to_basis_points(&shuffled), bps);
    }
}

#[test]
fn basis_point_ties_go_to_the_smaller_key() {
    assert_eq!(
        to_basis_points(&[(9u32, 1.0), (4, 1.0), (7, 1.0)]),
        vec![(4, 3334), (7, 3333), (9, 3333)]
    );
    let six: Vec<(u64, f64)> = (0..6).map(|k| (10 - k, 2.5)).collect();
    let bps = to_basis_points(&six);
    assert_eq!(bps.iter().map(|e| e.1).sum::<u32>(), 10_000);
    assert_eq!(
        bps.iter().filter(|e| e.1 == 1667).map(|e| e.0).collect::<Vec<_>>(),
        vec![5, 6, 7, 8]
    );
}

#[test]
fn basis_points_of_nothing_are_nothing() {
    assert!(to_basis_points::<u32>(&[]).is_empty());
    assert!(to_basis_points(&[(1u32, 0.0), (2, 0.0)]).is_empty());
    assert!(to_basis_points(&[(1u32, -3.0), (2, f64::NAN)]).is_empty());
    assert_eq!(to_basis_points(&[(1u32, 0.0), (2, 5.0)]), vec![(2, 10_000)]);
}

#[test]
fn contributor_weights_sum_documents() {
    let docs = [(0u32, 1.5), (3, 2.0), (2, 0.5), (1, 4.0)];
    let owner = [7u32, 8, 7, 9];
    let got = contributor_weights(&docs, &owner).expect("weights");
    // Ties in weight: the smaller contributor id first.
    assert_eq!(got, vec![(8, 4.0), (7, 2.0), (9, 2.0)]);
    let r = contributor_weights(&[(4, 1.0)], &owner);
    assert!(matches!(r, Err(AttributionError::InvalidInput(_))), "{r:?}");
    assert!(contributor_weights(&[], &owner).expect("empty").is_empty());
}
