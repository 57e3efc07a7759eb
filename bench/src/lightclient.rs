//! `lorad-bench lightclient`: the embedded light client over real mainnet data, measured in one
//! run (fixtures: `shared/fixtures/lightclient`, see its `a16z-helios/README.md`):
//!
//! 1. **bootstrap → finality**: [`replay`] of helios' saved Capella responses (bootstrap at
//!    slot 7069376, 6 sync-committee updates over periods 862–867, a finality and an optimistic
//!    update) from the trusted checkpoint, BLS included, `--reps` times, each from scratch (JSON
//!    parsed and committee keys decompressed again); the finalized and optimistic execution
//!    blocks must be 17923026 and 17923113 or the bench fails. p50 / p99 / min against the goal
//!    ≤ 2 s. Measured once more piece by piece: JSON parsing of the four files, decompressing
//!    the bootstrap committee's 512 keys, `LightClientStore::bootstrap`, and
//!    `LightClientStore::verify_update` of the first update with the keys warm;
//! 2. **storage proofs**: `verify_eip1186` of the real `eth_getProof` responses of mainnet block
//!    21925176 (`proof.json`: deposit contract + one storage slot; `block_miner_proof.json`: the
//!    fee recipient, account only), parsed once and verified `--proof-iters` times each: µs per
//!    call (p50 / p99) against the goal ≤ 100 µs, plus µs per storage slot for `proof.json`;
//! 3. **peak RSS** of the process (`VmHWM`) at the end.
//!
//! Speed goals are reported (measured / goal, met or missed), never enforced; a failed
//! verification or a wrong block number fails the bench. Writes `<out>/<name>.{json,md}` and
//! `<out>/<name>.png` (p50 and p99 as % of each goal).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alloy_primitives::{B256, b256};
use anyhow::{Context, bail};
use clap::Args;
use lorad_lightclient::consensus::bls::CommitteeKeys;
use lorad_lightclient::consensus::{
    LightClientStore, NetworkConfig, Preset, parse_bootstrap_json, parse_finality_update_json,
    parse_optimistic_update_json, parse_updates_json,
};
use lorad_lightclient::replay::{SavedChain, replay};
use lorad_lightclient::{parse_eip1186_response, verify_eip1186, verify_storage_proofs};

use crate::scratch::progress;
use crate::stats::{peak_rss, percentile};

/// Goal of a full bootstrap → finality replay, BLS included.
const REPLAY_GOAL_MS: f64 = 2000.0;
/// Goal of one `verify_eip1186` call.
const PROOF_GOAL_US: f64 = 100.0;

/// The weak-subjectivity checkpoint of helios' mainnet fixtures.
const CHECKPOINT: B256 =
    b256!("0x5afc212a7924789b2bc86acad3ab3a6ffb1f6e97253ea50bee7f4f51422c9275");
/// Verified finalized execution block after the replay.
const EXPECTED_FINALIZED: u64 = 17_923_026;
/// Verified optimistic execution block after the replay.
const EXPECTED_OPTIMISTIC: u64 = 17_923_113;
/// The clock slot for `verify_update` (the optimistic update's signature slot).
const CURRENT_SLOT: u64 = 7_109_432;
/// State root of mainnet block 21925176, which the `eth_getProof` fixtures verify against.
const PROOF_STATE_ROOT: B256 =
    b256!("0x7b3d5a01f69b7d2ea7479fd7ae35f4bac2700ab6d6d7b4807a7fedf53ced710e");
/// The `eth_getProof` fixtures, under `a16z-helios/tests/testdata/rpc/`.
const PROOF_FILES: [&str; 2] = ["proof.json", "block_miner_proof.json"];

