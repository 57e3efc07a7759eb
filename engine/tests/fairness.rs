//! Fair sharing between adapters (the Virtual Token Counter): a burst of requests on one
//! adapter does not make a request on another wait behind the whole burst, answers are
//! unchanged by the order, and the fair policy refuses priorities.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use lorad_engine::{
    EngineConfig, EngineError, EngineHandle, GenerateRequest, GenerationEvent, SchedulingPolicy,
};
use lorad_model::ChatMessage;
use lorad_store::TargetModule;

/// An engine with one batch slot and two adapters, `heavy` and `light`.
fn engine(scheduling: SchedulingPolicy) -> Option<EngineHandle> {
    let model = common::load()?;
    let heavy = common::adapter(&model, "heavy", 8, &TargetModule::ALL, false, 71);
    let light = common::adapter(&model, "light", 4, &TargetModule::ALL, false, 72);
    let cfg =
        EngineConfig { max_batch_size: 1, kv_cache_tokens: 1024, scheduling, ..Default::default() };
    let h = EngineHandle::start(model, cfg).unwrap();
    h.add_adapter(&heavy).unwrap();
    h.add_adapter(&light).unwrap();
    Some(h)
}

fn request(h: &EngineHandle, adapter: &str, q: &str, tokens: usize) -> GenerateRequest {
    let text = h.info().chat_template.render(&[ChatMessage::new("user", q)], true).unwrap();
    let prompt = h.tokenizer().encode(&text).unwrap();
    GenerateRequest {
        adapter: Some(adapter.into()),
        ignore_eos: true,
        ..GenerateRequest::greedy(prompt, tokens)
    }
}

/// Four requests on `heavy`, then, once the first of them generates, one on `light`.
fn asks() -> Vec<(&'static str, String, usize)> {
    let mut asks: Vec<_> = (1..=4).map(|n| ("heavy", format!("Count to {}.", n + 4), 12)).collect();
    asks.push(("light", "Name a colour.".into(), 6));
    asks
}

/// Each request's rank in finishing order when the burst runs under `scheduling`; every
/// answer is checked against the same request served alone.
fn finish_ranks(scheduling: SchedulingPolicy) -> Option<Vec<usize>> {
    let h = engine(scheduling)?;
    let asks = asks();
    let alone: Vec<String> = asks
        .iter()
        .map(|(a, q, n)| h.submit(request(&h, a, q, *n)).unwrap().collect_blocking().unwrap().text)
        .collect();
    let finished = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    let mut first_head = None;
    for (i, (a, q, n)) in asks.iter().enumerate() {
        let mut stream = h.submit(request(&h, a, q, *n)).unwrap();
        if i == 0 {
            // The burst's first request runs before the rest arrive.
            match stream.blocking_next() {
                Some(GenerationEvent::Delta { text, .. }) => first_head = Some(text),
                other => panic!("no first token: {other:?}"),
            }
        }
        let finished = finished.clone();
        threads.push(std::thread::spawn(move || {
            let out = stream.collect_blocking().unwrap();
            (out.text, finished.fetch_add(1, Ordering::SeqCst))
        }));
    }
    let mut ranks = Vec::new();
    for (i, t) in threads.into_iter().enumerate() {
        let (mut text, rank) = t.join().unwrap();
        if i == 0 {
            text.insert_str(0, first_head.as_deref().unwrap_or_default());
        }
        assert_eq!(text, alone[i], "answer {i} changed under {scheduling:?}");
        ranks.push(rank);
    }
    h.shutdown();
    Some(ranks)
}

#[test]
fn a_burst_on_one_adapter_does_not_starve_another() {
    let Some(fcfs) = finish_ranks(SchedulingPolicy::Fcfs) else { return };
    assert_eq!(fcfs, vec![0, 1, 2, 3, 4], "first come, first served: light waits for the burst");
    let fair = finish_ranks(SchedulingPolicy::Fair).unwrap();
    // Once the running heavy request finishes, heavy has had more service than light.
    assert_eq!(fair, vec![0, 2, 3, 4, 1], "fair: light goes next");
}

#[test]
fn fair_sharing_refuses_priorities() {
    let Some(h) = engine(SchedulingPolicy::Fair) else { return };
    let req = request(&h, "light", "Hi", 2);
    let e = h.submit(GenerateRequest { priority: 1, ..req.clone() }).unwrap_err();
    assert!(matches!(e, EngineError::InvalidParam { field: "priority", .. }), "{e}");
    assert!(e.to_string().contains("fairly"), "{e}");
    assert!(h.submit(req).unwrap().collect_blocking().is_ok());
    h.shutdown();
}
