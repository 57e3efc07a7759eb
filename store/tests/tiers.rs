//! The byte-budgeted LRU behind both memory tiers: eviction order, pins, leases (outstanding
//! `Arc` clones), all-or-nothing inserts, statistics, and a randomized comparison against a
//! simple reference model.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use lorad_store::tiers::{Admission, TierCache, TierFull, TierStats};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Inserts `key` without keeping a lease (the cache holds the only `Arc`).
fn put(c: &TierCache<u32>, key: &str, bytes: u64) -> Vec<String> {
    c.insert(key, Arc::new(0), bytes).unwrap().into_iter().map(|(k, _)| k).collect()
}

#[test]
fn evicts_least_recently_inserted_first() {
    let c = TierCache::new("host", 100);
    assert_eq!((c.name(), c.budget()), ("host", 100));
    for k in ["a", "b", "c", "d"] {
        assert!(put(&c, k, 25).is_empty());
    }
    assert_eq!(put(&c, "e", 25), ["a"]);
    assert_eq!(put(&c, "f", 50), ["b", "c"]);
    assert_eq!(c.keys(), ["d", "e", "f"]);
    assert_eq!(c.stats().bytes, 100);
}

#[test]
fn get_refreshes_recency_but_peek_and_contains_do_not() {
    let c = TierCache::new("host", 30);
    for k in ["a", "b", "c"] {
        put(&c, k, 10);
    }
    drop(c.get("a"));
    drop(c.peek("b"));
    assert!(c.contains("b"));
    // LRU order now b, c, a.
    assert_eq!(put(&c, "d", 10), ["b"]);
    assert_eq!(put(&c, "e", 10), ["c"]);
    assert_eq!(put(&c, "f", 10), ["a"]);
}

#[test]
fn pinned_entries_are_never_evicted() {
    let c = TierCache::new("device", 30);
    put(&c, "a", 10);
    put(&c, "b", 10);
    put(&c, "c", 10);
    c.set_pinned("a", true);
    assert!(c.is_pinned("a") && !c.is_pinned("b"));
    assert_eq!(put(&c, "d", 20), ["b", "c"]);
    // Only `d` is evictable now; something of 30 cannot fit beside pinned `a`.
    let full = c.insert("e", Arc::new(0), 30).unwrap_err();
    assert_eq!(full, TierFull { needed: 30, budget: 30, held: 10, pinned: 10 });
    c.set_pinned("a", false);
    assert_eq!(put(&c, "e", 30), ["a", "d"]);
}

#[test]
fn pin_set_before_insert_applies_and_survives_removal() {
    let c = TierCache::new("device", 20);
    c.set_pinned("x", true);
    assert!(c.is_pinned("x") && !c.contains("x"));
    assert_eq!(c.pinned_bytes(), 0, "a pin of an absent key holds no bytes");
    put(&c, "x", 10);
    assert_eq!(c.pinned_bytes(), 10);
    put(&c, "y", 10);
    assert_eq!(put(&c, "z", 10), ["y"]);
    assert!(c.remove("x").is_some());
    assert!(c.is_pinned("x"));
    put(&c, "x", 10);
    assert_eq!(put(&c, "w", 10), ["z"]);
    assert_eq!(c.keys(), ["w", "x"]);
}

#[test]
fn leased_entries_are_not_evicted_until_the_clone_drops() {
    let c = TierCache::new("device", 20);
    let lease_a = Arc::new(1u32);
    c.insert("a", lease_a.clone(), 10).unwrap();
    put(&c, "b", 10);
    assert!(c.is_leased("a") && !c.is_leased("b") && !c.is_leased("missing"));
    let lease_b = c.get("b").unwrap();
    assert!(c.is_leased("b"));
    let full = c.insert("c", Arc::new(3), 10).unwrap_err();
    assert_eq!(full, TierFull { needed: 10, budget: 20, held: 20, pinned: 0 });
    assert_eq!(c.keys(), ["a", "b"], "a failed insert evicts nothing");
    drop(lease_b);
    assert!(!c.is_leased("b"));
    assert_eq!(put(&c, "c", 10), ["b"]);
    drop(lease_a);
    assert_eq!(put(&c, "d", 10), ["a"]);
    // A clone of a clone is still a lease; an evicted value stays alive for its holders.
    let l1 = c.peek("c").unwrap();
    let l2 = l1.clone();
    drop(l1);
    assert!(c.is_leased("c"));
    drop(l2);
    assert!(!c.is_leased("c"));
    let evicted = c.insert("e", Arc::new(9), 20).unwrap();
    assert_eq!(evicted.len(), 2);
    assert_eq!(Arc::strong_count(&evicted[0].1), 1, "the cache let go of its copy");
}

