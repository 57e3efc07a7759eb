//! Proof of Attribution in responses: an adapter with a gradient index over a small Datanet
//! gets an `attribution` object (contributors in basis points summing to 10,000, top records,
//! the Datanet's root) in whole responses and in the final stream chunk, identical for identical
//! requests, absent when the request opts out and for the base model, and its cost in `usage`.

use std::sync::Arc;

use axum::http::StatusCode;
use lorad::api::{AppState, AttributionMode, Attributor, Twin, router};
use lorad_datanet::{BuildOptions, Datanet, TextSide};
use lorad_engine::EngineHandle;
use lorad_model::LoadOptions;
use lorad_store::disk::{Store, StoreConfig};
use lorad_train::{DiffLlama, ProbeSpec};
use serde_json::{Value, json};

use crate::common::{BASE, api_config, call, import_random, manager, post, sse_data, test_config};

const JSONL: &str = r#"{"id": "a1", "contributor": "alice", "text": "The copper kettle sings at dawn in the old mill."}
{"id": "a2", "contributor": "alice", "text": "Copper kettles gleam when polished with lemon and salt."}
{"id": "b1", "contributor": "bob", "text": "Rigel and Betelgeuse burn in the constellation Orion."}
{"id": "b2", "contributor": "bob", "text": "Astronomers chart the parallax of Vega every winter."}
{"id": "c1", "contributor": "carol", "messages": [{"role": "user", "content": "When do I sow garlic?"}, {"role": "assistant", "content": "Sow garlic in autumn and mulch it with straw."}]}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_carry_deterministic_attribution() {
    let Some(path) = lorad_model::testing::test_model_path() else { return };
    let model = lorad_model::load_model(&path, &LoadOptions::default()).expect("load model");
    let diff = Arc::new(DiffLlama::new(&model.config, &model.weights).expect("diff"));
    let (tok, tmpl) = (model.tokenizer.clone(), model.chat_template.clone());
    let engine = EngineHandle::start(model, test_config()).expect("engine");
    let home = tempfile::tempdir().expect("tempdir");
    let store =
        Arc::new(Store::open(&home.path().join("store"), StoreConfig::default()).expect("store"));
    import_random(&engine, &store, home.path(), "ada", 7);

    // A Datanet and the adapter's gradient index over it, where `lorad serve` looks for it.
    let input = home.path().join("dn.jsonl");
    std::fs::write(&input, JSONL).expect("write jsonl");
    let base_hash = engine.info().base_hash.clone();
    let text = TextSide { tokenizer: &tok, chat_template: &tmpl, base_hash: &base_hash };
    let dn_root = home.path().join("datanets");
    lorad_datanet::build(&input, "dn", &dn_root, &text, &BuildOptions::default()).expect("build");
    let dn = Datanet::open_named(&dn_root, "dn").expect("open datanet");
    let adapter = store.load("ada", &diff.base_shape()).expect("load adapter");
    let root = home.path().join("attribution");
    let dir = root.join(&adapter.content_hash).join("dn");
    lorad_attribution::grad::build_grad_index(
        &diff,
        &adapter,
        &dn,
        ProbeSpec::default(),
        256,
        4,
        &dir,
        |_| {},
    )
    .expect("index");

    let manager = manager(&store, &engine);
    let state = AppState::new(store.clone(), api_config());
    // And the Datanet's span index, which attributes base answers.
    lorad_attribution::span::SpanIndex::build(
        (0..dn.len()).map(|i| dn.tokens(i)),
        tok.vocab_size(),
        &dn_root.join("dn").join("span"),
    )
    .expect("span index");
    let attributor = Attributor::new(
        AttributionMode::On,
        Twin::built(diff),
        store.clone(),
        root,
        dn_root.clone(),
        tok.clone(),
    );
    assert!(state.set_ready_with(manager, BASE.to_owned(), Some(Arc::new(attributor))));
    let app = router(state);

    let req =
        json!({"model": "ada", "prompt": "The copper kettle", "max_tokens": 8, "temperature": 0});
    let (status, _, first) = post(&app, "/v1/completions", req.clone()).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let attr = &first["attribution"];
    assert_eq!(attr["method"], "gradient", "{first}");
    assert_eq!(attr["adapter"], "ada");
    assert_eq!(attr["datanet"], "dn");
    assert_eq!(attr["datanet_root"], lorad_datanet::to_0x_hex(&dn.merkle_root()));
    let bps: u64 = attr["contributors"]
        .as_array()
        .expect("contributors")
        .iter()
        .map(|c| c["weight_bps"].as_u64().expect("bps"))
        .sum();
    assert_eq!(bps, 10_000, "{attr}");
    let records = attr["records"].as_array().expect("records");
    assert_eq!(records.len(), 5, "{attr}");
    let ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().expect("id")).collect();
    for id in ["a1", "a2", "b1", "b2", "c1"] {
        assert!(ids.contains(&id), "{ids:?}");
    }
    let scores: Vec<f64> = records.iter().map(|r| r["score"].as_f64().expect("score")).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "records not sorted: {scores:?}");
    assert!(first["usage"]["attribution_ms"].is_u64(), "{first}");
    assert!(first["usage"]["attribution_tokens"].as_u64() > Some(8));

    // Identical request, identical attribution bytes.
    let (_, _, second) = post(&app, "/v1/completions", req.clone()).await;
    assert_eq!(first["attribution"].to_string(), second["attribution"].to_string());

    // Opting out, and the base model, get none.
    let mut out = req.clone();
    out["attribution"] = Value::Bool(false);
    let (_, _, none) = post(&app, "/v1/completions", out).await;
    assert!(
        none.get("attribution").is_none() && none["usage"].get("attribution_ms").is_none(),
        "{none}"
    );
    // A base answer that repeats a record verbatim is traced to it by the span index.
    let line = "The copper kettle sings at dawn in the old mill.";
    let base = json!({"model": BASE, "prompt": format!("Repeat: {line}\nRepeat: {line}\nRepeat:"), "max_tokens": 14, "temperature": 0});
    let (_, _, plain) = post(&app, "/v1/completions", base).await;
    let text = plain["choices"][0]["text"].as_str().expect("text");
    assert!(
        text.contains("copper kettle sings at dawn"),
        "the base did not repeat the line: {text:?}"
    );
    let attr = &plain["attribution"];
    assert_eq!(attr["method"], "span", "{plain}");
    assert!(attr.get("adapter").is_none());
    assert_eq!(
        attr["contributors"],
        json!([{"contributor": "alice", "weight_bps": 10000}]),
        "{attr}"
    );
    let span = &attr["spans"][0];
    assert_eq!(span["records"], json!(["a1"]), "{attr}");
    assert!(span["text"].as_str().is_some_and(|t| t.contains("kettle sings")), "{span}");
    assert!(span["end"].as_u64() >= Some(span["start"].as_u64().unwrap_or(0) + 8));

    // Streaming: the chunk with the finish reason carries the same attribution.
    let mut stream = req.clone();
    stream["stream"] = Value::Bool(true);
    let (status, _, body) = call(&app, "POST", "/v1/completions", stream.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    let chunks: Vec<Value> = sse_data(&body)
        .iter()
        .filter(|d| d.as_str() != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("chunk json"))
        .collect();
    let last =
        chunks.iter().find(|c| c["choices"][0]["finish_reason"].is_string()).expect("final chunk");
    assert_eq!(last["attribution"].to_string(), first["attribution"].to_string());
    assert_eq!(chunks.iter().filter(|c| c.get("attribution").is_some()).count(), 1);

    // Several answers: each choice carries its own attribution (greedy: the same answer, so the
    // same attribution as above), in the choice; the response has none at the top.
    let mut two = req.clone();
    two["n"] = json!(2);
    let (status, _, both) = post(&app, "/v1/completions", two.clone()).await;
    assert_eq!(status, StatusCode::OK, "{both}");
    assert!(both.get("attribution").is_none(), "{both}");
    for c in both["choices"].as_array().expect("choices") {
        assert_eq!(c["attribution"].to_string(), first["attribution"].to_string());
    }
    assert!(both["usage"]["attribution_ms"].is_u64(), "{both}");
    two["stream"] = Value::Bool(true);
    let (_, _, body) = call(&app, "POST", "/v1/completions", two.to_string()).await;
    let finals: Vec<Value> = sse_data(&body)
        .iter()
        .filter(|d| d.as_str() != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).expect("chunk json"))
        .filter(|c| c["choices"][0]["finish_reason"].is_string())
        .collect();
    assert_eq!(finals.len(), 2, "one final chunk per answer");
    for f in &finals {
        assert_eq!(f["choices"][0]["attribution"].to_string(), first["attribution"].to_string());
    }
}
