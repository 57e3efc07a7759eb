//! GPU health for `/metrics`, read through NVML (libnvidia-ml, loaded at run time).
//!
//! A machine without the NVIDIA driver is a normal case, not an error: the monitor reports
//! `lorad_gpu_available 0` and logs once why, and lorad keeps serving on the CPU. Each metric
//! is read separately and skipped when the GPU does not support it (ECC on consumer cards,
//! PCIe counters on some virtual GPUs), so one unsupported query never hides the others.

use nvml_wrapper::Nvml;

use crate::api::family;
use nvml_wrapper::enum_wrappers::device::{
    Clock, EccCounter, MemoryError, PcieUtilCounter, TemperatureSensor,
};

/// NVML, if it could be loaded.
pub struct GpuMonitor {
    nvml: Option<Nvml>,
    /// Why NVML is not there.
    reason: Option<String>,
}

impl std::fmt::Debug for GpuMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuMonitor")
            .field("available", &self.nvml.is_some())
            .field("reason", &self.reason)
            .finish()
    }
}

impl GpuMonitor {
    /// Loads NVML; without it, logs one line and reports no GPU.
    pub fn init() -> Self {
        match Nvml::init() {
            Ok(nvml) => {
                let count = nvml.device_count().unwrap_or(0);
                tracing::info!(gpus = count, "NVML loaded: GPU metrics on /metrics");
                Self { nvml: Some(nvml), reason: None }
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::info!(%reason, "no GPU: NVML is not available; lorad_gpu_available is 0");
                Self { nvml: None, reason: Some(reason) }
            }
        }
    }

    /// A monitor that never looks for a GPU (tests, `--no-gpu` hosts).
    pub fn disabled(reason: &str) -> Self {
        Self { nvml: None, reason: Some(reason.to_string()) }
    }

    /// Appends the GPU metric families in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let Some(nvml) = &self.nvml else {
            family(
                out,
                "lorad_gpu_available",
                "gauge",
                "1 when NVML and at least one GPU are usable.",
                &[("", 0.0)],
            );
            return;
        };
        let count = nvml.device_count().unwrap_or(0);
        family(
            out,
            "lorad_gpu_available",
            "gauge",
            "1 when NVML and at least one GPU are usable.",
            &[("", f64::from(u8::from(count > 0)))],
        );
        let mut rows: Vec<Family> = vec![
            Family::new(
                "lorad_gpu_utilization_ratio",
                "gauge",
                "Fraction of time a kernel ran (last sample period).",
            ),
            Family::new(
                "lorad_gpu_memory_utilization_ratio",
                "gauge",
                "Fraction of time device memory was read or written.",
            ),
            Family::new("lorad_gpu_memory_used_bytes", "gauge", "Device memory in use."),
            Family::new("lorad_gpu_memory_total_bytes", "gauge", "Device memory in all."),
            Family::new("lorad_gpu_temperature_celsius", "gauge", "GPU die temperature."),
            Family::new("lorad_gpu_power_watts", "gauge", "Power draw."),
            Family::new("lorad_gpu_sm_clock_hertz", "gauge", "Streaming-multiprocessor clock."),
            Family::new(
                "lorad_gpu_throttle_reasons",
                "gauge",
                "Active clock throttle reasons (NVML bitmask; 0: none).",
            ),
            Family::new(
                "lorad_gpu_ecc_errors_corrected_total",
                "counter",
                "Corrected ECC errors since the driver loaded.",
            ),
            Family::new(
                "lorad_gpu_ecc_errors_uncorrected_total",
                "counter",
                "Uncorrected ECC errors since the driver loaded.",
            ),
            Family::new(
                "lorad_gpu_pcie_tx_bytes_per_second",
                "gauge",
                "PCIe send throughput (last 20 ms).",
            ),
            Family::new(
                "lorad_gpu_pcie_rx_bytes_per_second",
                "gauge",
                "PCIe receive throughput (last 20 ms).",
            ),
        ];
        for i in 0..count {
            let Ok(dev) = nvml.device_by_index(i) else { continue };
            let uuid = dev.uuid().unwrap_or_default();
            let label = format!("{{gpu=\"{i}\",uuid=\"{uuid}\"}}");
            let mut put = |row: usize, v: Option<f64>| {
                if let (Some(v), Some(r)) = (v, rows.get_mut(row)) {
                    r.samples.push((label.clone(), v));
                }
            };
            let util = dev.utilization_rates().ok();
            put(0, util.as_ref().map(|u| f64::from(u.gpu) / 100.0));
            put(1, util.as_ref().map(|u| f64::from(u.memory) / 100.0));
            let mem = dev.memory_info().ok();
            put(2, mem.as_ref().map(|m| m.used as f64));
            put(3, mem.as_ref().map(|m| m.total as f64));
            put(4, dev.temperature(TemperatureSensor::Gpu).ok().map(f64::from));
            put(5, dev.power_usage().ok().map(|mw| f64::from(mw) / 1000.0));
            put(6, dev.clock_info(Clock::SM).ok().map(|mhz| f64::from(mhz) * 1e6));
            put(7, dev.current_throttle_reasons().ok().map(|r| r.bits() as f64));
            put(
                8,
                dev.total_ecc_errors(MemoryError::Corrected, EccCounter::Volatile)
                    .ok()
                    .map(|n| n as f64),
            );
            put(
                9,
                dev.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)
                    .ok()
                    .map(|n| n as f64),
            );
            put(
                10,
                dev.pcie_throughput(PcieUtilCounter::Send).ok().map(|kb| f64::from(kb) * 1024.0),
            );
            put(
                11,
                dev.pcie_throughput(PcieUtilCounter::Receive).ok().map(|kb| f64::from(kb) * 1024.0),
            );
        }
        for r in rows.drain(..) {
            if !r.samples.is_empty() {
                family(out, r.name, r.kind, r.help, &r.samples);
            }
        }
    }
}

/// One metric family being collected over the GPUs.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Vec<(String, f64)>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Self {
        Self { name, kind, help, samples: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn without_nvml_the_gpu_is_reported_absent() {
        let mut out = String::new();
        super::GpuMonitor::disabled("test").render(&mut out);
        assert!(out.contains("# TYPE lorad_gpu_available gauge\nlorad_gpu_available 0\n"), "{out}");
        assert!(!out.contains("lorad_gpu_memory"));
    }
}