#[test]
fn tier_full_evicts_nothing() {
    let c = TierCache::new("host", 100);
    put(&c, "a", 40);
    put(&c, "b", 30);
    let keep = c.get("b").unwrap();
    let before = c.stats();
    // Evicting `a` (40) gives 70 free; 80 does not fit, so `a` must survive.
    let full = c.insert("c", Arc::new(0), 80).unwrap_err();
    assert_eq!(full, TierFull { needed: 80, budget: 100, held: 30, pinned: 0 });
    assert_eq!(
        full.to_string(),
        "needs 80 bytes but only 70 of the 100-byte budget can be freed: 0 bytes are pinned and \
         30 leased by running requests"
    );
    let e: &dyn std::error::Error = &full;
    assert!(e.source().is_none());
    assert_eq!(c.keys(), ["a", "b"]);
    assert_eq!(c.stats(), before);
    drop(keep);
}

#[test]
fn oversize_item_is_tier_full() {
    let c = TierCache::new("host", 100);
    put(&c, "a", 10);
    let full = c.insert("big", Arc::new(0), 101).unwrap_err();
    assert_eq!(full, TierFull { needed: 101, budget: 100, held: 0, pinned: 0 });
    assert!(full.to_string().contains("only 100 of the 100-byte budget"));
    assert_eq!(c.keys(), ["a"]);
    // Exactly the budget fits (by evicting everything).
    assert_eq!(put(&c, "whole", 100), ["a"]);
    // Zero bytes always fit.
    assert!(put(&c, "free", 0).is_empty());
}

#[test]
fn stats_count_hits_misses_inserts_evictions() {
    let c = TierCache::new("host", 20);
    assert_eq!(c.stats(), TierStats { budget: 20, ..TierStats::default() });
    put(&c, "a", 10);
    put(&c, "b", 10);
    assert!(c.get("a").is_some());
    assert!(c.get("a").is_some());
    assert!(c.get("zz").is_none());
    assert!(c.peek("zz").is_none());
    put(&c, "c", 15); // evicts b, then a (a is more recent but both must go)
    put(&c, "c", 5); // replacement: not an eviction
    assert!(c.remove("c").is_some());
    assert!(c.remove("c").is_none());
    put(&c, "d", 7);
    assert_eq!(
        c.stats(),
        TierStats {
            hits: 2,
            misses: 1,
            inserts: 5,
            evictions: 2,
            drains: 0,
            bytes: 7,
            entries: 1,
            budget: 20
        }
    );
    let json = serde_json::to_value(c.stats()).unwrap();
    assert_eq!(json["evictions"], 2);
}

