//! Cancellation and admission: a client that goes away frees its batch slot (streaming or not,
//! through the router and over real TCP), and a full queue answers 429 with `Retry-After`.
//! Each test owns its engine, so the engine's counters are its alone.

use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::http::StatusCode;
use futures::StreamExt;
use lorad_engine::EngineConfig;
use serde_json::json;

use crate::common::{BASE, Server, assert_error, eventually, post, send, server, test_config};

const LONG: u32 = 500;

fn long_body(stream: bool) -> String {
    // Greedy counting goes on and on (a story prompt may end at once with end-of-sequence).
    json!({"model": BASE, "prompt": "1, 2, 3, 4, 5,", "max_tokens": LONG, "stream": stream, "temperature": 0})
        .to_string()
}

fn running(s: &Server) -> usize {
    s.engine.stats().running.load(Ordering::SeqCst)
}

async fn assert_freed(s: &Server, what: &str) {
    assert!(
        eventually(Duration::from_secs(5), || running(s) == 0).await,
        "{what}: the slot was not freed"
    );
    // And the engine still serves.
    let (status, _, v) =
        post(&s.router, "/v1/completions", json!({"model": BASE, "prompt": "Hi", "max_tokens": 2}))
            .await;
    assert_eq!(status, StatusCode::OK, "{what}: {v}");
}

/// Reads an SSE response until its first chunk, then drops it.
async fn first_chunk_then_drop(s: &Server) {
    let resp = send(&s.router, "POST", "/v1/completions", long_body(true)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body().into_data_stream();
    let first = tokio::time::timeout(Duration::from_secs(30), body.next())
        .await
        .expect("no chunk")
        .expect("ended")
        .expect("error");
    assert!(first.starts_with(b"data: {"), "{first:?}");
    assert_eq!(running(s), 1);
    drop(body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_frees_the_slot() {
    let Some(s) = server(test_config()) else { return };

    // Streaming, through the router: drop the body after one chunk.
    first_chunk_then_drop(&s).await;
    assert_freed(&s, "dropped SSE body").await;

    // Non-streaming, through the router: the handler future is dropped mid-generation.
    let router = s.router.clone();
    let task =
        tokio::spawn(
            async move { send(&router, "POST", "/v1/completions", long_body(false)).await },
        );
    assert!(eventually(Duration::from_secs(10), || running(&s) == 1).await, "request never ran");
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert_freed(&s, "dropped handler").await;

    // Over real TCP, as hyper sees a client hang up.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = s.router.clone();
    let server_task = tokio::spawn(async move { axum::serve(listener, app).await });
    for stream in [true, false] {
        let body = long_body(stream);
        // A blocking socket is fine here: writes are small, the read is bounded by a timeout.
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let req = format!(
            "POST /v1/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(req.as_bytes()).unwrap();
        if stream {
            let mut buf = [0u8; 512];
            let n = tokio::task::block_in_place(|| tcp.read(&mut buf)).unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        }
        assert!(
            eventually(Duration::from_secs(10), || running(&s) == 1).await,
            "TCP request never ran"
        );
        drop(tcp);
        assert_freed(
            &s,
            if stream { "TCP client gone (streaming)" } else { "TCP client gone (non-streaming)" },
        )
        .await;
    }
    server_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_is_429_with_retry_after() {
    let cfg = EngineConfig { max_batch_size: 1, max_waiting: 1, ..test_config() };
    let Some(s) = server(cfg) else { return };
    // A occupies the only slot...
    let resp = send(&s.router, "POST", "/v1/completions", long_body(true)).await;
    let mut a = resp.into_body().into_data_stream();
    tokio::time::timeout(Duration::from_secs(30), a.next()).await.expect("no chunk");
    assert_eq!(running(&s), 1);
    // ...B waits in the queue...
    let router = s.router.clone();
    let b = tokio::spawn(async move {
        post(&router, "/v1/completions", json!({"model": BASE, "prompt": "Hi", "max_tokens": 2}))
            .await
    });
    assert!(
        eventually(Duration::from_secs(10), || s.engine.stats().waiting.load(Ordering::SeqCst)
            == 1)
        .await
    );
    // ...so C is refused.
    for path in ["/v1/completions", "/v1/chat/completions"] {
        let body = json!({"model": BASE, "prompt": "Hi", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2});
        let got = post(&s.router, path, body).await;
        let err = assert_error(&got, StatusCode::TOO_MANY_REQUESTS, None);
        assert_eq!(err["code"], "queue_full");
        assert_eq!(got.1["retry-after"], "1");
    }
    // Freeing A lets B through.
    drop(a);
    let (status, _, v) =
        tokio::time::timeout(Duration::from_secs(30), b).await.expect("B timed out").unwrap();
    assert_eq!(status, StatusCode::OK, "{v}");
}
