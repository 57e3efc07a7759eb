//! Adapter residency: disk (the store) → host cache (raw verified blobs, byte budget) → device
//! working set (the engine's [`AdapterPool`], byte budget).
//!
//! [`AdapterManager::acquire`] is called for a request *before* it is queued in the engine, on
//! a blocking thread of the caller's choosing; it pages the adapter in through whichever tiers
//! miss and returns a lease. The engine's step loop therefore never touches the disk: a request
//! enters the batch queue only once its adapter is resident, so paging for queued requests
//! overlaps with the batches that are running (S-LoRA's prefetch, done at admission).
//!
//! Concurrent acquires of one adapter share one page-in (single flight per name); acquires of
//! different adapters run in parallel up to the upload. Room in the device budget is given in
//! arrival order ([`crate::admission`]): when requests hold the room an acquire needs, the
//! least recently used of their adapters *drain* (take no new requests; their queued and
//! running ones finish) until it fits, so a stream of requests on busy adapters cannot keep an
//! adapter out. Admission never evicts an adapter a request holds; an acquire fails at once
//! when pinned adapters leave too little room, and after [`ResidencyConfig::admit_timeout`]
//! otherwise.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use lorad_store::disk::{Blob, Store};
use lorad_store::tiers::{TierCache, TierStats};

use crate::adapters::{Admitted, ResidentAdapter};
use crate::admission::Turns;
use crate::engine::EngineHandle;
use crate::{EngineError, Result};

/// Budgets and waits of the residency tiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResidencyConfig {
    /// Byte budget of the host cache of adapter blobs.
    pub host_cache_bytes: u64,
    /// How long an acquire waits for device budget held by running requests.
    pub admit_timeout: Duration,
}

impl Default for ResidencyConfig {
    fn default() -> Self {
        Self { host_cache_bytes: 8 << 30, admit_timeout: Duration::from_secs(30) }
    }
}

/// Where an adapter currently lives (its fastest tier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// In the engine's device working set.
    Device,
    /// In the host cache (one decode + upload away).
    Host,
    /// Only on disk.
    Disk,
}

impl Tier {
    /// `"device"`, `"host"` or `"disk"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Device => "device",
            Tier::Host => "host",
            Tier::Disk => "disk",
        }
    }
}

/// Upper bounds (seconds) of the page-in latency histogram buckets.
pub const PAGE_IN_BUCKETS: [f64; 12] =
    [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0];

/// A cumulative latency histogram (Prometheus semantics: bucket `i` counts observations
/// `<= bounds[i]` seconds). The residency manager's page-in latency uses [`PAGE_IN_BUCKETS`]
/// (the `Default`); the daemon keeps its request latencies in ones with other bounds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new(&PAGE_IN_BUCKETS)
    }
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending, seconds).
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (le, b) in self.bounds.iter().zip(&self.buckets) {
            if secs <= *le {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The buckets' upper bounds, in seconds.
    pub fn bounds(&self) -> &'static [f64] {
        self.bounds
    }

    /// `(cumulative bucket counts, total count, sum in seconds)`.
    pub fn snapshot(&self) -> (Vec<u64>, u64, f64) {
        let b = self.buckets.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        (b, self.count.load(Ordering::Relaxed), sum)
    }
}

/// Counters of the residency manager.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ResidencyStats {
    /// Device working set.
    pub device: TierStats,
    /// Host cache.
    pub host: TierStats,
    /// Adapters read from disk.
    pub page_ins: u64,
    /// Bytes read from disk by page-ins.
    pub disk_bytes_read: u64,
}

/// One in-progress page-in that other acquirers of the same adapter wait for.
#[derive(Debug, Default)]
struct Flight {
    done: Mutex<bool>,
    cv: Condvar,
}

/// Moves adapters between the store, the host cache and the engine (see the module docs).
#[derive(Debug)]
pub struct AdapterManager {
    store: Arc<Store>,
    engine: EngineHandle,
    host: TierCache<Blob>,
    cfg: ResidencyConfig,
    flights: Mutex<HashMap<String, Arc<Flight>>>,
    /// Adapters a forced removal is draining: new acquires of them fail.
    removing: Mutex<HashSet<String>>,
    turns: Turns,
    page_ins: AtomicU64,
    disk_bytes: AtomicU64,
    page_in_latency: Histogram,
}

/// Marks an adapter as being removed while a forced removal drains it; unmarks on drop, so
/// a removal that gives up (still in use) leaves it servable.
struct Removing<'a> {
    set: &'a Mutex<HashSet<String>>,
    name: String,
}

impl<'a> Removing<'a> {
    fn mark(set: &'a Mutex<HashSet<String>>, name: &str) -> Self {
        set.lock().unwrap_or_else(PoisonError::into_inner).insert(name.to_owned());
        Self { set, name: name.to_owned() }
    }
}

