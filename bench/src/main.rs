//! `lorad-bench`: lorad's benchmarks. Every speed goal is a *ratio* of two configurations
//! measured side by side in one run on one machine, never an absolute number asserted in a test.
//! Each benchmark prints a table and writes `<out>/<name>.json`, `<out>/<name>.md` and a PNG
//! chart `<out>/<name>.png`.

mod attribution;
mod client;
mod decode;
mod fairness;
mod lightclient;
mod plot;
mod prefix;
mod priority;
mod receipts;
mod report;
mod scratch;
mod span;
mod speculative;
mod stats;
mod store;
mod structured;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "lorad-bench", version, about = "lorad benchmarks (ratios measured side by side)")]
struct Cli {
    /// lorad data directory (model cache).
    #[arg(long, env = "LORAD_HOME", global = true)]
    home: Option<PathBuf>,
    /// Where JSON, Markdown and PNG results go.
    #[arg(long, default_value = "bench/results", global = true)]
    out: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Decode throughput: base alone vs one adapter per request vs merge-per-request.
    Decode(decode::DecodeArgs),
    /// Prefix caching: time to first token of requests sharing a system prompt, cache off vs on.
    Prefix(prefix::PrefixArgs),
    /// Scheduling by priority: interactive requests' time to first token on a full node, all
    /// at one priority vs ahead of a background batch.
    Priority(priority::PriorityArgs),
    /// Fair sharing between adapters: light adapters' time to first token behind a burst on
    /// one adapter, first come first served vs virtual token counters.
    Fairness(fairness::FairnessArgs),
    /// Speculative decoding by prompt lookup: tokens/s with and without drafts, on answers
    /// that repeat their prompt and on open questions.
    Speculative(speculative::SpeculativeArgs),
    /// Structured output: decode throughput constrained to a JSON Schema (masks cold, then
    /// cached) vs unconstrained.
    Structured(structured::StructuredArgs),
    /// The adapter store at scale: import rate, index open time, cold page-in latency vs disk
    /// bandwidth, host-tier hits, serving with a 10 % host budget vs unlimited.
    Store(store::StoreArgs),
    /// Proof of Attribution by gradients: planted-contributor top-1 and AUC (preconditioned vs
    /// plain dot products), index build throughput, attribution time / generation time.
    Attribution(attribution::AttributionArgs),
    /// Suffix-array span index: build throughput, peak RSS and bytes/token on a synthetic Zipf
    /// corpus; `attribute` p50/p99 per answer (random vs spliced corpus passages).
    Span(span::SpanArgs),
    /// Light client: bootstrap → finality over real mainnet data (incl. BLS), storage-proof
    /// verification per proof, peak RSS.
    Lightclient(lightclient::LightclientArgs),
    /// Receipts: signed / s / core, durable (fsynced) receipts / s by concurrency, settlement
    /// gas per receipt.
    Receipts(receipts::ReceiptsArgs),
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
        Cmd::Prefix(args) => prefix::run(&home, &cli.out, &args),
        Cmd::Store(args) => store::run(&home, &cli.out, &args),
        Cmd::Structured(args) => structured::run(&home, &cli.out, &args),
        Cmd::Priority(args) => priority::run(&home, &cli.out, &args),
        Cmd::Fairness(args) => fairness::run(&home, &cli.out, &args),
        Cmd::Speculative(args) => speculative::run(&home, &cli.out, &args),
        Cmd::Attribution(args) => attribution::run(&home, &cli.out, &args),
        Cmd::Span(args) => span::run(&cli.out, &args),
        Cmd::Lightclient(args) => lightclient::run(&cli.out, &args),
        Cmd::Receipts(args) => receipts::run(&cli.out, &args),
    }
}