/// Options of `lorad-bench lightclient`.
#[derive(Debug, Args)]
pub(crate) struct LightclientArgs {
    /// Light-client fixtures directory (default: `../shared/fixtures/lightclient` from the
    /// current directory, else the one next to the source checkout).
    #[arg(long, env = "LORAD_LIGHTCLIENT_FIXTURES")]
    fixtures: Option<PathBuf>,
    /// Full bootstrap → finality replays timed, each from scratch.
    #[arg(long, default_value_t = 20)]
    reps: usize,
    /// `verify_eip1186` calls timed per proof file.
    #[arg(long, default_value_t = 2000)]
    proof_iters: usize,
    /// `verify_update` calls timed with the committee keys warm.
    #[arg(long, default_value_t = 20)]
    update_iters: usize,
}

/// p50 / p99 / min / mean of a set of timings, in the unit of `unit`.
#[derive(Debug, serde::Serialize)]
struct Stats {
    unit: &'static str,
    n: usize,
    p50: f64,
    p99: f64,
    min: f64,
    mean: f64,
    max: f64,
}

impl Stats {
    /// Summarises `times` in milliseconds (`scale` 1e3) or microseconds (`scale` 1e6).
    fn new(times: &[Duration], unit: &'static str, scale: f64) -> Stats {
        let mut v: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * scale).collect();
        v.sort_by(f64::total_cmp);
        Stats {
            unit,
            n: v.len(),
            p50: percentile(&v, 0.5),
            p99: percentile(&v, 0.99),
            min: v.first().copied().unwrap_or(0.0),
            mean: v.iter().sum::<f64>() / v.len().max(1) as f64,
            max: v.last().copied().unwrap_or(0.0),
        }
    }
}

/// The full replays.
#[derive(Debug, serde::Serialize)]
struct ReplayResult {
    /// Verified steps per replay (bootstrap + updates + finality + optimistic).
    steps: usize,
    /// The first replay alone (cold caches), ms.
    first_ms: f64,
    ms: Stats,
    /// Verified finalized execution block and its beacon slot.
    finalized_block: u64,
    finalized_slot: u64,
    /// Verified optimistic execution block and its beacon slot.
    optimistic_block: u64,
    optimistic_slot: u64,
    /// The final heads as the replay reports them.
    finalized: serde_json::Value,
    optimistic: serde_json::Value,
}

/// One replay taken apart.
#[derive(Debug, serde::Serialize)]
struct Breakdown {
    parse_bootstrap_ms: f64,
    parse_updates_ms: f64,
    parse_finality_ms: f64,
    parse_optimistic_ms: f64,
    parse_total_ms: f64,
    /// Updates in `updates.json`.
    updates: usize,
    /// `CommitteeKeys::new` of the bootstrap committee.
    committee_keys_ms: f64,
    committee_members: usize,
    /// `LightClientStore::bootstrap` (checkpoint root + committee branch).
    store_bootstrap_ms: f64,
    /// First `verify_update` (keys decompressed inside, lazily).
    verify_update_cold_ms: f64,
    /// Later `verify_update` calls, keys warm.
    verify_update_warm_ms: Stats,
}

/// `verify_eip1186` of one `eth_getProof` response.
#[derive(Debug, serde::Serialize)]
struct ProofResult {
    file: &'static str,
    address: String,
    account_proof_nodes: usize,
    storage_slots: usize,
    /// Per `verify_eip1186` call (account + every storage slot).
    per_call_us: Stats,
    /// `per_call_us.p50` / storage slots (account proof included), when there are slots.
    per_slot_incl_account_us: Option<f64>,
    /// `verify_storage_proofs` alone against the proven storage root, p50 per slot.
    per_slot_storage_only_us: Option<f64>,
}

/// One goal, measured.
#[derive(Debug, serde::Serialize)]
struct Goal {
    what: String,
    unit: &'static str,
    goal: f64,
    p50: f64,
    p99: f64,
    /// `p50 / goal`.
    ratio: f64,
    /// `p50 ≤ goal`.
    met: bool,
}

impl Goal {
    fn new(what: String, unit: &'static str, goal: f64, s: &Stats) -> Goal {
        Goal { what, unit, goal, p50: s.p50, p99: s.p99, ratio: s.p50 / goal, met: s.p50 <= goal }
    }
}

