//! `lorad-bench store`: the content-addressed adapter store at scale, every figure measured in
//! one run on one machine:
//!
//! 1. **import** `--adapters` generated adapters (ranks 4..=16, a random non-empty subset of the
//!    seven projections on `--layers` random layers, values rounded to bf16 so they are stored as
//!    bf16): adapters/s, MB/s, disk bytes per adapter;
//! 2. **index open** time of the full store (best and median of 3);
//! 3. **sequential O_DIRECT bandwidth** of the same disk, through the store's pager;
//! 4. **cold page-in** latency (`Store::read_blob`, O_DIRECT so never from the page cache) p50/p99
//!    per blob-size bucket against the goal `p99 ≤ 1.25 × bytes / bandwidth + 2 ms`, and the CPU
//!    cost of decoding;
//! 5. **host-tier hit** latency (`AdapterManager::acquire` of an adapter in the host cache but not
//!    on the device: decode + upload) and device hits;
//! 6. **serving**: `--requests` requests over `--distinct` adapters with Zipf popularity from
//!    `--workers` threads, host budget 10 % of the distinct adapters' bytes (a) vs unlimited (b).
//!
//! Writes `<out>/<name>.{json,md}`, `<out>/<name>-latency.png` (cold page-in p50/p99 vs blob
//! size, with the goal line) and `<out>/<name>-serving.png` (tokens/s of a and b).

mod import;
mod latency;
mod serve;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use indicatif::ProgressBar;

use crate::scratch::Scratch;
use lorad_model::{LoadOptions, LoadedModel};
use lorad_store::paging::IoMode;
use lorad_store::{Store, StoreConfig};

/// Read path of the store (`--io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum IoArg {
    /// io_uring when available, else `pread`.
    Auto,
    /// io_uring or fail.
    IoUring,
    /// Always `pread`.
    Pread,
}

impl From<IoArg> for IoMode {
    fn from(a: IoArg) -> IoMode {
        match a {
            IoArg::Auto => IoMode::Auto,
            IoArg::IoUring => IoMode::IoUring,
            IoArg::Pread => IoMode::Pread,
        }
    }
}

/// Options of `lorad-bench store`.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// Model file or directory (default: the default model under --home).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Adapters generated and imported.
    #[arg(long, default_value_t = 10_000)]
    adapters: usize,
    /// Requests of each serving run.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Distinct adapters the serving runs draw from (a seeded sample of the imported ones).
    #[arg(long, default_value_t = 1000)]
    distinct: usize,
    /// Zipf exponent of adapter popularity in the serving runs.
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Tokens generated per request (greedy, EOS ignored).
    #[arg(long, default_value_t = 4)]
    max_tokens: usize,
    /// Adapted layers per adapter (random distinct layers; keeps 10,000 adapters to a few GB).
    #[arg(long, default_value_t = 4)]
    layers: usize,
    /// Read path of the store.
    #[arg(long, value_enum, default_value_t = IoArg::Auto)]
    io: IoArg,
    /// Parent of the scratch directory holding the store (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the scratch directory instead of deleting it at the end.
    #[arg(long)]
    keep: bool,
    /// Seed of everything random (adapters, samples, request sequence).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Adapters whose cold page-in is timed.
    #[arg(long, default_value_t = 500)]
    sample: usize,
    /// Adapters whose host-tier hit latency is timed.
    #[arg(long, default_value_t = 200)]
    host_sample: usize,
    /// Client threads of the serving runs (each: acquire, submit, release, wait).
    #[arg(long, default_value_t = 16)]
    workers: usize,
    /// Device budget of the serving runs, in average adapters (f32, i.e. 2× the blob bytes).
    #[arg(long, default_value_t = 64)]
    device_adapters: usize,
}

/// The store under test: where it lives and how it is opened.
#[derive(Debug, Clone)]
pub(super) struct StoreSpot {
    /// Root directory.
    pub(super) root: PathBuf,
    /// Open options (the `--io` read path).
    pub(super) cfg: StoreConfig,
}

impl StoreSpot {
    /// Opens the store afresh (new pager, empty caches, no blob verified yet).
    pub(super) fn open(&self) -> anyhow::Result<Store> {
        Store::open(&self.root, self.cfg)
            .with_context(|| format!("opening the store at {}", self.root.display()))
    }
}

