//! lorad's adapter store.
//!
//! This crate owns everything about adapters *at rest*:
//! - parsing and validating Hugging Face PEFT LoRA adapters (`adapter_config.json` +
//!   `adapter_model.safetensors`) into f32 weights with resolved scales ([`read_peft_dir`]), and
//!   writing them back in PEFT's format ([`write_peft_dir`]);
//! - the adapter registry ([`Registry`]): today a simple directory of imported adapters; a later
//!   version replaces its internals with a content-addressed NVMe store with io_uring paging,
//!   behind the same narrow API;
//! - deterministic random adapters for tests and benchmarks ([`random_adapter`]).
//!
//! It knows the shapes of llama-family projections ([`BaseShape`]) but nothing about tensors on
//! devices, the model or the engine: those crates consume [`Adapter`]s.
//!
//! Errors are one enum, [`StoreError`], whose messages name the file, config field, tensor or
//! adapter at fault.

mod adapter;
mod config;
mod error;
mod fsutil;
mod hash;
mod pattern;
mod peft;
mod random;
mod registry;

pub use adapter::{Adapter, BaseShape, LoraWeights, TargetModule};
pub use config::PeftConfig;
pub use error::StoreError;
pub use peft::{TensorDtype, read_peft_dir, write_peft_dir};
pub use random::{RandomAdapterSpec, random_adapter};
pub use registry::{AdapterInfo, Registry, validate_adapter_name};
