//! What several commands share: the adapter store, finding and loading the base model, the
//! device.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use candle_core::Device;
use lorad_model::{
    ChatTemplate, LoadOptions, LoadedModel, default_model_path, fetch_default_model,
};
use std::sync::Arc;

use lorad_store::BaseShape;
use lorad_store::disk::Store;

use crate::cli::{DeviceArg, ModelArgs, StoreIo};
use crate::exit::{ExitExt, ExitKind, coded};

/// The adapter store directory under `home`.
pub(crate) fn store_dir(home: &Path) -> PathBuf {
    home.join("store")
}

/// Opens (creating if needed) the adapter store under `home`; failure is a configuration error.
pub(crate) fn open_store(home: &Path, io: StoreIo) -> anyhow::Result<Arc<Store>> {
    let dir = store_dir(home);
    let store = Store::open(&dir, io.store_config())
        .exit_kind(ExitKind::Config)
        .with_context(|| format!("cannot open the adapter store in home {}", home.display()))?;
    if let Some(reason) = store.io_fallback_reason() {
        tracing::info!(backend = store.io_backend().as_str(), reason, "adapter store read path");
    }
    Ok(Arc::new(store))
}

/// The hash identifying the base model at `path` (recorded with every imported adapter).
pub(crate) fn base_hash_of(path: &Path) -> anyhow::Result<String> {
    lorad_model::base_hash(path)
        .exit_kind(ExitKind::Config)
        .with_context(|| format!("cannot hash the model {}", path.display()))
}

/// The model to use for something that only reads it (import, random adapters): `explicit`, or
/// the default model, which must already be there.
pub(crate) fn existing_model(home: &Path, explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    match explicit {
        Some(p) if p.exists() => Ok(p.to_owned()),
        Some(p) => {
            Err(coded(ExitKind::Config, anyhow::anyhow!("model {} does not exist", p.display())))
        }
        None => {
            let p = default_model_path(home);
            if p.is_file() {
                Ok(p)
            } else {
                Err(coded(
                    ExitKind::Config,
                    anyhow::anyhow!(
                        "the default model is not at {}; run `lorad model fetch` first (or pass --model)",
                        p.display()
                    ),
                ))
            }
        }
    }
}

/// The model to run: `explicit` (must exist), else the default model, fetched (with progress on
/// the terminal) when it is not there yet. Blocking.
pub(crate) fn model_to_run(home: &Path, explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if explicit.is_some() {
        return existing_model(home, explicit);
    }
    let path = default_model_path(home);
    if path.is_file() {
        return Ok(path);
    }
    tracing::info!(path = %path.display(), "default model not found; fetching it");
    fetch_default_model(home, true).exit_kind(ExitKind::Config).context(
        "cannot fetch the default model (run `lorad model fetch` to retry, or pass --model)",
    )
}

/// Opens the device `choice` names. `auto` takes GPU 0 in a `cuda` build that finds one, else the
/// CPU with a warning; `cuda[:N]` that cannot be opened is an error: `EX_CONFIG` when this build
/// has no CUDA (a restart cannot help), `EX_UNAVAILABLE` when the GPU does not open (a driver
/// still loading at boot may, so systemd retries after its delay).
pub(crate) fn device(choice: DeviceArg) -> anyhow::Result<Device> {
    match choice {
        DeviceArg::Cpu => Ok(Device::Cpu),
        DeviceArg::Auto => Ok(Device::cuda_if_available(0).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "CUDA unavailable; using the CPU (--device cpu says so)");
            Device::Cpu
        })),
        DeviceArg::Cuda(_) if !candle_core::utils::cuda_is_available() => Err(coded(
            ExitKind::Config,
            anyhow::anyhow!(
                "--device {choice}: this lorad was built without CUDA (cargo feature `cuda`); \
                 use --device cpu or a CUDA build"
            ),
        )),
        DeviceArg::Cuda(n) => Device::new_cuda(n)
            .exit_kind(ExitKind::Unavailable)
            .with_context(|| format!("--device {choice}: cannot open CUDA GPU {n}")),
    }
}