impl Drop for Removing<'_> {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.name);
    }
}

impl AdapterManager {
    /// A manager over `store` feeding `engine`. Pins recorded in the store apply to both tiers.
    /// On a GPU engine, the store's read buffers become page-locked ([`crate::host_pinner`]).
    pub fn new(store: Arc<Store>, engine: EngineHandle, cfg: ResidencyConfig) -> Result<Self> {
        if cfg.host_cache_bytes == 0 {
            return Err(EngineError::Config("host_cache_bytes must be at least 1".into()));
        }
        let host = TierCache::new("host", cfg.host_cache_bytes);
        if let Some(pinner) = crate::host_pinner(engine.device()) {
            // A store shared by two managers on one GPU is pinned by the first; fine.
            if let Err(e) = store.set_host_pinner(pinner) {
                tracing::debug!(error = %e, "host pinner already installed");
            }
        }
        for info in store.list() {
            if info.pinned {
                host.set_pinned(&info.name, true);
                engine.adapter_pool().set_pinned(&info.name, true);
            }
        }
        Ok(Self {
            store,
            engine,
            host,
            cfg,
            flights: Mutex::new(HashMap::new()),
            removing: Mutex::new(HashSet::new()),
            turns: Turns::default(),
            page_ins: AtomicU64::new(0),
            disk_bytes: AtomicU64::new(0),
            page_in_latency: Histogram::default(),
        })
    }

    /// The store behind the disk tier.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The engine whose device working set this fills.
    pub fn engine(&self) -> &EngineHandle {
        &self.engine
    }

    /// A lease on `name` if it is already resident on the device (counted as a device hit),
    /// without blocking; `None` otherwise (nothing counted: [`AdapterManager::acquire`] will).
    pub fn resident(&self, name: &str) -> Option<Arc<ResidentAdapter>> {
        let pool = self.engine.adapter_pool();
        if pool.contains(name) { pool.get(name) } else { None }
    }

    /// Makes `name` resident on the device and returns a lease on it; blocking (disk reads,
    /// weight upload, waits for device budget). Errors name the adapter: unknown
    /// ([`lorad_store::StoreError::NotFound`]), quarantined or corrupt, imported for another
    /// base, or no device budget within the admit timeout.
    pub fn acquire(&self, name: &str) -> Result<Arc<ResidentAdapter>> {
        if self.removing.lock().unwrap_or_else(PoisonError::into_inner).contains(name) {
            return Err(EngineError::AdapterRemoving(name.to_owned()));
        }
        loop {
            if let Some(lease) = self.engine.adapter_pool().get(name) {
                return Ok(lease);
            }
            match self.join_or_lead(name) {
                Some(flight) => {
                    // Someone else is paging it in; wait, then look again (their result may
                    // have been an error, or already evicted: then we lead the next round).
                    let mut done = flight.done.lock().unwrap_or_else(PoisonError::into_inner);
                    while !*done {
                        done = flight.cv.wait(done).unwrap_or_else(PoisonError::into_inner);
                    }
                    // Look again: resident now, or the leader failed (then one of the waiters
                    // leads the next round and reports its own error).
                    continue;
                }
                None => return self.lead(name),
            }
        }
    }

    /// Registers as the page-in leader for `name` (returns `None`), or returns the flight to
    /// wait for.
    fn join_or_lead(&self, name: &str) -> Option<Arc<Flight>> {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = flights.get(name) {
            return Some(f.clone());
        }
        flights.insert(name.to_owned(), Arc::new(Flight::default()));
        None
    }

    /// Pages `name` in as the leader of its flight, then wakes the waiters.
    fn lead(&self, name: &str) -> Result<Arc<ResidentAdapter>> {
        let result = self.page_in(name);
        let flight = self.flights.lock().unwrap_or_else(PoisonError::into_inner).remove(name);
        let Some(flight) = flight else { return result };
        *flight.done.lock().unwrap_or_else(PoisonError::into_inner) = true;
        flight.cv.notify_all();
        result
    }

    /// Disk → host → device for one adapter.
    fn page_in(&self, name: &str) -> Result<Arc<ResidentAdapter>> {
        // `acquire` already counted the miss that brought us here. A draining adapter waits
        // its turn instead (the check races with the marks, harmlessly: a lease taken as the
        // drain starts only delays it).
        let pool = self.engine.adapter_pool();
        if !pool.is_draining(name)
            && let Some(lease) = pool.peek(name)
        {
            return Ok(lease);
        }
        let blob = self.host_blob(name)?;
        let served = &self.engine.info().base_hash;
        let info = blob.info();
        if !info.base_hash.is_empty() && !served.is_empty() && info.base_hash != *served {
            return Err(EngineError::BaseMismatch {
                name: name.to_owned(),
                adapter_base: info.base_hash.clone(),
                served_base: served.clone(),
            });
        }
        // Checked once per blob (shapes always; the content hash on its first page-in), then
        // uploaded from the blob's own bytes: no f32 decode on re-admission.
        self.store.check(&blob, &self.engine.info().base_shape)?;
        self.admit(name, &blob)
    }

