//! lorad's adapter store.
//!
//! This crate owns everything about adapters *at rest*:
//! - parsing and validating Hugging Face PEFT LoRA adapters (`adapter_config.json` +
//!   `adapter_model.safetensors`) into f32 weights with resolved scales ([`read_peft_dir`]), and
//!   writing them back in PEFT's format ([`write_peft_dir`]);
//! - the content-addressed adapter store ([`Store`], module [`disk`]): append-only 4 KiB-aligned
//!   segments, an mmap'd index, crash-safe imports, checksums and quarantine, gc; reads go
//!   through [`paging`] (io_uring with a pread fallback);
//! - the byte-budgeted LRU tiers with pins and leases ([`tiers`]) that the engine's residency
//!   manager stacks on top of the store;
//! - deterministic random adapters for tests and benchmarks ([`random_adapter`]).
//!
//! It knows the shapes of llama-family projections ([`BaseShape`]) but nothing about tensors on
//! devices, the model or the engine: those crates consume [`Adapter`]s.
//!
//! Errors are one enum, [`StoreError`], whose messages name the file, config field, tensor or
//! adapter at fault.

mod adapter;
mod config;
pub mod disk;
mod error;
mod export;
mod fsutil;
mod hash;
mod name;
pub mod paging;
mod pattern;
mod peft;
mod random;
mod site;
pub mod tiers;

pub use adapter::{Adapter, BaseShape, LoraWeights, TargetModule};
pub use config::PeftConfig;
pub use disk::{
    Blob, BlobLocation, EntryState, GcReport, ManifestPair, Store, StoreConfig, StoredDtype,
    StoredInfo, TensorExtent, VerifyReport,
};
pub use error::StoreError;
pub use export::write_peft_dir_fused;
pub use name::validate_adapter_name;
pub use peft::{TensorDtype, read_peft_dir, write_peft_dir};
pub use random::{RandomAdapterSpec, random_adapter};
