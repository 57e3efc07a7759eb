//! Every kernel against its `f64` reference, on both the fused and the generic path. Each test
//! body is written once over a `Device`; `device_tests!` instantiates it per device (CPU always,
//! CUDA with `--features cuda`).

use candle_core::{Device, Tensor};
use lorad_kernels::reference as r;
use lorad_kernels::{
    KernelPath, KvPool, LoraGroup, LoraPair, LoraStack, PagedSeq, PagedStep, RopeTables, add_lora,
    add_lora_shared, apply_rope, paged_attention, rms_norm, stack_mask, write_kv,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn randv(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_dtype(candle_core::DType::F32).unwrap().to_vec1().unwrap()
}

const PATHS: [KernelPath; 2] = [KernelPath::Auto, KernelPath::Generic];

fn lora_matches_reference(dev: &Device) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (t, inp, out) = (9, 40, 24);
    let x = randv(&mut rng, t * inp);
    let y = randv(&mut rng, t * out);
    // Three adapters of different ranks, rows interleaved, rows 4 and 8 without an adapter.
    let ranks = [2usize, 5, 16];
    let rows: [&[u32]; 3] = [&[0, 3], &[1, 5, 6], &[2, 7]];
    let mut want: Vec<f64> = y.iter().map(|&v| f64::from(v)).collect();
    let mut pairs = Vec::new();
    // Scales differ per adapter; the second adapter's weights are bf16 (an adapter saved in
    // bf16), which the fused path reads without converting.
    let scales = [0.5f32, 2.0, 1.25];
    for (i, (&rk, rows)) in ranks.iter().zip(rows).enumerate() {
        let narrow = |v: Vec<f32>| -> Vec<f32> {
            if i == 1 {
                v.into_iter().map(|x| half::bf16::from_f32(x).to_f32()).collect()
            } else {
                v
            }
        };
        let a = narrow(randv(&mut rng, rk * inp));
        let b = narrow(randv(&mut rng, out * rk));
        let xs: Vec<f32> = rows
            .iter()
            .flat_map(|&row| x[row as usize * inp..(row as usize + 1) * inp].to_vec())
            .collect();
        let d = r::lora_delta(&xs, &a, &b, rows.len(), inp, rk, out);
        for (k, &row) in rows.iter().enumerate() {
            for o in 0..out {
                want[row as usize * out + o] += f64::from(scales[i]) * d[k * out + o];
            }
        }
        let dtype = if i == 1 { candle_core::DType::BF16 } else { candle_core::DType::F32 };
        let pair = LoraPair::new(
            Tensor::from_vec(a, (rk, inp), dev).unwrap().to_dtype(dtype).unwrap(),
            Tensor::from_vec(b, (out, rk), dev).unwrap().to_dtype(dtype).unwrap(),
            scales[i],
        )
        .unwrap();
        pairs.push(pair);
    }
    let groups: Vec<LoraGroup<'_>> =
        pairs.iter().zip(rows).map(|(pair, rows)| LoraGroup { pair, rows }).collect();
    let xt = Tensor::from_vec(x, (t, inp), dev).unwrap();
    let yt = Tensor::from_vec(y.clone(), (t, out), dev).unwrap();
    for path in PATHS {
        let got = to_vec(&add_lora(&yt, &xt, &groups, path).unwrap());
        let diff = r::max_abs_diff(&got, &want);
        assert!(diff < 1e-4, "{path:?}: max diff {diff}");
        // Rows without an adapter are untouched, bit for bit.
        for row in [4usize, 8] {
            assert_eq!(&got[row * out..(row + 1) * out], &y[row * out..(row + 1) * out]);
        }
    }
    // Batch invariance of the fused path: row 5 alone gives the same bits as inside the batch.
    let full = to_vec(&add_lora(&yt, &xt, &groups, KernelPath::Auto).unwrap());
    let alone_groups = [LoraGroup { pair: &pairs[1], rows: &[0] }];
    let x5 = xt.narrow(0, 5, 1).unwrap().contiguous().unwrap();
    let y5 = yt.narrow(0, 5, 1).unwrap().contiguous().unwrap();
    let alone = to_vec(&add_lora(&y5, &x5, &alone_groups, KernelPath::Auto).unwrap());
    assert_eq!(&full[5 * out..6 * out], &alone[..]);
}

