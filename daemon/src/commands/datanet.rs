//! `lorad datanet build | ls | verify`.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use lorad_datanet::{BuildOptions, Datanet, DatanetError, TextSide, to_0x_hex};

use super::common::{base_hash_of, datanets_dir, existing_model, span_index_dir};
use crate::cli::DatanetCommand;
use crate::exit::{ExitExt, ExitKind, coded};

/// Exit kind of a Datanet error: bad input data is 65, a missing or existing name a usage error.
fn kind_of(e: &DatanetError) -> ExitKind {
    match e {
        DatanetError::BadRecords { .. } | DatanetError::Corrupt { .. } => ExitKind::DataErr,
        DatanetError::Io { .. } => ExitKind::Runtime,
        _ => ExitKind::Usage,
    }
}

/// Maps a Datanet error to its exit kind.
pub(crate) fn coded_datanet(e: DatanetError) -> anyhow::Error {
    let kind = kind_of(&e);
    coded(kind, e)
}

/// Opens Datanet `name` under `home`.
pub(crate) fn open(home: &Path, name: &str) -> anyhow::Result<Datanet> {
    Datanet::open_named(&datanets_dir(home), name).map_err(coded_datanet)
}

/// Runs a datanet subcommand.
pub(crate) fn run(home: &Path, command: DatanetCommand) -> anyhow::Result<()> {
    let root = datanets_dir(home);
    let mut out = std::io::stdout().lock();
    match command {
        DatanetCommand::Build { input, name, skip_invalid, force, model } => {
            let model = existing_model(home, model.as_deref())?;
            let (tokenizer, chat_template) = lorad_model::load_text(&model)
                .exit_kind(ExitKind::Config)
                .with_context(|| format!("cannot read the tokenizer of {}", model.display()))?;
            let base_hash = base_hash_of(&model)?;
            let text = TextSide {
                tokenizer: &tokenizer,
                chat_template: &chat_template,
                base_hash: &base_hash,
            };
            let opts = BuildOptions { skip_invalid, force, progress: true };
            let report =
                lorad_datanet::build(&input, &name, &root, &text, &opts).map_err(coded_datanet)?;
            for p in &report.skipped {
                writeln!(out, "skipped line {}: {}", p.line, p.reason)?;
            }
            writeln!(
                out,
                "datanet {}: {} records, {} tokens, {} contributors, merkle root {} ({:.2} s)",
                report.name,
                report.records,
                report.tokens,
                report.contributors.len(),
                to_0x_hex(&report.merkle_root),
                report.elapsed.as_secs_f64()
            )?;
            for c in &report.contributors {
                writeln!(out, "  {:<24} {:>8} records {:>10} tokens", c.name, c.records, c.tokens)?;
            }
        }
        DatanetCommand::Ls { json } => {
            let all = lorad_datanet::list(&root).map_err(coded_datanet)?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
            } else {
                writeln!(
                    out,
                    "{:<24} {:>10} {:>12} {:>12}  merkle root",
                    "NAME", "RECORDS", "TOKENS", "CONTRIBUTORS"
                )?;
                for m in &all {
                    writeln!(
                        out,
                        "{:<24} {:>10} {:>12} {:>12}  {}",
                        m.name,
                        m.records,
                        m.tokens,
                        m.contributors.len(),
                        to_0x_hex(&m.merkle_root)
                    )?;
                }
            }
        }
        DatanetCommand::Index { name, suffix_array: _, force } => {
            let dn = open(home, &name)?;
            let dir = span_index_dir(home, &name);
            if dir.exists() {
                if !force {
                    return Err(coded(
                        ExitKind::Usage,
                        anyhow::anyhow!("{} exists; pass --force to rebuild it", dir.display()),
                    ));
                }
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("removing {}", dir.display()))?;
            }
            let vocab = dn.manifest().tokenizer.vocab_size as usize;
            let stats = lorad_attribution::span::SpanIndex::build(
                (0..dn.len()).map(|i| dn.tokens(i)),
                vocab,
                &dir,
            )
            .with_context(|| format!("cannot build the span index of datanet {name}"))?;
            writeln!(
                out,
                "span index of {name}: {} tokens in {} records, {:.2} bytes/token, built in {:.2} s at {}",
                stats.num_tokens,
                stats.num_docs,
                stats.bytes_per_token,
                stats.total_secs,
                dir.display()
            )?;
        }
        DatanetCommand::Verify { name } => {
            let dn = open(home, &name)?;
            dn.verify().map_err(coded_datanet)?;
            writeln!(
                out,
                "datanet {name}: {} records verified, merkle root {}",
                dn.len(),
                to_0x_hex(&dn.merkle_root())
            )?;
        }
    }
    Ok(())
}
