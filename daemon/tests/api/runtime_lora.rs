//! vLLM's runtime LoRA endpoints: `POST /v1/load_lora_adapter` and `/v1/unload_lora_adapter`.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use lorad_store::{RandomAdapterSpec, TensorDtype};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::common::*;

/// POSTs `body` to `path` with the admin token when `token`; status and body text.
async fn post_admin(s: &Server, path: &str, token: bool, body: Value) -> (StatusCode, String) {
    let mut req = Request::builder().method("POST").uri(path);
    if token {
        req = req.header("authorization", format!("Bearer {ADMIN_TOKEN}"));
    }
    let req = req.body(Body::from(body.to_string())).expect("request");
    let resp = tokio::time::timeout(TIMEOUT, s.router.clone().oneshot(req))
        .await
        .expect("timed out")
        .expect("infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
    (status, String::from_utf8(bytes.to_vec()).expect("utf-8"))
}

/// A PEFT directory of a random adapter for the served base; its content hash.
fn peft_dir(s: &Server, dir: &str, seed: u64) -> (String, String) {
    let base = s.engine.info().base_shape;
    let a =
        lorad_store::random_adapter(dir, &base, &RandomAdapterSpec { seed, ..Default::default() });
    let path = s.home.path().join(dir);
    lorad_store::write_peft_dir(&path, &a, TensorDtype::F32).expect("write");
    (path.display().to_string(), a.content_hash)
}

fn hash_of(s: &Server, name: &str) -> Option<String> {
    s.manager.store().get(name).ok().map(|i| i.content_hash)
}

/// The error object of an OpenAI error body.
fn error(body: &str) -> Value {
    serde_json::from_str::<Value>(body).expect("JSON error body")["error"].clone()
}

#[tokio::test]
async fn load_replace_and_unload_like_vllm() {
    let Some(s) = server(test_config()) else { return };
    let (first, first_hash) = peft_dir(&s, "peft-one", 31);
    let (second, second_hash) = peft_dir(&s, "peft-two", 32);
    let load = json!({"lora_name": "rt", "lora_path": first});

    let (status, _) = post_admin(&s, "/v1/load_lora_adapter", false, load.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = post_admin(&s, "/v1/load_lora_adapter", true, load.clone()).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "Success: LoRA adapter 'rt' added successfully.")
    );
    assert_eq!(hash_of(&s, "rt").as_deref(), Some(first_hash.as_str()));
    let (_, models) = get(&s.router, "/v1/models").await;
    assert!(models["data"].as_array().unwrap().iter().any(|m| m["id"] == "rt"), "{models}");
    let ask = json!({"model": "rt", "prompt": "Hi", "max_tokens": 2});
    let (status, _, v) = post(&s.router, "/v1/completions", ask.clone()).await;
    assert_eq!(status, StatusCode::OK, "{v}");

    // A second load of the name is vLLM's 400, whatever the directory holds.
    let (status, body) = post_admin(&s, "/v1/load_lora_adapter", true, load.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let err = error(&body);
    assert_eq!(err["param"], "lora_name");
    assert!(err["message"].as_str().unwrap().contains("has already been loaded"), "{err}");

    // In place: a directory that is not a valid adapter leaves the old one serving...
    let broken = s.home.path().join("peft-broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::copy(format!("{second}/adapter_config.json"), broken.join("adapter_config.json"))
        .unwrap();
    let inplace = |path: &str| json!({"lora_name": "rt", "lora_path": path, "load_inplace": true});
    let (status, body) =
        post_admin(&s, "/v1/load_lora_adapter", true, inplace(broken.to_str().unwrap())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        error(&body)["message"].as_str().unwrap().contains("adapter_model.safetensors"),
        "{body}"
    );
    assert_eq!(hash_of(&s, "rt").as_deref(), Some(first_hash.as_str()));
    // ...and a valid one replaces it.
    let (status, body) = post_admin(&s, "/v1/load_lora_adapter", true, inplace(&second)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(hash_of(&s, "rt").as_deref(), Some(second_hash.as_str()));
    let (status, _, v) = post(&s.router, "/v1/completions", ask.clone()).await;
    assert_eq!(status, StatusCode::OK, "{v}");

    // Bad bodies name the field.
    let (status, body) = post_admin(
        &s,
        "/v1/load_lora_adapter",
        true,
        json!({"lora_name": "x", "lora_path": "/nonexistent/dir"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error(&body)["param"], "lora_path");
    let (status, body) = post_admin(&s, "/v1/unload_lora_adapter", true, json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error(&body)["param"], "lora_name");

    let unload = json!({"lora_name": "rt", "lora_int_id": 3});
    let (status, body) = post_admin(&s, "/v1/unload_lora_adapter", true, unload.clone()).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "Success: LoRA adapter 'rt' removed successfully.")
    );
    assert_eq!(hash_of(&s, "rt"), None);
    let (status, _, _) = post(&s.router, "/v1/completions", ask).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = post_admin(&s, "/v1/unload_lora_adapter", true, unload).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
