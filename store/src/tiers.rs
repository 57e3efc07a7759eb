//! A byte-budgeted LRU cache, the shape shared by lorad's two memory tiers: the host cache of raw
//! adapter blobs and the device working set of uploaded adapters.
//!
//! Values are `Arc<V>`. **A lease is any clone of an entry's `Arc` outside the cache**: an entry is
//! leased while `Arc::strong_count(&value) > 1`, i.e. while anything besides the cache's own copy
//! is alive. Leased entries are never evicted, so a running request that holds the `Arc` it got
//! from [`TierCache::get`], [`TierCache::peek`] or kept from [`TierCache::insert`] can never have
//! its adapter's budget handed to someone else. Dropping the clone releases the lease: there is no
//! release call to forget. (`Weak` references do not count as leases.)
//!
//! Pinned keys ([`TierCache::set_pinned`]) are never evicted either; the pin belongs to the key,
//! not the entry, so it can be set before the entry arrives and survives removal.
//!
//! Eviction is least-recently-used among entries that are neither pinned nor leased. Recency is a
//! per-entry tick from a monotonically increasing counter, indexed by a `BTreeMap<tick, key>`, so
//! finding the oldest evictable entry is O(log n) plus the pinned/leased entries skipped on the
//! way. [`TierCache::insert`] is all-or-nothing: if evicting every evictable entry would still not
//! make room it evicts nothing and returns [`TierFull`].
//!
//! Leases alone could starve a newcomer: entries that requests keep re-leasing (a busy adapter)
//! never become evictable, so an insert that needs their room would wait forever.
//! [`TierCache::admit`] is the insert for callers that wait their turn: when the room is leased
//! it marks the least recently used leased entries that would make room as *draining*.
//! [`TierCache::get`] gives no new leases on a draining entry; once its holders finish it is
//! evictable and the waiting admit succeeds. The caller's queue decides whose turn it is (one
//! admission at a time sets the draining marks); [`TierCache::claim`] takes a draining entry back
//! when its own turn comes and [`TierCache::clear_draining`] lifts the marks when the turn ends.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// An insert that cannot fit even after evicting everything evictable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierFull {
    /// Bytes the new entry needs.
    pub needed: u64,
    /// The tier's budget.
    pub budget: u64,
    /// Bytes held by entries that cannot be evicted (pinned or leased), not counting an entry the
    /// insert would replace. `budget - held` is the most an insert can get now.
    pub held: u64,
    /// The part of `held` that is pinned: `budget - pinned` is the most an insert can ever get.
    pub pinned: u64,
}

impl TierFull {
    /// Bytes an insert could obtain by evicting every evictable entry.
    pub fn free(&self) -> u64 {
        self.budget.saturating_sub(self.held)
    }
}

impl fmt::Display for TierFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "needs {} bytes but only {} of the {}-byte budget can be freed: {} bytes are pinned \
             and {} leased by running requests",
            self.needed,
            self.free(),
            self.budget,
            self.pinned,
            self.held.saturating_sub(self.pinned)
        )
    }
}

impl std::error::Error for TierFull {}

/// Counters and occupancy of one tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TierStats {
    /// `get`s that found the key.
    pub hits: u64,
    /// `get`s that did not.
    pub misses: u64,
    /// Successful inserts (replacements included).
    pub inserts: u64,
    /// Entries evicted to make room (explicit removals and replacements are not evictions).
    pub evictions: u64,
    /// Entries marked draining by [`TierCache::admit`] to make room for a waiting one.
    pub drains: u64,
    /// Bytes currently accounted to entries.
    pub bytes: u64,
    /// Entries currently held.
    pub entries: u64,
    /// The byte budget.
    pub budget: u64,
}

/// A byte-budgeted LRU of `Arc<V>` values keyed by string; see the [module docs](self) for the
/// lease and pin rules. All methods take `&self` (one mutex inside), so a `TierCache` can be
/// shared across threads when `V: Send + Sync`.
pub struct TierCache<V> {
    name: &'static str,
    budget: u64,
    inner: Mutex<Inner<V>>,
}

struct Entry<V> {
    value: Arc<V>,
    bytes: u64,
    tick: u64,
}