/// A block-diagonal stack of two projections (outputs 24 and 10 wide, over one input) gives
/// each projection exactly its own stack's term, side by side.
fn lora_stack_block_diagonal_matches_parts(dev: &Device) {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let (t, inp) = (5, 16);
    let f32 = candle_core::DType::F32;
    let pair = |rng: &mut ChaCha8Rng, r: usize, out: usize, scale: f32| {
        LoraPair::new(
            Tensor::from_vec(randv(rng, r * inp), (r, inp), dev).unwrap(),
            Tensor::from_vec(randv(rng, out * r), (out, r), dev).unwrap(),
            scale,
        )
        .unwrap()
    };
    let (p1, p2, p3) =
        (pair(&mut rng, 3, 24, 0.5), pair(&mut rng, 6, 24, 2.0), pair(&mut rng, 4, 10, 1.5));
    let s1 = LoraStack::new(&[&p1, &p2], f32).unwrap();
    let s2 = LoraStack::new(&[&p3], f32).unwrap();
    let both = LoraStack::block_diagonal(&[s1.clone(), s2.clone()]).unwrap();
    assert_eq!((both.total_rank(), both.out_dim()), (13, 34));
    let x = Tensor::from_vec(randv(&mut rng, t * inp), (t, inp), dev).unwrap();
    let rows1: [&[u32]; 2] = [&[0, 3], &[1]];
    let rows2: [&[u32]; 1] = [&[3, 4]];
    let m1 = stack_mask(t, s1.members(), &rows1, f32, dev).unwrap();
    let m2 = stack_mask(t, s2.members(), &rows2, f32, dev).unwrap();
    let rows: Vec<&[u32]> = rows1.iter().chain(&rows2).copied().collect();
    let m = stack_mask(t, both.members(), &rows, f32, dev).unwrap();
    let d = both.delta(&x, &m).unwrap();
    let d1 = to_vec(&s1.delta(&x, &m1).unwrap());
    let d2 = to_vec(&s2.delta(&x, &m2).unwrap());
    let (got1, got2) =
        (to_vec(&d.narrow(1, 0, 24).unwrap()), to_vec(&d.narrow(1, 24, 10).unwrap()));
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5);
    assert!(close(&got1, &d1) && close(&got2, &d2));
    // Row 2 uses no adapter: its term is exactly zero.
    assert!(to_vec(&d.narrow(0, 2, 1).unwrap()).iter().all(|&v| v == 0.0));
    let wide_in = LoraStack::new(&[&pair(&mut rng, 2, 10, 1.0)], f32).unwrap();
    assert!(LoraStack::block_diagonal(&[]).is_err());
    let other_in = LoraPair::new(
        Tensor::zeros((2, inp + 1), f32, dev).unwrap(),
        Tensor::zeros((10, 2), f32, dev).unwrap(),
        1.0,
    )
    .unwrap();
    let other = LoraStack::new(&[&other_in], f32).unwrap();
    assert!(LoraStack::block_diagonal(&[wide_in, other]).is_err());
}

