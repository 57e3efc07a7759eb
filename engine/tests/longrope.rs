//! Phi-3's LongRoPE on the serving path. A sequence rotates with the short factors while it
//! fits the pre-trained context and with the long ones past it (or from the start when its
//! prompt outgrows it), as transformers' generate loop does; the K/V written under one set stay
//! as they were. Checked against two single-set models sharing one KV cache: the short-only
//! one up to the switch, the long-only one after it.

mod common;

use lorad_engine::{EngineConfig, EngineHandle, ForwardSeq, GenerateRequest, KvCache, Llama};
use lorad_model::{LoadedModel, RopeScaling};

/// Past this many positions a sequence is long.
const ORIGINAL: usize = 16;

/// The default model with LongRoPE of the given short and long divisors.
fn longrope(model: &mut LoadedModel, short: &[f32], long: &[f32]) {
    model.config.rope_scaling = Some(RopeScaling::LongRope {
        short_factor: short.to_vec(),
        long_factor: long.to_vec(),
        original_max_position_embeddings: ORIGINAL,
        attention_factor: 1.1,
    });
    model.config.validate().unwrap();
}

/// Divisors unlike each other: the short ones near 1, the long ones growing with wavelength.
fn factors(model: &LoadedModel) -> (Vec<f32>, Vec<f32>) {
    let half = model.config.head_dim / 2;
    let short = (0..half).map(|i| 1.0 + 0.02 * i as f32).collect();
    let long = (0..half).map(|i| 1.0 + 0.6 * i as f32).collect();
    (short, long)
}

/// `ids` continued greedily to `total` tokens (teacher-forced where `ids` already has them),
/// with `short` computing the positions before the switch and `long` the rest, on one KV cache:
/// the first `prompt` tokens in one pass, then a token a step. The switch is the pre-trained
/// context, or the start for a prompt that outgrows it. Returns the tokens and each position's
/// logits.
fn switching(
    short: &Llama,
    long: &Llama,
    ids: &[u32],
    prompt: usize,
    total: usize,
) -> (Vec<u32>, Vec<Vec<f32>>) {
    let switch = if prompt > ORIGINAL { 0 } else { ORIGINAL };
    let cfg = short.config();
    let blocks = total.div_ceil(16);
    let kv = KvCache::new(
        cfg.num_layers,
        blocks * 16,
        16,
        cfg.num_kv_heads,
        cfg.head_dim,
        short.dtype(),
        short.device(),
    )
    .unwrap();
    let table: Vec<u32> = (0..blocks as u32).collect();
    let mut tokens = ids.to_vec();
    let mut logits: Vec<Vec<f32>> = Vec::new();
    let mut at = 0;
    while at < total {
        let end = if at < prompt { prompt } else { at + 1 };
        let seq = ForwardSeq {
            tokens: &tokens[at..end],
            start_pos: at,
            block_table: &table,
            adapter: None,
            want_logits: true,
            all_logits: true,
            prompt_len: prompt,
        };
        let model = if at < switch { short } else { long };
        logits.extend(model.forward(&[seq], &kv).unwrap().to_vec2::<f32>().unwrap());
        at = end;
        if tokens.len() == at && at < total {
            tokens.push(lorad_engine::argmax(&logits[at - 1]));
        }
    }
    (tokens, logits)
}

