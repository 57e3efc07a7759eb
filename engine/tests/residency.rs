//! Adapter residency end to end on the real model: 1,000 generated PEFT adapters (ranks 4–16,
//! mixed targets, bf16 on disk) imported into the store, then 200 concurrent requests over 100
//! distinct adapters with a host budget below their total size and a small device budget, so
//! eviction and re-paging happen while requests run. Every answer must equal the answer of the
//! same request served by an engine holding only its adapter.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use candle_core::DType;
use lorad_engine::{
    AdapterManager, EngineConfig, EngineError, EngineHandle, GenerateRequest, ResidencyConfig,
    ResidentAdapter, Tier,
};
use lorad_store::disk::{Store, StoreConfig};
use lorad_store::paging::IoMode;
use lorad_store::{RandomAdapterSpec, TargetModule, TensorDtype};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tempfile::TempDir;

const ADAPTERS: usize = 1000;
const DISTINCT: usize = 100;
const REQUESTS: usize = 200;
const PROMPTS: [&str; 4] =
    ["The history of Rome begins", "def fibonacci(n):", "Dear Sir or Madam,", "Water boils at"];

fn spec(rng: &mut StdRng, num_layers: usize, seed: u64) -> RandomAdapterSpec {
    let rank = rng.random_range(4..=16);
    let mut targets: Vec<TargetModule> =
        TargetModule::ALL.into_iter().filter(|_| rng.random_bool(0.35)).collect();
    if targets.is_empty() {
        targets.push(TargetModule::ALL[rng.random_range(0..7)]);
    }
    // Two adapted layers keep 1,000 adapters small on disk; a large scale keeps them visible.
    let l0 = rng.random_range(0..num_layers);
    let l1 = rng.random_range(0..num_layers);
    RandomAdapterSpec {
        rank,
        alpha: 16.0 * rank as f64,
        targets,
        use_rslora: false,
        layers: Some(vec![l0, l1]),
        seed,
    }
}