/// `admit` for a waiting turn: room held by leases drains the least recently used leased
/// entries, which then take no new leases (`get` misses, `peek` still finds them) until the
/// admit succeeds after their holders let go; the idle entries it will evict take none either.
#[test]
fn admit_drains_leased_room_and_succeeds_once_released() {
    let c = TierCache::new("device", 100);
    let a = Arc::new(1u32);
    let b = Arc::new(2u32);
    let z = Arc::new(3u32);
    c.insert("a", a.clone(), 40).unwrap();
    c.insert("b", b.clone(), 40).unwrap();
    c.insert("z", z.clone(), 20).unwrap();
    drop(z); // "z" is evictable, "a" (older) and "b" are leased
    let new = Arc::new(9u32);
    let Admission::Draining(full) = c.admit("n", new.clone(), 50).unwrap() else {
        panic!("room is leased: must drain");
    };
    assert_eq!(full, TierFull { needed: 50, budget: 100, held: 80, pinned: 0 });
    // Evicting "z" leaves 30 short: the oldest leased entry, "a", drains; "b" does not.
    assert!(c.is_draining("a") && !c.is_draining("b") && c.is_draining("z"));
    assert!(c.get("z").is_none(), "an entry about to be evicted gives no new lease");
    assert!(c.get("a").is_none(), "a draining entry gives no new lease");
    assert!(c.peek("a").is_some(), "holders still find it");
    assert!(c.get("b").is_some());
    assert_eq!(c.keys(), ["a", "b", "z"], "nothing evicted while waiting");
    drop(a);
    let Admission::Inserted(evicted) = c.admit("n", new, 50).unwrap() else {
        panic!("a was released: must fit");
    };
    let evicted: Vec<String> = evicted.into_iter().map(|(k, _)| k).collect();
    assert_eq!(evicted, ["a", "z"]);
    assert!(!c.is_draining("a"));
    assert_eq!(c.stats().drains, 1);
}

/// The marks of a waiting turn hold until it ends: an entry whose holders finished while
/// another still drains takes no new lease in between. Replacing the marks at each admit let
/// the soak starve a pin (seed 20261206, fair policy): with the whole unpinned budget to
/// free, the adapters making room took turns being leased by new requests, and the pin
/// waited out its 30 s.
#[test]
fn drain_marks_hold_until_the_waiting_turn_ends() {
    let c = TierCache::new("device", 100);
    let a = Arc::new(1u32);
    let b = Arc::new(2u32);
    c.insert("a", a.clone(), 40).unwrap();
    c.insert("b", b.clone(), 40).unwrap();
    let new = Arc::new(9u32);
    // 90 needs all of it: "a" and "b" both drain.
    assert!(matches!(c.admit("n", new.clone(), 90), Ok(Admission::Draining(_))));
    drop(a);
    // "a" is idle now, "b" still held: still waiting, and "a" must stay closed.
    assert!(matches!(c.admit("n", new.clone(), 90), Ok(Admission::Draining(_))));
    assert!(c.get("a").is_none(), "a drained entry took a lease before its eviction");
    drop(b);
    let Admission::Inserted(evicted) = c.admit("n", new, 90).unwrap() else {
        panic!("both released: must fit");
    };
    let mut evicted: Vec<String> = evicted.into_iter().map(|(k, _)| k).collect();
    evicted.sort();
    assert_eq!(evicted, ["a", "b"]);
    assert_eq!(c.stats().drains, 2);
    c.clear_draining();
    assert!(!c.is_draining("a") && !c.is_draining("b"));
}

#[test]
fn admit_fails_at_once_when_pins_leave_too_little_room_and_claim_lifts_a_drain() {
    let c = TierCache::new("device", 100);
    let a = Arc::new(1u32);
    c.insert("a", a.clone(), 30).unwrap();
    c.insert("p", Arc::new(2u32), 60).unwrap();
    c.set_pinned("p", true);
    // Even with "a" released only 40 could be had: waiting cannot help.
    let full = c.admit("n", Arc::new(3u32), 50).unwrap_err();
    assert_eq!(full, TierFull { needed: 50, budget: 100, held: 90, pinned: 60 });
    assert!(!c.is_draining("a"));
    assert!(matches!(c.admit("n", Arc::new(3u32), 101), Err(TierFull { needed: 101, .. })));
    // 40 fits once "a" drains; its own turn (claim) takes it back.
    assert!(matches!(c.admit("n", Arc::new(3u32), 40), Ok(Admission::Draining(_))));
    assert!(c.is_draining("a") && c.get("a").is_none());
    let before = c.stats();
    let lease = c.claim("a").expect("a is present");
    assert!(Arc::ptr_eq(&lease, &a) && !c.is_draining("a"));
    // The get above counted its miss; the claim that follows counts nothing more.
    assert_eq!((c.stats().hits, c.stats().misses), (before.hits, before.misses));
    assert!(c.get("a").is_some());
    assert!(c.claim("absent").is_none());
    // A new waiter's admit replaces the marks; clear_draining lifts them all.
    assert!(matches!(c.admit("m", Arc::new(4u32), 40), Ok(Admission::Draining(_))));
    assert!(c.is_draining("a"));
    c.clear_draining();
    assert!(!c.is_draining("a") && c.get("a").is_some());
    assert_eq!(c.stats().drains, 2);
    // Removal lifts a mark too.
    assert!(matches!(c.admit("m", Arc::new(4u32), 40), Ok(Admission::Draining(_))));
    c.remove("a");
    assert!(!c.is_draining("a"));
}