/// Projections sharing an input (q/k/v) in one call give, bit for bit, what one call per
/// projection gives, on both paths: output widths that use the wide tiles, the narrow ones and
/// the scalar tail, f32 and bf16 weights, a projection no row adapts (returned untouched) and
/// rows without an adapter.
fn lora_shared_equals_separate_calls(dev: &Device) {
    let mut rng = ChaCha8Rng::seed_from_u64(33);
    let (t, inp) = (7, 72);
    let outs = [100usize, 24, 70, 40];
    let x = Tensor::from_vec(randv(&mut rng, t * inp), (t, inp), dev).unwrap();
    let ys: Vec<Tensor> = outs
        .iter()
        .map(|&o| Tensor::from_vec(randv(&mut rng, t * o), (t, o), dev).unwrap())
        .collect();
    let rows: [&[u32]; 3] = [&[0, 4], &[1, 2], &[5]];
    // pairs[p][a]: adapter `a`'s pair for projection `p`; adapter 1 is bf16, rank 8.
    let pairs: Vec<Vec<LoraPair>> = outs
        .iter()
        .map(|&o| {
            (0..3)
                .map(|a| {
                    let (rank, dtype) = match a {
                        1 => (8, candle_core::DType::BF16),
                        _ => (4 + a, candle_core::DType::F32),
                    };
                    LoraPair::new(
                        Tensor::from_vec(randv(&mut rng, rank * inp), (rank, inp), dev)
                            .unwrap()
                            .to_dtype(dtype)
                            .unwrap(),
                        Tensor::from_vec(randv(&mut rng, o * rank), (o, rank), dev)
                            .unwrap()
                            .to_dtype(dtype)
                            .unwrap(),
                        0.5 + a as f32,
                    )
                    .unwrap()
                })
                .collect()
        })
        .collect();
    // Projection 2 is adapted by no row; projection 3 only by adapter 2.
    let groups: Vec<Vec<LoraGroup<'_>>> = pairs
        .iter()
        .enumerate()
        .map(|(p, ps)| match p {
            2 => Vec::new(),
            3 => vec![LoraGroup { pair: &ps[2], rows: rows[2] }],
            _ => ps.iter().zip(rows).map(|(pair, rows)| LoraGroup { pair, rows }).collect(),
        })
        .collect();
    let lg: Vec<&[LoraGroup<'_>]> = groups.iter().map(Vec::as_slice).collect();
    let yr: Vec<&Tensor> = ys.iter().collect();
    for path in PATHS {
        let shared = add_lora_shared(&yr, &x, &lg, path).unwrap();
        assert_eq!(shared.len(), outs.len());
        for (p, got) in shared.iter().enumerate() {
            let alone = add_lora(&ys[p], &x, &groups[p], path).unwrap();
            assert_eq!(to_vec(got), to_vec(&alone), "{path:?}: projection {p}");
        }
        assert_eq!(to_vec(&shared[2]), to_vec(&ys[2]), "{path:?}: unadapted projection");
        // Row 3 has no adapter in any projection, row 0 none in projection 3.
        assert_eq!(
            to_vec(&shared[0].narrow(0, 3, 1).unwrap()),
            to_vec(&ys[0].narrow(0, 3, 1).unwrap())
        );
        assert_eq!(
            to_vec(&shared[3].narrow(0, 0, 1).unwrap()),
            to_vec(&ys[3].narrow(0, 0, 1).unwrap())
        );
        assert_ne!(to_vec(&shared[0]), to_vec(&ys[0]), "{path:?}: the term must change y");
    }
    // One group list per output, or an error naming the mismatch.
    let err = add_lora_shared(&yr, &x, &lg[..2], KernelPath::Auto).unwrap_err().to_string();
    assert!(err.contains("projections"), "{err}");
    // A bad row in any projection fails the whole call.
    let bad = [LoraGroup { pair: &pairs[1][0], rows: &[7] }];
    let mut lg_bad = lg.clone();
    lg_bad[1] = &bad;
    assert!(add_lora_shared(&yr, &x, &lg_bad, KernelPath::Auto).is_err());
}

fn lora_rejects_bad_input(dev: &Device) {
    let pair = LoraPair::new(
        Tensor::zeros((4, 8), candle_core::DType::F32, dev).unwrap(),
        Tensor::zeros((6, 4), candle_core::DType::F32, dev).unwrap(),
        1.0,
    )
    .unwrap();
    let x = Tensor::zeros((3, 8), candle_core::DType::F32, dev).unwrap();
    let y = Tensor::zeros((3, 6), candle_core::DType::F32, dev).unwrap();
    let bad_row = [LoraGroup { pair: &pair, rows: &[3] }];
    assert!(
        add_lora(&y, &x, &bad_row, KernelPath::Auto)
            .unwrap_err()
            .to_string()
            .contains("row index 3")
    );
    let twice = [LoraGroup { pair: &pair, rows: &[1] }, LoraGroup { pair: &pair, rows: &[1] }];
    assert!(add_lora(&y, &x, &twice, KernelPath::Auto).is_err());
    let y_wrong = Tensor::zeros((3, 5), candle_core::DType::F32, dev).unwrap();
    let ok = [LoraGroup { pair: &pair, rows: &[0] }];
    assert!(add_lora(&y_wrong, &x, &ok, KernelPath::Auto).is_err());
    assert!(
        LoraPair::new(
            Tensor::zeros((4, 8), candle_core::DType::F32, dev).unwrap(),
            Tensor::zeros((6, 3), candle_core::DType::F32, dev).unwrap(),
            1.0
        )
        .is_err()
    );
    let non_finite = LoraPair::new(
        Tensor::zeros((4, 8), candle_core::DType::F32, dev).unwrap(),
        Tensor::zeros((6, 4), candle_core::DType::F32, dev).unwrap(),
        f32::NAN,
    );
    assert!(non_finite.unwrap_err().to_string().contains("scale must be finite"));
    // The stacked form: pairs of different projections, no pairs, rows out of range.
    let other = LoraPair::new(
        Tensor::zeros((2, 5), candle_core::DType::F32, dev).unwrap(),
        Tensor::zeros((6, 2), candle_core::DType::F32, dev).unwrap(),
        1.0,
    )
    .unwrap();
    let f32 = candle_core::DType::F32;
    assert!(LoraStack::new(&[&pair, &other], f32).is_err());
    assert!(LoraStack::new(&[], f32).is_err());
    let stack = LoraStack::new(&[&pair, &pair], f32).unwrap();
    assert_eq!(stack.total_rank(), 8);
    let err = stack_mask(3, stack.members(), &[&[0], &[3]], f32, dev).unwrap_err();
    assert!(err.to_string().contains("row index 3"), "{err}");
    assert!(stack_mask(3, stack.members(), &[&[0]], f32, dev).is_err());
    let mask = stack_mask(3, stack.members(), &[&[0], &[2]], f32, dev).unwrap();
    assert!(stack.apply(&y_wrong, &x, &mask).is_err());
    assert!(stack.delta(&x, &mask.narrow(1, 0, 4).unwrap()).is_err());
}

fn rope_and_norm_match_reference(dev: &Device) {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (t, heads, d) = (5, 3, 16);
    let inv: Vec<f32> =
        (0..d / 2).map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / d as f32)).collect();
    let tables = RopeTables::new(&inv, 1.0, 64, candle_core::DType::F32, dev).unwrap();
    let x = randv(&mut rng, t * heads * d);
    let positions = [0u32, 7, 3, 63, 1];
    let rotate = |tables: &RopeTables| {
        apply_rope(
            &Tensor::from_vec(x.clone(), (t, heads, d), dev).unwrap(),
            tables,
            &Tensor::from_slice(&positions, t, dev).unwrap(),
        )
    };
    let got = rotate(&tables).unwrap();
    let want = r::rope(&x, heads, d, &positions, &inv);
    let diff = r::max_abs_diff(&to_vec(&got), &want);
    assert!(diff < 1e-5, "rope diff {diff}");
    // A YaRN temperature scales the tables, so the rotated vectors, by the same factor.
    let warm = RopeTables::new(&inv, 1.3, 64, candle_core::DType::F32, dev).unwrap();
    let got = rotate(&warm).unwrap();
    let scaled: Vec<f64> = want.iter().map(|v| v * 1.3).collect();
    let diff = r::max_abs_diff(&to_vec(&got), &scaled);
    assert!(diff < 1e-5, "scaled rope diff {diff}");
    // A partial rotary embedding (tables for 6 of the 16 dimensions): the leading 6 rotate, in
    // pairs (i, i + 3), the other 10 pass through.
    let part: Vec<f32> = (0..3).map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / 6.0)).collect();
    let partial = RopeTables::new(&part, 1.0, 64, candle_core::DType::F32, dev).unwrap();
    let got = rotate(&partial).unwrap();
    let want = r::rope(&x, heads, d, &positions, &part);
    let got = to_vec(&got);
    assert!(r::max_abs_diff(&got, &want) < 1e-5, "partial rope");
    let moved = |i: usize| (got[i] - x[i]).abs();
    assert!((0..x.len()).filter(|i| i % d >= 6).all(|i| moved(i) == 0.0), "untouched dimensions");
    assert!((0..x.len()).filter(|i| i % d < 6).any(|i| moved(i) > 1e-3), "rotated dimensions");
    let wide = RopeTables::new(&[1.0; 9], 1.0, 64, candle_core::DType::F32, dev).unwrap();
    assert!(rotate(&wide).is_err());

    let w = randv(&mut rng, d);
    let xs = randv(&mut rng, t * d);
    let got = rms_norm(
        &Tensor::from_vec(xs.clone(), (t, d), dev).unwrap(),
        &Tensor::from_vec(w.clone(), d, dev).unwrap(),
        1e-5,
    )
    .unwrap();
    let diff = r::max_abs_diff(&to_vec(&got), &r::rms_norm(&xs, &w, d, 1e-5));
    assert!(diff < 1e-5, "rms diff {diff}");
}