fn run(io_mode: IoMode) {
    let Some(model) = common::load() else { return };
    let base = lorad_engine::base_shape(&model.config);
    let base_hash = model.base_hash.clone();
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(
        Store::open(&tmp.path().join("store"), StoreConfig { io_mode, ..StoreConfig::default() })
            .unwrap(),
    );

    // Import 1,000 PEFT directories (written in bf16, as PEFT saves bf16-trained adapters).
    let mut rng = StdRng::seed_from_u64(7);
    let peft = tmp.path().join("peft");
    for i in 0..ADAPTERS {
        let name = format!("ad{i:04}");
        let adapter = lorad_store::random_adapter(
            &name,
            &base,
            &spec(&mut rng, base.num_layers, 1000 + i as u64),
        );
        let dir = peft.join(&name);
        lorad_store::write_peft_dir(&dir, &adapter, TensorDtype::BF16).unwrap();
        store.import_dir(&dir, None, &base, &base_hash).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert_eq!(store.list().len(), ADAPTERS);

    // 200 requests over 100 distinct adapters (every 10th adapter), each asked twice.
    let distinct: Vec<String> = (0..DISTINCT).map(|i| format!("ad{:04}", i * 10)).collect();
    let jobs: Vec<(String, &str)> = (0..REQUESTS)
        .map(|i| (distinct[(i * 37) % DISTINCT].clone(), PROMPTS[i % PROMPTS.len()]))
        .collect();
    let blob_bytes: u64 = distinct.iter().map(|n| store.get(n).unwrap().bytes).sum();

    // Reference: the same request on an engine holding only that adapter.
    let encode = |p: &str| model.tokenizer.encode(p).unwrap();
    let reference = EngineHandle::start(common::load().unwrap(), EngineConfig::default()).unwrap();
    let mut expected: HashMap<(String, &str), Vec<u32>> = HashMap::new();
    for (name, prompt) in &jobs {
        if expected.contains_key(&(name.clone(), *prompt)) {
            continue;
        }
        let adapter = store.load(name, &base).unwrap();
        reference.add_adapter(&adapter).unwrap();
        assert_eq!(reference.adapter_names(), vec![name.clone()], "only its adapter is loaded");
        let req = GenerateRequest {
            adapter: Some(name.clone()),
            ..GenerateRequest::greedy(encode(prompt), 4)
        };
        let out = reference.submit(req).unwrap().collect_blocking().unwrap();
        reference.remove_adapter(name);
        expected.insert((name.clone(), *prompt), out.tokens);
    }
    reference.shutdown();
    let outputs: BTreeSet<&Vec<u32>> = expected.values().collect();
    // Four prompts; far more distinct answers than that means the adapters matter.
    assert!(
        outputs.len() > 3 * PROMPTS.len(),
        "adapters must change answers, got {} distinct",
        outputs.len()
    );

    // The system under test: the device holds ~12 adapters, the host a third of the 100.
    let per_adapter_f32 = blob_bytes * 2 / DISTINCT as u64;
    let engine = EngineHandle::start(
        common::load().unwrap(),
        EngineConfig { adapter_pool_bytes: per_adapter_f32 * 12, ..EngineConfig::default() },
    )
    .unwrap();
    let cfg = ResidencyConfig {
        host_cache_bytes: blob_bytes / 3,
        admit_timeout: Duration::from_secs(120),
    };
    let manager = Arc::new(AdapterManager::new(store.clone(), engine.clone(), cfg).unwrap());
    let jobs = Arc::new(jobs);
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (manager, jobs, engine) = (manager.clone(), jobs.clone(), engine.clone());
            let prompts: Vec<Vec<u32>> = jobs.iter().map(|(_, p)| encode(p)).collect();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for i in (w..jobs.len()).step_by(8) {
                    let name = &jobs[i].0;
                    let lease = manager.acquire(name).unwrap();
                    let req = GenerateRequest {
                        adapter: Some(lease.name.clone()),
                        ..GenerateRequest::greedy(prompts[i].clone(), 4)
                    };
                    let stream = engine.submit(req).unwrap();
                    drop(lease);
                    got.push((i, stream.collect_blocking().unwrap().tokens));
                }
                got
            })
        })
        .collect();
    let mut answered = 0;
    for w in workers {
        for (i, tokens) in w.join().unwrap() {
            let (name, prompt) = &jobs[i];
            assert_eq!(&tokens, &expected[&(name.clone(), *prompt)], "request {i} on {name}");
            answered += 1;
        }
    }
    assert_eq!(answered, REQUESTS);
    let stats = manager.stats();
    assert!(stats.host.evictions > 0, "host tier must evict: {stats:?}");
    assert!(stats.device.evictions > 0, "device tier must evict: {stats:?}");
    assert!(stats.page_ins > DISTINCT as u64, "adapters must be re-paged: {stats:?}");
    assert!(stats.host.bytes <= blob_bytes / 3);
    assert_eq!(manager.tier_of("ad0001"), Tier::Disk);
    engine.shutdown();
}

/// The store's own tests cover both read paths; here the default (io_uring where available).
#[test]
fn thousand_adapters_serve_exactly_under_eviction() {
    run(IoMode::Auto);
}

/// "busy" and "other" in a store, served by an engine whose device budget has room for one of
/// them, not both.
fn room_for_one(admit_timeout: Duration) -> Option<(EngineHandle, Arc<AdapterManager>, TempDir)> {
    let model = common::load()?;
    let base = lorad_engine::base_shape(&model.config);
    let base_hash = model.base_hash.clone();
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&tmp.path().join("store"), StoreConfig::default()).unwrap());
    let mut rng = StdRng::seed_from_u64(11);
    let mut largest = 0;
    for name in ["busy", "other"] {
        let adapter = lorad_store::random_adapter(name, &base, &spec(&mut rng, base.num_layers, 5));
        let resident =
            ResidentAdapter::new(&adapter, &base, DType::F32, &candle_core::Device::Cpu).unwrap();
        largest = largest.max(resident.bytes as u64);
        let dir = tmp.path().join(name);
        lorad_store::write_peft_dir(&dir, &adapter, TensorDtype::F32).unwrap();
        store.import_dir(&dir, None, &base, &base_hash).unwrap();
    }
    let engine = EngineHandle::start(
        model,
        EngineConfig { adapter_pool_bytes: largest * 3 / 2, ..EngineConfig::default() },
    )
    .unwrap();
    let cfg = ResidencyConfig { host_cache_bytes: 1 << 30, admit_timeout };
    let manager = Arc::new(AdapterManager::new(store, engine.clone(), cfg).unwrap());
    Some((engine, manager, tmp))
}