#[test]
fn long_factors_take_over_past_the_pretrained_context() {
    let Some(mut base) = common::load() else { return };
    let (short, long) = factors(&base);
    let model = |s: &[f32], l: &[f32], base: &mut LoadedModel| {
        longrope(base, s, l);
        Llama::new(&base.config, &base.weights).unwrap()
    };
    let mixed = model(&short, &long, &mut base);
    let short_only = model(&short, &short, &mut base);
    let long_only = model(&long, &long, &mut base);
    let text = "The quick brown fox jumps over the lazy dog, and then it keeps on running far \
                away over the green hills until the sun goes down behind the mountains.";
    let ids = common::encode(&base, text);
    assert!(ids.len() > ORIGINAL + 2, "{} tokens", ids.len());
    // A 10-token prompt fits: short through position 15, long from 16 on. (Teacher-forced on
    // the text, so every model sees the same tokens.)
    let (prompt, total) = (10, ids.len());
    let got = common::stepped_logits(&mixed, &ids, &[prompt], None);
    let (_, want) = switching(&short_only, &long_only, &ids, prompt, total);
    for (p, (g, w)) in got.iter().zip(&want).enumerate() {
        let d = common::max_diff(g, w);
        assert!(d <= 1e-4, "position {p} of {total}: max diff {d}");
    }
    // The switch matters: the short-only model differs past it, the long-only one before it.
    let all_short = common::stepped_logits(&short_only, &ids, &[prompt], None);
    let all_long = common::stepped_logits(&long_only, &ids, &[prompt], None);
    assert!(common::max_diff(&got[ORIGINAL], &all_short[ORIGINAL]) > 1e-3);
    assert!(common::max_diff(&got[ORIGINAL - 1], &all_long[ORIGINAL - 1]) > 1e-3);
    assert!(common::max_diff(&got[ORIGINAL - 1], &all_short[ORIGINAL - 1]) <= 1e-4);
    // A prompt that outgrows the context is long from its first position.
    let got = common::stepped_logits(&mixed, &ids, &[ORIGINAL + 1], None);
    let want = common::stepped_logits(&long_only, &ids, &[ORIGINAL + 1], None);
    for (p, (g, w)) in got.iter().zip(&want).enumerate() {
        let d = common::max_diff(g, w);
        assert!(d <= 1e-4, "long prompt, position {p}: max diff {d}");
    }
}

/// Through the scheduler: a greedy answer that crosses the switch is the two single-set
/// models' answer, and a long prompt that starts with a short one's tokens does not take the
/// short one's cached blocks (their keys were rotated with the other factors).
#[test]
fn served_answers_switch_and_the_prefix_cache_keeps_them_apart() {
    let Some(mut base) = common::load() else { return };
    let (short, long) = factors(&base);
    longrope(&mut base, &short, &short);
    let short_only = Llama::new(&base.config, &base.weights).unwrap();
    longrope(&mut base, &long, &long);
    let long_only = Llama::new(&base.config, &base.weights).unwrap();
    let start = |base: &LoadedModel| {
        let mut m = common::load().unwrap();
        m.config = base.config.clone();
        longrope(&mut m, &short, &long);
        EngineHandle::start(m, EngineConfig { block_size: 16, ..Default::default() }).unwrap()
    };
    let h = start(&base);
    let prompt = common::encode(&base, "Once upon a time, in a land");
    assert!(prompt.len() < ORIGINAL);
    let total = 40;
    let req = |p: &[u32], n: usize| GenerateRequest {
        ignore_eos: true,
        ..GenerateRequest::greedy(p.to_vec(), n)
    };
    let served = h.submit(req(&prompt, total - prompt.len())).unwrap().collect_blocking().unwrap();
    let (want, _) = switching(&short_only, &long_only, &prompt, prompt.len(), total);
    assert_eq!(&want[prompt.len()..], served.tokens.as_slice());

    // The first 16 tokens of that answer, plus more: a prompt past the context. Its first
    // block is cached from the answer above (short factors); it must be computed again.
    let long_prompt: Vec<u32> = want[..ORIGINAL + 4].to_vec();
    let again = h.submit(req(&long_prompt, 6)).unwrap().collect_blocking().unwrap();
    h.shutdown();
    let fresh = start(&base);
    let alone = fresh.submit(req(&long_prompt, 6)).unwrap().collect_blocking().unwrap();
    fresh.shutdown();
    assert_eq!(again.tokens, alone.tokens, "a long prompt reused short-rotated blocks");
    assert_eq!(again.usage.cached_tokens, 0);
}
