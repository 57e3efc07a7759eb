//! The OpenAI-compatible HTTP API.

mod admin;
mod attribution;
mod auth;
mod call_format;
mod call_stream;
mod chat;
mod choices;
mod completions;
mod errors;
mod extract;
mod generate;
mod hermes;
mod ids;
mod logprobs;
mod metrics;
mod models;
mod openai;
mod params;
mod receipts;
mod request_id;
mod responses;
mod responses_stream;
mod routes;
mod runtime_lora;
mod sse;
mod state;
mod structured;
mod telemetry;
mod tokenize;
mod tools;

pub use attribution::{AttributionMode, Attributor};
pub use ids::unix_now;
pub(crate) use metrics::family;
pub use receipts::ReceiptDesk;
pub use routes::router;
pub use state::{ApiConfig, AppState, Serving};