impl<V> Entry<V> {
    /// Whether anything besides the cache's own copy of the `Arc` is alive. Clones are only made
    /// from the cache's copy under the lock, so a count read under the lock can only overstate a
    /// lease (a holder dropping concurrently), never miss one.
    fn leased(&self) -> bool {
        Arc::strong_count(&self.value) > 1
    }
}

struct Inner<V> {
    entries: HashMap<String, Entry<V>>,
    /// tick → key, oldest first; exactly one tick per entry.
    lru: BTreeMap<u64, String>,
    pinned: HashSet<String>,
    /// Present keys [`TierCache::get`] gives no new leases on (see the module docs).
    draining: HashSet<String>,
    next_tick: u64,
    bytes: u64,
    hits: u64,
    misses: u64,
    inserts: u64,
    evictions: u64,
    drains: u64,
}

/// What [`TierCache::admit`] did.
#[derive(Debug)]
pub enum Admission<V> {
    /// The value is in, evicting these entries (oldest first).
    Inserted(Vec<(String, Arc<V>)>),
    /// No room while requests hold the entries that would make it: those are now draining (no
    /// new leases), so admitting again once their holders finish succeeds. The budget figures.
    Draining(TierFull),
}

/// Where an insert's room comes from (see [`Inner::room`]).
struct Room {
    /// Evictable entries to evict, oldest first.
    victims: Vec<String>,
    /// Leased (unpinned) entries that would make the rest of the room once released.
    leased: Vec<String>,
    /// Whether `victims` alone make room.
    fits: bool,
    /// Bytes held by pinned or leased entries besides the replaced one.
    held: u64,
    /// Bytes held by pinned entries besides the replaced one.
    pinned: u64,
}

impl<V> Inner<V> {
    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }

    /// Moves `key` (present) to the most-recently-used end.
    fn touch(&mut self, key: &str) {
        let tick = self.tick();
        if let Some(e) = self.entries.get_mut(key) {
            let old = std::mem::replace(&mut e.tick, tick);
            if let Some(k) = self.lru.remove(&old) {
                self.lru.insert(tick, k);
            }
        }
    }

    fn remove_entry(&mut self, key: &str) -> Option<Entry<V>> {
        let e = self.entries.remove(key)?;
        self.draining.remove(key);
        self.lru.remove(&e.tick);
        self.bytes -= e.bytes;
        Some(e)
    }

    /// Walks oldest → newest for room for `bytes` under `key` (replacing `key`'s entry):
    /// evictable entries first; past those, when `leased` is set, the leased unpinned entries
    /// that would make the rest once released.
    fn room(&self, budget: u64, key: &str, bytes: u64, leased: bool) -> Room {
        let replaced = self.entries.get(key).map_or(0, |e| e.bytes);
        let others = self.bytes - replaced;
        let mut free = budget.saturating_sub(others);
        let mut room = Room {
            victims: Vec::new(),
            leased: Vec::new(),
            fits: bytes <= free,
            held: 0,
            pinned: 0,
        };
        if room.fits {
            return room;
        }
        // Only a refusal reports the pinned bytes: not summed on the inserts that fit.
        room.pinned = (self.pinned.iter())
            .filter(|k| k.as_str() != key)
            .filter_map(|k| self.entries.get(k.as_str()))
            .map(|e| e.bytes)
            .sum();
        let mut evictable = 0;
        for (_, k) in self.lru.iter() {
            let e = &self.entries[k];
            if k == key || self.pinned.contains(k.as_str()) {
                continue;
            }
            if !e.leased() {
                room.victims.push(k.clone());
                evictable += e.bytes;
                free += e.bytes;
                room.fits = bytes <= free;
                if room.fits {
                    break;
                }
            }
        }
        room.held = others - evictable;
        if !room.fits && leased {
            for (_, k) in self.lru.iter() {
                let e = &self.entries[k];
                if k != key && e.leased() && !self.pinned.contains(k.as_str()) {
                    room.leased.push(k.clone());
                    free += e.bytes;
                    if bytes <= free {
                        break;
                    }
                }
            }
            if bytes > free {
                room.leased.clear();
            }
        }
        room
    }

    /// Puts `value` in, evicting `victims` (all evictable, making room); returns them.
    fn put(&mut self, key: &str, value: Arc<V>, bytes: u64, victims: Vec<String>) -> Put<V> {
        let mut evicted = Vec::with_capacity(victims.len());
        for k in victims {
            if let Some(e) = self.remove_entry(&k) {
                evicted.push((k, e.value));
            }
        }
        self.evictions += evicted.len() as u64;
        let replaced = self.remove_entry(key).map(|e| e.value);
        let tick = self.tick();
        self.entries.insert(key.to_owned(), Entry { value, bytes, tick });
        self.lru.insert(tick, key.to_owned());
        self.bytes += bytes;
        self.inserts += 1;
        Put { evicted, replaced }
    }
}