/// The `--device` spelling of an opened device (`cpu`, `cuda:0`), for logs and `/metrics`.
pub(crate) fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_owned(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Loads the model at `path`, logging how long it took. Blocking.
pub(crate) fn load(path: &Path, args: &ModelArgs, device: Device) -> anyhow::Result<LoadedModel> {
    let start = Instant::now();
    let on = device_name(&device);
    tracing::info!(path = %path.display(), dtype = ?args.dtype, device = %on, "loading model");
    let mut model =
        lorad_model::load_model(path, &LoadOptions { dtype: args.dtype.to_candle(), device })
            .exit_kind(ExitKind::Config)
            .with_context(|| format!("cannot load model {}", path.display()))?;
    if let Some(spec) = &args.chat_template {
        model.chat_template = chat_template(spec)?
            .with_special_tokens(model.tokenizer.bos_token(), model.tokenizer.eos_token());
        tracing::info!(tools = ?model.chat_template.tool_support(), "chat template from --chat-template");
    }
    tracing::info!(
        name = %model.name,
        layers = model.config.num_layers,
        secs = format_args!("{:.2}", start.elapsed().as_secs_f64()),
        "model loaded"
    );
    Ok(model)
}

/// `--chat-template`: the file it names, else (when it looks like a template) the text itself,
/// compiled.
pub(crate) fn chat_template(spec: &str) -> anyhow::Result<ChatTemplate> {
    let path = Path::new(spec);
    let source = if path.is_file() {
        std::fs::read_to_string(path)
            .exit_kind(ExitKind::Config)
            .with_context(|| format!("--chat-template: cannot read {}", path.display()))?
    } else if spec.contains("{{") || spec.contains("{%") {
        spec.to_owned()
    } else {
        return Err(coded(
            ExitKind::Config,
            anyhow::anyhow!("--chat-template: {spec} is neither a file nor a Jinja template"),
        ));
    };
    ChatTemplate::new(&source).exit_kind(ExitKind::Config).context("--chat-template")
}

/// The projection shapes adapters must fit, read from the model's config only (cheap).
pub(crate) fn base_shape_of(path: &Path) -> anyhow::Result<BaseShape> {
    let config = lorad_model::read_config(path)
        .exit_kind(ExitKind::Config)
        .with_context(|| format!("cannot read the model config of {}", path.display()))?;
    Ok(lorad_engine::base_shape(&config))
}

/// Writes `adapter` as a PEFT directory other tools load onto `base`: for a base whose
/// checkpoints fuse projections (Phi-3), its pairs stacked onto `qkv_proj` / `gate_up_proj`.
pub(crate) fn write_peft_for(
    dir: &Path,
    adapter: &lorad_store::Adapter,
    base: &lorad_model::ModelConfig,
) -> Result<(), lorad_store::StoreError> {
    let f32 = lorad_store::TensorDtype::F32;
    if base.fused_projections() {
        lorad_store::write_peft_dir_fused(dir, adapter, f32, &lorad_engine::base_shape(base))
    } else {
        lorad_store::write_peft_dir(dir, adapter, f32)
    }
}

/// Where Datanets live under `home`.
pub(crate) fn datanets_dir(home: &Path) -> PathBuf {
    home.join("datanets")
}

/// Where Datanet `name`'s suffix-array span index lives (inside the Datanet, so rebuilding the
/// Datanet drops it with its old records).
pub(crate) fn span_index_dir(home: &Path, name: &str) -> PathBuf {
    datanets_dir(home).join(name).join("span")
}

/// Where the gradient index of the adapter with content hash `adapter_hash` over Datanet
/// `datanet` lives: keyed by the adapter's content, so a re-import under the same name with other
/// weights never meets a stale index.
pub(crate) fn grad_index_dir(home: &Path, adapter_hash: &str, datanet: &str) -> PathBuf {
    home.join("attribution").join(adapter_hash).join(datanet)
}

/// A progress bar on stderr for `len` steps of `what` (hidden when stderr is not a terminal).
pub(crate) fn progress_bar(len: usize, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>12} [{bar:30}] {pos}/{len} {elapsed} {per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_owned());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_templates_come_from_a_file_or_inline() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("t.jinja");
        std::fs::write(&file, "{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}")
            .expect("write");
        let msgs = [lorad_model::ChatMessage::new("user", "hi")];
        let t = chat_template(file.to_str().expect("utf-8")).expect("file");
        assert_eq!(t.render(&msgs, false).expect("render"), "[user] hi");
        let t = chat_template("{{ messages[0].content }}!").expect("inline");
        assert_eq!(t.render(&msgs, false).expect("render"), "hi!");
        let missing = format!("{:#}", chat_template("/nonexistent/t.jinja").expect_err("missing"));
        assert!(missing.contains("--chat-template") && missing.contains("neither"), "{missing}");
        let broken = format!("{:#}", chat_template("{% for m in %}").expect_err("syntax"));
        assert!(broken.contains("--chat-template") && broken.contains("syntax"), "{broken}");
    }
}
