//! A model whose every layer attends within a sliding window, on the serving path: the K/V
//! blocks that fell out of the window go back to the cache as sequences grow, so sequences
//! that together outgrow the cache run side by side without preemption, and every greedy
//! answer is still what the model computes over its whole sequence at once.

mod common;

use std::sync::atomic::Ordering;

use lorad_engine::{
    EngineConfig, EngineHandle, GenerateRequest, KernelPath, Llama, NgramSpec, argmax,
};
use lorad_model::{LoadedModel, SlidingWindow};

const PROMPTS: [&str; 4] =
    ["The history of Rome begins", "def fibonacci(n):", "Dear Sir or Madam,", "Water boils at"];

/// The default model, told that every layer attends within `window` positions.
fn windowed(window: Option<usize>) -> Option<LoadedModel> {
    let mut m = common::load()?;
    m.config.sliding_window =
        window.map(|size| SlidingWindow { size, layers: vec![true; m.config.num_layers] });
    Some(m)
}

/// Blocks of 16 tokens, 16 of them unless told otherwise.
fn config() -> EngineConfig {
    EngineConfig { kv_cache_tokens: 256, block_size: 16, ..Default::default() }
}

/// Four requests of about 70 tokens each (5 blocks of 16; 20 in all) at once. Returns each
/// answer's tokens and the preemptions it took.
fn serve(model: LoadedModel, cfg: EngineConfig) -> (Vec<Vec<u32>>, usize) {
    let drafting = cfg.speculative.is_some();
    let prompts: Vec<Vec<u32>> = PROMPTS.iter().map(|p| common::encode(&model, p)).collect();
    let h = EngineHandle::start(model, cfg).unwrap();
    let streams: Vec<_> = prompts
        .iter()
        .map(|p| {
            h.submit(GenerateRequest { ignore_eos: true, ..GenerateRequest::greedy(p.clone(), 64) })
                .unwrap()
        })
        .collect();
    let answers = streams.into_iter().map(|s| s.collect_blocking().unwrap().tokens).collect();
    let preempted = h.stats().preemptions.load(Ordering::SeqCst);
    if drafting {
        assert!(h.stats().spec_draft_tokens.load(Ordering::SeqCst) > 0, "no draft was tried");
    }
    assert_eq!(h.stats().kv_blocks_used.load(Ordering::SeqCst), 0, "every block came back");
    h.shutdown();
    (answers, preempted)
}

#[test]
fn blocks_behind_the_window_go_back_and_answers_stay_exact() {
    // Wider than a block, so a block given back too early still holds positions some query
    // reads, and another sequence soon writes over them.
    let window = 20;
    let Some(reference) = windowed(Some(window)) else { return };
    let whole = Llama::new(&reference.config, &reference.weights).unwrap();
    // With and without prefix caching; both attention paths (the fused CPU kernel, and the
    // generic one CUDA runs, which gathers only the window's positions); with n-gram drafts,
    // whose rejected positions roll a sequence back.
    let drafts = NgramSpec { tokens: 4, max_n: 3, min_n: 1, disable_by_batch_size: None };
    for (cfg, preempts) in [
        (config(), false),
        (EngineConfig { prefix_caching: false, ..config() }, false),
        (EngineConfig { kernels: KernelPath::Generic, ..config() }, false),
        (EngineConfig { speculative: Some(drafts), ..config() }, false),
        // 6 blocks: even a window's worth each (up to 3 blocks) does not fit four at once, so
        // sequences holding given-back blocks are preempted, recomputed and release again.
        (EngineConfig { kv_cache_tokens: 96, ..config() }, true),
    ] {
        let Some(model) = windowed(Some(window)) else { return };
        let what = format!(
            "{:?}, prefix caching {}, drafts {}, {} KV tokens",
            cfg.kernels,
            cfg.prefix_caching,
            cfg.speculative.is_some(),
            cfg.kv_cache_tokens
        );
        let (answers, preempted) = serve(model, cfg);
        assert_eq!(preempted > 0, preempts, "{what}: {preempted} preemptions");
        for (p, answer) in PROMPTS.iter().zip(&answers) {
            assert_eq!(answer.len(), 64);
            // Teacher-forced over the whole sequence in one pass (no block is ever released
            // there): each generated token is the argmax of the logits before it, up to
            // rounding between the two computation orders.
            let prompt = common::encode(&reference, p);
            let seq: Vec<u32> = prompt.iter().chain(answer).copied().collect();
            let logits = common::stepped_logits(&whole, &seq, &[seq.len()], None);
            for (k, &t) in answer.iter().enumerate() {
                let row = &logits[prompt.len() - 1 + k];
                let best = row[argmax(row) as usize];
                assert!(
                    best - row[t as usize] <= 1e-3,
                    "{what}: {p:?}, token {k}: {t} scores {} below the best {best}",
                    row[t as usize]
                );
            }
        }
    }
    // Without the window the same load does not fit: the test can fail.
    let Some(model) = windowed(None) else { return };
    let (_, preempted) = serve(model, config());
    assert!(preempted > 0, "20 blocks of sequences fit in a cache of 16");
}
