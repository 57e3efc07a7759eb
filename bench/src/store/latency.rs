//! Steps 3–5: the disk's sequential O_DIRECT bandwidth, cold page-in latency per blob size,
//! host-tier and device hit latency.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use lorad_engine::{AdapterManager, EngineConfig, EngineHandle, ResidencyConfig, Tier};
use lorad_model::LoadedModel;
use lorad_store::paging::{Pager, open_direct};
use lorad_store::{BaseShape, StoredInfo};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{StoreArgs, StoreSpot, percentile, progress, sorted_ms};

/// Piece sizes the bandwidth file is read in (each piece one `Pager::read`, which allocates and
/// zeroes its buffer, then splits it into `CHUNK_BYTES` requests in flight together): the best
/// of them is the bandwidth, so the goal is as strict as the pager allows.
const PIECE_BYTES: [usize; 3] = [4 << 20, 16 << 20, 64 << 20];
/// A segment smaller than this is too short to measure bandwidth on: a file is written instead.
const MIN_SEGMENT_BYTES: u64 = 64 << 20;
/// Size of that file.
const SCRATCH_FILE_BYTES: usize = 256 << 20;
/// Full passes over the file per piece size; the best counts.
const PASSES: usize = 2;
/// Salts separating the seeded samples of the steps.
const COLD_SALT: u64 = 0xC01D;
const HOST_SALT: u64 = 0x4057;

/// Sequential read bandwidth of the store's disk.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Bandwidth {
    /// What was read: the largest segment, or a scratch file.
    pub(super) source: String,
    /// Its file name.
    pub(super) file_name: String,
    /// Bytes read per pass.
    pub(super) file_bytes: u64,
    /// Whether the file was opened O_DIRECT.
    pub(super) direct: bool,
    /// MB/s (10^6) of each pass, by bytes per `Pager::read`.
    pub(super) passes_mb_per_s: Vec<(usize, Vec<f64>)>,
    /// Bytes per `Pager::read` of the best pass.
    pub(super) best_piece_bytes: usize,
    /// Best pass, bytes/s.
    pub(super) bytes_per_s: f64,
}

/// Step 3: reads the largest segment (or, if it is small, a freshly written 256 MiB file in the
/// scratch directory) start to end with the store's pager, `PASSES` times.
pub(super) fn sequential_bandwidth(spot: &StoreSpot, scratch: &Path) -> anyhow::Result<Bandwidth> {
    let segments = spot.root.join("segments");
    let mut largest: Option<(u64, std::path::PathBuf)> = None;
    for e in
        std::fs::read_dir(&segments).with_context(|| format!("listing {}", segments.display()))?
    {
        let e = e?;
        let len = e.metadata()?.len();
        if largest.as_ref().is_none_or(|(l, _)| len > *l) {
            largest = Some((len, e.path()));
        }
    }
    let (source, path, temporary) = match largest {
        Some((len, path)) if len >= MIN_SEGMENT_BYTES => {
            ("largest segment".to_string(), path, false)
        }
        _ => {
            let path = scratch.join("bandwidth.bin");
            write_scratch_file(&path, SCRATCH_FILE_BYTES)?;
            ("scratch file (segments too small)".to_string(), path, true)
        }
    };
    let (file, direct) = open_direct(&path)?;
    let len = file.metadata()?.len() / 4096 * 4096;
    let pager = Pager::new(spot.cfg.io_mode, spot.cfg.queue_depth)?;
    let mut passes = Vec::with_capacity(PIECE_BYTES.len());
    let (mut best, mut best_piece) = (0.0, 0);
    for piece in PIECE_BYTES {
        let mut rates = Vec::with_capacity(PASSES);
        for _ in 0..PASSES {
            let t = Instant::now();
            let mut off = 0u64;
            while off < len {
                let n = (len - off).min(piece as u64) as usize;
                let buf = pager.read(&file, &path, off, n)?;
                ensure!(buf.len() == n, "short read of {}", path.display());
                off += n as u64;
            }
            let rate = len as f64 / t.elapsed().as_secs_f64();
            if rate > best {
                (best, best_piece) = (rate, piece);
            }
            rates.push(rate / 1e6);
        }
        passes.push((piece, rates));
    }
    drop(file);
    if temporary {
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(Bandwidth {
        source,
        file_name: path.file_name().unwrap_or_default().to_string_lossy().into_owned(),
        file_bytes: len,
        direct,
        passes_mb_per_s: passes,
        best_piece_bytes: best_piece,
        bytes_per_s: best,
    })
}

/// Writes `bytes` of incompressible bytes to `path` and fsyncs it.
fn write_scratch_file(path: &Path, bytes: usize) -> anyhow::Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut chunk = vec![0u8; 1 << 20];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..bytes / chunk.len() {
        for b in chunk.chunks_mut(8) {
            // xorshift64: cheap bytes no filesystem or disk can compress away.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
        }
        f.write_all(&chunk)?;
    }
    f.sync_all().with_context(|| format!("syncing {}", path.display()))?;
    Ok(())
}

