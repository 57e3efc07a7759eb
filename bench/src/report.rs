//! Writes a benchmark's results as JSON (for machines) and Markdown (for people).

use std::path::Path;

use anyhow::Context;
use candle_core::Device;

/// Writes `<out>/<name>.json` and `<out>/<name>.md`; returns the Markdown.
pub(crate) fn write(
    out: &Path,
    name: &str,
    json: &serde_json::Value,
    markdown: &str,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let jp = out.join(format!("{name}.json"));
    std::fs::write(&jp, serde_json::to_string_pretty(json)? + "\n")
        .with_context(|| format!("writing {}", jp.display()))?;
    let mp = out.join(format!("{name}.md"));
    std::fs::write(&mp, markdown).with_context(|| format!("writing {}", mp.display()))?;
    eprintln!("wrote {} and {}", jp.display(), mp.display());
    Ok(())
}

/// Machine facts recorded with every result.
pub(crate) fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    serde_json::json!({
        "cpu": cpu,
        "gpu": gpu_name(),
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "os": std::env::consts::OS,
    })
}

/// The first NVIDIA GPU's model name as the driver reports it (`/proc/driver/nvidia`), if any.
pub(crate) fn gpu_name() -> Option<String> {
    let mut dirs: Vec<_> =
        std::fs::read_dir("/proc/driver/nvidia/gpus").ok()?.filter_map(|e| e.ok()).collect();
    dirs.sort_by_key(std::fs::DirEntry::file_name);
    let info = std::fs::read_to_string(dirs.first()?.path().join("information")).ok()?;
    info.lines().find_map(|l| l.strip_prefix("Model:")).map(|m| m.trim().to_owned())
}

/// The build profile, recorded with every result (debug numbers are not release numbers).
pub(crate) fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug (dev profile: lorad crates opt-level 1, dependencies 3)"
    } else {
        "release"
    }
}

/// "CPU", or the GPU's name as the driver reports it: what every report says it ran on.
pub(crate) fn device_name(device: &Device) -> String {
    match device {
        Device::Cpu => "CPU".to_owned(),
        Device::Cuda(_) => gpu_name().unwrap_or_else(|| "CUDA GPU 0".to_owned()),
        Device::Metal(_) => "Metal GPU".to_owned(),
    }
}

/// What a result file's name ends with on `device`, so CPU and GPU results sit side by side.
pub(crate) fn device_suffix(device: &Device) -> &'static str {
    if device.is_cuda() { "-cuda" } else { "" }
}
