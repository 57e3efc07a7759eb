//! `POST /tokenize` and `POST /detokenize` (vLLM's): the server's own token ids for a prompt or a
//! chat, and back to text; unknown models, ambiguous bodies and bad ids are errors naming the field.

use axum::http::StatusCode;
use lorad_model::ChatMessage;
use serde_json::json;

use crate::common::{BASE, assert_error, post, shared};

#[tokio::test]
async fn tokenize_and_detokenize_round_trip() {
    let Some(s) = shared() else { return };
    let (status, _, v) =
        post(&s.router, "/tokenize", json!({"model": BASE, "prompt": "Once upon a time"})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // Known ids of the default model's tokenizer (model/tests/tokenizer.rs).
    assert_eq!(v["tokens"], json!([6403, 1980, 253, 655]));
    assert_eq!(v["count"], 4);
    assert_eq!(v["max_model_len"].as_u64(), Some(s.engine.info().max_seq_len as u64));

    // A chat: the template, then the tokenizer, exactly as a chat request would run.
    let messages = json!([{"role": "user", "content": "What is the capital of France?"}]);
    let (_, _, chat) = post(&s.router, "/tokenize", json!({"messages": messages})).await;
    let text = s
        .engine
        .info()
        .chat_template
        .render(&[ChatMessage::new("user", "What is the capital of France?")], true)
        .unwrap();
    let want = s.engine.tokenizer().encode(&text).unwrap();
    assert_eq!(chat["tokens"], json!(want));

    let (status, _, back) = post(&s.router, "/detokenize", json!({"tokens": want})).await;
    assert_eq!(status, StatusCode::OK, "{back}");
    assert_eq!(back["prompt"], text);

    // Adapters share the base tokenizer; unknown names are 404 as everywhere.
    let (status, _, _) =
        post(&s.router, "/tokenize", json!({"model": "ada", "prompt": "hi"})).await;
    assert_eq!(status, StatusCode::OK);
    let got = post(&s.router, "/tokenize", json!({"model": "nope", "prompt": "hi"})).await;
    assert_error(&got, StatusCode::NOT_FOUND, Some("model"));
    let got = post(&s.router, "/tokenize", json!({"prompt": "hi", "messages": messages})).await;
    assert_error(&got, StatusCode::BAD_REQUEST, Some("prompt"));
    let got = post(&s.router, "/tokenize", json!({})).await;
    assert_error(&got, StatusCode::BAD_REQUEST, Some("prompt"));
    let got = post(&s.router, "/detokenize", json!({"tokens": [1, 999_999]})).await;
    assert_error(&got, StatusCode::BAD_REQUEST, Some("tokens"));
}