/// Cold page-in figures of one blob-size bucket.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Bucket {
    /// Size range.
    pub(super) label: String,
    /// Reads in it.
    pub(super) n: usize,
    /// Mean blob bytes.
    pub(super) mean_bytes: f64,
    /// `read_blob` latency, median.
    pub(super) read_p50_ms: f64,
    /// `read_blob` latency, 99th percentile.
    pub(super) read_p99_ms: f64,
    /// `1.25 × mean_bytes / bandwidth + 2 ms`.
    pub(super) goal_ms: f64,
    /// `read_p99_ms ≤ goal_ms`.
    pub(super) pass: bool,
    /// Reads slower than `1.25 × their own bytes / bandwidth + 2 ms`.
    pub(super) over_own_goal: usize,
    /// `Store::decode` time, median.
    pub(super) decode_p50_ms: f64,
    /// `Store::decode` time, 99th percentile.
    pub(super) decode_p99_ms: f64,
}

/// Step 4's figures.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ColdPageIn {
    /// Whether the segments are read O_DIRECT (else the numbers are page-cache warm).
    pub(super) direct: bool,
    /// By size quantile, smallest first.
    pub(super) buckets: Vec<Bucket>,
    /// All reads together.
    pub(super) overall: Bucket,
    /// Bytes read / time spent in `read_blob`, MB/s.
    pub(super) effective_mb_per_s: f64,
}

/// One timed read.
#[derive(Debug, Clone, Copy)]
struct Read {
    bytes: u64,
    read: Duration,
    decode: Duration,
}

/// Step 4: times `read_blob` (and, separately, `decode`) of a seeded sample of adapters in random
/// order on a freshly opened store; groups the reads into blob-size quantiles.
pub(super) fn cold_page_in(
    spot: &StoreSpot,
    base: &BaseShape,
    infos: &[StoredInfo],
    bytes_per_s: f64,
    args: &StoreArgs,
) -> anyhow::Result<ColdPageIn> {
    let store = spot.open()?;
    let direct = match infos.first() {
        Some(i) => open_direct(&store.location(&i.name)?.path)?.1,
        None => false,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ COLD_SALT);
    let n = args.sample.min(infos.len()).max(1);
    let sample = rand::seq::index::sample(&mut rng, infos.len(), n);
    let bar = progress(n, "cold page-in");
    let mut reads = Vec::with_capacity(n);
    for i in sample {
        let name = &infos[i].name;
        let t = Instant::now();
        let blob = store.read_blob(name).with_context(|| format!("reading {name}"))?;
        let read = t.elapsed();
        let t = Instant::now();
        let adapter = store.decode(&blob, base).with_context(|| format!("decoding {name}"))?;
        let decode = t.elapsed();
        ensure!(!adapter.weights.is_empty(), "{name} decoded to no weights");
        reads.push(Read { bytes: blob.len() as u64, read, decode });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let total_bytes: u64 = reads.iter().map(|r| r.bytes).sum();
    let total_read: f64 = reads.iter().map(|r| r.read.as_secs_f64()).sum();
    reads.sort_by_key(|r| r.bytes);
    let goal = |bytes: f64| 1.25 * bytes / bytes_per_s * 1e3 + 2.0;
    let bucket = |label: String, rs: &[Read]| {
        let mean = rs.iter().map(|r| r.bytes as f64).sum::<f64>() / rs.len().max(1) as f64;
        let read = sorted_ms(&rs.iter().map(|r| r.read).collect::<Vec<_>>());
        let decode = sorted_ms(&rs.iter().map(|r| r.decode).collect::<Vec<_>>());
        let p99 = percentile(&read, 0.99);
        Bucket {
            label,
            n: rs.len(),
            mean_bytes: mean,
            read_p50_ms: percentile(&read, 0.5),
            read_p99_ms: p99,
            goal_ms: goal(mean),
            pass: p99 <= goal(mean),
            over_own_goal: rs
                .iter()
                .filter(|r| r.read.as_secs_f64() * 1e3 > goal(r.bytes as f64))
                .count(),
            decode_p50_ms: percentile(&decode, 0.5),
            decode_p99_ms: percentile(&decode, 0.99),
        }
    };
    // About 80 reads per bucket (so p99 means something), at most 6 buckets.
    let nb = (reads.len() / 80).clamp(1, 6);
    let buckets = (0..nb)
        .map(|k| {
            let rs = &reads[k * reads.len() / nb..(k + 1) * reads.len() / nb];
            let (lo, hi) = (rs[0].bytes as f64, rs[rs.len() - 1].bytes as f64);
            bucket(format!("{}–{}", super::human(lo), super::human(hi)), rs)
        })
        .collect();
    Ok(ColdPageIn {
        direct,
        buckets,
        overall: bucket("all".to_string(), &reads),
        effective_mb_per_s: total_bytes as f64 / 1e6 / total_read,
    })
}

/// Latency of one kind of acquire.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Lat {
    /// What was timed.
    pub(super) label: String,
    /// Acquires timed.
    pub(super) n: usize,
    /// Median.
    pub(super) p50_ms: f64,
    /// 99th percentile.
    pub(super) p99_ms: f64,
}

