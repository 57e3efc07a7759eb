//! Speculative decoding by prompt lookup: answers are the same with it on and off (greedy,
//! seeded sampling, logprobs, stop strings, adapters, a batch), drafts are accepted on an
//! answer that repeats its prompt, and the K/V it keeps is the right one (a later request
//! reusing those blocks through the prefix cache answers as without speculation).

mod common;

use std::sync::atomic::Ordering;

use lorad_engine::{
    Completion, EngineConfig, EngineHandle, GenerateRequest, NgramSpec, SamplingParams,
};
use lorad_model::ChatMessage;
use lorad_store::TargetModule;

const SPEC: NgramSpec = NgramSpec { tokens: 4, max_n: 4, min_n: 1, disable_by_batch_size: None };

/// Two engines, speculation off and on, each with adapters `a` (rank 8) and `b` (rank 4).
fn engines() -> Option<(EngineHandle, EngineHandle)> {
    let mut out = Vec::new();
    for speculative in [None, Some(SPEC)] {
        let model = common::load()?;
        let a = common::adapter(&model, "a", 8, &TargetModule::ALL, false, 81);
        let b = common::adapter(&model, "b", 4, &TargetModule::ALL, true, 82);
        let cfg = EngineConfig { kv_cache_tokens: 4096, speculative, ..Default::default() };
        let h = EngineHandle::start(model, cfg).unwrap();
        h.add_adapter(&a).unwrap();
        h.add_adapter(&b).unwrap();
        out.push(h);
    }
    let on = out.pop()?;
    Some((out.pop()?, on))
}

fn chat(h: &EngineHandle, q: &str) -> Vec<u32> {
    let text = h.info().chat_template.render(&[ChatMessage::new("user", q)], true).unwrap();
    h.tokenizer().encode(&text).unwrap()
}

const ECHO: &str = "Repeat this list exactly, twice: apples, pears, plums, cherries, grapes, \
    lemons, limes, oranges, peaches, apricots.";

/// The requests compared: greedy, seeded sampling with logprobs, a stop string, adapters.
fn requests(h: &EngineHandle) -> Vec<GenerateRequest> {
    let echo = chat(h, ECHO);
    let greedy = GenerateRequest::greedy(echo.clone(), 48);
    let sampled = GenerateRequest {
        sampling: SamplingParams {
            temperature: 0.7,
            top_p: 0.95,
            seed: Some(5),
            logprobs: Some(2),
            repetition_penalty: 1.05,
            ..SamplingParams::default()
        },
        ..greedy.clone()
    };
    vec![
        greedy.clone(),
        sampled.clone(),
        GenerateRequest { stop: vec!["cherries".into()], ..greedy.clone() },
        GenerateRequest { adapter: Some("a".into()), ..greedy.clone() },
        GenerateRequest { adapter: Some("b".into()), ..sampled },
        GenerateRequest::greedy(chat(h, "Write a haiku about rain."), 24),
    ]
}

fn same(off: &Completion, on: &Completion, what: &str) {
    assert_eq!(on.tokens, off.tokens, "{what}: tokens");
    assert_eq!(on.text, off.text, "{what}: text");
    assert_eq!(on.finish_reason, off.finish_reason, "{what}: finish reason");
    assert_eq!(on.logprobs.len(), off.logprobs.len(), "{what}: logprobs");
    for (a, b) in on.logprobs.iter().zip(&off.logprobs) {
        assert!((a.logprob - b.logprob).abs() < 1e-3, "{what}: logprob {a:?} vs {b:?}");
    }
}

#[test]
fn answers_are_unchanged_and_drafts_are_accepted() {
    let Some((off, on)) = engines() else { return };
    let reqs = requests(&off);
    // One at a time.
    let mut alone = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        let a = off.submit(r.clone()).unwrap().collect_blocking().unwrap();
        let b = on.submit(r.clone()).unwrap().collect_blocking().unwrap();
        same(&a, &b, &format!("request {i} alone"));
        alone.push(a);
    }
    let steps = |h: &EngineHandle| h.stats().steps.load(Ordering::SeqCst);
    let accepted = on.stats().spec_accepted_tokens.load(Ordering::SeqCst);
    let drafted = on.stats().spec_draft_tokens.load(Ordering::SeqCst);
    assert!(accepted > 20, "speculation accepted {accepted} of {drafted} drafts");
    assert!(steps(&on) < steps(&off), "{} steps with drafts, {} without", steps(&on), steps(&off));
    // Together in one batch.
    let streams: Vec<_> = reqs.iter().map(|r| on.submit(r.clone()).unwrap()).collect();
    for (i, s) in streams.into_iter().enumerate() {
        same(&alone[i], &s.collect_blocking().unwrap(), &format!("request {i} in a batch"));
    }
    // The answer's blocks, cached while drafting, are reused by a longer prompt: its answer
    // is right only if the K/V kept were those of the accepted tokens.
    let mut longer = reqs[0].prompt.clone();
    longer.extend(&alone[0].tokens);
    longer.extend(off.tokenizer().encode("\nNow once more, backwards:").unwrap());
    let follow = GenerateRequest::greedy(longer, 16);
    let cached_before = on.stats().prefix_cache_hit_tokens.load(Ordering::SeqCst);
    let b = on.submit(follow.clone()).unwrap().collect_blocking().unwrap();
    let a = off.submit(follow).unwrap().collect_blocking().unwrap();
    assert!(
        on.stats().prefix_cache_hit_tokens.load(Ordering::SeqCst) - cached_before
            > reqs[0].prompt.len(),
        "the follow-up did not reuse the drafted answer's blocks"
    );
    same(&a, &b, "follow-up over cached blocks");
    off.shutdown();
    on.shutdown();
}

#[test]
fn bad_settings_name_the_field() {
    let Some(model) = common::load() else { return };
    let cfg =
        EngineConfig { speculative: Some(NgramSpec { tokens: 0, ..SPEC }), ..Default::default() };
    let e = EngineHandle::start(model, cfg).err().unwrap();
    assert!(e.to_string().contains("num_speculative_tokens"), "{e}");
}

#[test]
fn no_drafts_from_the_batch_size_that_disables_them() {
    let Some(model) = common::load() else { return };
    let spec = NgramSpec { disable_by_batch_size: Some(1), ..SPEC };
    let cfg = EngineConfig { speculative: Some(spec), ..Default::default() };
    let h = EngineHandle::start(model, cfg).unwrap();
    let out = h.submit(GenerateRequest::greedy(chat(&h, ECHO), 16)).unwrap();
    assert_eq!(out.collect_blocking().unwrap().usage.completion_tokens, 16);
    assert_eq!(h.stats().spec_draft_tokens.load(Ordering::SeqCst), 0);
    h.shutdown();
}