pub(crate) fn run(home: &Path, out: &Path, args: &StoreArgs) -> anyhow::Result<()> {
    if args.adapters == 0 || args.requests == 0 || args.distinct == 0 {
        bail!("--adapters, --requests and --distinct must be at least 1");
    }
    if args.distinct > args.adapters {
        bail!("--distinct ({}) exceeds --adapters ({})", args.distinct, args.adapters);
    }
    if args.max_tokens == 0 || args.layers == 0 || args.workers == 0 || args.device_adapters == 0 {
        bail!("--max-tokens, --layers, --workers and --device-adapters must be at least 1");
    }
    if !(args.zipf.is_finite() && args.zipf >= 0.0) {
        bail!("--zipf must be a finite number ≥ 0");
    }
    let model_path = match &args.model {
        Some(p) => p.clone(),
        None => lorad_model::fetch_default_model(home, true)?,
    };
    let load = || -> anyhow::Result<LoadedModel> {
        lorad_model::load_model(&model_path, &LoadOptions::default())
            .with_context(|| format!("loading {}", model_path.display()))
    };
    let model = load()?;
    let base = lorad_engine::base_shape(&model.config);
    let base_hash = model.base_hash.clone();
    let scratch = Scratch::create(args.dir.as_deref(), args.keep, "store")?;
    let spot = StoreSpot {
        root: scratch.path.join("store"),
        cfg: StoreConfig { io_mode: args.io.into(), ..StoreConfig::default() },
    };
    eprintln!(
        "store at {} (scratch; {})",
        spot.root.display(),
        if args.keep { "kept" } else { "deleted at the end" }
    );

    let imported = import::import_all(&spot, &base, &base_hash, args)?;
    let open = import::time_open(&spot, args.adapters)?;
    let bandwidth = latency::sequential_bandwidth(&spot, &scratch.path)?;
    let cold = latency::cold_page_in(&spot, &base, &imported.infos, bandwidth.bytes_per_s, args)?;
    let host = latency::host_tier(&spot, model, &imported.infos, args)?;
    let serving = serve::run(&spot, &load, &imported.infos, args)?;

    let name = format!("store-{}a-{}r-{}d", args.adapters, args.requests, args.distinct);
    let mut md = markdown(args, &imported, &open, &bandwidth, &cold, &host, &serving);
    let latency_png = plot_latency(out, &name, &cold);
    let serving_png = plot_serving(out, &name, &serving);
    for (p, what) in
        [(&latency_png, "cold page-in latency vs blob size"), (&serving_png, "serving tokens/s")]
    {
        if let Some(p) = p {
            md += &format!("\n![{what}]({})\n", p.file_name().unwrap_or_default().display());
        }
    }
    println!("{md}");
    let file = |p: &Option<PathBuf>| {
        p.as_ref().and_then(|p| p.file_name()).map(|f| f.to_string_lossy().into_owned())
    };
    let json = serde_json::json!({
        "benchmark": "store",
        "machine": crate::report::machine(),
        "args": {
            "adapters": args.adapters, "requests": args.requests, "distinct": args.distinct,
            "zipf": args.zipf, "max_tokens": args.max_tokens, "layers": args.layers,
            "io": format!("{:?}", args.io), "seed": args.seed, "sample": args.sample,
            "host_sample": args.host_sample, "workers": args.workers,
            "device_adapters": args.device_adapters,
        },
        "import": imported.summary,
        "index_open": open,
        "sequential_bandwidth": bandwidth,
        "cold_page_in": cold,
        "host_tier": host,
        "serving": serving,
        "plots": { "latency": file(&latency_png), "serving": file(&serving_png) },
    });
    crate::report::write(out, &name, &json, &md)?;
    drop(scratch);
    Ok(())
}

