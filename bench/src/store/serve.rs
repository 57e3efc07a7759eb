//! Step 6: serving throughput with a host budget of 10 % of the adapters' bytes vs unlimited.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use lorad_engine::{
    AdapterManager, EngineConfig, EngineHandle, GenerateRequest, ResidencyConfig, Tier,
};
use lorad_model::LoadedModel;
use lorad_store::StoredInfo;
use lorad_store::tiers::TierStats;
use rand::SeedableRng;
use rand::distr::Distribution;
use rand_chacha::ChaCha8Rng;
use rand_distr::Zipf;
use serde::Serialize;

use super::{StoreArgs, StoreSpot, percentile, progress, sorted_ms};

/// The prompts requests cycle through.
pub(super) const PROMPTS: [&str; 4] = [
    "The history of Rome begins with",
    "def quicksort(xs):",
    "Dear customer, thank you for",
    "The weather tomorrow will be",
];

/// Host budget standing for "unlimited".
pub(super) const UNLIMITED: u64 = 1 << 50;

/// Salt of the serving sample and request sequence.
const SERVE_SALT: u64 = 0x5E7E;

/// One serving run.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ServeRun {
    /// Which run.
    pub(super) label: String,
    /// Host cache budget.
    pub(super) host_budget: u64,
    /// Requests completed.
    pub(super) requests: usize,
    /// Tokens generated.
    pub(super) tokens: usize,
    /// Wall-clock seconds from the first acquire to the last completion.
    pub(super) secs: f64,
    /// `tokens / secs`.
    pub(super) tokens_per_s: f64,
    /// `requests / secs`.
    pub(super) requests_per_s: f64,
    /// Adapters read from disk.
    pub(super) page_ins: u64,
    /// Bytes read from disk by page-ins.
    pub(super) disk_bytes_read: u64,
    /// Host tier counters.
    pub(super) host: TierStats,
    /// Device tier counters (the engine's lookups at submit count as hits too).
    pub(super) device: TierStats,
    /// Where each request found its adapter when it asked: device, host, disk.
    pub(super) tier_at_acquire: [usize; 3],
    /// `acquire` latency, median.
    pub(super) acquire_p50_ms: f64,
    /// `acquire` latency, 99th percentile.
    pub(super) acquire_p99_ms: f64,
}

/// Step 6's figures.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Serving {
    /// Requests per run.
    pub(super) requests: usize,
    /// Distinct adapters drawn from.
    pub(super) distinct: usize,
    /// Of those, how many the request sequence uses.
    pub(super) distinct_requested: usize,
    /// Zipf exponent.
    pub(super) zipf: f64,
    /// Blob bytes of the distinct adapters.
    pub(super) distinct_bytes: u64,
    /// Device budget of both runs.
    pub(super) device_budget: u64,
    /// Host budget 10 % of `distinct_bytes`.
    pub(super) a: ServeRun,
    /// Unlimited host budget.
    pub(super) b: ServeRun,
    /// `a.tokens_per_s / b.tokens_per_s`.
    pub(super) a_over_b: f64,
}

/// Runs a (10 % host budget) then b (unlimited) on the same request sequence, each with its own
/// freshly loaded model, engine and freshly opened store (so no blob is verified yet).
pub(super) fn run(
    spot: &StoreSpot,
    load: &dyn Fn() -> anyhow::Result<LoadedModel>,
    infos: &[StoredInfo],
    args: &StoreArgs,
) -> anyhow::Result<Serving> {
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ SERVE_SALT);
    let chosen: Vec<&StoredInfo> = rand::seq::index::sample(&mut rng, infos.len(), args.distinct)
        .into_iter()
        .map(|i| &infos[i])
        .collect();
    let zipf = Zipf::new(args.distinct as f64, args.zipf).map_err(|e| anyhow!("--zipf: {e}"))?;
    // Zipf rank k (1 = most popular) is chosen[k - 1]: the sample is already in random order.
    let sequence: Vec<usize> = (0..args.requests)
        .map(|_| (zipf.sample(&mut rng) as usize).clamp(1, args.distinct) - 1)
        .collect();
    let distinct_bytes: u64 = chosen.iter().map(|i| i.bytes).sum();
    let mean = distinct_bytes as f64 / chosen.len() as f64;
    let largest = chosen.iter().map(|i| i.bytes).max().unwrap_or(1);
    // `device_adapters` average adapters in f32 (2× the bf16 blob), at least the largest one.
    // Fewer than the workers hold makes busy adapters drain for waiting ones.
    let device_budget = ((args.device_adapters as f64 * 2.0 * mean) as u64).max(2 * largest);
    let names: Vec<String> = chosen.iter().map(|i| i.name.clone()).collect();
    let setup = Setup { spot, names: &names, sequence: &sequence, device_budget, args };
    let a = setup.run_one("a: host 10 %", (distinct_bytes / 10).max(1), load()?)?;
    let b = setup.run_one("b: host unlimited", UNLIMITED, load()?)?;
    Ok(Serving {
        requests: args.requests,
        distinct: args.distinct,
        distinct_requested: sequence.iter().collect::<HashSet<_>>().len(),
        zipf: args.zipf,
        distinct_bytes,
        device_budget,
        a_over_b: a.tokens_per_s / b.tokens_per_s,
        a,
        b,
    })
}

