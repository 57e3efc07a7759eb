//! The batched multi-LoRA path equals the merged-weight base model: for an adapter X, logits
//! through `y = xW + s·(xA)B` (inside a batch that mixes other adapters and base rows) equal
//! the logits of a base model whose weights were merged `W + s·B·A`, within 1e-4 in f32.

mod common;

use candle_core::DType;
use lorad_engine::{ForwardSeq, KernelPath, KvCache, Llama, ResidentAdapter};
use lorad_store::TargetModule;

const ALL: [TargetModule; 7] = TargetModule::ALL;

fn check(rank: usize, rslora: bool, targets: &[TargetModule], seed: u64) {
    check_saved(rank, rslora, targets, seed, false);
}

/// With `bf16_saved`, X's weights are rounded to bf16 first (an adapter saved in bf16): the CPU
/// engine then keeps them in bf16, and the batched path must still equal the merged f32 model.
fn check_saved(rank: usize, rslora: bool, targets: &[TargetModule], seed: u64, bf16_saved: bool) {
    let Some(model) = common::load() else { return };
    let base_shape = lorad_engine::base_shape(&model.config);
    let mut x = common::adapter(&model, "x", rank, targets, rslora, seed);
    if bf16_saved {
        for w in &mut x.weights {
            for v in w.a.iter_mut().chain(w.b.iter_mut()) {
                *v = half::bf16::from_f32(*v).to_f32();
            }
        }
    }
    let other = common::adapter(&model, "other", 8, &ALL, false, seed + 100);
    let mut llama = Llama::new(&model.config, &model.weights).unwrap();
    let merged = Llama::new(&model.config, &common::merged_weights(&model, &x)).unwrap();
    let rx = ResidentAdapter::new(&x, &base_shape, DType::F32, llama.device()).unwrap();
    let ro = ResidentAdapter::new(&other, &base_shape, DType::F32, llama.device()).unwrap();
    if llama.device().is_cpu() {
        // The CPU engine narrows exactly-bf16 weights and only those.
        let want = if bf16_saved { DType::BF16 } else { DType::F32 };
        for layer in &rx.layers {
            for pair in layer.iter().flatten() {
                assert_eq!((pair.a().dtype(), pair.b_t().dtype()), (want, want));
            }
        }
    }
    let prompt = common::encode(&model, "The quick brown fox jumps over the lazy dog because");
    let want = common::prefill_logits(&merged, &prompt, None);
    let base = common::prefill_logits(&llama, &prompt, None);

    for path in [KernelPath::Auto, KernelPath::Generic] {
        llama.set_kernel_path(path);
        // X's sequence sits between a base-only sequence and another adapter's.
        let cfg = &model.config;
        let kv = KvCache::new(
            cfg.num_layers,
            1024,
            16,
            cfg.num_kv_heads,
            cfg.head_dim,
            DType::F32,
            llama.device(),
        )
        .unwrap();
        let t: Vec<Vec<u32>> = (0..3).map(|i| (i * 16..(i + 1) * 16).collect()).collect();
        let p0 = common::encode(&model, "Hello there, how are");
        let p2 = common::encode(&model, "1 2 3 4 5 6");
        let seqs = [
            ForwardSeq {
                tokens: &p0,
                start_pos: 0,
                block_table: &t[0],
                adapter: None,
                want_logits: true,
                all_logits: false,
            },
            ForwardSeq {
                tokens: &prompt,
                start_pos: 0,
                block_table: &t[1],
                adapter: Some(&rx),
                want_logits: true,
                all_logits: false,
            },
            ForwardSeq {
                tokens: &p2,
                start_pos: 0,
                block_table: &t[2],
                adapter: Some(&ro),
                want_logits: true,
                all_logits: false,
            },
        ];
        let got = llama.forward(&seqs, &kv).unwrap().to_vec2::<f32>().unwrap();
        let diff = common::max_diff(&got[1], &want);
        let effect = common::max_diff(&base, &want);
        eprintln!(
            "rank {rank} rslora {rslora} {path:?}: max|batched - merged| = {diff:.2e}, adapter effect {effect:.2e}"
        );
        assert!(diff <= 1e-4, "rank {rank} rslora {rslora} {path:?}: max diff {diff}");
        // The adapter must actually change the logits, or this test proves nothing.
        assert!(effect > 1e-2, "adapter has no visible effect ({effect})");
    }
}

#[test]
fn rank4_q_v() {
    check(4, false, &[TargetModule::QProj, TargetModule::VProj], 1);
}

#[test]
fn rank8_all_projections() {
    check(8, false, &ALL, 2);
}

#[test]
fn rank16_all_projections() {
    check(16, false, &ALL, 3);
}

#[test]
fn rank16_rslora() {
    check(16, true, &ALL, 4);
}

#[test]
fn rank16_all_projections_saved_in_bf16() {
    check_saved(16, false, &ALL, 5, true);
}
