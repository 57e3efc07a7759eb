//! The engine as the daemon uses it: continuous batching with requests joining at different
//! steps, every request on its own adapter, cancellation, admission limits, stop strings,
//! preemption when the KV cache runs out, prefix caching, and the default model's answer
//! quality.

mod common;

use lorad_engine::{
    AdapterDtype, EngineConfig, EngineError, EngineHandle, FinishReason, GenerateRequest,
    GenerationEvent, KvMemory, SamplingParams,
};
use lorad_model::ChatMessage;
use lorad_store::{RandomAdapterSpec, TargetModule};

fn engine(cfg: EngineConfig) -> Option<(EngineHandle, lorad_model::LoadedModel)> {
    let model = common::load()?;
    let again = common::load()?;
    Some((EngineHandle::start(again, cfg).unwrap(), model))
}

fn chat_prompt(h: &EngineHandle, question: &str) -> Vec<u32> {
    let text = h.info().chat_template.render(&[ChatMessage::new("user", question)], true).unwrap();
    h.tokenizer().encode(&text).unwrap()
}

const PROMPTS: [&str; 8] = [
    "The history of Rome begins",
    "def fibonacci(n):",
    "My favourite colour is",
    "1, 2, 3, 4,",
    "Dear Sir or Madam,",
    "The recipe calls for",
    "In the beginning",
    "Water boils at",
];

/// A request's greedy output is identical alone and inside a batch of 8 requests on 8 different
/// adapters of mixed ranks that join at different steps.
#[test]
fn greedy_output_is_batch_invariant() {
    let Some((h, model)) = engine(EngineConfig { kv_cache_tokens: 4096, ..Default::default() })
    else {
        return;
    };
    let ranks = [4, 8, 16, 4, 8, 16, 12, 6];
    let targets: [&[TargetModule]; 2] =
        [&TargetModule::ALL, &[TargetModule::QProj, TargetModule::VProj]];
    for (i, &r) in ranks.iter().enumerate() {
        let a =
            common::adapter(&model, &format!("a{i}"), r, targets[i % 2], i % 3 == 0, 50 + i as u64);
        h.add_adapter(&a).unwrap();
    }
    let req = |i: usize| GenerateRequest {
        adapter: Some(format!("a{i}")),
        ..GenerateRequest::greedy(common::encode(&model, PROMPTS[i]), 12)
    };
    let alone: Vec<_> =
        (0..8).map(|i| h.submit(req(i)).unwrap().collect_blocking().unwrap()).collect();
    // Together: request i joins after request i-1 has produced two tokens, so joins happen at
    // different decode steps while earlier requests are mid-generation.
    let mut streams = Vec::new();
    for i in 0..8 {
        let mut s = h.submit(req(i)).unwrap();
        let mut head = Vec::new();
        while head.len() < 2 {
            match s.blocking_next().unwrap() {
                GenerationEvent::Delta { text, tokens, .. } => head.push((text, tokens)),
                other => panic!("request {i} ended early: {other:?}"),
            }
        }
        streams.push((head, s));
    }
    for (i, (head, s)) in streams.into_iter().enumerate() {
        let rest = s.collect_blocking().unwrap();
        let tokens: Vec<u32> =
            head.iter().flat_map(|(_, t)| t.clone()).chain(rest.tokens).collect();
        let text: String = head.iter().map(|(t, _)| t.as_str()).collect::<String>() + &rest.text;
        assert_eq!(tokens, alone[i].tokens, "request {i}: batched tokens differ from alone");
        assert_eq!(text, alone[i].text, "request {i}");
    }
    // Different adapters really give different continuations of the same prompt.
    let p = common::encode(&model, PROMPTS[0]);
    let outs: Vec<Vec<u32>> = (0..3)
        .map(|i| {
            let r = GenerateRequest {
                adapter: Some(format!("a{i}")),
                ..GenerateRequest::greedy(p.clone(), 8)
            };
            h.submit(r).unwrap().collect_blocking().unwrap().tokens
        })
        .collect();
    assert!(outs[0] != outs[1] || outs[1] != outs[2], "adapters had no effect: {outs:?}");
    h.shutdown();
}

