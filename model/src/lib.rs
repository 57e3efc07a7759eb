//! lorad's model formats.
//!
//! This crate owns everything about a *base model as files*: where models live on disk
//! ([`default_home`]), fetching the default model ([`fetch_default_model`]), reading a GGUF file or
//! a Hugging Face directory into one format-neutral [`LoadedModel`] (config, dequantized weights
//! under Hugging Face names, [`Tokenizer`], [`ChatTemplate`], identifying hash), and the
//! text side of generation (encoding, streaming decoding, chat prompt rendering).
//! It does not run models: the forward pass and LoRA application belong to the engine crate.

mod chat;
mod config;
mod decode;
mod error;
mod fetch;
mod gguf;
mod hf;
mod panics;
mod paths;
mod spm;
pub mod testing;
mod tokenizer;
mod weights;

pub use chat::{ChatMessage, ChatTemplate, ToolSupport};
pub use config::{Arch, ModelConfig, RopeScaling, SlidingWindow};
pub use decode::IncrementalDecoder;
pub use error::ModelError;
pub use fetch::{DEFAULT_MODEL_ID, default_model_path, fetch_default_model};
pub use panics::{ExpectPanics, panic_is_expected};
pub use paths::{default_home, models_dir};
pub use tokenizer::Tokenizer;
pub use weights::{LoadOptions, LoadedModel, base_hash, load_model, load_text, read_config};
