//! A JSON body extractor whose rejections are OpenAI errors naming the field at fault, instead
//! of axum's plain-text ones. The content type is not checked (curl's `-d` sends a form type).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use super::errors::ApiError;
use super::state::AppState;

/// The request body parsed as `T`.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                let limit = state.config().max_body_bytes;
                ApiError::http(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("The request body is larger than this server's limit of {limit} bytes"),
                    "request_too_large",
                )
            } else {
                ApiError::http(rejection.status(), rejection.body_text(), "invalid_body")
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Parses `bytes` as `T`, turning serde's error into a 400 that names the field.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let syntax = |inner: serde_json::Error| {
        ApiError::http(
            StatusCode::BAD_REQUEST,
            format!("We could not parse the JSON body of your request: {inner}"),
            "invalid_json",
        )
    };
    // Every request body is an object. Anything else has no field to name (and serde would
    // read an array positionally into the request's fields, or name a Rust type).
    let first = bytes.iter().copied().find(|b| !b.is_ascii_whitespace());
    if first != Some(b'{') {
        return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Err(inner) => syntax(inner),
            Ok(_) => {
                let got = match first {
                    Some(b'[') => "an array",
                    Some(b'"') => "a string",
                    Some(b'n') => "null",
                    Some(b't' | b'f') => "a boolean",
                    _ => "a number",
                };
                ApiError::http(
                    StatusCode::BAD_REQUEST,
                    format!("The request body must be a JSON object, not {got}"),
                    "invalid_type",
                )
            }
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.classify() != Category::Data {
            return syntax(inner);
        }
        let msg = inner.to_string();
        // "missing field `model` at line 1 column 2": the field is the missing one.
        let param = match msg.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
            Some(field) if path == "." => field.to_owned(),
            Some(field) => format!("{path}.{field}"),
            None => path,
        };
        let shown = msg.split(" at line ").next().unwrap_or(&msg);
        ApiError::bad_request(param.clone(), format!("Invalid value for '{param}': {shown}"))
            .code("invalid_type")
    })?;
    // Trailing garbage after the JSON value.
    de.end().map_err(syntax)?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Req {
        model: String,
        temperature: Option<f32>,
        messages: Option<Vec<Msg>>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Msg {
        role: String,
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse::<Req>(br#"{"model": "m", "temperature": "hot"}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"));
        assert!(e.message.contains("invalid type: string \"hot\""), "{}", e.message);
        let e = parse::<Req>(br#"{"temperature": 1}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("model"));
        let e = parse::<Req>(br#"{"model": "m", "messages": [{"role": 3}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = parse::<Req>(br#"{"model": "m", "messages": [{}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = parse::<Req>(b"{\"model\": ").unwrap_err();
        assert_eq!(
            (e.status, e.param, e.code),
            (StatusCode::BAD_REQUEST, None, Some("invalid_json"))
        );
        let e = parse::<Req>(br#"{"model": "m"} x"#).unwrap_err();
        assert_eq!(e.code, Some("invalid_json"));
        assert!(parse::<Req>(br#"{"model": "m", "extra": [1]}"#).is_ok());
        for not_an_object in [&b"null"[..], b" [1]", b"\"m\"", b"2"] {
            let e = parse::<Req>(not_an_object).unwrap_err();
            assert_eq!((e.param.as_deref(), e.code), (None, Some("invalid_type")));
            assert!(e.message.starts_with("The request body must be a JSON object, not "));
        }
    }
}