/// Greedy chat answer of the default model names Paris.
#[test]
fn default_model_knows_the_capital_of_france() {
    let Some((h, _)) = engine(EngineConfig { kv_cache_tokens: 1024, ..Default::default() }) else {
        return;
    };
    let prompt = chat_prompt(&h, "What is the capital of France?");
    let out = h.submit(GenerateRequest::greedy(prompt, 24)).unwrap().collect_blocking().unwrap();
    eprintln!("answer: {:?}", out.text);
    assert!(out.text.contains("Paris"), "answer was {:?}", out.text);
    assert_eq!(out.usage.completion_tokens, out.tokens.len());
    h.shutdown();
}

/// A KV cache sized in bytes holds the whole blocks that fit, and a share of free memory
/// becomes a cache that serves; a size that holds no block is refused by name.
#[test]
fn kv_cache_sized_by_memory() {
    let per_block = |m: &lorad_model::LoadedModel| {
        lorad_engine::kv_bytes_per_token(&m.config, candle_core::DType::F32) * 16
    };
    let Some(model) = common::load() else { return };
    let bytes = per_block(&model) * 40 + 123;
    let cfg = EngineConfig { kv_cache_memory: Some(KvMemory::Bytes(bytes)), ..Default::default() };
    let h = EngineHandle::start(model, cfg).unwrap();
    assert_eq!(h.kv_capacity_tokens(), 40 * 16);
    assert_eq!(h.info().max_seq_len, 40 * 16, "the context is capped at the cache");
    h.shutdown();
    let Some(model) = common::load() else { return };
    let cfg =
        EngineConfig { kv_cache_memory: Some(KvMemory::FreeFraction(0.01)), ..Default::default() };
    let h = EngineHandle::start(model, cfg).unwrap();
    assert!(h.kv_capacity_tokens() >= 16);
    let prompt = chat_prompt(&h, "What is the capital of France?");
    let out = h.submit(GenerateRequest::greedy(prompt, 8)).unwrap().collect_blocking().unwrap();
    assert_eq!(out.usage.completion_tokens, 8);
    h.shutdown();
    let Some(model) = common::load() else { return };
    let tiny = per_block(&model) - 1;
    let cfg = EngineConfig { kv_cache_memory: Some(KvMemory::Bytes(tiny)), ..Default::default() };
    let e = EngineHandle::start(model, cfg).unwrap_err();
    assert!(e.to_string().contains("hold no KV block"), "{e}");
}

/// The RoPE tables are sized by the window the engine serves, not by the context the model
/// claims: a model claiming 2^27 positions (a corrupt header, or a million-token model on a
/// small cache) starts and serves, where the full tables would need 34 GB.
#[test]
fn rope_tables_follow_the_served_window() {
    let Some(mut model) = common::load() else { return };
    model.config.max_position_embeddings = 1 << 27;
    let h =
        EngineHandle::start(model, EngineConfig { kv_cache_tokens: 1024, ..Default::default() })
            .unwrap();
    assert_eq!(h.info().max_seq_len, 1024);
    let prompt = chat_prompt(&h, "What is the capital of France?");
    let out = h.submit(GenerateRequest::greedy(prompt, 8)).unwrap().collect_blocking().unwrap();
    assert_eq!(out.usage.completion_tokens, 8);
    h.shutdown();
}

/// A KV cache sized in tokens beyond what memory holds (extra zeros in a config) is refused by
/// name at start; the allocation used to abort the process.
#[test]
fn kv_cache_beyond_memory_is_refused() {
    for tokens in [1usize << 40, usize::MAX - 3] {
        let Some(model) = common::load() else { return };
        let cfg = EngineConfig { kv_cache_tokens: tokens, ..Default::default() };
        let e = EngineHandle::start(model, cfg).unwrap_err().to_string();
        assert!(
            e.contains(&format!("kv_cache_tokens {}", tokens.div_ceil(16).saturating_mul(16))),
            "{e}"
        );
    }
}

