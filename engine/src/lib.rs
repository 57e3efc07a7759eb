//! lorad's model runtime: a llama-family forward pass over one resident copy of the base model,
//! in which every row of a batch may use a different LoRA adapter (S-LoRA / Punica style), a
//! paged KV cache, iteration-level continuous batching and sampling.
//!
//! * [`EngineHandle`] is what the daemon uses: start it from a [`lorad_model::LoadedModel`],
//!   [`EngineHandle::add_adapter`], then [`EngineHandle::submit`] requests and read their
//!   [`GenerationStream`]s. Dropping a stream cancels its request.
//! * [`Llama`], [`KvCache`] and [`ForwardSeq`] are the lower layer, public for tests and
//!   benchmarks that drive single forward steps.
//!
//! Tensors live on whatever [`candle_core::Device`] the model was loaded on; nothing here
//! branches on the device (the kernels crate picks fused CPU or generic paths).

mod adapters;
mod admission;
mod constrained;
mod engine;
mod error;
mod fairness;
mod kv;
mod llama;
mod logprobs;
mod lora_step;
mod memory;
mod output;
mod pinned;
mod request;
mod residency;
mod sampling;
mod scheduler;
mod speculative;
mod weights;

pub use adapters::{AdapterDtype, AdapterPool, ResidentAdapter};
pub use engine::{EngineConfig, EngineHandle, EngineStats, ModelInfo, SchedulingPolicy};
pub use error::{EngineError, Result};
pub use kv::{BlockAllocator, BlockHash, KvCache, block_hash};
pub use llama::{ForwardSeq, Llama, base_shape, projection_weight_name, rope_row, rope_tables};
pub use logprobs::{MAX_LOGPROBS, TokenLogprob, token_logprob};
pub use lorad_kernels::KernelPath;
pub use memory::{KvMemory, device_memory, kv_bytes_per_token};
pub use pinned::host_pinner;
pub use request::{
    Completion, FinishReason, GenerateRequest, GenerationEvent, GenerationStream, ThinkFirst, Usage,
};
pub use residency::{
    AdapterManager, Histogram, PAGE_IN_BUCKETS, ResidencyConfig, ResidencyStats, Tier,
};
pub use sampling::{Sampler, SamplingParams, argmax};
pub use speculative::NgramSpec;
pub use weights::{BaseWeights, LayerWeights};
