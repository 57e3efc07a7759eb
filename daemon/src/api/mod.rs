//! The OpenAI-compatible HTTP API.

mod chat;
mod completions;
mod errors;
mod extract;
mod generate;
mod ids;
mod models;
mod openai;
mod params;
mod routes;
mod sse;
mod state;

pub use routes::router;
pub use state::{ApiConfig, AppState, Serving};