/// The human-readable report (also printed).
fn markdown(
    args: &StoreArgs,
    imp: &import::Imported,
    open: &import::OpenTimes,
    bw: &latency::Bandwidth,
    cold: &latency::ColdPageIn,
    host: &latency::HostTier,
    serving: &serve::Serving,
) -> String {
    let s = &imp.summary;
    let mut md = format!(
        "# lorad-bench store\n\n{} adapters (ranks 4–16, random non-empty subsets of the 7 \
         projections on {} random layers each, bf16), read path **{}**{}, {} CPU threads.\n\n",
        args.adapters,
        args.layers,
        s.io_backend,
        s.io_fallback.as_ref().map(|r| format!(" ({r})")).unwrap_or_default(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    md += &format!(
        "## Import\n\n| adapters/s | MB/s (blob bytes) | disk bytes / adapter | disk total | import p50 / p99 | generation (not in the rate) |\n|---:|---:|---:|---:|---:|---:|\n| {:.1} | {:.1} | {} | {} | {:.2} / {:.2} ms | {:.1} s |\n\nImport time {:.1} s for {} of blobs (dtype: {}); {:.1} % of the disk bytes are payload.\n\n",
        s.adapters_per_s,
        s.mb_per_s,
        human(s.disk_bytes_per_adapter),
        human(s.disk_bytes as f64),
        s.import_p50_ms,
        s.import_p99_ms,
        s.generation_secs,
        s.import_secs,
        human(s.blob_bytes as f64),
        s.dtypes,
        100.0 * s.payload_bytes as f64 / s.disk_bytes.max(1) as f64,
    );
    md += &format!(
        "## Index open\n\n`Store::open` of {} entries: best **{:.2} ms**, median {:.2} ms (of {}; index file warm in the page cache).\n\n",
        args.adapters,
        open.best_ms,
        open.median_ms,
        open.runs_ms.len()
    );
    let passes: Vec<String> = bw
        .passes_mb_per_s
        .iter()
        .map(|(piece, rates)| {
            let rates: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
            format!("{} MiB pieces: {}", piece >> 20, rates.join(", "))
        })
        .collect();
    md += &format!(
        "## Sequential read bandwidth\n\n{} `{}` ({}) read start to end through the store's pager, {}: best pass **{:.0} MB/s** ({} MiB per read). MB/s per pass: {}.\n\n",
        bw.source,
        bw.file_name,
        human(bw.file_bytes as f64),
        if bw.direct {
            "O_DIRECT"
        } else {
            "**buffered: O_DIRECT unsupported, page-cache numbers**"
        },
        bw.bytes_per_s / 1e6,
        bw.best_piece_bytes >> 20,
        passes.join("; "),
    );
    md += &format!(
        "## Cold page-in\n\n`Store::read_blob` (one paged read + CRC check) of {} adapters in random order on a freshly opened store, {}. Goal: p99 ≤ 1.25 × mean bytes / {:.0} MB/s + 2 ms.\n\n| blob size | n | mean | read p50 | read p99 | goal | p99 ≤ goal | reads over own goal | decode p50 / p99 |\n|---|---:|---:|---:|---:|---:|:-:|---:|---:|\n",
        cold.overall.n,
        if cold.direct {
            "O_DIRECT (never served from the page cache; a virtual disk may still cache on the host)"
        } else {
            "**buffered (O_DIRECT unsupported): page-cache warm numbers**"
        },
        bw.bytes_per_s / 1e6,
    );
    for b in cold.buckets.iter().chain(std::iter::once(&cold.overall)) {
        md += &format!(
            "| {} | {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {} | {} | {:.2} / {:.2} ms |\n",
            b.label,
            b.n,
            human(b.mean_bytes),
            b.read_p50_ms,
            b.read_p99_ms,
            b.goal_ms,
            if b.pass { "✅" } else { "❌" },
            b.over_own_goal,
            b.decode_p50_ms,
            b.decode_p99_ms,
        );
    }
    md += &format!(
        "\nDecode (bf16 → f32, shape checks; the first decode of a blob in a process also recomputes its content hash) is CPU work, timed separately from the read. Effective read throughput {:.0} MB/s (bytes read / time in `read_blob`){}.\n\n",
        cold.effective_mb_per_s,
        if cold.effective_mb_per_s > bw.bytes_per_s / 1e6 {
            ": above the sequential figure, so some reads came from a cache below the guest \
             (e.g. a virtual disk's host cache) or the sequential pass was noisy"
        } else {
            ""
        }
    );
    md += &format!(
        "## Host tier\n\n`AdapterManager::acquire` of {} adapters, all in the host cache (unlimited budget), device budget {} ({} largest adapters):\n\n| case | n | p50 | p99 |\n|---|---:|---:|---:|\n",
        host.adapters,
        human(host.device_budget as f64),
        host.device_budget_adapters
    );
    for l in [&host.host_hit_first_decode, &host.host_hit, &host.device_hit] {
        md += &format!("| {} | {} | {} | {} |\n", l.label, l.n, fmt_ms(l.p50_ms), fmt_ms(l.p99_ms));
    }
    md += &format!(
        "\n## Serving\n\n{} requests over {} distinct adapters, Zipf s = {}, {} fixed prompts, greedy {} tokens, {} client threads (acquire → submit → release → wait), device budget {}; f32 model on CPU.\n\n| run | host budget | tokens/s | requests/s | seconds | page-ins | disk read | host hits / misses / evictions | device hits / misses / evictions / drains | tier at acquire (device / host / disk) | acquire p50 / p99 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        args.requests,
        args.distinct,
        args.zipf,
        serve::PROMPTS.len(),
        args.max_tokens,
        args.workers,
        human(serving.device_budget as f64),
    );
    for r in [&serving.a, &serving.b] {
        md += &format!(
            "| {} | {} | {:.1} | {:.2} | {:.2} | {} | {} | {} / {} / {} | {} / {} / {} / {} | {} / {} / {} | {:.2} / {:.2} ms |\n",
            r.label,
            if r.host_budget >= serve::UNLIMITED {
                "unlimited".to_string()
            } else {
                human(r.host_budget as f64)
            },
            r.tokens_per_s,
            r.requests_per_s,
            r.secs,
            r.page_ins,
            human(r.disk_bytes_read as f64),
            r.host.hits,
            r.host.misses,
            r.host.evictions,
            r.device.hits,
            r.device.misses,
            r.device.evictions,
            r.device.drains,
            r.tier_at_acquire[0],
            r.tier_at_acquire[1],
            r.tier_at_acquire[2],
            r.acquire_p50_ms,
            r.acquire_p99_ms,
        );
    }
    md += &format!(
        "\n**a/b = {:.3}** (tokens/s with a 10 % host budget over unlimited). The distinct adapters hold {} of blobs. Device hits count the engine's own lookups at submit too; \"tier at acquire\" is where each request found its adapter.\n",
        serving.a_over_b,
        human(serving.distinct_bytes as f64),
    );
    md
}

/// Writes `<out>/<name>-latency.png`: cold page-in p50, p99 and the goal vs mean blob size.
fn plot_latency(out: &Path, name: &str, cold: &latency::ColdPageIn) -> Option<PathBuf> {
    let kib = |b: &latency::Bucket| b.mean_bytes / 1024.0;
    let series = vec![
        ("read p50".to_string(), cold.buckets.iter().map(|b| (kib(b), b.read_p50_ms)).collect()),
        ("read p99".to_string(), cold.buckets.iter().map(|b| (kib(b), b.read_p99_ms)).collect()),
        (
            "goal (1.25 × bytes/bw + 2 ms)".to_string(),
            cold.buckets.iter().map(|b| (kib(b), b.goal_ms)).collect(),
        ),
        (
            "decode p50".to_string(),
            cold.buckets.iter().map(|b| (kib(b), b.decode_p50_ms)).collect(),
        ),
    ];
    let path = out.join(format!("{name}-latency.png"));
    let title = format!("cold page-in ({} samples) vs blob size", cold.overall.n);
    chart(&path, |p| crate::plot::line_chart(p, &title, "mean blob size (KiB)", "ms", &series))
}

/// Writes `<out>/<name>-serving.png`: tokens/s and requests/s of runs a and b.
fn plot_serving(out: &Path, name: &str, s: &serve::Serving) -> Option<PathBuf> {
    let bars = |f: fn(&serve::ServeRun) -> f64| {
        vec![(s.a.label.clone(), f(&s.a)), (s.b.label.clone(), f(&s.b))]
    };
    let groups = vec![
        ("tokens/s".to_string(), bars(|r| r.tokens_per_s)),
        ("requests/s".to_string(), bars(|r| r.requests_per_s)),
    ];
    let path = out.join(format!("{name}-serving.png"));
    let title = format!(
        "serving {} requests over {} adapters | a/b = {:.3}",
        s.requests, s.distinct, s.a_over_b
    );
    chart(&path, |p| crate::plot::bar_chart(p, &title, "per second", &groups))
}

/// Runs `draw` into `path`; a chart never fails the benchmark (a warning instead).
fn chart(path: &Path, draw: impl FnOnce(&Path) -> anyhow::Result<()>) -> Option<PathBuf> {
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .map_err(anyhow::Error::from)
        .and_then(|()| draw(path));
    match written {
        Ok(()) => {
            eprintln!("chart: {}", path.display());
            Some(path.to_path_buf())
        }
        Err(e) => {
            eprintln!("lorad-bench: warning: no chart: {e:#}");
            None
        }
    }
}

/// A latency in ms, or in µs below 0.1 ms.
fn fmt_ms(ms: f64) -> String {
    if ms < 0.1 { format!("{:.1} µs", ms * 1e3) } else { format!("{ms:.3} ms") }
}

/// Bytes as B / KiB / MiB / GiB.
fn human(bytes: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{v:.0} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

pub(super) use crate::stats::percentile;

/// `durations` in milliseconds, sorted ascending.
pub(super) fn sorted_ms(durations: &[Duration]) -> Vec<f64> {
    let mut ms: Vec<f64> = durations.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    ms
}

/// A progress bar over `n` steps labelled `what`.
pub(super) fn progress(n: usize, what: &str) -> ProgressBar {
    crate::scratch::progress(n as u64, what)
}
