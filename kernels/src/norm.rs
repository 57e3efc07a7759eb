//! RMSNorm and the SwiGLU gate: thin wrappers over candle-nn's fused ops, which already have CPU
//! and CUDA kernels.

use candle_core::Tensor;

use crate::Result;

/// `x / rms(x) · w` over the last dimension.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
    Ok(candle_nn::ops::rms_norm(&x.contiguous()?, w, eps)?)
}

/// `silu(gate) ⊙ up`, the llama MLP activation.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    Ok((gate.silu()? * up)?)
}
