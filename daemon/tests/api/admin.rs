//! The admin API (upload, list with tiers, pin, remove) and `/metrics`.

use axum::body::Body;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn upload_list_pin_remove() {
    let Some(s) = server(test_config()) else { return };
    let (config, weights) = peft_files(&s, "up", 21);
    let form = || {
        multipart(&[
            ("name", b"up".to_vec()),
            ("adapter_config.json", config.clone()),
            ("adapter_model.safetensors", weights.clone()),
        ])
    };

    // No token, wrong token: refused before anything is read.
    assert_eq!(admin(&s, "POST", "/v1/adapters", None, form()).await.0, StatusCode::UNAUTHORIZED);
    let wrong = Some("not-the-admin-token-at-all");
    assert_eq!(admin(&s, "POST", "/v1/adapters", wrong, form()).await.0, StatusCode::UNAUTHORIZED);

    let (status, info) = admin(&s, "POST", "/v1/adapters", Some(ADMIN_TOKEN), form()).await;
    assert_eq!(status, StatusCode::CREATED, "{info}");
    assert_eq!((info["name"].as_str(), info["dtype"].as_str()), (Some("up"), Some("bf16")));
    // The same upload again is idempotent; other content under the name conflicts.
    let again = admin(&s, "POST", "/v1/adapters", Some(ADMIN_TOKEN), form()).await;
    assert_eq!(again.0, StatusCode::CREATED, "{}", again.1);
    let (other_cfg, other_w) = peft_files(&s, "up", 22);
    let clash = multipart(&[
        ("name", b"up".to_vec()),
        ("adapter_config.json", other_cfg),
        ("adapter_model.safetensors", other_w),
    ]);
    let (status, err) = admin(&s, "POST", "/v1/adapters", Some(ADMIN_TOKEN), clash).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    // A broken upload names what is wrong.
    let broken = multipart(&[
        ("name", b"bad".to_vec()),
        ("adapter_config.json", b"{\"r\": 8".to_vec()),
        ("adapter_model.safetensors", weights.clone()),
    ]);
    let (status, err) = admin(&s, "POST", "/v1/adapters", Some(ADMIN_TOKEN), broken).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("adapter_config.json"), "{err}");

    // Listed on disk until used, then on the device.
    let tier = |list: &Value, name: &str| {
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["tier"].clone())
    };
    let (_, list) = admin(&s, "GET", "/v1/adapters", Some(ADMIN_TOKEN), Vec::new()).await;
    assert_eq!(tier(&list, "up"), Some(json!("disk")), "{list}");
    let body = json!({"model": "up", "prompt": "Hello", "max_tokens": 2, "temperature": 0});
    assert_eq!(post(&s.router, "/v1/completions", body).await.0, StatusCode::OK);
    let (_, list) = admin(&s, "GET", "/v1/adapters", Some(ADMIN_TOKEN), Vec::new()).await;
    assert_eq!(tier(&list, "up"), Some(json!("device")), "{list}");
    // The device budget it takes: at least what it holds there.
    let entry = list["data"].as_array().unwrap().iter().find(|e| e["name"] == "up").unwrap();
    let held = s.engine.adapter_pool().peek("up").unwrap().bytes as u64;
    assert!(entry["device_bytes"].as_u64().unwrap() >= held, "{entry} holds {held}");

    // Pin persists in the store.
    let (status, info) =
        admin(&s, "POST", "/v1/adapters/up/pin", Some(ADMIN_TOKEN), Vec::new()).await;
    assert_eq!((status, info["pinned"].as_bool()), (StatusCode::OK, Some(true)), "{info}");
    assert!(s.state.store().get("up").unwrap().pinned);
    let (status, info) =
        admin(&s, "POST", "/v1/adapters/up/unpin", Some(ADMIN_TOKEN), Vec::new()).await;
    assert_eq!((status, info["pinned"].as_bool()), (StatusCode::OK, Some(false)), "{info}");

    // Removal while a request holds it is refused; forced after drain it goes.
    let lease = s.manager.acquire("up").unwrap();
    let (status, _) = admin(&s, "DELETE", "/v1/adapters/up", Some(ADMIN_TOKEN), Vec::new()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(lease);
    });
    let (status, v) = admin(
        &s,
        "DELETE",
        "/v1/adapters/up?force=true&drain_secs=20",
        Some(ADMIN_TOKEN),
        Vec::new(),
    )
    .await;
    releaser.join().unwrap();
    assert_eq!((status, v["deleted"].as_bool()), (StatusCode::OK, Some(true)), "{v}");
    let body = json!({"model": "up", "prompt": "Hello", "max_tokens": 2});
    assert_error(
        &post(&s.router, "/v1/completions", body).await,
        StatusCode::NOT_FOUND,
        Some("model"),
    );
    let (status, _) = admin(&s, "DELETE", "/v1/adapters/up", Some(ADMIN_TOKEN), Vec::new()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn admin_api_is_off_without_a_token() {
    let Some(s) = shared() else { return };
    let state =
        lorad::api::AppState::new(s.state.store().clone(), lorad::api::ApiConfig::default());
    state.set_ready(s.manager.clone(), BASE.to_owned());
    let r = lorad::api::router(state);
    let (status, _, body) = call(&r, "GET", "/v1/adapters", Body::empty()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let Some(s) = shared() else { return };
    let body = json!({"model": "ada", "prompt": "Hi", "max_tokens": 2, "temperature": 0});
    assert_eq!(post(&s.router, "/v1/completions", body).await.0, StatusCode::OK);
    let guided = json!({"model": "ada", "prompt": "The capital of Italy is", "max_tokens": 4,
        "temperature": 0, "guided_choice": [" Rome", " Milan"]});
    let (status, _, answer) = post(&s.router, "/v1/completions", guided).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let choice = answer["choices"][0]["text"].as_str().unwrap();
    assert!([" Rome", " Milan"].contains(&choice), "{answer}");
    let (status, headers, text) = call(&s.router, "GET", "/metrics", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    for family in [
        "lorad_adapter_tier_hits_total{tier=\"device\"}",
        "lorad_adapter_tier_misses_total{tier=\"host\"}",
        "lorad_adapter_page_in_seconds_bucket{le=\"+Inf\"}",
        "lorad_store_io_backend{backend=",
        "lorad_store_read_bytes_total",
        "lorad_store_buffers_total{how=\"allocated\"}",
        // The CPU engine has nothing to DMA to: no pinner, nothing locked.
        "lorad_store_pinned_bytes{pinner=\"none\"} 0",
        "lorad_engine_device{device=\"cpu\"} 1",
        "lorad_generated_tokens_total",
        "lorad_engine_step_seconds_bucket{le=\"+Inf\"}",
        "lorad_engine_step_tokens_total",
        "lorad_kv_cache_blocks{state=\"used\"}",
        "lorad_kv_cache_blocks{state=\"cached\"}",
        "lorad_kv_cache_usage_ratio",
        "lorad_prefix_cache_hit_tokens_total",
        "lorad_grammar_mask_seconds_bucket{le=\"+Inf\"}",
        "lorad_grammar_cached_mask_bytes",
    ] {
        assert!(text.contains(family), "missing {family} in\n{text}");
    }
    let sample = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
    };
    assert!(sample("lorad_structured_requests_total") >= 1.0);
    assert!(sample("lorad_grammar_masks_total") >= 1.0);
    // Every sample line is `name{labels} number`.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample line: {line}");
    }
}

/// `lorad adapter rm` from another process: the server's periodic reconcile unloads it.
#[tokio::test]
async fn removal_by_another_process_is_picked_up() {
    let Some(s) = server(test_config()) else { return };
    let body = json!({"model": "ada", "prompt": "Hi", "max_tokens": 2, "temperature": 0});
    assert_eq!(post(&s.router, "/v1/completions", body.clone()).await.0, StatusCode::OK);
    assert!(s.engine.has_adapter("ada"));
    // A second store handle on the same root stands in for the CLI process.
    let cli = lorad_store::Store::open(&s.home.path().join("store"), Default::default()).unwrap();
    cli.remove("ada").unwrap();
    assert!(s.engine.has_adapter("ada"), "nothing noticed yet");
    assert_eq!(s.manager.reconcile().unwrap(), vec!["ada".to_owned()]);
    assert!(!s.engine.has_adapter("ada"));
    assert_error(
        &post(&s.router, "/v1/completions", body).await,
        StatusCode::NOT_FOUND,
        Some("model"),
    );
    assert!(s.manager.reconcile().unwrap().is_empty(), "nothing left to drop");
}