pub(crate) fn run(out: &Path, args: &LightclientArgs) -> anyhow::Result<()> {
    if args.reps == 0 || args.proof_iters == 0 || args.update_iters == 0 {
        bail!("--reps, --proof-iters and --update-iters must be at least 1");
    }
    let fixtures = fixtures_dir(args.fixtures.as_deref())?;
    let fixtures = std::fs::canonicalize(&fixtures).unwrap_or(fixtures);
    eprintln!("light-client fixtures at {}", fixtures.display());
    let cfg = NetworkConfig::mainnet();
    let chain_dir = fixtures.join("a16z-helios/ethereum/testdata");
    let saved = SavedChain::read_dir(&chain_dir)
        .with_context(|| format!("reading the saved chain in {}", chain_dir.display()))?;

    let replays = time_replays(&cfg, &saved, args.reps)?;
    let breakdown = breakdown(&cfg, &saved, args.update_iters)?;
    let rpc_dir = fixtures.join("a16z-helios/tests/testdata/rpc");
    let proofs = PROOF_FILES
        .iter()
        .map(|&file| time_proof(&rpc_dir, file, args.proof_iters))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let peak_rss = peak_rss();

    let mut goals =
        vec![Goal::new("bootstrap → finality".to_string(), "ms", REPLAY_GOAL_MS, &replays.ms)];
    for p in &proofs {
        goals.push(Goal::new(
            format!("storage proof {}", p.file),
            "µs",
            PROOF_GOAL_US,
            &p.per_call_us,
        ));
    }

    let name = format!("lightclient-{}r-{}p", args.reps, args.proof_iters);
    let mut md = markdown(args, &fixtures, &replays, &breakdown, &proofs, &goals, peak_rss);
    let png = plot(out, &name, &goals);
    if let Some(p) = &png {
        md += &format!(
            "\n![light client vs goals]({})\n",
            p.file_name().unwrap_or_default().display()
        );
    }
    println!("{md}");
    let json = serde_json::json!({
        "benchmark": "lightclient",
        "machine": crate::report::machine(),
        "profile": crate::report::profile(),
        "args": {
            "reps": args.reps, "proof_iters": args.proof_iters, "update_iters": args.update_iters,
        },
        "fixtures": fixtures.display().to_string(),
        "checkpoint": CHECKPOINT,
        "replay": replays,
        "breakdown": breakdown,
        "proof_state_root": PROOF_STATE_ROOT,
        "proofs": proofs,
        "goals": goals,
        "peak_rss_bytes": peak_rss,
        "plot": png.as_ref().and_then(|p| p.file_name()).map(|f| f.to_string_lossy().into_owned()),
    });
    crate::report::write(out, &name, &json, &md)
}

/// `--fixtures` (or `$LORAD_LIGHTCLIENT_FIXTURES`), else `../shared/fixtures/lightclient` from
/// the current directory, else the one next to this crate's checkout.
fn fixtures_dir(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = given {
        if !dir.is_dir() {
            bail!(
                "light-client fixtures not found at {} (from --fixtures or \
                 LORAD_LIGHTCLIENT_FIXTURES)",
                dir.display()
            );
        }
        return Ok(dir.to_path_buf());
    }
    let relative = PathBuf::from("../shared/fixtures/lightclient");
    let beside_checkout =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/lightclient");
    for dir in [&relative, &beside_checkout] {
        if dir.is_dir() {
            return Ok(dir.clone());
        }
    }
    bail!(
        "light-client fixtures not found at {} nor at {}; pass --fixtures DIR or set \
         LORAD_LIGHTCLIENT_FIXTURES",
        relative.display(),
        beside_checkout.display()
    )
}