impl Lat {
    fn new(label: &str, times: &[Duration]) -> Lat {
        let ms = sorted_ms(times);
        Lat {
            label: label.to_string(),
            n: ms.len(),
            p50_ms: percentile(&ms, 0.5),
            p99_ms: percentile(&ms, 0.99),
        }
    }
}

/// Step 5's figures.
#[derive(Debug, Clone, Serialize)]
pub(super) struct HostTier {
    /// Adapters cycled through.
    pub(super) adapters: usize,
    /// Device working-set budget.
    pub(super) device_budget: u64,
    /// How many of the largest sampled adapters (in f32) it holds.
    pub(super) device_budget_adapters: usize,
    /// Host hits, first decode of each blob in the process (includes the content-hash check).
    pub(super) host_hit_first_decode: Lat,
    /// Host hits, later decodes (steady state: bf16 → f32 + upload).
    pub(super) host_hit: Lat,
    /// Device hits.
    pub(super) device_hit: Lat,
}

/// Device budget holding this many of the largest sampled adapters.
const HOST_STEP_DEVICE_ADAPTERS: usize = 4;

/// Step 5: with every sampled adapter prefetched into an unlimited host cache and a device budget
/// of a few adapters, acquires each (a host hit: decode + upload) in two rounds, and right after
/// each acquire of the second round acquires it again (a device hit).
pub(super) fn host_tier(
    spot: &StoreSpot,
    model: LoadedModel,
    infos: &[StoredInfo],
    args: &StoreArgs,
) -> anyhow::Result<HostTier> {
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ HOST_SALT);
    let n = args.host_sample.min(infos.len()).max(1);
    let picked: Vec<&StoredInfo> =
        rand::seq::index::sample(&mut rng, infos.len(), n).into_iter().map(|i| &infos[i]).collect();
    let names: Vec<&str> = picked.iter().map(|i| i.name.as_str()).collect();
    let largest = picked.iter().map(|i| i.bytes).max().unwrap_or(1);
    // Resident f32 weights are about twice the bf16 blob.
    let device_budget = HOST_STEP_DEVICE_ADAPTERS as u64 * 2 * largest;
    let cfg = EngineConfig {
        adapter_pool_bytes: device_budget,
        max_batch_size: 4,
        kv_cache_tokens: 256,
        ..EngineConfig::default()
    };
    let engine = EngineHandle::start(model, cfg)?;
    let result = (|| {
        let store = Arc::new(spot.open()?);
        let host_bytes: u64 = picked.iter().map(|i| i.bytes).sum::<u64>() * 2;
        let rcfg =
            ResidencyConfig { host_cache_bytes: host_bytes.max(1), ..ResidencyConfig::default() };
        let manager = AdapterManager::new(store, engine.clone(), rcfg)?;
        let bar = progress(3 * n, "host tier");
        for &nm in &names {
            manager.prefetch(nm)?;
            bar.inc(1);
        }
        let (mut first, mut host, mut device) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..2 {
            for &nm in &names {
                let tier = manager.tier_of(nm);
                let t = Instant::now();
                let lease = manager.acquire(nm)?;
                let d = t.elapsed();
                match (tier, round) {
                    (Tier::Host, 0) => first.push(d),
                    (Tier::Host, _) => host.push(d),
                    _ => {}
                }
                if round == 1 {
                    ensure!(
                        manager.tier_of(nm) == Tier::Device,
                        "{nm} not on the device after acquire"
                    );
                    let t = Instant::now();
                    let again = manager.acquire(nm)?;
                    device.push(t.elapsed());
                    drop(again);
                }
                drop(lease);
                bar.inc(1);
            }
        }
        bar.finish_and_clear();
        Ok(HostTier {
            adapters: n,
            device_budget,
            device_budget_adapters: HOST_STEP_DEVICE_ADAPTERS,
            host_hit_first_decode: Lat::new(
                "host hit, first decode (+ content-hash check)",
                &first,
            ),
            host_hit: Lat::new("host hit (decode + upload)", &host),
            device_hit: Lat::new("device hit", &device),
        })
    })();
    engine.shutdown();
    result
}
