//! `lorad adapter import | ls | rm | pin | unpin | generate-random`.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use lorad_store::disk::{EntryState, StoredInfo};
use lorad_store::{RandomAdapterSpec, StoreError, TargetModule};

use super::common::{base_hash_of, base_shape_of, existing_model, open_store};
use crate::cli::{AdapterCommand, StoreIo};
use crate::exit::{ExitExt, ExitKind, coded};

/// Runs an adapter subcommand.
pub(crate) fn run(home: &Path, io: StoreIo, command: AdapterCommand) -> anyhow::Result<()> {
    match command {
        AdapterCommand::Import { dir, name, model } => {
            import(home, io, &dir, name.as_deref(), model.as_deref())
        }
        AdapterCommand::Ls { json } => list(home, io, json),
        AdapterCommand::Rm { name } => remove(home, io, &name),
        AdapterCommand::Pin { name } => pin(home, io, &name, true),
        AdapterCommand::Unpin { name } => pin(home, io, &name, false),
        AdapterCommand::GenerateRandom { dir, rank, alpha, seed, targets, model } => {
            let spec = RandomAdapterSpec {
                rank,
                alpha: alpha.unwrap_or(2.0 * rank as f64),
                targets: parse_targets(&targets)?,
                seed,
                ..RandomAdapterSpec::default()
            };
            generate_random(home, &dir, &spec, model.as_deref())
        }
    }
}

fn import(
    home: &Path,
    io: StoreIo,
    dir: &Path,
    name: Option<&str>,
    model: Option<&Path>,
) -> anyhow::Result<()> {
    let model = existing_model(home, model)?;
    let base = base_shape_of(&model)?;
    let base_hash = base_hash_of(&model)?;
    let store = open_store(home, io)?;
    let info = store.import_dir(dir, name, &base, &base_hash).map_err(|e| {
        let kind = if matches!(e, StoreError::InvalidName { .. }) {
            ExitKind::Usage
        } else {
            ExitKind::DataErr
        };
        coded(kind, e).context(format!("cannot import adapter {}", dir.display()))
    })?;
    tracing::info!(name = %info.name, hash = %info.content_hash, "adapter imported");
    let mut out = std::io::stdout().lock();
    writeln!(out, "imported adapter '{}'", info.name)?;
    writeln!(out, "  rank:    {}", info.rank)?;
    writeln!(out, "  alpha:   {}", info.alpha)?;
    writeln!(out, "  targets: {}", targets_str(&info))?;
    writeln!(out, "  stored:  {} ({})", human_bytes(info.bytes), info.dtype)?;
    writeln!(out, "  hash:    {}", info.content_hash)?;
    Ok(())
}

fn list(home: &Path, io: StoreIo, json: bool) -> anyhow::Result<()> {
    let store = open_store(home, io)?;
    let infos = store.list();
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &infos)?;
        writeln!(out)?;
        return Ok(());
    }
    let rows: Vec<[String; 8]> = infos
        .iter()
        .map(|i| {
            [
                i.name.clone(),
                i.rank.to_string(),
                i.alpha.to_string(),
                targets_str(i),
                format!("{} {}", human_bytes(i.bytes), i.dtype),
                i.content_hash.chars().take(12).collect(),
                if i.pinned { "yes".into() } else { String::new() },
                state_str(&i.state),
            ]
        })
        .collect();
    let header = ["NAME", "RANK", "ALPHA", "TARGETS", "SIZE", "HASH", "PINNED", "STATE"];
    write!(out, "{}", table(&header, &rows))?;
    Ok(())
}

fn state_str(state: &EntryState) -> String {
    match state {
        EntryState::Ready => "ready".into(),
        EntryState::Quarantined { reason } => format!("quarantined: {reason}"),
    }
}

fn usage_or(kind: ExitKind, e: &StoreError) -> ExitKind {
    match e {
        StoreError::NotFound { .. } | StoreError::InvalidName { .. } => ExitKind::Usage,
        _ => kind,
    }
}

fn remove(home: &Path, io: StoreIo, name: &str) -> anyhow::Result<()> {
    let store = open_store(home, io)?;
    store.remove(name).map_err(|e| {
        coded(usage_or(ExitKind::Runtime, &e), e).context(format!("cannot remove adapter '{name}'"))
    })?;
    println!("removed adapter '{name}'");
    Ok(())
}

fn pin(home: &Path, io: StoreIo, name: &str, pinned: bool) -> anyhow::Result<()> {
    let store = open_store(home, io)?;
    let verb = if pinned { "pin" } else { "unpin" };
    store.set_pinned(name, pinned).map_err(|e| {
        coded(usage_or(ExitKind::Runtime, &e), e).context(format!("cannot {verb} adapter '{name}'"))
    })?;
    println!("{verb}ned adapter '{name}'");
    Ok(())
}

fn generate_random(
    home: &Path,
    dir: &Path,
    spec: &RandomAdapterSpec,
    model: Option<&Path>,
) -> anyhow::Result<()> {
    let model = existing_model(home, model)?;
    let config = lorad_model::read_config(&model)
        .exit_kind(ExitKind::Config)
        .with_context(|| format!("cannot read the model config of {}", model.display()))?;
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("random");
    let adapter = lorad_store::random_adapter(name, &lorad_engine::base_shape(&config), spec);
    super::common::write_peft_for(dir, &adapter, &config)
        .with_context(|| format!("cannot write a random adapter to {}", dir.display()))?;
    println!("{}", dir.display());
    Ok(())
}

fn parse_targets(names: &[String]) -> anyhow::Result<Vec<TargetModule>> {
    names
        .iter()
        .map(|n| {
            TargetModule::from_peft_name(n.trim()).ok_or_else(|| {
                let all: Vec<&str> = TargetModule::ALL.iter().map(|m| m.peft_name()).collect();
                anyhow::anyhow!("unknown target module '{n}'; expected one of {}", all.join(", "))
            })
        })
        .collect::<anyhow::Result<_>>()
        .exit_kind(ExitKind::Usage)
}

fn targets_str(info: &StoredInfo) -> String {
    info.targets.iter().map(|t| t.peft_name()).collect::<Vec<_>>().join(",")
}

/// `1.5 MiB`-style sizes.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Left-aligned columns separated by two spaces.
fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths: [usize; N] = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, c) in cells.enumerate() {
            if i + 1 == N {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
        let t = table(&["NAME", "RANK"], &[["a-long-name".into(), "8".into()]]);
        assert_eq!(t, "NAME         RANK\na-long-name  8\n");
        assert!(parse_targets(&["q_proj".into(), "nope".into()]).is_err());
    }
}