/// Full replays from scratch, checking every result.
fn time_replays(
    cfg: &NetworkConfig,
    saved: &SavedChain,
    reps: usize,
) -> anyhow::Result<ReplayResult> {
    let bar = progress(reps as u64, "bootstrap → finality");
    let mut times = Vec::with_capacity(reps);
    let mut last = None;
    for _ in 0..reps {
        let started = Instant::now();
        // No clock (the latest signature slot in the data), no checkpoint-age limit.
        let report = replay(cfg, CHECKPOINT, saved, None, None, |_| {})
            .context("replaying the mainnet light-client fixtures")?;
        times.push(started.elapsed());
        let (fin, opt) =
            (report.finalized.execution_block_number, report.optimistic.execution_block_number);
        if fin != EXPECTED_FINALIZED || opt != EXPECTED_OPTIMISTIC {
            bail!(
                "replay verified finalized block {fin} and optimistic block {opt}, expected \
                 {EXPECTED_FINALIZED} and {EXPECTED_OPTIMISTIC}"
            );
        }
        last = Some(report);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let report = last.context("no replay ran")?;
    let first_ms = times.first().map_or(0.0, |d| d.as_secs_f64() * 1e3);
    Ok(ReplayResult {
        steps: report.steps.len(),
        first_ms,
        ms: Stats::new(&times, "ms", 1e3),
        finalized_block: report.finalized.execution_block_number,
        finalized_slot: report.finalized.slot,
        optimistic_block: report.optimistic.execution_block_number,
        optimistic_slot: report.optimistic.slot,
        finalized: serde_json::to_value(&report.finalized).context("the finalized head")?,
        optimistic: serde_json::to_value(&report.optimistic).context("the optimistic head")?,
    })
}

/// Milliseconds `f` takes, and its result.
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let started = Instant::now();
    let r = f();
    (r, started.elapsed().as_secs_f64() * 1e3)
}

/// One replay's parts, timed separately.
fn breakdown(
    cfg: &NetworkConfig,
    saved: &SavedChain,
    update_iters: usize,
) -> anyhow::Result<Breakdown> {
    let size = Preset::MAINNET.sync_committee_size;
    let (bootstrap, parse_bootstrap_ms) = timed(|| parse_bootstrap_json(&saved.bootstrap, size));
    let (bootstrap, _) = bootstrap.context("parsing bootstrap.json")?;
    let updates_json = saved.updates.as_deref().context("the fixtures have no updates.json")?;
    let (updates, parse_updates_ms) = timed(|| parse_updates_json(updates_json, size));
    let updates = updates.context("parsing updates.json")?;
    let finality_json = saved.finality.as_deref().context("the fixtures have no finality.json")?;
    let (finality, parse_finality_ms) = timed(|| parse_finality_update_json(finality_json, size));
    finality.context("parsing finality.json")?;
    let optimistic_json =
        saved.optimistic.as_deref().context("the fixtures have no optimistic.json")?;
    let (optimistic, parse_optimistic_ms) =
        timed(|| parse_optimistic_update_json(optimistic_json, size));
    optimistic.context("parsing optimistic.json")?;

    let (keys, committee_keys_ms) = timed(|| CommitteeKeys::new(&bootstrap.current_sync_committee));
    let committee_members = keys.context("decompressing the bootstrap committee's keys")?.len();

    let (store, store_bootstrap_ms) =
        timed(|| LightClientStore::bootstrap(cfg, CHECKPOINT, bootstrap));
    let store = store.context("bootstrapping from the checkpoint")?;
    let (first, _) = updates.first().context("updates.json holds no update")?;
    let (cold, verify_update_cold_ms) = timed(|| store.verify_update(cfg, first, CURRENT_SLOT));
    cold.context("verifying the first update")?;
    let mut warm = Vec::with_capacity(update_iters);
    for _ in 0..update_iters {
        let started = Instant::now();
        store
            .verify_update(cfg, black_box(first), CURRENT_SLOT)
            .context("verifying the first update")?;
        warm.push(started.elapsed());
    }
    Ok(Breakdown {
        parse_bootstrap_ms,
        parse_updates_ms,
        parse_finality_ms,
        parse_optimistic_ms,
        parse_total_ms: parse_bootstrap_ms
            + parse_updates_ms
            + parse_finality_ms
            + parse_optimistic_ms,
        updates: updates.len(),
        committee_keys_ms,
        committee_members,
        store_bootstrap_ms,
        verify_update_cold_ms,
        verify_update_warm_ms: Stats::new(&warm, "ms", 1e3),
    })
}