/// What both runs share.
struct Setup<'a> {
    spot: &'a StoreSpot,
    names: &'a [String],
    sequence: &'a [usize],
    device_budget: u64,
    args: &'a StoreArgs,
}

/// One worker's tallies.
#[derive(Default)]
struct Tally {
    tokens: usize,
    requests: usize,
    tiers: [usize; 3],
    acquire: Vec<Duration>,
}

impl Setup<'_> {
    fn run_one(
        &self,
        label: &str,
        host_budget: u64,
        model: LoadedModel,
    ) -> anyhow::Result<ServeRun> {
        let args = self.args;
        let prompts: Vec<Vec<u32>> =
            PROMPTS.iter().map(|p| model.tokenizer.encode(p)).collect::<Result<_, _>>()?;
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(1);
        let cfg = EngineConfig {
            adapter_pool_bytes: self.device_budget,
            max_batch_size: args.workers,
            kv_cache_tokens: (args.workers * (longest + args.max_tokens + 32)).max(1024),
            ..EngineConfig::default()
        };
        let engine = EngineHandle::start(model, cfg)?;
        let result = self.drive(label, host_budget, &engine, &prompts);
        engine.shutdown();
        result
    }

    fn drive(
        &self,
        label: &str,
        host_budget: u64,
        engine: &EngineHandle,
        prompts: &[Vec<u32>],
    ) -> anyhow::Result<ServeRun> {
        let args = self.args;
        // Warm-up on the base model (first-touch page faults, thread pools).
        engine.submit(GenerateRequest::greedy(prompts[0].clone(), 2))?.collect_blocking()?;
        let store = Arc::new(self.spot.open()?);
        let rcfg = ResidencyConfig { host_cache_bytes: host_budget, ..ResidencyConfig::default() };
        let manager = AdapterManager::new(store, engine.clone(), rcfg)?;
        let next = AtomicUsize::new(0);
        let bar = progress(self.sequence.len(), label);
        let start = Instant::now();
        let tallies: Vec<Tally> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..args.workers)
                .map(|_| {
                    s.spawn(|| -> anyhow::Result<Tally> {
                        let mut t = Tally::default();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(&k) = self.sequence.get(i) else { break };
                            let name = &self.names[k];
                            t.tiers[match manager.tier_of(name) {
                                Tier::Device => 0,
                                Tier::Host => 1,
                                Tier::Disk => 2,
                            }] += 1;
                            let asked = Instant::now();
                            let lease = manager
                                .acquire(name)
                                .with_context(|| format!("acquiring {name}"))?;
                            t.acquire.push(asked.elapsed());
                            let req = GenerateRequest {
                                adapter: Some(name.clone()),
                                ignore_eos: true,
                                ..GenerateRequest::greedy(
                                    prompts[i % prompts.len()].clone(),
                                    args.max_tokens,
                                )
                            };
                            let stream = engine.submit(req)?;
                            drop(lease);
                            t.tokens += stream.collect_blocking()?.usage.completion_tokens;
                            t.requests += 1;
                            bar.inc(1);
                        }
                        Ok(t)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().map_err(|_| anyhow!("a serving worker panicked"))?)
                .collect::<anyhow::Result<Vec<_>>>()
        })?;
        let secs = start.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let stats = manager.stats();
        let (tokens, requests) =
            tallies.iter().fold((0, 0), |(t, r), x| (t + x.tokens, r + x.requests));
        let mut tiers = [0; 3];
        for x in &tallies {
            for (acc, v) in tiers.iter_mut().zip(x.tiers) {
                *acc += v;
            }
        }
        let acquire: Vec<Duration> =
            tallies.iter().flat_map(|x| x.acquire.iter().copied()).collect();
        let ms = sorted_ms(&acquire);
        Ok(ServeRun {
            label: label.to_string(),
            host_budget,
            requests,
            tokens,
            secs,
            tokens_per_s: tokens as f64 / secs,
            requests_per_s: requests as f64 / secs,
            page_ins: stats.page_ins,
            disk_bytes_read: stats.disk_bytes_read,
            host: stats.host,
            device: stats.device,
            tier_at_acquire: tiers,
            acquire_p50_ms: percentile(&ms, 0.5),
            acquire_p99_ms: percentile(&ms, 0.99),
        })
    }
}