impl Room {
    fn full(&self, needed: u64, budget: u64) -> TierFull {
        TierFull { needed, budget, held: self.held, pinned: self.pinned }
    }
}

/// What [`Inner::put`] took out; dropped outside the lock.
struct Put<V> {
    evicted: Vec<(String, Arc<V>)>,
    replaced: Option<Arc<V>>,
}

impl<V> TierCache<V> {
    /// An empty tier named `name` (for logs and metrics) holding at most `budget_bytes`.
    pub fn new(name: &'static str, budget_bytes: u64) -> Self {
        TierCache {
            name,
            budget: budget_bytes,
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                lru: BTreeMap::new(),
                pinned: HashSet::new(),
                draining: HashSet::new(),
                next_tick: 0,
                bytes: 0,
                hits: 0,
                misses: 0,
                inserts: 0,
                evictions: 0,
                drains: 0,
            }),
        }
    }

    /// The tier's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The byte budget.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    fn lock(&self) -> MutexGuard<'_, Inner<V>> {
        // Every mutation below is panic-free bookkeeping (values are dropped only after the lock
        // is released), so a poisoned lock still guards consistent state.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks `key` up, counting a hit or miss and making it the most recently used. The returned
    /// clone is a lease until dropped. A draining entry is a miss: it takes no new leases.
    pub fn get(&self, key: &str) -> Option<Arc<V>> {
        let mut g = self.lock();
        let value = match g.draining.contains(key) {
            true => None,
            false => g.entries.get(key).map(|e| Arc::clone(&e.value)),
        };
        if value.is_some() {
            g.hits += 1;
            g.touch(key);
        } else {
            g.misses += 1;
        }
        value
    }

    /// Looks `key` up without counting or touching recency, draining or not (for holders of a
    /// lease looking up what they hold). The returned clone is a lease until dropped.
    pub fn peek(&self, key: &str) -> Option<Arc<V>> {
        self.lock().entries.get(key).map(|e| Arc::clone(&e.value))
    }

    /// Whether `key` is present (no statistics, no recency update).
    pub fn contains(&self, key: &str) -> bool {
        self.lock().entries.contains_key(key)
    }

    /// Inserts `value` under `key`, accounted as `bytes`, replacing any existing entry for `key`
    /// (the replaced value leaves the cache; holders of its `Arc` keep it; it is not reported as
    /// evicted). Evicts least-recently-used entries that are neither pinned nor leased until the
    /// new one fits, and returns them, oldest first.
    ///
    /// If the entry cannot fit even after evicting every evictable entry (including when `bytes`
    /// exceeds the budget), nothing is evicted or replaced and [`TierFull`] is returned.
    ///
    /// The caller usually keeps a clone of `value`: the new entry is then leased from the start.
    pub fn insert(
        &self,
        key: &str,
        value: Arc<V>,
        bytes: u64,
    ) -> Result<Vec<(String, Arc<V>)>, TierFull> {
        let mut g = self.lock();
        let room = g.room(self.budget, key, bytes, false);
        if !room.fits {
            return Err(room.full(bytes, self.budget));
        }
        let put = g.put(key, value, bytes, room.victims);
        debug_assert!(g.bytes <= self.budget);
        drop(g);
        // The replaced value may be the last reference: drop it outside the lock, since `V`'s
        // destructor (freeing device memory, say) may be slow.
        drop(put.replaced);
        Ok(put.evicted)
    }

    /// Inserts `value` under `key` (absent: use [`TierCache::claim`] first) for a caller whose
    /// turn it is, or marks what it waits for. Evicts as [`TierCache::insert`] when that makes
    /// room. When the room is leased, the least recently used leased, unpinned entries that
    /// would make it, and the idle ones it would evict, join the draining set and
    /// [`Admission::Draining`] is returned: admit again once they are released. The marks
    /// stay until [`TierCache::clear_draining`] (the turn's end): an entry that drained and
    /// went idle must not take a new lease before the admit that evicts it, or under steady
    /// load the entries that must make room would take turns being leased and the waiting one
    /// would never fit. Errors with [`TierFull`] when pinned entries leave too little room for
    /// `bytes` (waiting cannot help).
    pub fn admit(&self, key: &str, value: Arc<V>, bytes: u64) -> Result<Admission<V>, TierFull> {
        let mut g = self.lock();
        let room = g.room(self.budget, key, bytes, true);
        let full = room.full(bytes, self.budget);
        if room.fits {
            let put = g.put(key, value, bytes, room.victims);
            drop(g);
            drop(put.replaced);
            return Ok(Admission::Inserted(put.evicted));
        }
        if room.leased.is_empty() {
            return Err(full);
        }
        // `drains` counts entries whose holders must finish; idle victims are only closed.
        let fresh = room.leased.iter().filter(|k| !g.draining.contains(k.as_str())).count();
        g.drains += fresh as u64;
        g.draining.extend(room.leased);
        g.draining.extend(room.victims);
        Ok(Admission::Draining(full))
    }

    /// A lease on `key` for the caller whose turn it is, draining or not (its drain mark is
    /// lifted). Not counted: the caller's [`TierCache::get`] already counted its miss, and one
    /// lookup is one hit or one miss. `None` if absent.
    pub fn claim(&self, key: &str) -> Option<Arc<V>> {
        let mut g = self.lock();
        let value = g.entries.get(key).map(|e| Arc::clone(&e.value))?;
        g.draining.remove(key);
        g.touch(key);
        Some(value)
    }

    /// Lifts every drain mark (the admission that set them is over).
    pub fn clear_draining(&self) {
        self.lock().draining.clear();
    }

    /// Whether `key` is present and draining.
    pub fn is_draining(&self, key: &str) -> bool {
        self.lock().draining.contains(key)
    }

    /// Removes `key`, returning its value (its pin, if any, stays).
    pub fn remove(&self, key: &str) -> Option<Arc<V>> {
        self.lock().remove_entry(key).map(|e| e.value)
    }

    /// Pins or unpins `key`. Pinned entries are never evicted. The pin is remembered for keys not
    /// present and applies when they are inserted.
    pub fn set_pinned(&self, key: &str, pinned: bool) {
        let mut g = self.lock();
        if pinned {
            g.pinned.insert(key.to_owned());
        } else {
            g.pinned.remove(key);
        }
    }

    /// Whether `key` is pinned (present or not).
    pub fn is_pinned(&self, key: &str) -> bool {
        self.lock().pinned.contains(key)
    }

    /// Every pinned key (present or not), sorted.
    pub fn pinned_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.lock().pinned.iter().cloned().collect();
        keys.sort_unstable();
        keys
    }

    /// Bytes of the present entries that are pinned (what no eviction can ever free).
    pub fn pinned_bytes(&self) -> u64 {
        let g = self.lock();
        g.entries.iter().filter(|(k, _)| g.pinned.contains(*k)).map(|(_, e)| e.bytes).sum()
    }

    /// Whether `key` is present and some clone of its `Arc` besides the cache's is alive.
    pub fn is_leased(&self, key: &str) -> bool {
        self.lock().entries.get(key).is_some_and(Entry::leased)
    }

    /// All present keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.lock().entries.keys().cloned().collect();
        keys.sort_unstable();
        keys
    }

    /// Counters and occupancy.
    pub fn stats(&self) -> TierStats {
        let g = self.lock();
        TierStats {
            hits: g.hits,
            misses: g.misses,
            inserts: g.inserts,
            evictions: g.evictions,
            drains: g.drains,
            bytes: g.bytes,
            entries: g.entries.len() as u64,
            budget: self.budget,
        }
    }
}

// Hand-written so `TierCache<V>` is `Debug` without requiring `V: Debug` (and without dumping
// every value into a log line).
impl<V> fmt::Debug for TierCache<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TierCache")
            .field("name", &self.name)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
