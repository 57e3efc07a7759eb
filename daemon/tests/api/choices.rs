//! Several answers per request: `n > 1` and several completions prompts. Each answer equals the
//! same request made alone (greedy, or sampled with the seed `seed + j` of answer `j`), choices
//! come in OpenAI's order, usage counts each prompt once, and a stream interleaves the answers,
//! ends each with its own final chunk and all of them with one usage chunk.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::common::{BASE, post, shared};
use crate::generate::stream;

async fn text_of(body: Value) -> String {
    let s = shared().expect("checked by the caller");
    let (status, _, v) = post(&s.router, "/v1/completions", body).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["choices"][0]["text"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn several_prompts_and_n_answer_in_order() {
    let Some(s) = shared() else { return };
    let prompts = ["1, 2, 3,", "The capital of France is"];
    let body = json!({"model": BASE, "prompt": prompts, "n": 2, "max_tokens": 4, "temperature": 0});
    let (status, _, v) = post(&s.router, "/v1/completions", body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let choices = v["choices"].as_array().unwrap();
    let indices: Vec<u64> = choices.iter().map(|c| c["index"].as_u64().unwrap()).collect();
    assert_eq!(indices, [0, 1, 2, 3]);
    for (p, prompt) in prompts.iter().enumerate() {
        let alone =
            text_of(json!({"model": BASE, "prompt": prompt, "max_tokens": 4, "temperature": 0}))
                .await;
        for j in 0..2 {
            assert_eq!(choices[p * 2 + j]["text"], alone, "prompt {p}, answer {j}");
        }
    }
    let tk = s.engine.tokenizer();
    let prompt_tokens: usize = prompts.iter().map(|p| tk.encode(p).unwrap().len()).sum();
    assert_eq!(
        v["usage"]["prompt_tokens"].as_u64(),
        Some(prompt_tokens as u64),
        "each prompt once"
    );
    assert_eq!(v["usage"]["completion_tokens"], 16);

    // Streamed: the same texts, one final chunk per answer, then the usage of all.
    let mut streamed = body;
    streamed["stream"] = json!(true);
    let chunks = stream("/v1/completions", streamed).await;
    let mut texts = vec![String::new(); 4];
    let mut finals = [0; 4];
    for c in &chunks[..chunks.len() - 1] {
        let choice = &c["choices"][0];
        let i = choice["index"].as_u64().unwrap() as usize;
        texts[i].push_str(choice["text"].as_str().unwrap());
        finals[i] += usize::from(choice["finish_reason"].is_string());
    }
    let whole: Vec<&str> = choices.iter().map(|c| c["text"].as_str().unwrap()).collect();
    assert_eq!(texts, whole);
    assert_eq!(finals, [1; 4]);
    let last = chunks.last().unwrap();
    assert_eq!((&last["choices"], &last["usage"]), (&json!([]), &v["usage"]));
}

#[tokio::test]
async fn seeded_chat_answers_differ_and_each_is_reproducible() {
    let Some(s) = shared() else { return };
    let messages = json!([{"role": "user", "content": "Write a word."}]);
    let ask = |n: u32, seed: u64| json!({"model": BASE, "messages": messages, "n": n, "seed": seed, "max_tokens": 8, "temperature": 1.2});
    let content =
        |v: &Value, i: usize| v["choices"][i]["message"]["content"].as_str().unwrap().to_owned();
    let (status, _, three) = post(&s.router, "/v1/chat/completions", ask(3, 7)).await;
    assert_eq!(status, StatusCode::OK, "{three}");
    let answers: Vec<String> = (0..3).map(|i| content(&three, i)).collect();
    assert!(answers[0] != answers[1] || answers[1] != answers[2], "{answers:?}");
    for (j, answer) in answers.iter().enumerate() {
        let (_, _, alone) = post(&s.router, "/v1/chat/completions", ask(1, 7 + j as u64)).await;
        assert_eq!(&content(&alone, 0), answer, "answer {j} is the request alone with seed 7+{j}");
    }
    // Streamed chat: each answer opens with its own role chunk.
    let mut streamed = ask(2, 7);
    streamed["stream"] = json!(true);
    let chunks = stream("/v1/chat/completions", streamed).await;
    let roles: Vec<u64> = chunks
        .iter()
        .filter(|c| c["choices"][0]["delta"]["role"] == "assistant")
        .map(|c| c["choices"][0]["index"].as_u64().unwrap())
        .collect();
    assert_eq!(roles, [0, 1]);
    let mut texts = vec![String::new(); 2];
    for c in &chunks {
        if let Some(t) = c["choices"][0]["delta"]["content"].as_str() {
            texts[c["choices"][0]["index"].as_u64().unwrap() as usize].push_str(t);
        }
    }
    assert_eq!(texts, answers[..2]);
    let too_many = json!({"model": BASE, "prompt": vec!["a"; 33], "n": 2});
    let (status, _, v) = post(&s.router, "/v1/completions", too_many).await;
    assert_eq!((status, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("n")));
}
