//! Sizing the KV cache by memory instead of tokens (vLLM's `gpu_memory_utilization`): an
//! operator says "this many bytes" or "this share of what is free once the model is loaded",
//! and the engine turns it into whole KV blocks for the model it serves.
//!
//! Free memory is the device's own: the CUDA driver's free bytes on a GPU, the kernel's
//! `MemAvailable` on the host.

use candle_core::{DType, Device};
use lorad_model::ModelConfig;

use crate::error::{EngineError, Result};

/// A KV cache size given as memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KvMemory {
    /// This many bytes.
    Bytes(u64),
    /// This fraction (above 0, at most 1) of the device memory free once the base model is
    /// loaded. The adapter working set and the forward pass's activations come out of the
    /// rest.
    FreeFraction(f64),
}

/// Bytes one token's keys and values take over all layers.
pub fn kv_bytes_per_token(c: &ModelConfig, dtype: DType) -> u64 {
    (c.num_layers * 2 * c.num_kv_heads * c.head_dim * dtype.size_in_bytes()) as u64
}

/// Free and total bytes of `device`'s memory.
pub fn device_memory(device: &Device) -> Result<(u64, u64)> {
    match device {
        Device::Cpu => host_memory(),
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => {
            let (free, total) = d
                .cuda_stream()
                .context()
                .mem_get_info()
                .map_err(|e| EngineError::Config(format!("cannot read GPU memory: {e}")))?;
            Ok((free as u64, total as u64))
        }
        #[allow(unreachable_patterns)]
        other => Err(EngineError::Config(format!(
            "cannot read the free memory of {other:?}: size the KV cache in tokens"
        ))),
    }
}

/// `MemAvailable` and `MemTotal` from `/proc/meminfo`.
fn host_memory() -> Result<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").map_err(|e| {
        EngineError::Config(format!(
            "cannot read /proc/meminfo ({e}): size the KV cache in tokens or bytes"
        ))
    })?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()
            })
            .map(|kib| kib * 1024)
    };
    match (field("MemAvailable:"), field("MemTotal:")) {
        (Some(free), Some(total)) => Ok((free, total)),
        _ => Err(EngineError::Config(
            "/proc/meminfo has no MemAvailable: size the KV cache in tokens or bytes".into(),
        )),
    }
}

/// The whole blocks of `block` tokens (`per_token` bytes each) that fit in `mem`, `free`
/// bytes being free: tokens, and the bytes they take.
pub(crate) fn kv_tokens(
    mem: KvMemory,
    per_token: u64,
    block: usize,
    free: u64,
) -> Result<(usize, u64)> {
    let bytes = match mem {
        KvMemory::Bytes(b) => b,
        KvMemory::FreeFraction(f) if f > 0.0 && f <= 1.0 => (free as f64 * f) as u64,
        KvMemory::FreeFraction(f) => {
            return Err(EngineError::Config(format!(
                "kv_cache_memory: a share of free memory must be above 0% and at most 100%, not {:.1}%",
                f * 100.0
            )));
        }
    };
    let block_bytes = per_token.saturating_mul(block as u64).max(1);
    let blocks = bytes / block_bytes;
    if blocks == 0 {
        return Err(EngineError::Config(format!(
            "kv_cache_memory: {bytes} bytes hold no KV block ({block} tokens of {per_token} bytes)"
        )));
    }
    let tokens = usize::try_from(blocks).unwrap_or(usize::MAX / block) * block;
    Ok((tokens, blocks * block_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_becomes_whole_blocks() {
        // 30 layers × K and V × 3 heads × 64 dims × 4 bytes: SmolLM2-135M in f32.
        let per = 30 * 2 * 3 * 64 * 4;
        let (tokens, bytes) = kv_tokens(KvMemory::Bytes(1 << 30), per, 16, 0).unwrap();
        assert_eq!((tokens, bytes), (23296, 23296 * per));
        let (tokens, _) = kv_tokens(KvMemory::FreeFraction(0.5), per, 16, 1 << 31).unwrap();
        assert_eq!(tokens, 23296);
        assert!(kv_tokens(KvMemory::Bytes(per * 15), per, 16, 0).is_err());
        for bad in [0.0, -0.5, 1.5, f64::NAN] {
            let e = kv_tokens(KvMemory::FreeFraction(bad), per, 16, 1 << 31).unwrap_err();
            assert!(e.to_string().contains("kv_cache_memory"), "{e}");
        }
    }

    #[test]
    fn host_memory_is_read() {
        let (free, total) = device_memory(&Device::Cpu).unwrap();
        assert!(free > 0 && free <= total, "{free} {total}");
    }
}