#[test]
fn replacing_a_key_adjusts_bytes() {
    let c = TierCache::new("host", 100);
    put(&c, "a", 60);
    put(&c, "b", 30);
    // Growing `a` to 70 only needs the 60 it frees itself plus 10 free: nothing evicted.
    assert!(put(&c, "a", 70).is_empty());
    assert_eq!(c.stats().bytes, 100);
    // Growing it to 90 evicts `b`, never `a`'s own old entry as a "victim".
    assert_eq!(put(&c, "a", 90), ["b"]);
    assert_eq!(put(&c, "a", 5), Vec::<String>::new());
    assert_eq!((c.stats().bytes, c.stats().entries), (5, 1));
    // Replacing a leased entry is allowed: the holder keeps the old value.
    let old = c.get("a").unwrap();
    c.insert("a", Arc::new(42), 50).unwrap();
    assert_eq!(*old, 0);
    assert_eq!(*c.peek("a").unwrap(), 42);
    assert_eq!(Arc::strong_count(&old), 1);
    assert!(!c.is_leased("a"));
    // A replacement that cannot fit keeps the old entry.
    c.set_pinned("p", true);
    put(&c, "p", 50);
    assert!(c.insert("a", Arc::new(7), 60).is_err());
    assert_eq!(*c.peek("a").unwrap(), 42);
    assert_eq!(c.stats().bytes, 100);
}

/// Reference model: a Vec in LRU order (front = oldest).
#[derive(Default)]
struct Model {
    order: Vec<(String, u64)>,
    pinned: BTreeSet<String>,
    hits: u64,
    misses: u64,
    inserts: u64,
    evictions: u64,
}

impl Model {
    fn bytes(&self) -> u64 {
        self.order.iter().map(|e| e.1).sum()
    }
    fn pos(&self, k: &str) -> Option<usize> {
        self.order.iter().position(|e| e.0 == k)
    }
}

