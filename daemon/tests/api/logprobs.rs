//! `logprobs` on both endpoints: entries line up with the answer's text and bytes, the greedy
//! choice is the most likely token, a streamed answer carries the same entries as a whole one,
//! and the end-of-sequence token that stops an answer has none.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::common::{BASE, post, shared};
use crate::generate::stream;

fn bytes_of(entry: &Value) -> Vec<u8> {
    entry["bytes"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u8).collect()
}

/// Same tokens; log-probabilities equal up to rounding (the batch around a request can change
/// the order of a sum in the last bits).
fn assert_same_entries(a: &[Value], b: &[Value]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x["token"], y["token"]);
        let (lx, ly) = (x["logprob"].as_f64().unwrap(), y["logprob"].as_f64().unwrap());
        assert!((lx - ly).abs() < 1e-4, "{x} vs {y}");
    }
}

#[tokio::test]
async fn chat_logprobs_cover_the_content_streamed_or_not() {
    let Some(s) = shared() else { return };
    let body = json!({
        "model": BASE, "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 40, "temperature": 0, "logprobs": true, "top_logprobs": 3,
    });
    let (status, _, whole) = post(&s.router, "/v1/chat/completions", body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{whole}");
    let choice = &whole["choices"][0];
    let text = choice["message"]["content"].as_str().unwrap();
    let content = choice["logprobs"]["content"].as_array().unwrap();
    assert_eq!(choice["logprobs"]["refusal"], Value::Null);
    let all: Vec<u8> = content.iter().flat_map(bytes_of).collect();
    assert_eq!(all, text.as_bytes(), "the tokens' bytes are the answer's");
    let generated = whole["usage"]["completion_tokens"].as_u64().unwrap() as usize;
    let eos = usize::from(choice["finish_reason"] == "stop");
    assert_eq!(content.len(), generated - eos, "one entry per token, none for the EOS");
    for t in content {
        let top = t["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3, "{t}");
        assert_eq!((&top[0]["token"], &top[0]["logprob"]), (&t["token"], &t["logprob"]), "greedy");
        let values: Vec<f64> = top.iter().map(|a| a["logprob"].as_f64().unwrap()).collect();
        assert!(values.windows(2).all(|w| w[0] >= w[1]) && values[0] <= 0.0, "{values:?}");
        assert_eq!(String::from_utf8_lossy(&bytes_of(t)), t["token"].as_str().unwrap());
    }
    let mut streamed_body = body.clone();
    streamed_body["stream"] = json!(true);
    let chunks = stream("/v1/chat/completions", streamed_body).await;
    let streamed: Vec<Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["logprobs"]["content"].as_array())
        .flatten()
        .cloned()
        .collect();
    assert_same_entries(&streamed, content);
    // Without the flag: null, as before.
    let mut plain = body;
    plain.as_object_mut().unwrap().retain(|k, _| k != "logprobs" && k != "top_logprobs");
    let (_, _, v) = post(&s.router, "/v1/chat/completions", plain).await;
    assert_eq!(v["choices"][0]["logprobs"], Value::Null);
}

#[tokio::test]
async fn completion_logprobs_line_up_with_the_text() {
    let Some(s) = shared() else { return };
    for top in [0usize, 2] {
        let body = json!({
            "model": BASE, "prompt": "The capital of France is", "max_tokens": 8,
            "temperature": 0, "logprobs": top,
        });
        let (status, _, v) = post(&s.router, "/v1/completions", body).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let choice = &v["choices"][0];
        let lp = &choice["logprobs"];
        let tokens: Vec<&str> =
            lp["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        assert_eq!(tokens.len(), 8);
        assert_eq!(tokens.concat(), choice["text"].as_str().unwrap());
        let mut offset = 0;
        for (i, token) in tokens.iter().enumerate() {
            assert_eq!(lp["text_offset"][i].as_u64(), Some(offset as u64));
            offset += token.chars().count();
            let alternatives = lp["top_logprobs"][i].as_object().unwrap();
            let chosen = lp["token_logprobs"][i].as_f64().unwrap();
            assert!(chosen <= 0.0);
            if top == 0 {
                assert!(alternatives.is_empty());
            } else {
                // Two alternatives (fewer only if two tokens print alike); greedy took the best.
                assert!((1..=2).contains(&alternatives.len()), "{alternatives:?}");
                let best =
                    alternatives.values().map(|l| l.as_f64().unwrap()).fold(f64::MIN, f64::max);
                assert_eq!(best, chosen);
                assert_eq!(alternatives.get(*token).and_then(Value::as_f64), Some(chosen));
            }
        }
    }
}

/// `echo`: the answer starts with the prompt, whose tokens come first in `logprobs` (the very
/// first with null: nothing predicts it); `max_tokens: 0` scores the prompt only (how evaluation
/// harnesses ask for log-likelihoods); a stream sends the prompt as its first content chunk.
#[tokio::test]
async fn echo_scores_the_prompt_streamed_or_not() {
    let Some(s) = shared() else { return };
    let prompt = "The capital of France is Paris";
    let n_prompt = s.engine.tokenizer().encode(prompt).unwrap().len();
    let scored = |max_tokens: u32, stream: bool| {
        json!({"model": BASE, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
               "echo": true, "logprobs": 1, "stream": stream})
    };
    let (status, _, only) = post(&s.router, "/v1/completions", scored(0, false)).await;
    assert_eq!(status, StatusCode::OK, "{only}");
    let choice = &only["choices"][0];
    assert_eq!(choice["text"], prompt);
    assert_eq!(only["usage"]["completion_tokens"], 0);
    let lp = &choice["logprobs"];
    let tokens: Vec<&str> =
        lp["tokens"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!((tokens.len(), tokens.concat().as_str()), (n_prompt, prompt));
    assert_eq!((&lp["token_logprobs"][0], &lp["top_logprobs"][0]), (&Value::Null, &Value::Null));
    for i in 1..n_prompt {
        let v = lp["token_logprobs"][i].as_f64().unwrap();
        assert!(v < 0.0 && lp["top_logprobs"][i].as_object().unwrap().len() == 1, "{lp}");
    }
    // " Paris" after "The capital of France is" is likely; a word salad's tokens are not.
    let last = lp["token_logprobs"][n_prompt - 1].as_f64().unwrap();
    assert!(last > -3.0, "P(Paris) too low: {last}");

    // Echo and generate: prompt entries, then the answer's, offsets running through both.
    let (_, _, both) = post(&s.router, "/v1/completions", scored(4, false)).await;
    let text = both["choices"][0]["text"].as_str().unwrap();
    let lp = &both["choices"][0]["logprobs"];
    assert!(text.starts_with(prompt) && text.len() > prompt.len(), "{text}");
    assert_eq!(lp["tokens"].as_array().unwrap().len(), n_prompt + 4);
    assert_eq!(lp["text_offset"][n_prompt].as_u64(), Some(prompt.chars().count() as u64));
    let prompt_part: Vec<Value> = lp["token_logprobs"].as_array().unwrap()[..n_prompt].to_vec();
    assert_eq!(
        prompt_part,
        only["choices"][0]["logprobs"]["token_logprobs"].as_array().unwrap()[..]
    );

    // Streamed: the prompt first, with its entries; the same text in all.
    let chunks = stream("/v1/completions", scored(4, true)).await;
    assert_eq!(chunks[0]["choices"][0]["text"], prompt);
    assert_eq!(chunks[0]["choices"][0]["logprobs"]["tokens"].as_array().unwrap().len(), n_prompt);
    let streamed: String = chunks.iter().filter_map(|c| c["choices"][0]["text"].as_str()).collect();
    assert_eq!(streamed, text);
    let offsets: Vec<u64> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["logprobs"]["text_offset"].as_array())
        .flatten()
        .map(|o| o.as_u64().unwrap())
        .collect();
    let whole: Vec<u64> =
        lp["text_offset"].as_array().unwrap().iter().map(|o| o.as_u64().unwrap()).collect();
    assert_eq!(offsets, whole, "offsets continue across chunks");

    // A token-id prompt echoes its decoded text; 0 tokens without echo stays an error.
    let ids = s.engine.tokenizer().encode(prompt).unwrap();
    let (_, _, v) = post(
        &s.router,
        "/v1/completions",
        json!({"model": BASE, "prompt": ids, "max_tokens": 0, "echo": true}),
    )
    .await;
    assert_eq!(
        (v["choices"][0]["text"].as_str(), &v["choices"][0]["logprobs"]),
        (Some(prompt), &Value::Null)
    );
    let (status, _, _) = post(
        &s.router,
        "/v1/completions",
        json!({"model": BASE, "prompt": prompt, "max_tokens": 0}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
