//! Scheduling by priority (vLLM's `priority`): the waiting queue runs lower numbers first, a
//! waiting request preempts running ones of a lower priority, preempted requests come back
//! with their output unchanged; first come, first served refuses priorities.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use lorad_engine::{
    EngineConfig, EngineError, EngineHandle, GenerateRequest, GenerationEvent, SchedulingPolicy,
};
use lorad_model::ChatMessage;

fn engine(cfg: EngineConfig) -> Option<EngineHandle> {
    Some(EngineHandle::start(common::load()?, cfg).unwrap())
}

fn prompt(h: &EngineHandle, q: &str) -> Vec<u32> {
    let text = h.info().chat_template.render(&[ChatMessage::new("user", q)], true).unwrap();
    h.tokenizer().encode(&text).unwrap()
}

fn request(h: &EngineHandle, q: &str, tokens: usize, priority: i64) -> GenerateRequest {
    GenerateRequest { ignore_eos: true, priority, ..GenerateRequest::greedy(prompt(h, q), tokens) }
}

#[test]
fn higher_priorities_go_first_and_preempt_lower_ones() {
    let cfg = EngineConfig {
        max_batch_size: 1,
        kv_cache_tokens: 1024,
        scheduling: SchedulingPolicy::Priority,
        ..Default::default()
    };
    let Some(h) = engine(cfg) else { return };
    let asks = [
        ("Tell me a long story about a dragon.", 40, 5),
        ("Name a colour.", 6, 3),
        ("Name a fruit.", 6, 1),
    ];
    // What each answers alone.
    let alone: Vec<String> = asks
        .iter()
        .map(|&(q, n, p)| h.submit(request(&h, q, n, p)).unwrap().collect_blocking().unwrap().text)
        .collect();
    // The low-priority story starts first; once it runs, the others arrive.
    let mut story = h.submit(request(&h, asks[0].0, asks[0].1, asks[0].2)).unwrap();
    let first = story.blocking_next();
    assert!(matches!(first, Some(GenerationEvent::Delta { .. })), "{first:?}");
    let finished = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for (i, &(q, n, p)) in asks.iter().enumerate().skip(1) {
        let stream = h.submit(request(&h, q, n, p)).unwrap();
        let finished = finished.clone();
        threads.push(std::thread::spawn(move || {
            let out = stream.collect_blocking().unwrap();
            (i, out.text, finished.fetch_add(1, Ordering::SeqCst))
        }));
    }
    let mut rest = String::new();
    if let Some(GenerationEvent::Delta { text, .. }) = first {
        rest.push_str(&text);
    }
    let story_out = story.collect_blocking().unwrap();
    rest.push_str(&story_out.text);
    let story_rank = finished.fetch_add(1, Ordering::SeqCst);
    let mut ranks = vec![0; 3];
    ranks[0] = story_rank;
    for t in threads {
        let (i, text, rank) = t.join().unwrap();
        assert_eq!(text, alone[i], "answer {i} changed");
        ranks[i] = rank;
    }
    // Priority 1 first, then 3, then the preempted story (priority 5), intact.
    assert_eq!(ranks, vec![2, 1, 0], "finish order");
    assert_eq!(rest, alone[0], "the preempted story changed");
    assert!(h.stats().preemptions.load(Ordering::SeqCst) > 0, "nothing was preempted");
    h.shutdown();
}

#[test]
fn first_come_first_served_refuses_priorities() {
    let Some(h) = engine(EngineConfig { kv_cache_tokens: 1024, ..Default::default() }) else {
        return;
    };
    let e = h.submit(request(&h, "Hi", 2, 1)).unwrap_err();
    assert!(matches!(e, EngineError::InvalidParam { field: "priority", .. }), "{e}");
    assert!(h.submit(request(&h, "Hi", 2, 0)).unwrap().collect_blocking().is_ok());
    h.shutdown();
}