/// `stop_token_ids` end generation at that token (kept in the tokens, not in the text);
/// `min_tokens` bans end-of-sequence until that many tokens are out.
#[test]
fn stop_token_ids_and_min_tokens() {
    let Some((h, _)) = engine(EngineConfig { kv_cache_tokens: 1024, ..Default::default() }) else {
        return;
    };
    let prompt = chat_prompt(&h, "What is the capital of France?");
    let free =
        h.submit(GenerateRequest::greedy(prompt.clone(), 64)).unwrap().collect_blocking().unwrap();
    assert_eq!(
        free.finish_reason,
        FinishReason::Stop,
        "the answer must end by itself: {:?}",
        free.text
    );
    let n = free.tokens.len();
    assert!(n > 4);
    // Stopping at the answer's third token.
    let stop_at = free.tokens[2];
    let r = GenerateRequest {
        stop_token_ids: vec![stop_at],
        ..GenerateRequest::greedy(prompt.clone(), 64)
    };
    let stopped = h.submit(r).unwrap().collect_blocking().unwrap();
    let first = free.tokens.iter().position(|&t| t == stop_at).unwrap();
    assert_eq!(stopped.tokens, free.tokens[..=first]);
    assert_eq!(stopped.finish_reason, FinishReason::Stop);
    assert_eq!(stopped.text, h.tokenizer().decode(&free.tokens[..first], true).unwrap());
    // Past the natural end: end-of-sequence is banned until min_tokens.
    let r = GenerateRequest { min_tokens: n + 4, ..GenerateRequest::greedy(prompt.clone(), n + 8) };
    let longer = h.submit(r).unwrap().collect_blocking().unwrap();
    assert!(longer.tokens.len() >= n + 4, "{} tokens, min {}", longer.tokens.len(), n + 4);
    assert_eq!(longer.tokens[..n - 1], free.tokens[..n - 1], "same answer up to the banned end");
    // Bad values are refused naming the field.
    let bad = GenerateRequest { min_tokens: 9, ..GenerateRequest::greedy(prompt.clone(), 8) };
    assert!(h.submit(bad).unwrap_err().to_string().contains("min_tokens"));
    let bad =
        GenerateRequest { stop_token_ids: vec![u32::MAX], ..GenerateRequest::greedy(prompt, 8) };
    assert!(h.submit(bad).unwrap_err().to_string().contains("stop_token_ids"));
    h.shutdown();
}

/// Stop strings end generation before the match and are never sent; max_tokens gives "length".
#[test]
fn stop_strings_and_length() {
    let Some((h, model)) = engine(EngineConfig { kv_cache_tokens: 1024, ..Default::default() })
    else {
        return;
    };
    let prompt = common::encode(&model, "Count: 1, 2, 3, 4,");
    let full =
        h.submit(GenerateRequest::greedy(prompt.clone(), 10)).unwrap().collect_blocking().unwrap();
    assert_eq!(full.finish_reason, FinishReason::Length);
    assert_eq!(full.usage.completion_tokens, 10);
    // Stop at the first " 7" in whatever the model generated.
    let Some(at) = full.text.find(" 7") else { panic!("expected counting, got {:?}", full.text) };
    let req =
        GenerateRequest { stop: vec![" 7".into()], ..GenerateRequest::greedy(prompt.clone(), 10) };
    let cut = h.submit(req).unwrap().collect_blocking().unwrap();
    assert_eq!(cut.finish_reason, FinishReason::Stop);
    assert_eq!(cut.text, full.text[..at]);
    // vLLM's include_stop_str_in_output: the stop string ends the text.
    let req = GenerateRequest {
        stop: vec![" 7".into(), "7,".into()],
        include_stop_str_in_output: true,
        ..GenerateRequest::greedy(prompt, 10)
    };
    let kept = h.submit(req).unwrap().collect_blocking().unwrap();
    assert_eq!(kept.finish_reason, FinishReason::Stop);
    assert_eq!(kept.text, full.text[..at + 2]);
    h.shutdown();
}

