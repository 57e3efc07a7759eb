//! Every kernel against its `f64` reference, on both the fused and the generic path. Each test
//! body is written once over a `Device`; `device_tests!` instantiates it per device (CPU always,
//! CUDA with `--features cuda`).

use candle_core::{Device, Tensor};
use lorad_kernels::reference as r;
use lorad_kernels::{
    KernelPath, KvPool, LoraGroup, LoraPair, PagedSeq, RopeTables, add_lora, apply_rope,
    paged_attention, rms_norm, write_kv,
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
}

fn rope_and_norm_match_reference(dev: &Device) {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (t, heads, d) = (5, 3, 16);
    let inv: Vec<f32> =
        (0..d / 2).map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / d as f32)).collect();
    let tables = RopeTables::new(&inv, 64, candle_core::DType::F32, dev).unwrap();
    let x = randv(&mut rng, t * heads * d);
    let positions = [0u32, 7, 3, 63, 1];
    let got = apply_rope(
        &Tensor::from_vec(x.clone(), (t, heads, d), dev).unwrap(),
        &tables,
        &Tensor::from_slice(&positions, t, dev).unwrap(),
    )
    .unwrap();
    let diff = r::max_abs_diff(&to_vec(&got), &r::rope(&x, heads, d, &positions, &inv));
    assert!(diff < 1e-5, "rope diff {diff}");

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
    for path in PATHS {
        let pool = KvPool::zeros(8, bs, kvh, d, candle_core::DType::F32, dev).unwrap();
        // Seq A: prefill of 5 tokens into blocks [5, 2]. Seq B: 9 tokens already cached in
        // blocks [0, 7, 3], now decoding its 10th.
        let tables: [&[u32]; 2] = [&[5, 2], &[0, 7, 3]];
        let lens = [5usize, 10];
        let news = [5usize, 1];
        let k_all: Vec<Vec<f32>> = lens.iter().map(|&l| randv(&mut rng, l * kvh * d)).collect();
        let v_all: Vec<Vec<f32>> = lens.iter().map(|&l| randv(&mut rng, l * kvh * d)).collect();
        // History of B first (positions 0..9), as an earlier step would have written it.
        let hist_slots: Vec<u32> =
            (0..9).map(|p| (tables[1][p / bs] as usize * bs + p % bs) as u32).collect();
        write_kv(
            &pool,
            &Tensor::from_vec(k_all[1][..9 * kvh * d].to_vec(), (9, kvh, d), dev).unwrap(),
            &Tensor::from_vec(v_all[1][..9 * kvh * d].to_vec(), (9, kvh, d), dev).unwrap(),
            &hist_slots,
            path,
        )
        .unwrap();
        // This step: A's 5 rows then B's 1 row.
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        let mut slots = Vec::new();
        for s in 0..2 {
            for p in lens[s] - news[s]..lens[s] {
                ks.extend_from_slice(&k_all[s][p * kvh * d..(p + 1) * kvh * d]);
                vs.extend_from_slice(&v_all[s][p * kvh * d..(p + 1) * kvh * d]);
                slots.push((tables[s][p / bs] as usize * bs + p % bs) as u32);
            }
        }
        write_kv(
            &pool,
            &Tensor::from_vec(ks, (6, kvh, d), dev).unwrap(),
            &Tensor::from_vec(vs, (6, kvh, d), dev).unwrap(),
            &slots,
            path,
        )
        .unwrap();
        let q = randv(&mut rng, 6 * heads * d);
        let seqs = [
            PagedSeq { block_table: tables[0], len: 5, q_start: 0, q_len: 5 },
            PagedSeq { block_table: tables[1], len: 10, q_start: 5, q_len: 1 },
        ];
        let got = to_vec(
            &paged_attention(
                &Tensor::from_vec(q.clone(), (6, heads, d), dev).unwrap(),
                &pool,
                &seqs,
                scale as f32,
                path,
            )
            .unwrap(),
        );
        let want_a =
            r::attention(&q[..5 * heads * d], &k_all[0], &v_all[0], 5, 5, heads, kvh, d, scale);
        let want_b =
            r::attention(&q[5 * heads * d..], &k_all[1], &v_all[1], 1, 10, heads, kvh, d, scale);
        let want: Vec<f64> = want_a.into_iter().chain(want_b).collect();
        let diff = r::max_abs_diff(&got, &want);
        assert!(diff < 1e-5, "{path:?}: attention diff {diff}");
        // Bad input is an error, not a panic.
        let bad = [PagedSeq { block_table: &[9], len: 1, q_start: 0, q_len: 1 }];
        let q1 = Tensor::zeros((1, heads, d), candle_core::DType::F32, dev).unwrap();
        assert!(paged_attention(&q1, &pool, &bad, 1.0, path).is_err());
        let k1 = Tensor::zeros((1, kvh, d), candle_core::DType::F32, dev).unwrap();
        assert!(write_kv(&pool, &k1, &k1, &[32], path).is_err());
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
    lora_rejects_bad_input,
    rope_and_norm_match_reference,
    paged_attention_matches_reference
);
