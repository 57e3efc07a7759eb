//! `lorad attribution index`.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use lorad_attribution::grad::{GradIndex, build_grad_index};
use lorad_datanet::Datanet;
use lorad_store::Adapter;
use lorad_train::{DiffLlama, ProbeSpec};

use super::common::{existing_model, grad_index_dir, open_store, progress_bar};
use crate::cli::{AttributionCommand, StoreIo};
use crate::exit::{ExitKind, coded};

/// Builds (replacing with `force`) the gradient index of `adapter` over `datanet`.
pub(crate) fn build_index(
    home: &Path,
    diff: &DiffLlama,
    adapter: &Adapter,
    datanet: &Datanet,
    probe: ProbeSpec,
    max_len: usize,
    force: bool,
) -> anyhow::Result<GradIndex> {
    let dir = grad_index_dir(home, &adapter.content_hash, datanet.name());
    if dir.exists() {
        if !force {
            return Err(coded(
                ExitKind::Usage,
                anyhow::anyhow!("an index exists at {}; pass --force to rebuild it", dir.display()),
            ));
        }
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let bar = progress_bar(datanet.len(), "index");
    let start = std::time::Instant::now();
    let index =
        build_grad_index(diff, adapter, datanet, probe, max_len, 8, &dir, |n| bar.inc(n as u64))
            .with_context(|| format!("cannot build the attribution index of {}", adapter.name))?;
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    writeln!(
        std::io::stdout().lock(),
        "attribution index: {} records x {} projected values in {secs:.1} s ({:.1} records/s) at {}",
        index.len(),
        index.header().dim,
        index.len() as f64 / secs.max(1e-9),
        dir.display()
    )?;
    Ok(index)
}

/// Runs an attribution subcommand.
pub(crate) fn run(home: &Path, io: StoreIo, command: AttributionCommand) -> anyhow::Result<()> {
    match command {
        AttributionCommand::Index { adapter, datanet, k_in, k_out, max_len, force, model } => {
            let store = open_store(home, io)?;
            let model_path = existing_model(home, model.as_deref())?;
            let (_, diff) = super::finetune::load_diff(&model_path)?;
            let loaded = store
                .load(&adapter, &diff.base_shape())
                .map_err(|e| coded(ExitKind::Usage, e))
                .with_context(|| format!("cannot load adapter {adapter}"))?;
            let dn = super::datanet::open(home, &datanet)?;
            let probe = ProbeSpec { k_in, k_out, ..ProbeSpec::default() };
            build_index(home, &diff, &loaded, &dn, probe, max_len, force)?;
        }
    }
    Ok(())
}