#[test]
fn randomized_against_reference_model() {
    for seed in 0..20u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let budget = rng.random_range(0..200u64);
        let c: TierCache<u64> = TierCache::new("model", budget);
        let mut m = Model::default();
        let mut leases: BTreeMap<String, Vec<Arc<u64>>> = BTreeMap::new();
        let keys: Vec<String> = (0..12).map(|i| format!("k{i}")).collect();
        for step in 0..3000 {
            let k = keys[rng.random_range(0..keys.len())].clone();
            let ctx = format!("seed {seed} step {step}");
            match rng.random_range(0..100) {
                0..35 => {
                    let bytes = rng.random_range(0..=budget / 3 + 5);
                    let v = Arc::new(step);
                    // The model's choice: oldest unpinned, unleased keys other than `k`.
                    let replaced = m.pos(&k).map_or(0, |i| m.order[i].1);
                    let mut free = budget.saturating_sub(m.bytes() - replaced);
                    let mut victims = Vec::new();
                    for (key, b) in &m.order {
                        if bytes <= free {
                            break;
                        }
                        let leased = leases.get(key).is_some_and(|l| !l.is_empty());
                        if key != &k && !m.pinned.contains(key) && !leased {
                            victims.push(key.clone());
                            free += b;
                        }
                    }
                    let res = c.insert(&k, v.clone(), bytes);
                    if bytes > free {
                        let full = res.expect_err(&ctx);
                        assert_eq!(full.needed, bytes, "{ctx}");
                        assert_eq!(full.free(), free, "{ctx}");
                    } else {
                        let evicted: Vec<String> =
                            res.expect(&ctx).into_iter().map(|e| e.0).collect();
                        assert_eq!(evicted, victims, "{ctx}");
                        m.order.retain(|e| !victims.contains(&e.0) && e.0 != k);
                        m.order.push((k.clone(), bytes));
                        m.inserts += 1;
                        m.evictions += victims.len() as u64;
                        if rng.random_bool(0.3) {
                            leases.entry(k.clone()).or_default().push(v);
                        }
                    }
                }
                35..60 => {
                    let got = c.get(&k);
                    assert_eq!(got.is_some(), m.pos(&k).is_some(), "{ctx}");
                    if let Some(i) = m.pos(&k) {
                        m.hits += 1;
                        let e = m.order.remove(i);
                        m.order.push(e);
                        if rng.random_bool(0.3) {
                            leases.entry(k.clone()).or_default().push(got.unwrap());
                        }
                    } else {
                        m.misses += 1;
                    }
                }
                60..70 => {
                    assert_eq!(c.peek(&k).is_some(), m.pos(&k).is_some(), "{ctx}");
                }
                70..80 => {
                    // Release one lease (of any value ever leased under `k`).
                    if let Some(l) = leases.get_mut(&k) {
                        l.pop();
                    }
                }
                80..88 => {
                    let pin = rng.random_bool(0.5);
                    c.set_pinned(&k, pin);
                    if pin {
                        m.pinned.insert(k.clone());
                    } else {
                        m.pinned.remove(&k);
                    }
                }
                _ => {
                    assert_eq!(c.remove(&k).is_some(), m.pos(&k).is_some(), "{ctx}");
                    m.order.retain(|e| e.0 != k);
                }
            }
            // Leases on replaced or removed values no longer count: keep only those that are the
            // cache's current value, as the cache sees them.
            for (key, l) in leases.iter_mut() {
                let current = c.peek(key);
                l.retain(|v| current.as_ref().is_some_and(|cur| Arc::ptr_eq(cur, v)));
            }
            let s = c.stats();
            assert!(s.bytes <= budget, "{ctx}: {s:?}");
            assert_eq!(s.bytes, m.bytes(), "{ctx}");
            assert_eq!(s.entries, m.order.len() as u64, "{ctx}");
            assert_eq!((s.hits, s.misses), (m.hits, m.misses), "{ctx}");
            assert_eq!((s.inserts, s.evictions), (m.inserts, m.evictions), "{ctx}");
            let mut want: Vec<String> = m.order.iter().map(|e| e.0.clone()).collect();
            want.sort();
            assert_eq!(c.keys(), want, "{ctx}");
            for key in &keys {
                let leased = leases.get(key).is_some_and(|l| !l.is_empty());
                assert_eq!(c.is_leased(key), leased, "{ctx} {key}");
                assert_eq!(c.is_pinned(key), m.pinned.contains(key), "{ctx} {key}");
            }
        }
    }
}

#[test]
fn concurrent_get_and_insert_smoke() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TierCache<Vec<u8>>>();
    let c = Arc::new(TierCache::<Vec<u8>>::new("device", 10_000));
    c.set_pinned("k0", true);
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut rng = ChaCha8Rng::seed_from_u64(t);
                let mut held = Vec::new();
                for _ in 0..5_000 {
                    let key = format!("k{}", rng.random_range(0..64));
                    if rng.random_bool(0.5) {
                        let bytes = rng.random_range(1..1_500u64);
                        let v = Arc::new(vec![t as u8; 4]);
                        match c.insert(&key, v.clone(), bytes) {
                            Ok(_) => held.push(v),
                            Err(full) => assert!(full.needed > full.free()),
                        }
                    } else if let Some(v) = c.get(&key) {
                        assert_eq!(v.len(), 4);
                        held.push(v);
                    }
                    if held.len() > 3 {
                        held.remove(rng.random_range(0..held.len()));
                    }
                    assert!(c.stats().bytes <= 10_000);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = c.stats();
    assert!(s.bytes <= s.budget);
    assert_eq!(s.entries, c.keys().len() as u64);
    // Every lease was dropped with its thread.
    assert!(c.keys().iter().all(|k| !c.is_leased(k)));
}