    /// Waits for this acquirer's turn at the device budget (arrival order, see
    /// [`crate::admission`]), then admits the adapter; while the room is held by other
    /// adapters' requests, those drain (take no new requests) until it fits. Uploads only once
    /// it is this acquirer's turn, so waiting copies never exceed the budget.
    fn admit(&self, name: &str, blob: &Blob) -> Result<Arc<ResidentAdapter>> {
        let pool = self.engine.adapter_pool();
        let started = Instant::now();
        let deadline = started + self.cfg.admit_timeout;
        let turn = self.turns.enter(pool);
        let mut adapter: Option<Arc<ResidentAdapter>> = None;
        loop {
            if !turn.wait_first(deadline) {
                return Err(EngineError::AdmitTimeout {
                    name: name.to_owned(),
                    waited_secs: started.elapsed().as_secs(),
                    ahead: turn.ahead(),
                });
            }
            // Resident already: another page-in of it finished, or it was draining for an
            // earlier turn and its requests waited here.
            if let Some(lease) = pool.claim(name) {
                return Ok(lease);
            }
            let a = match &adapter {
                Some(a) => a.clone(),
                None => adapter.insert(Arc::new(self.engine.upload_blob(blob)?)).clone(),
            };
            match pool.admit(&a)? {
                Admitted::Inserted => return Ok(a),
                Admitted::Draining(full) if Instant::now() >= deadline => {
                    return Err(EngineError::DrainTimeout {
                        name: name.to_owned(),
                        waited_secs: started.elapsed().as_secs(),
                        full,
                    });
                }
                // The requests holding the room finish within their token limits.
                Admitted::Draining(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }

    /// The adapter's blob from the host cache, reading it from disk on a miss.
    fn host_blob(&self, name: &str) -> Result<Arc<Blob>> {
        if let Some(blob) = self.host.get(name) {
            return Ok(blob);
        }
        let start = Instant::now();
        let blob = match self.store.read_blob(name) {
            Ok(b) => Arc::new(b),
            Err(e) => {
                // A removed adapter must not linger in the device tier either.
                self.engine.remove_adapter(name);
                return Err(e.into());
            }
        };
        self.page_in_latency.observe(start.elapsed());
        self.page_ins.fetch_add(1, Ordering::Relaxed);
        self.disk_bytes.fetch_add(blob.len() as u64, Ordering::Relaxed);
        if let Err(full) = self.host.insert(name, blob.clone(), blob.len() as u64) {
            // Everything cached is pinned or in use: serve this one uncached.
            tracing::debug!(adapter = name, %full, "host cache full; not caching");
        }
        Ok(blob)
    }

    /// Reads `name` into the host cache without admitting it to the device (for requests that
    /// will run later). Errors as [`AdapterManager::acquire`].
    pub fn prefetch(&self, name: &str) -> Result<()> {
        if self.engine.adapter_pool().contains(name) || self.host.contains(name) {
            return Ok(());
        }
        self.host_blob(name).map(drop)
    }

    /// The fastest tier holding `name`.
    pub fn tier_of(&self, name: &str) -> Tier {
        if self.engine.adapter_pool().contains(name) {
            Tier::Device
        } else if self.host.contains(name) {
            Tier::Host
        } else {
            Tier::Disk
        }
    }

    /// Pins `name` resident: pages it in (waiting its turn like a request), then records the
    /// pin, so a pin that cannot be made resident fails without being recorded. A pin is
    /// refused ([`EngineError::PinLeavesNoRoom`]) when the pinned adapters, this one included,
    /// would leave less of the device budget than the largest other registered adapter may
    /// need: pins must never make an adapter of the store unservable.
    pub fn pin(&self, name: &str) -> Result<()> {
        let lease = self.acquire(name)?;
        self.check_pin_room(name, lease.bytes as u64)?;
        self.set_pinned(name, true)?;
        drop(lease);
        Ok(())
    }

    /// See [`AdapterManager::pin`]; `bytes` is `name`'s resident size.
    fn check_pin_room(&self, name: &str, bytes: u64) -> Result<()> {
        let pool = self.engine.adapter_pool();
        if pool.is_pinned(name) {
            return Ok(());
        }
        let pinned = pool.pinned_bytes() + bytes;
        let budget = pool.budget();
        let room = budget.saturating_sub(pinned);
        let largest = self
            .store
            .list()
            .into_iter()
            .filter(|i| !i.pinned && i.name != name && !pool.is_pinned(&i.name))
            .filter(|i| i.state == lorad_store::disk::EntryState::Ready)
            .map(|i| (self.engine.resident_bytes_bound(&i), i.name))
            .max();
        match largest {
            Some((needs, other)) if needs > room => Err(EngineError::PinLeavesNoRoom {
                name: name.to_owned(),
                pinned,
                budget,
                room,
                other,
                needs,
            }),
            _ => Ok(()),
        }
    }

    /// Pins (never evicted from either tier) or unpins `name`, persistently, without paging
    /// it in ([`AdapterManager::pin`] does).
    pub fn set_pinned(&self, name: &str, pinned: bool) -> Result<()> {
        self.store.set_pinned(name, pinned)?;
        self.host.set_pinned(name, pinned);
        self.engine.adapter_pool().set_pinned(name, pinned);
        Ok(())
    }

    /// Whether a request holds `name`.
    pub fn in_use(&self, name: &str) -> bool {
        self.engine.adapter_pool().is_leased(name)
    }

    /// Removes `name` from every tier and the store. While requests hold it this is refused
    /// with [`EngineError::AdapterInUse`], unless `drain` is given: then new acquires of it
    /// fail at once ([`EngineError::AdapterRemoving`]) and this waits up to `drain` for the
    /// running ones to finish before deleting it from the store and the tiers. If they do not,
    /// it stays, servable again, and the error is `AdapterInUse`.
    pub fn remove(&self, name: &str, drain: Option<Duration>) -> Result<()> {
        self.store.get(name)?;
        // Held until the adapter is out of the store and the tiers.
        let _removing;
        if self.in_use(name) {
            let Some(wait) = drain else {
                return Err(EngineError::AdapterInUse(name.to_owned()));
            };
            _removing = Removing::mark(&self.removing, name);
            let deadline = Instant::now() + wait;
            while self.in_use(name) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if self.in_use(name) {
                return Err(EngineError::AdapterInUse(name.to_owned()));
            }
        }
        // Out of the store first, then the tiers: a page-in that raced the removal leaves
        // nothing behind.
        self.store.remove(name)?;
        self.engine.remove_adapter(name);
        self.host.remove(name);
        Ok(())
    }

    /// Drops `name` from the host and device tiers (e.g. after a re-import under that name).
    pub fn invalidate(&self, name: &str) {
        self.engine.remove_adapter(name);
        self.host.remove(name);
    }

    /// Makes both tiers' pins those the store records (pins set or lifted with the CLI).
    fn sync_pins(&self) {
        let pool = self.engine.adapter_pool();
        let wanted: HashSet<String> =
            self.store.list().into_iter().filter(|i| i.pinned).map(|i| i.name).collect();
        let mut held: HashSet<String> = pool.pinned_names().into_iter().collect();
        held.extend(self.host.pinned_keys());
        for name in held.difference(&wanted) {
            pool.set_pinned(name, false);
            self.host.set_pinned(name, false);
        }
        for name in &wanted {
            pool.set_pinned(name, true);
            self.host.set_pinned(name, true);
        }
    }

    /// Picks up changes other processes made to the store (e.g. `lorad adapter rm` from the CLI):
    /// re-reads the index, takes its pins as they are now (set or lifted with `lorad adapter pin`
    /// and `unpin`), and drops from the host and device tiers every adapter that is gone or
    /// whose content changed. Running requests keep their leases. Returns the names dropped.
    pub fn reconcile(&self) -> Result<Vec<String>> {
        self.store.refresh()?;
        self.sync_pins();
        let mut resident = self.engine.adapter_pool().names();
        resident.extend(self.host.keys());
        resident.sort();
        resident.dedup();
        let mut dropped = Vec::new();
        for name in resident {
            let current = self.store.get(&name).ok().map(|i| i.content_hash);
            let loaded = self
                .engine
                .adapter_pool()
                .peek(&name)
                .map(|r| r.content_hash.clone())
                .or_else(|| self.host.peek(&name).map(|b| b.info().content_hash.clone()));
            if current.is_none() || current != loaded {
                self.invalidate(&name);
                dropped.push(name);
            }
        }
        Ok(dropped)
    }

    /// Counters of every tier.
    pub fn stats(&self) -> ResidencyStats {
        ResidencyStats {
            device: self.engine.adapter_pool().stats(),
            host: self.host.stats(),
            page_ins: self.page_ins.load(Ordering::Relaxed),
            disk_bytes_read: self.disk_bytes.load(Ordering::Relaxed),
        }
    }

    /// Page-in latency (disk → host) histogram.
    pub fn page_in_latency(&self) -> &Histogram {
        &self.page_in_latency
    }
}
