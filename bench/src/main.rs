//! `lorad-bench`: lorad's benchmarks. Every speed goal is a *ratio* of two configurations
//! measured side by side in one run on one machine, never an absolute number asserted in a test.
//! Each benchmark prints a table and writes `<out>/<name>.json` and `<out>/<name>.md`.

mod decode;
mod report;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "lorad-bench", version, about = "lorad benchmarks (ratios measured side by side)")]
struct Cli {
    /// lorad data directory (model cache).
    #[arg(long, env = "LORAD_HOME", global = true)]
    home: Option<PathBuf>,
    /// Where JSON and Markdown results go.
    #[arg(long, default_value = "bench/results", global = true)]
    out: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Decode throughput: base alone vs one adapter per request vs merge-per-request.
    Decode(decode::DecodeArgs),
}

fn main() -> std::process::ExitCode {
    match try_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lorad-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn try_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let home = cli.home.unwrap_or_else(lorad_model::default_home);
    match cli.cmd {
        Cmd::Decode(args) => decode::run(&home, &cli.out, &args),
    }
}