/// Parses `<dir>/<file>` once and times `verify_eip1186` on it `iters` times.
fn time_proof(dir: &Path, file: &'static str, iters: usize) -> anyhow::Result<ProofResult> {
    let path = dir.join(file);
    let json =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let response = parse_eip1186_response(&json)
        .with_context(|| format!("parsing the eth_getProof response {}", path.display()))?;
    let verified = verify_eip1186(PROOF_STATE_ROOT, &response)
        .with_context(|| format!("verifying {} against {PROOF_STATE_ROOT}", path.display()))?;
    let slots = response.storage_proof.len();
    let bar = progress(iters as u64, file);
    let per_call = time_calls(iters, &bar, || {
        verify_eip1186(PROOF_STATE_ROOT, black_box(&response)).map(|_| ())
    })
    .with_context(|| format!("verifying {}", path.display()))?;
    let storage_only = if slots == 0 {
        None
    } else {
        let root = verified.account.storage_root;
        bar.set_message(format!("{file} (storage)"));
        bar.set_position(0);
        let t = time_calls(iters, &bar, || {
            verify_storage_proofs(root, black_box(&response.storage_proof)).map(|_| ())
        })
        .with_context(|| format!("verifying the storage proofs of {}", path.display()))?;
        Some(t.p50 / slots as f64)
    };
    bar.finish_and_clear();
    Ok(ProofResult {
        file,
        address: response.address.to_string(),
        account_proof_nodes: response.account_proof.len(),
        storage_slots: slots,
        per_slot_incl_account_us: (slots > 0).then(|| per_call.p50 / slots as f64),
        per_slot_storage_only_us: storage_only,
        per_call_us: per_call,
    })
}

/// Times `iters` calls of `f` one by one, in µs.
fn time_calls<E>(
    iters: usize,
    bar: &indicatif::ProgressBar,
    mut f: impl FnMut() -> Result<(), E>,
) -> Result<Stats, E> {
    let mut times = Vec::with_capacity(iters);
    for i in 0..iters {
        let started = Instant::now();
        f()?;
        times.push(started.elapsed());
        if i % 256 == 255 {
            bar.inc(256);
        }
    }
    Ok(Stats::new(&times, "µs", 1e6))
}

