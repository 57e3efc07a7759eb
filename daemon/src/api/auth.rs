//! Bearer tokens: the API keys clients send on the OpenAI routes (`--api-key-file`, as vLLM's
//! `--api-key`) and the admin token of the admin API (`admin.rs`).
//!
//! With keys configured, every OpenAI route under `/v1` (completions, chat, responses, models,
//! receipts) answers 401 unless `Authorization: Bearer <key>` holds one of them. The probes
//! (`/healthz`, `/readyz`, `/health`, `/version`), `/metrics` and vLLM's `/tokenize` and
//! `/detokenize` stay open, as vLLM leaves its non-`/v1` routes; the admin routes take the admin
//! token instead. Several keys let one be rotated: add the new key, move the clients, remove
//! the old one, each change applied by SIGHUP (`systemctl reload lorad`) without a restart.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::errors::ApiError;
use super::state::AppState;

/// The token of an `Authorization: Bearer <token>` header; empty when there is none.
pub(super) fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

/// Whether `given` equals `expected`, in time that depends on their lengths only, so a client
/// cannot find a key byte by byte from response times.
pub(super) fn same_token(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Middleware of the OpenAI routes: lets a request through when no key is configured or it
/// carries one of them.
pub(super) async fn require_api_key(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let keys = state.api_keys();
    if keys.is_empty() {
        return next.run(req).await;
    }
    let given = bearer(req.headers());
    // Every key is compared, so the time taken does not say which one came close.
    let known = keys.iter().fold(false, |found, key| same_token(given, key) | found);
    if known {
        return next.run(req).await;
    }
    let what = if given.is_empty() { "no API key was sent" } else { "the API key is wrong" };
    let mut resp = ApiError::http(
        StatusCode::UNAUTHORIZED,
        format!("{what}: send one of this node's keys as 'Authorization: Bearer <key>'"),
        "invalid_api_key",
    )
    .into_response();
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token("0123456789abcdef", "0123456789abcdef"));
        assert!(!same_token("0123456789abcdeF", "0123456789abcdef"));
        assert!(!same_token("0123456789abcde", "0123456789abcdef"));
        assert!(!same_token("", "0123456789abcdef"));
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), "");
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer k-1"));
        assert_eq!(bearer(&h), "k-1");
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic k-1"));
        assert_eq!(bearer(&h), "");
    }
}
