//! lorad's math: every operation the engine's forward pass needs, in two forms.
//!
//! * A **reference** form ([`reference`](mod@reference)): plain `f64` loops over slices,
//!   written for clarity, never for speed. Tests compare every fast path against it.
//! * A **device** form: functions over [`candle_core::Tensor`] that run wherever the tensor
//!   lives. On the CPU with `f32` tensors they use fused kernels written here ([`cpu`]) because
//!   the generic composition costs thousands of small tensor ops per decode step; on any other
//!   device or dtype they compose candle ops (the *generic* path), which is what runs on CUDA
//!   until custom CUDA kernels land. Both paths are public so tests can pin one against the
//!   other on the same device.
//!
//! On a GPU every candle op is a kernel launch, so the generic path is written for a fixed
//! number of ops per layer, whatever the batch holds: [`PagedStep`] turns a step's paged
//! layout into index tensors once and attends all sequences in a few padded buckets, and
//! [`LoraStack`] runs the LoRA term of every adapter in the batch as one shrink and one
//! expand. Custom CUDA kernels (gathered BGMV, paged decode attention) will replace the
//! padding and masking they pay for that.
//!
//! The crate owns no state: the engine owns weights, adapter pools and the paged KV cache and
//! passes views of them in.
//!
//! Feature `cuda` enables candle's CUDA backend; nothing in this crate is gated on it.

mod error;

pub mod attention;
pub mod cpu;
pub mod linear;
pub mod lora;
pub mod lora_stack;
pub mod norm;
pub mod reference;
pub mod rope;
pub mod simd;
pub mod step;

pub use attention::{KvPool, PagedSeq, paged_attention, write_kv};
pub use error::KernelError;
pub use linear::{SMALL_ROWS, linear};
pub use lora::{LoraGroup, LoraPair, add_lora, add_lora_shared};
pub use lora_stack::{LoraStack, StackMember, stack_mask};
pub use norm::{rms_norm, swiglu};
pub use rope::{RopeAt, RopeTables, apply_rope, apply_rope_at};
pub use step::PagedStep;

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, KernelError>;

/// Which implementation a kernel call uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KernelPath {
    /// Fused CPU kernel when the inputs allow it (CPU device, `f32`), generic otherwise.
    #[default]
    Auto,
    /// Always compose candle tensor ops (runs on every device; what CUDA uses today).
    Generic,
}