fn paged_attention_matches_reference(dev: &Device) {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (heads, kvh, d, bs) = (6, 2, 8, 4);
    let scale = 1.0 / (d as f64).sqrt();
    // (context after this step, new rows): a fresh 5-token prefill, a decode at 10, a 3-token
    // chunk continuing a 4-token prefix, decodes at 2 and 9. The generic path puts the two
    // prefills in one padded bucket and the decodes in another, out of row order.
    let shape = [(5usize, 5usize), (10, 1), (7, 3), (2, 1), (9, 1)];
    let tables: [&[u32]; 5] = [&[5, 2], &[0, 7, 3], &[12, 9], &[15], &[1, 14, 10]];
    let rows: usize = shape.iter().map(|s| s.1).sum();
    for path in PATHS {
        let pool = KvPool::zeros(16, bs, kvh, d, candle_core::DType::F32, dev).unwrap();
        let slot = |s: usize, p: usize| (tables[s][p / bs] as usize * bs + p % bs) as u32;
        let k_all: Vec<Vec<f32>> =
            shape.iter().map(|&(l, _)| randv(&mut rng, l * kvh * d)).collect();
        let v_all: Vec<Vec<f32>> =
            shape.iter().map(|&(l, _)| randv(&mut rng, l * kvh * d)).collect();
        // Each sequence's history, as earlier steps would have written it.
        for (s, &(len, new)) in shape.iter().enumerate() {
            let h = len - new;
            if h == 0 {
                continue;
            }
            let slots: Vec<u32> = (0..h).map(|p| slot(s, p)).collect();
            write_kv(
                &pool,
                &Tensor::from_vec(k_all[s][..h * kvh * d].to_vec(), (h, kvh, d), dev).unwrap(),
                &Tensor::from_vec(v_all[s][..h * kvh * d].to_vec(), (h, kvh, d), dev).unwrap(),
                &slots,
                path,
            )
            .unwrap();
        }
        // This step's rows, through the step's own writer.
        let (mut ks, mut vs, mut seqs) = (Vec::new(), Vec::new(), Vec::new());
        for (s, &(len, new)) in shape.iter().enumerate() {
            ks.extend_from_slice(&k_all[s][(len - new) * kvh * d..len * kvh * d]);
            vs.extend_from_slice(&v_all[s][(len - new) * kvh * d..len * kvh * d]);
            let q_start = seqs.iter().map(|q: &PagedSeq<'_>| q.q_len).sum();
            seqs.push(PagedSeq { block_table: tables[s], len, q_start, q_len: new });
        }
        let step = PagedStep::new(&seqs, bs, pool.num_slots()).unwrap();
        assert_eq!(step.rows(), rows);
        step.write_kv(
            &pool,
            &Tensor::from_vec(ks, (rows, kvh, d), dev).unwrap(),
            &Tensor::from_vec(vs, (rows, kvh, d), dev).unwrap(),
            path,
        )
        .unwrap();
        let q = randv(&mut rng, rows * heads * d);
        let qt = Tensor::from_vec(q.clone(), (rows, heads, d), dev).unwrap();
        // Whole context, then sliding windows: 4 (the first window cached by the step, then
        // reused), 1 (another window, built for that call), 4 again.
        for window in [None, Some(4), Some(1), Some(4), None] {
            let got = to_vec(&step.attend(&qt, &pool, scale as f32, window, path).unwrap());
            let mut want = Vec::new();
            for (s, &(len, new)) in shape.iter().enumerate() {
                let q0 = seqs[s].q_start * heads * d;
                let qs = &q[q0..q0 + new * heads * d];
                want.extend(r::attention(
                    qs, &k_all[s], &v_all[s], new, len, heads, kvh, d, scale, window,
                ));
            }
            let diff = r::max_abs_diff(&got, &want);
            assert!(diff < 1e-5, "{path:?}, window {window:?}: attention diff {diff}");
            // The one-call form agrees.
            let again =
                to_vec(&paged_attention(&qt, &pool, &seqs, scale as f32, window, path).unwrap());
            assert!(r::max_abs_diff(&again, &want) < 1e-5);
        }
        // A window does change the answer for rows past it (the test can fail).
        let full = to_vec(&step.attend(&qt, &pool, scale as f32, None, path).unwrap());
        let narrow = to_vec(&step.attend(&qt, &pool, scale as f32, Some(2), path).unwrap());
        assert!(full.iter().zip(&narrow).any(|(a, b)| (a - b).abs() > 1e-3));
        assert!(step.attend(&qt, &pool, 1.0, Some(0), path).is_err());
        // Bad input is an error, not a panic.
        let bad = [PagedSeq { block_table: &[16], len: 1, q_start: 0, q_len: 1 }];
        let q1 = Tensor::zeros((1, heads, d), candle_core::DType::F32, dev).unwrap();
        assert!(paged_attention(&q1, &pool, &bad, 1.0, None, path).is_err());
        let gap = [PagedSeq { block_table: &[0], len: 1, q_start: 1, q_len: 1 }];
        assert!(PagedStep::new(&gap, bs, pool.num_slots()).is_err());
        let q_wrong = Tensor::zeros((rows + 1, heads, d), candle_core::DType::F32, dev).unwrap();
        assert!(step.attend(&q_wrong, &pool, 1.0, None, path).is_err());
        let k1 = Tensor::zeros((1, kvh, d), candle_core::DType::F32, dev).unwrap();
        assert!(write_kv(&pool, &k1, &k1, &[64], path).is_err());
    }
}

macro_rules! device_tests {
    ($($name:ident),*) => {
        mod cpu {
            $( #[test] fn $name() { super::$name(&candle_core::Device::Cpu) } )*
        }
        // As every integration test: on GPU 0 when `LORAD_TEST_DEVICE=cuda` (then a GPU that
        // does not open fails the test), said and skipped otherwise, so a CUDA build still
        // passes its CPU tests on a machine without a GPU.
        #[cfg(feature = "cuda")]
        mod cuda {
            $( #[test] fn $name() {
                if std::env::var("LORAD_TEST_DEVICE").as_deref() != Ok("cuda") {
                    eprintln!("SKIPPED cuda::{}: set LORAD_TEST_DEVICE=cuda to run it on GPU 0", stringify!($name));
                    return;
                }
                super::$name(&candle_core::Device::new_cuda(0).expect("LORAD_TEST_DEVICE=cuda: CUDA device 0"))
            } )*
        }
    };
}

device_tests!(
    lora_matches_reference,
    lora_stack_block_diagonal_matches_parts,
    lora_rejects_bad_input,
    lora_shared_equals_separate_calls,
    rope_and_norm_match_reference,
    paged_attention_matches_reference
);
