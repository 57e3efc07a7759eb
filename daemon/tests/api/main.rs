//! The HTTP API over a real engine on the real default model, driven through the router
//! (`tower::ServiceExt::oneshot`) and, for disconnects, over real TCP. Skipped loudly when the
//! model is absent (a failure under `CI=true`).

#![allow(unreachable_pub, dead_code)]

mod admin;
mod attribution;
mod auth;
mod cancel;
mod choices;
mod common;
mod errors;
mod fuzz;
mod generate;
mod logprobs;
mod reasoning;
mod request_id;
mod runtime_lora;
mod tokenize;
mod tools;
