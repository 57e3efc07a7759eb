//! `X-Request-Id`: every response carries one, the client's when it sent a usable one (what a
//! router in front put there) or a new `req_...` id, and every log line written while serving
//! the request (a stream's too) is inside a `request{request_id=...}` span, so one id ties the
//! router's, lorad's and the client's records of a request together. The `openai` client reads
//! it as `response._request_id`, as it does OpenAI's own.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
use tracing::Instrument;

/// The header.
pub(crate) static HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client id kept.
const MAX_LEN: usize = 128;

/// A client id worth keeping: 1 to 128 visible ASCII characters (it is echoed in a header and
/// written to logs, so nothing that could break either).
fn usable(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?;
    ((1..=MAX_LEN).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())).then_some(s)
}

/// The middleware.
pub(crate) async fn layer(req: Request, next: Next) -> Response {
    let id = match req.headers().get(&HEADER).and_then(usable) {
        Some(id) => id.to_owned(),
        None => super::ids::new_id("req").replacen('-', "_", 1),
    };
    let span = tracing::info_span!("request", request_id = %id);
    let resp = next.run(req).instrument(span.clone()).await;
    let (mut parts, body) = resp.into_parts();
    if let Ok(v) = HeaderValue::from_str(&id) {
        parts.headers.insert(HEADER.clone(), v);
    }
    let streaming = parts
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !streaming {
        return Response::from_parts(parts, body);
    }
    // A stream's events are produced after the handler returned: they run in the span too.
    let mut data = body.into_data_stream();
    let traced = futures::stream::poll_fn(move |cx| {
        let _inside = span.enter();
        data.poll_next_unpin(cx)
    });
    Response::from_parts(parts, Body::from_stream(traced))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_short_ids_are_kept() {
        let ok = HeaderValue::from_static("lb-7f3a/42");
        assert_eq!(usable(&ok), Some("lb-7f3a/42"));
        for bad in ["", "has space", "tab\there"] {
            assert!(usable(&HeaderValue::from_str(bad).unwrap()).is_none(), "{bad:?}");
        }
        let long = HeaderValue::from_str(&"x".repeat(MAX_LEN + 1)).unwrap();
        assert!(usable(&long).is_none());
    }
}