/// A device budget with room for one adapter, held without a break by a stream of requests on
/// adapter A: a request on B must still be admitted (A stops taking new requests until its
/// running ones finish, B runs, then A comes back), not wait out its admit timeout.
#[test]
fn a_busy_adapter_does_not_starve_another_of_device_budget() {
    let admit_timeout = Duration::from_secs(20);
    let Some((engine, manager, _tmp)) = room_for_one(admit_timeout) else { return };
    let prompt: Vec<u32> = (1..40).collect();
    let request = |name: &str| GenerateRequest {
        adapter: Some(name.to_owned()),
        ..GenerateRequest::greedy(prompt.clone(), 6)
    };

    // Four overlapping clients keep "busy" leased from now until "other" has its answer.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let first = manager.acquire("busy").unwrap();
    let busy: Vec<_> = (0..4)
        .map(|_| {
            let (manager, engine, done, req) =
                (manager.clone(), engine.clone(), done.clone(), request("busy"));
            std::thread::spawn(move || {
                let mut answers = 0;
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    let lease = manager.acquire("busy").expect("busy is admitted again");
                    let stream = engine.submit(req.clone()).unwrap();
                    drop(lease);
                    stream.collect_blocking().unwrap();
                    answers += 1;
                }
                answers
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    drop(first);

    let started = std::time::Instant::now();
    let lease = manager.acquire("other");
    let waited = started.elapsed();
    let other = lease.map(|lease| {
        let stream = engine.submit(request(&lease.name)).unwrap();
        drop(lease);
        stream.collect_blocking().unwrap().tokens
    });
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let answers: Vec<usize> = busy.into_iter().map(|t| t.join().unwrap()).collect();
    let other = other.unwrap_or_else(|e| panic!("'other' starved after {waited:?}: {e}"));
    assert_eq!(other.len(), 6);
    assert!(waited < admit_timeout, "admitted within the timeout, after {waited:?}");
    assert!(answers.iter().all(|&n| n > 0), "every busy client was answered: {answers:?}");
    let device = manager.stats().device;
    assert!(device.drains >= 1 && device.evictions >= 1, "busy drained for other: {device:?}");
    engine.shutdown();
}

/// Pins may not make another registered adapter unservable: with room for one adapter, pinning
/// either is refused at once, naming the adapter it would shut out, and not recorded; once that
/// adapter is gone from the store the pin holds.
#[test]
fn a_pin_that_would_shut_out_another_adapter_is_refused() {
    let admit_timeout = Duration::from_secs(20);
    let Some((engine, manager, _tmp)) = room_for_one(admit_timeout) else { return };
    let started = std::time::Instant::now();
    let err = manager.pin("busy").unwrap_err();
    assert!(started.elapsed() < admit_timeout / 2, "no wait: waiting cannot help");
    let msg = err.to_string();
    assert!(
        matches!(&err, EngineError::PinLeavesNoRoom { other, room, needs, .. }
            if other == "other" && needs > room),
        "{msg}"
    );
    assert!(msg.contains("'busy'") && msg.contains("adapters.device_bytes"), "{msg}");
    assert!(!manager.store().get("busy").unwrap().pinned, "a refused pin is not recorded");
    drop(manager.acquire("other").expect("other still serves"));
    manager.remove("other", None).unwrap();
    manager.pin("busy").unwrap();
    assert!(manager.store().get("busy").unwrap().pinned);
    engine.shutdown();
}

/// Pins recorded behind the server's back (`lorad adapter pin`, applied on reload) can still
/// hold the room: a pin or request that cannot be made resident then fails at once, naming the
/// pinned bytes, and the pin is not recorded, until the other pin goes.
#[test]
fn pins_that_leave_no_room_fail_at_once_and_are_not_recorded() {
    let admit_timeout = Duration::from_secs(20);
    let Some((engine, manager, _tmp)) = room_for_one(admit_timeout) else { return };
    manager.set_pinned("busy", true).unwrap();
    drop(manager.acquire("busy").unwrap());
    let started = std::time::Instant::now();
    let err = manager.pin("other").unwrap_err();
    assert!(started.elapsed() < admit_timeout / 2, "no wait: waiting cannot help");
    let msg = err.to_string();
    assert!(matches!(&err, EngineError::AdapterPoolFull { full, .. } if full.pinned > 0), "{msg}");
    assert!(msg.contains("'other'") && msg.contains("bytes are pinned"), "{msg}");
    assert!(!manager.store().get("other").unwrap().pinned, "a failed pin is not recorded");
    assert!(manager.acquire("other").is_err());
    manager.set_pinned("busy", false).unwrap();
    let lease = manager.acquire("other").unwrap();
    assert_ne!(manager.tier_of("busy"), Tier::Device, "busy was evicted for other");
    drop(lease);
    engine.shutdown();
}

/// A request's turn at the device budget comes, but the room stays leased by a running request
/// on another adapter past the admit timeout: it fails saying it waited for the room (not that
/// pins hold it), and the holder keeps running.
#[test]
fn room_held_past_the_admit_timeout_fails_saying_so() {
    let admit_timeout = Duration::from_millis(400);
    let Some((engine, manager, _tmp)) = room_for_one(admit_timeout) else { return };
    let held = manager.acquire("busy").unwrap();
    let started = std::time::Instant::now();
    let err = manager.acquire("other").unwrap_err();
    assert!(started.elapsed() >= admit_timeout, "it waited its timeout");
    let msg = err.to_string();
    assert!(matches!(&err, EngineError::DrainTimeout { full, .. } if full.pinned == 0), "{msg}");
    assert!(msg.contains("'other'") && msg.contains("waited"), "{msg}");
    assert_eq!(manager.tier_of("busy"), Tier::Device, "the holder was not evicted");
    drop(held);
    drop(manager.acquire("other").expect("admitted once the holder is done"));
    engine.shutdown();
}

/// A forced removal drains: while a running request holds the adapter, new requests for it fail
/// at once as being removed, and the removal completes when the holder is done. A removal whose
/// drain runs out leaves the adapter servable.
#[test]
fn a_forced_removal_takes_no_new_requests_while_it_drains() {
    let Some((engine, manager, _tmp)) = room_for_one(Duration::from_secs(20)) else { return };
    let held = manager.acquire("busy").unwrap();
    let err = manager.remove("busy", Some(Duration::from_millis(200))).unwrap_err();
    assert!(matches!(err, EngineError::AdapterInUse(_)), "{err}");
    drop(manager.acquire("busy").expect("a removal that gave up leaves it servable"));

    let remover = {
        let manager = manager.clone();
        std::thread::spawn(move || manager.remove("busy", Some(Duration::from_secs(20))))
    };
    let started = std::time::Instant::now();
    loop {
        match manager.acquire("busy") {
            Err(EngineError::AdapterRemoving(name)) => {
                assert_eq!(name, "busy");
                break;
            }
            Ok(lease) => drop(lease),
            Err(e) => panic!("unexpected error while the removal drains: {e}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the drain never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(held);
    remover.join().unwrap().expect("removed once the holder is done");
    let err = manager.acquire("busy").unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
    engine.shutdown();
}

/// Pins set and lifted with the CLI (another process writing the store) take effect at the next
/// reconcile (every few seconds, and on SIGHUP): a pinned adapter then stays resident when
/// another needs its room, and an unpinned one gives way.
#[test]
fn pins_made_with_the_cli_apply_on_reconcile() {
    let Some((engine, manager, tmp)) = room_for_one(Duration::from_millis(300)) else { return };
    let cli = Store::open(&tmp.path().join("store"), StoreConfig::default()).unwrap();
    drop(manager.acquire("busy").unwrap());
    cli.set_pinned("busy", true).unwrap();
    manager.reconcile().unwrap();
    assert!(manager.engine().adapter_pool().is_pinned("busy"));
    let err = manager.acquire("other").unwrap_err();
    assert!(matches!(&err, EngineError::AdapterPoolFull { full, .. } if full.pinned > 0), "{err}");
    assert_eq!(manager.tier_of("busy"), Tier::Device);

    cli.set_pinned("busy", false).unwrap();
    manager.reconcile().unwrap();
    assert!(!manager.engine().adapter_pool().is_pinned("busy"));
    drop(manager.acquire("other").expect("busy gives way once unpinned"));
    assert_ne!(manager.tier_of("busy"), Tier::Device);
    engine.shutdown();
}