/// The build profile the numbers come from.
/// The human-readable report (also printed).
fn markdown(
    args: &LightclientArgs,
    fixtures: &Path,
    r: &ReplayResult,
    b: &Breakdown,
    proofs: &[ProofResult],
    goals: &[Goal],
    peak_rss: Option<u64>,
) -> String {
    let mut md = format!(
        "# lorad-bench lightclient\n\nReal mainnet data from {} (helios fixtures); build: {}; \
         single-threaded.\n\n",
        fixtures.display(),
        crate::report::profile(),
    );
    md += "## Goals\n\nmeasured = p50; ratio = measured / goal (≤ 1 meets it).\n\n\
           | what | p50 | p99 | goal | ratio | |\n|---|---:|---:|---:|---:|:-:|\n";
    for g in goals {
        md += &format!(
            "| {} | {:.3} {u} | {:.3} {u} | ≤ {} {u} | {:.3} | {} |\n",
            g.what,
            g.p50,
            g.p99,
            g.goal,
            g.ratio,
            if g.met { "met" } else { "missed" },
            u = g.unit,
        );
    }
    md += &format!(
        "\n## bootstrap → finality\n\n`replay::replay` from checkpoint {CHECKPOINT}: bootstrap + \
         {} updates + finality + optimistic ({} verified steps), from scratch each time (JSON \
         parsed, committee keys decompressed, every sync-aggregate BLS signature checked). \
         Result: finalized execution block **{}** (slot {}), optimistic **{}** (slot {}).\n\n\
         | reps | p50 | p99 | min | mean | first |\n|---:|---:|---:|---:|---:|---:|\n\
         | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |\n\n",
        b.updates,
        r.steps,
        r.finalized_block,
        r.finalized_slot,
        r.optimistic_block,
        r.optimistic_slot,
        r.ms.n,
        r.ms.p50,
        r.ms.p99,
        r.ms.min,
        r.ms.mean,
        r.first_ms,
    );
    md += &format!(
        "Taken apart (once):\n\n| part | time |\n|---|---:|\n\
         | parse bootstrap.json | {:.2} ms |\n| parse updates.json ({} updates) | {:.2} ms |\n\
         | parse finality.json | {:.2} ms |\n| parse optimistic.json | {:.2} ms |\n\
         | **JSON parsing, total** | **{:.2} ms** |\n\
         | decompress + validate {} committee keys (`CommitteeKeys::new`) | {:.2} ms |\n\
         | `LightClientStore::bootstrap` (checkpoint + committee branch) | {:.2} ms |\n\
         | `verify_update`, first update, first call (keys decompressed inside) | {:.2} ms |\n\
         | `verify_update`, first update, keys warm (p50 of {}; p99 {:.2} ms) | {:.2} ms |\n\n",
        b.parse_bootstrap_ms,
        b.updates,
        b.parse_updates_ms,
        b.parse_finality_ms,
        b.parse_optimistic_ms,
        b.parse_total_ms,
        b.committee_members,
        b.committee_keys_ms,
        b.store_bootstrap_ms,
        b.verify_update_cold_ms,
        b.verify_update_warm_ms.n,
        b.verify_update_warm_ms.p99,
        b.verify_update_warm_ms.p50,
    );
    md += &format!(
        "## Storage proofs\n\n`verify_eip1186` against the state root {PROOF_STATE_ROOT} of \
         mainnet block 21925176, each response parsed once, {} calls each.\n\n\
         | file | address | account proof nodes | storage slots | p50 / call | p99 / call | \
         per slot (incl. account) | per slot (storage only) |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
        args.proof_iters
    );
    let us = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.2} µs"));
    for p in proofs {
        md += &format!(
            "| {} | `{}` | {} | {} | {:.2} µs | {:.2} µs | {} | {} |\n",
            p.file,
            p.address,
            p.account_proof_nodes,
            p.storage_slots,
            p.per_call_us.p50,
            p.per_call_us.p99,
            us(p.per_slot_incl_account_us),
            us(p.per_slot_storage_only_us),
        );
    }
    md += "\nper slot (storage only): `verify_storage_proofs` against the account's proven \
           storage root, p50 / slots.\n\n";
    md += &format!(
        "## Memory\n\nPeak RSS (`VmHWM`, the whole process, at the end): {}\n",
        peak_rss
            .map_or("n/a".to_string(), |b| format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)),
    );
    md
}

/// Writes `<out>/<name>.png`: p50 and p99 as % of each goal; a chart never fails the benchmark.
fn plot(out: &Path, name: &str, goals: &[Goal]) -> Option<PathBuf> {
    let groups: Vec<(String, Vec<(String, f64)>)> = goals
        .iter()
        .map(|g| {
            (
                format!("{} (≤ {} {})", g.what, g.goal, g.unit),
                vec![
                    ("p50".to_string(), 100.0 * g.p50 / g.goal),
                    ("p99".to_string(), 100.0 * g.p99 / g.goal),
                    ("goal".to_string(), 100.0),
                ],
            )
        })
        .collect();
    let path = out.join(format!("{name}.png"));
    let title = "light client: time as % of goal (≤ 100 % meets it)";
    let written = std::fs::create_dir_all(out)
        .map_err(anyhow::Error::from)
        .and_then(|()| crate::plot::bar_chart(&path, title, "% of goal", &groups));
    match written {
        Ok(()) => Some(path),
        Err(e) => {
            eprintln!("lorad-bench: warning: no chart: {e:#}");
            None
        }
    }
}