/// Sampling with a seed is reproducible and differs from another seed.
#[test]
fn seeded_sampling_is_reproducible() {
    let Some((h, model)) = engine(EngineConfig { kv_cache_tokens: 1024, ..Default::default() })
    else {
        return;
    };
    let prompt = common::encode(&model, "Once upon a time");
    let run = |seed| {
        let sampling = SamplingParams {
            temperature: 1.0,
            top_p: 0.95,
            seed: Some(seed),
            ..Default::default()
        };
        let req = GenerateRequest { sampling, ..GenerateRequest::greedy(prompt.clone(), 16) };
        h.submit(req).unwrap().collect_blocking().unwrap().tokens
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
    h.shutdown();
}

/// Logprobs are the model's own distribution at each generated position: a prefill of the prompt
/// plus the tokens so far, run separately, gives the same log-softmax, before the penalties and
/// the temperature the sampler applied; the alternatives are its most likely tokens.
#[test]
fn logprobs_are_the_models_log_softmax() {
    let Some((h, model)) = engine(EngineConfig { kv_cache_tokens: 1024, ..Default::default() })
    else {
        return;
    };
    let prompt = common::encode(&model, "The three primary colours are");
    let sampling = SamplingParams {
        temperature: 1.3,
        presence_penalty: 1.5,
        seed: Some(11),
        logprobs: Some(5),
        ..Default::default()
    };
    let req = GenerateRequest { sampling, ..GenerateRequest::greedy(prompt.clone(), 6) };
    let done = h.submit(req).unwrap().collect_blocking().unwrap();
    assert_eq!(done.logprobs.len(), done.tokens.len(), "one entry per generated token");
    let llama = lorad_engine::Llama::new(&model.config, &model.weights).unwrap();
    let mut context = prompt.clone();
    for (lp, &tok) in done.logprobs.iter().zip(&done.tokens) {
        assert_eq!(lp.token, tok);
        let logits = common::prefill_logits(&llama, &context, None);
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = f64::from(max)
            + logits.iter().map(|&l| (f64::from(l) - f64::from(max)).exp()).sum::<f64>().ln();
        let want = |id: u32| f64::from(logits[id as usize]) - lse;
        assert!(
            (f64::from(lp.logprob) - want(tok)).abs() < 1e-3,
            "{} vs {}",
            lp.logprob,
            want(tok)
        );
        assert_eq!(lp.top.len(), 5);
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        for (&(id, l), &want_id) in lp.top.iter().zip(&order) {
            assert_eq!(id, want_id, "top alternatives in the model's order");
            assert!((f64::from(l) - want(id)).abs() < 1e-3);
        }
        context.push(tok);
    }
    // Not asked for: none computed.
    let plain = h.submit(GenerateRequest::greedy(prompt.clone(), 3)).unwrap();
    assert!(plain.collect_blocking().unwrap().logprobs.is_empty());
    let too_many = GenerateRequest {
        sampling: SamplingParams { logprobs: Some(21), ..SamplingParams::greedy() },
        ..GenerateRequest::greedy(prompt, 3)
    };
    assert!(matches!(h.submit(too_many), Err(EngineError::InvalidParam { field: "logprobs", .. })));
    h.shutdown();
}

/// Scoring a prompt (`echo` with logprobs): each prompt token after the first gets the
/// log-probability the model gives it after the tokens before it, whether the prefill runs in
/// one step or in chunks, and `max_tokens: 0` then generates nothing.
#[test]
fn prompt_logprobs_score_every_prompt_token() {
    let llama =
        |m: &lorad_model::LoadedModel| lorad_engine::Llama::new(&m.config, &m.weights).unwrap();
    for chunk in [512, 5] {
        let cfg =
            EngineConfig { kv_cache_tokens: 1024, max_batch_tokens: chunk, ..Default::default() };
        let Some((h, model)) = engine(cfg) else { return };
        let prompt =
            common::encode(&model, "The capital of France is Paris, and the capital of Italy is");
        let req = GenerateRequest {
            prompt_logprobs: Some(2),
            ..GenerateRequest::greedy(prompt.clone(), 0)
        };
        let done = h.submit(req).unwrap().collect_blocking().unwrap();
        assert_eq!((done.finish_reason, done.usage.completion_tokens), (FinishReason::Length, 0));
        assert!(done.tokens.is_empty() && done.text.is_empty());
        assert_eq!(done.prompt_logprobs.len(), prompt.len() - 1, "chunk {chunk}");
        let reference = llama(&model);
        for (p, lp) in done.prompt_logprobs.iter().enumerate() {
            assert_eq!(lp.token, prompt[p + 1]);
            let logits = common::prefill_logits(&reference, &prompt[..=p], None);
            let want = lorad_engine::token_logprob(&logits, prompt[p + 1], 2);
            assert!((lp.logprob - want.logprob).abs() < 1e-3, "position {p}: {lp:?} vs {want:?}");
            let ids: Vec<u32> = lp.top.iter().map(|t| t.0).collect();
            assert_eq!(ids, want.top.iter().map(|t| t.0).collect::<Vec<_>>());
        }
        // Scoring and generating: the answer is the one generated without scoring.
        let both = GenerateRequest {
            prompt_logprobs: Some(0),
            ..GenerateRequest::greedy(prompt.clone(), 4)
        };
        let both = h.submit(both).unwrap().collect_blocking().unwrap();
        let plain = h
            .submit(GenerateRequest::greedy(prompt.clone(), 4))
            .unwrap()
            .collect_blocking()
            .unwrap();
        assert_eq!((both.tokens, both.prompt_logprobs.len()), (plain.tokens, prompt.len() - 1));
        // Zero tokens without scoring is still an error.
        assert!(matches!(
            h.submit(GenerateRequest::greedy(prompt, 0)),
            Err(EngineError::InvalidParam { field: "max_tokens", .. })
        ));
        h.shutdown();
    }
}

/// `max_seq_len` (vLLM's `max_model_len`) caps the context below the model's; above it, the
/// engine does not start.
#[test]
fn max_model_len_caps_the_context_or_is_refused() {
    let cfg = EngineConfig { max_seq_len: Some(512), kv_cache_tokens: 2048, ..Default::default() };
    let Some((h, model)) = engine(cfg) else { return };
    assert_eq!(h.info().max_seq_len, 512);
    let prompt = common::encode(&model, "Hello");
    assert!(matches!(
        h.submit(GenerateRequest::greedy(prompt, 512)),
        Err(EngineError::ContextLength { .. })
    ));
    h.shutdown();
    let too_long = EngineConfig { max_seq_len: Some(100_000), ..Default::default() };
    let Some(again) = common::load() else { return };
    match EngineHandle::start(again, too_long) {
        Err(EngineError::Config(m)) => assert!(m.contains("max_model_len 100000"), "{m}"),
        other => panic!("expected a config error, got {:?}", other.map(|_| ())),
    }
}

/// Dropping a stream frees its slot; a full queue is refused; bad requests fail at submit.
#[test]
fn cancellation_admission_and_validation() {
    let cfg = EngineConfig {
        max_batch_size: 1,
        max_waiting: 1,
        kv_cache_tokens: 1024,
        ..Default::default()
    };
    let Some((h, model)) = engine(cfg) else { return };
    let prompt = common::encode(&model, "Tell me a long story about");
    let mut running = h.submit(GenerateRequest::greedy(prompt.clone(), 400)).unwrap();
    assert!(matches!(running.blocking_next(), Some(GenerationEvent::Delta { .. })));
    let waiting = h.submit(GenerateRequest::greedy(prompt.clone(), 4)).unwrap();
    match h.submit(GenerateRequest::greedy(prompt.clone(), 4)) {
        Err(EngineError::QueueFull(1)) => {}
        other => panic!("expected QueueFull, got {other:?}"),
    }
    drop(running);
    // The cancelled request's slot goes to the waiting one, which completes.
    let done = waiting.collect_blocking().unwrap();
    assert_eq!(done.usage.completion_tokens, 4);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while h.stats().running.load(std::sync::atomic::Ordering::SeqCst) != 0 {
        assert!(std::time::Instant::now() < deadline, "slot not freed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // It queued behind the running one; a request reaching an idle engine is admitted in the
    // same scheduler turn, with no forward step in between.
    let idle = h.submit(GenerateRequest::greedy(prompt.clone(), 1)).unwrap();
    let idle = idle.collect_blocking().unwrap();
    assert!(done.usage.queued > idle.usage.queued, "{:?} {:?}", done.usage, idle.usage);
    let ctx = h.info().max_seq_len;
    assert_eq!(ctx, 1024, "the context window is capped at the KV cache size");
    assert!(matches!(
        h.submit(GenerateRequest::greedy(prompt.clone(), ctx)),
        Err(EngineError::ContextLength { .. })
    ));
    assert!(matches!(
        h.submit(GenerateRequest {
            adapter: Some("nope".into()),
            ..GenerateRequest::greedy(prompt.clone(), 4)
        }),
        Err(EngineError::UnknownAdapter(_))
    ));
    assert!(matches!(
        h.submit(GenerateRequest::greedy(Vec::new(), 4)),
        Err(EngineError::EmptyPrompt)
    ));
    let bad = GenerateRequest {
        sampling: SamplingParams { top_p: 1.5, ..Default::default() },
        ..GenerateRequest::greedy(prompt, 4)
    };
    assert!(matches!(h.submit(bad), Err(EngineError::InvalidParam { field: "top_p", .. })));
    h.shutdown();
}

/// With a KV cache too small for all requests at once, sequences are preempted and recomputed;
/// every greedy answer still equals its answer alone.
#[test]
fn preemption_preserves_greedy_outputs() {
    let cfg = EngineConfig { kv_cache_tokens: 96, block_size: 16, ..Default::default() };
    let Some((h, model)) = engine(cfg) else { return };
    // ignore_eos: every sequence grows to prompt + 24 tokens (2 blocks each, 8 > 6 in total).
    let reqs: Vec<_> = PROMPTS[..4]
        .iter()
        .map(|p| GenerateRequest {
            ignore_eos: true,
            // Scored prompts too: a recomputed prefill must not score a position twice.
            prompt_logprobs: Some(1),
            ..GenerateRequest::greedy(common::encode(&model, p), 24)
        })
        .collect();
    let alone: Vec<_> =
        reqs.iter().map(|r| h.submit(r.clone()).unwrap().collect_blocking().unwrap()).collect();
    let streams: Vec<_> = reqs.iter().map(|r| h.submit(r.clone()).unwrap()).collect();
    for (i, s) in streams.into_iter().enumerate() {
        let together = s.collect_blocking().unwrap();
        assert_eq!(together.tokens, alone[i].tokens, "request {i}");
        let ids = |c: &lorad_engine::Completion| -> Vec<u32> {
            c.prompt_logprobs.iter().map(|l| l.token).collect()
        };
        assert_eq!(ids(&together), ids(&alone[i]), "request {i}: prompt scored once");
        assert_eq!(together.prompt_logprobs.len(), reqs[i].prompt.len() - 1);
    }
    let preempted = h.stats().preemptions.load(std::sync::atomic::Ordering::SeqCst);
    assert!(preempted > 0, "the cache was large enough: nothing was preempted");
    h.shutdown();
}

/// A request preempted in the middle of its prefill (before it generated anything) and later
/// re-admitted is counted out of the waiting queue once, not twice: afterwards the queue reads
/// empty and new requests are admitted instead of refused as over capacity.
#[test]
fn preemption_during_prefill_keeps_the_queue_count() {
    // 3 blocks of 16. Two tokens per step: A decodes one, B prefills one, so B is still
    // prefilling its 30-token prompt when A needs its second block and B is preempted.
    let cfg = EngineConfig {
        kv_cache_tokens: 48,
        block_size: 16,
        max_batch_tokens: 2,
        max_waiting: 4,
        ..Default::default()
    };
    let Some((h, model)) = engine(cfg) else { return };
    let a = GenerateRequest {
        ignore_eos: true,
        ..GenerateRequest::greedy(common::encode(&model, PROMPTS[0]), 30)
    };
    let long: Vec<u32> =
        common::encode(&model, &"one two three four five ".repeat(6))[..30].to_vec();
    // B scores its prompt: positions scored before the preemption are not scored again.
    let b = GenerateRequest { prompt_logprobs: Some(0), ..GenerateRequest::greedy(long, 2) };
    let mut sa = h.submit(a).unwrap();
    assert!(matches!(sa.blocking_next(), Some(GenerationEvent::Delta { .. })));
    let sb = h.submit(b).unwrap();
    sa.collect_blocking().unwrap();
    let scored = sb.collect_blocking().unwrap().prompt_logprobs;
    assert_eq!(scored.len(), 29, "each of positions 1..30 once");
    assert!(
        h.stats().preemptions.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "B was not preempted"
    );
    assert_eq!(h.stats().waiting.load(std::sync::atomic::Ordering::SeqCst), 0);
    let again = GenerateRequest::greedy(common::encode(&model, PROMPTS[1]), 2);
    h.submit(again).expect("admitted after the preemption").collect_blocking().unwrap();
    h.shutdown();
}

/// The watchdog probe: the loop answers when idle and between steps while busy, and not
/// once the engine has stopped.
#[test]
fn scheduler_answers_watchdog_pings_until_shutdown() {
    let Some((h, _)) = engine(EngineConfig { kv_cache_tokens: 1024, ..Default::default() }) else {
        return;
    };
    let wait = std::time::Duration::from_secs(10);
    assert!(h.is_responsive(wait), "idle engine");
    let prompt = chat_prompt(&h, "Count from one to twenty.");
    let stream = h.submit(GenerateRequest::greedy(prompt, 32)).unwrap();
    assert!(h.is_responsive(wait), "busy engine");
    stream.collect_blocking().unwrap();
    h.shutdown();
    assert!(!h.is_responsive(std::time::Duration::from_millis(200)), "stopped engine");
}

/// Requests sharing a system prompt reuse its full blocks' K/V (per model or adapter, never
/// across them), report the reused tokens in their usage, and answer exactly as an engine
/// without the cache does; a prompt to be scored computes everything.
#[test]
fn prefix_cache_shares_common_prompts() {
    let Some((h, model)) = engine(EngineConfig { kv_cache_tokens: 2048, ..Default::default() })
    else {
        return;
    };
    let Some((plain, _)) =
        engine(EngineConfig { kv_cache_tokens: 2048, prefix_caching: false, ..Default::default() })
    else {
        return;
    };
    let a = common::adapter(&model, "a", 8, &TargetModule::ALL, false, 77);
    h.add_adapter(&a).unwrap();
    plain.add_adapter(&a).unwrap();
    let system = "You are a careful assistant for a shipping company. Answer in one short \
        sentence, name the port when you know it, and never invent tracking numbers. Parcels \
        leave Rotterdam on Mondays and Hamburg on Thursdays; Oslo is served from Hamburg.";
    let chat = |q: &str| {
        let msgs = [ChatMessage::new("system", system), ChatMessage::new("user", q)];
        let text = h.info().chat_template.render(&msgs, true).unwrap();
        h.tokenizer().encode(&text).unwrap()
    };
    let (p1, p2) = (chat("Where is my parcel?"), chat("Which port ships to Oslo?"));
    let common = p1.iter().zip(&p2).take_while(|(x, y)| x == y).count();
    assert!(common >= 48, "the shared system prompt must span full blocks ({common} tokens)");
    let run = |h: &EngineHandle, p: &[u32], adapter: Option<&str>, scored: bool| {
        let r = GenerateRequest {
            adapter: adapter.map(str::to_owned),
            prompt_logprobs: scored.then_some(1),
            ..GenerateRequest::greedy(p.to_vec(), 12)
        };
        h.submit(r).unwrap().collect_blocking().unwrap()
    };
    let blocks = |n: usize| n / 16 * 16;
    let first = run(&h, &p1, None, false);
    assert_eq!(first.usage.cached_tokens, 0, "nothing is cached yet");
    let second = run(&h, &p2, None, false);
    assert_eq!(second.usage.cached_tokens, blocks(common));
    assert_eq!(second.tokens, run(&plain, &p2, None, false).tokens, "cached answer differs");
    // The same prompt again reuses every full block but the one holding its last token.
    let again = run(&h, &p1, None, false);
    assert_eq!(again.usage.cached_tokens, blocks(p1.len() - 1));
    assert_eq!(again.tokens, first.tokens);
    // An adapter's K/V are its own: nothing from the base's blocks, then its own blocks.
    let on_a = run(&h, &p2, Some("a"), false);
    assert_eq!(on_a.usage.cached_tokens, 0, "an adapter reused the base model's K/V");
    let on_a_again = run(&h, &p1, Some("a"), false);
    assert_eq!(on_a_again.usage.cached_tokens, blocks(common));
    assert_eq!(on_a_again.tokens, run(&plain, &p1, Some("a"), false).tokens);
    // Two requests for one new prompt at once: the second waits for the first's blocks
    // instead of computing them too.
    let p3 = common::encode(
        &model,
        "A lighthouse keeper kept a log of every ship that passed the northern cape, noting \
         the flag, the weather and the hour, for thirty years without missing a single day.",
    );
    assert!(p3.len() > 32);
    // Both arrive while the engine prefills a long prompt (over a second on a CPU), so they
    // are admitted in the same round. (On a fast device they may come a step apart; the second
    // then finds the blocks cached either way.)
    let filler = common::encode(&model, "Tides rise and fall twice a day along this coast. ");
    let long: Vec<u32> = (0..90).flat_map(|_| filler.iter().copied()).take(900).collect();
    let busy = h.submit(GenerateRequest::greedy(long, 2)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(150));
    let (sa, sb) = (
        h.submit(GenerateRequest::greedy(p3.clone(), 6)).unwrap(),
        h.submit(GenerateRequest::greedy(p3.clone(), 6)).unwrap(),
    );
    let (ca, cb) = (sa.collect_blocking().unwrap(), sb.collect_blocking().unwrap());
    let busy = busy.collect_blocking().unwrap();
    assert_eq!(ca.usage.cached_tokens, 0);
    assert_eq!(cb.usage.cached_tokens, blocks(p3.len() - 1), "the second computed the prompt too");
    assert_eq!(ca.tokens, cb.tokens);
    // A salted request shares only with requests of the same salt.
    let salted = |salt: &str| {
        let r = GenerateRequest {
            cache_salt: Some(salt.to_owned()),
            ..GenerateRequest::greedy(p1.clone(), 12)
        };
        h.submit(r).unwrap().collect_blocking().unwrap()
    };
    assert_eq!(salted("tenant-1").usage.cached_tokens, 0, "a salted request used unsalted K/V");
    let same = salted("tenant-1");
    assert_eq!(same.usage.cached_tokens, blocks(p1.len() - 1));
    assert_eq!(same.tokens, first.tokens);
    assert_eq!(salted("tenant-2").usage.cached_tokens, 0, "salts do not share");
    // Scoring the prompt needs every position's logits: no cached blocks.
    let scored = run(&h, &p1, None, true);
    assert_eq!(scored.usage.cached_tokens, 0);
    assert_eq!(scored.prompt_logprobs.len(), p1.len() - 1);
    let stats = h.stats();
    let hits = stats.prefix_cache_hit_tokens.load(std::sync::atomic::Ordering::SeqCst);
    let want = [&second, &again, &on_a_again, &same, &cb, &busy]
        .iter()
        .map(|c| c.usage.cached_tokens)
        .sum::<usize>();
    assert_eq!(hits, want);
    assert_eq!(plain.stats().prefix_cache_hit_tokens.load(std::sync::atomic::Ordering::SeqCst), 0);
    // Every request has finished: no block is held, the prompts' blocks stay cached.
    let load = |a: &std::sync::atomic::AtomicUsize| a.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(load(&stats.kv_blocks_total), 2048 / 16);
    assert_eq!(load(&stats.kv_blocks_used), 0);
    assert!(load(&stats.kv_blocks_cached) >= p1.len() / 16, "prompt blocks were not kept");
    assert_eq!(load(&plain.stats().kv_blocks_cached), 0, "the cache is off");
    assert!(load(&stats.step_tokens) >= load(&stats.steps));
    assert_eq!(stats.step_seconds.snapshot().1 as usize, load(&stats.steps));
    h.shutdown();
    plain.shutdown();
}

/// `adapter_dtype = bf16` serves an f32 adapter as that adapter rounded to bf16: the greedy
/// answers of an engine given the rounded adapter, in half the resident bytes of the f32 one,
/// and the budget's bound from the stored size says half too.
#[test]
fn bf16_adapter_dtype_serves_the_rounded_adapter() {
    let Some((plain, model)) = engine(EngineConfig::default()) else { return };
    let cfg = EngineConfig { adapter_dtype: AdapterDtype::Bf16, ..EngineConfig::default() };
    let rounding = EngineHandle::start(common::load().unwrap(), cfg).unwrap();
    let base = lorad_engine::base_shape(&model.config);
    let spec = RandomAdapterSpec {
        rank: 8,
        alpha: 64.0,
        targets: TargetModule::ALL.to_vec(),
        use_rslora: false,
        layers: None,
        seed: 77,
    };
    let full = lorad_store::random_adapter("full", &base, &spec);
    let mut rounded = full.clone();
    rounded.name = "rounded".into();
    for w in &mut rounded.weights {
        for v in w.a.iter_mut().chain(w.b.iter_mut()) {
            *v = half::bf16::from_f32(*v).to_f32();
        }
    }
    let served = rounding.add_adapter(&full).unwrap();
    let want = plain.add_adapter(&rounded).unwrap();
    let unrounded = plain.add_adapter(&full).unwrap();
    assert_eq!(served.bytes, want.bytes);
    assert_eq!(served.bytes * 2, unrounded.bytes, "bf16 holds half the bytes of f32");
    let ask = |h: &EngineHandle, name: &str, prompt: &str| {
        let req = GenerateRequest {
            adapter: Some(name.into()),
            ..GenerateRequest::greedy(model.tokenizer.encode(prompt).unwrap(), 12)
        };
        h.submit(req).unwrap().collect_blocking().unwrap().tokens
    };
    for prompt in &PROMPTS[..3] {
        assert_eq!(ask(&rounding, "full", prompt), ask(&plain, "rounded", prompt), "{prompt}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = lorad_store::disk::Store::open(tmp.path(), Default::default()).unwrap();
    store.import_adapter("full", &full, "").unwrap();
    let info = store.get("full").unwrap();
    assert_eq!(info.dtype, "f32");
    let bound = rounding.resident_bytes_bound(&info);
    assert!(bound >= served.bytes as u64, "{bound} < {}", served.bytes);
    assert_eq!(bound * 2, plain.resident_bytes_bound(&info));
    rounding.shutdown();
    plain.shutdown();
}
