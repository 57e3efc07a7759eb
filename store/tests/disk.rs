//! The content-addressed on-disk store: import, dedup, durability across reopen, cross-process
//! refresh, alignment, integrity (checksums, quarantine, verify), damaged files, gc.
//!
//! Every test that loads runs once per read path (`IoMode::Pread` and `IoMode::Auto`).

mod common;

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::*;
use lorad_store::paging::{IoBackend, IoMode};
use lorad_store::{
    Adapter, BaseShape, EntryState, Store, StoreConfig, StoreError, StoredDtype, TargetModule,
    TensorDtype, random_adapter, read_peft_dir, write_peft_dir,
};

const MODES: [IoMode; 2] = [IoMode::Pread, IoMode::Auto];
const BASE_HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn open(root: &Path, mode: IoMode) -> Store {
    Store::open(root, StoreConfig { io_mode: mode, queue_depth: 8 }).expect("open store")
}

/// Runs `f` once per read path, each time on a fresh store root.
fn each_mode(f: impl Fn(&Path, IoMode)) {
    for mode in MODES {
        let root = tempfile::tempdir().unwrap();
        f(root.path(), mode);
    }
}

/// Bit-for-bit equality of the weights (`==` on f32 would equate 0.0 and -0.0).
#[track_caller]
fn assert_same_weights(got: &Adapter, want: &Adapter) {
    assert_eq!(got.weights.len(), want.weights.len());
    for (g, w) in got.weights.iter().zip(&want.weights) {
        assert_eq!((g.layer, g.module, g.rank), (w.layer, w.module, w.rank));
        assert_eq!(g.scale.to_bits(), w.scale.to_bits(), "scale of {:?}", g.module);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert!(bits(&g.a) == bits(&w.a), "A of layer {} {:?} differs", g.layer, g.module);
        assert!(bits(&g.b) == bits(&w.b), "B of layer {} {:?} differs", g.layer, g.module);
    }
    assert_eq!(got.content_hash, want.content_hash);
}

fn adapter(seed: u64, rank: usize, targets: &[TargetModule]) -> Adapter {
    random_adapter("x", &small(), &spec(rank, 2.0 * rank as f64, targets, seed))
}

fn flip_byte(path: &Path, offset: u64) {
    let f = OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ 0x5a], offset).unwrap();
}

#[test]
fn peft_dirs_in_f32_and_bf16_load_exactly() {
    // Tensors of 4096 elements, so the bf16 saving is not hidden by the 4 KiB padding.
    let base = BaseShape {
        num_layers: 2,
        hidden_size: 256,
        q_dim: 256,
        kv_dim: 256,
        intermediate_size: 512,
    };
    let src = tempfile::tempdir().unwrap();
    let f32_dir = src.path().join("f32-adapter");
    let bf16_dir = src.path().join("bf16-adapter");
    let a = random_adapter("x", &base, &spec(16, 32.0, &QV, 7));
    write_peft_dir(&f32_dir, &a, TensorDtype::F32).unwrap();
    write_peft_dir(&bf16_dir, &a, TensorDtype::BF16).unwrap();
    let want_f32 = read_peft_dir(&f32_dir, "f32-adapter", &base).unwrap();
    let want_bf16 = read_peft_dir(&bf16_dir, "bf16-adapter", &base).unwrap();
    each_mode(|root, mode| {
        let store = open(root, mode);
        // The backend is reported, and a pread fallback always says why.
        match (mode, store.io_backend()) {
            (IoMode::Pread, IoBackend::Pread) => {}
            (IoMode::Pread, other) => panic!("pread mode got {other:?}"),
            (_, backend) => eprintln!("auto mode reads with {}", backend.as_str()),
        }
        assert_eq!(store.io_backend() == IoBackend::Pread, store.io_fallback_reason().is_some());
        let i32 = store.import_dir(&f32_dir, None, &base, BASE_HASH).unwrap();
        let i16 = store.import_dir(&bf16_dir, Some("bf16"), &base, BASE_HASH).unwrap();
        assert_eq!((i32.name.as_str(), i32.dtype.as_str()), ("f32-adapter", "f32"));
        assert_eq!((i16.name.as_str(), i16.dtype.as_str()), ("bf16", "bf16"));
        assert_eq!((i32.rank, i32.alpha, i32.use_rslora), (16, 32.0, false));
        assert_eq!(i32.targets, QV.to_vec());
        assert_eq!(i32.base_hash, BASE_HASH);
        assert_eq!(i32.state, EntryState::Ready);
        assert!(i16.bytes * 10 < i32.bytes * 6, "bf16 {} vs f32 {} bytes", i16.bytes, i32.bytes);

        let before = store.pager_stats();
        let got = store.load("f32-adapter", &base).unwrap();
        assert_eq!(store.pager_stats().reads - before.reads, 1, "one paged read per blob");
        assert_same_weights(&got, &want_f32);
        assert_eq!(got.name, "f32-adapter");
        assert_eq!((got.config.r, got.config.lora_alpha), (16, 32.0));
        assert_eq!(got.config.target_modules, QV.to_vec());
        let got16 = store.load("bf16", &base).unwrap();
        assert_same_weights(&got16, &want_bf16);
        let blob = store.read_blob("bf16").unwrap();
        assert!(
            blob.manifest()
                .iter()
                .all(|p| p.a.dtype == StoredDtype::BF16 && p.b.dtype == StoredDtype::BF16)
        );
        assert_eq!(blob.len() as u64, i16.bytes);
        // The reconstructed config is consistent: the loaded adapter writes back as PEFT.
        let out = tempfile::tempdir().unwrap();
        write_peft_dir(out.path(), &got, TensorDtype::F32).unwrap();
        assert_same_weights(&read_peft_dir(out.path(), "again", &base).unwrap(), &want_f32);
        // Loading against a base it does not fit is an error naming the adapter.
        let err = store.load("bf16", &small()).unwrap_err().to_string();
        assert!(err.contains("`bf16`") && err.contains("base model"), "{err}");
    });
}

#[test]
fn import_files_matches_import_dir() {
    let src = tempfile::tempdir().unwrap();
    let a = adapter(3, 8, &TargetModule::ALL);
    let dir = write_dir(src.path(), "d", &a);
    let config = std::fs::read(dir.join("adapter_config.json")).unwrap();
    let weights = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    each_mode(|root, mode| {
        let store = open(root, mode);
        let info = store.import_files("up", &config, &weights, &small(), BASE_HASH).unwrap();
        assert_eq!(info.content_hash, a.content_hash);
        assert_same_weights(&store.load("up", &small()).unwrap(), &a);
        let err = store.import_files("bad", b"{", &weights, &small(), BASE_HASH).unwrap_err();
        assert!(err.to_string().contains("<upload bad>/adapter_config.json"), "{err}");
        assert!(matches!(
            store.import_files("bad name", &config, &weights, &small(), BASE_HASH),
            Err(StoreError::InvalidName { .. })
        ));
        assert!(matches!(
            store.import_files("x", &config, &weights, &small(), "no spaces allowed"),
            Err(StoreError::InvalidBaseHash { .. })
        ));
        // Nothing failed was stored.
        assert_eq!(store.list().len(), 1);
    });
}

#[test]
fn store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
    assert_send_sync::<lorad_store::Blob>();
}

#[test]
fn same_content_is_stored_once() {
    each_mode(|root, mode| {
        let store = open(root, mode);
        let a = adapter(1, 8, &QV);
        let first = store.import_adapter("one", &a, BASE_HASH).unwrap();
        let bytes = store.disk_bytes();
        let second = store.import_adapter("two", &a, BASE_HASH).unwrap();
        assert_eq!(store.disk_bytes(), bytes, "second import must not write a blob");
        assert_eq!(second.content_hash, first.content_hash);
        assert_eq!(store.location("one").unwrap(), store.location("two").unwrap());
        // Same name, same content: idempotent, the original entry comes back.
        assert_eq!(store.import_adapter("one", &a, BASE_HASH).unwrap(), first);
        assert_eq!(store.disk_bytes(), bytes);
        let names: Vec<_> = store.list().into_iter().map(|i| i.name).collect();
        assert_eq!(names, ["one", "two"]);
        for n in ["one", "two"] {
            let got = store.load(n, &small()).unwrap();
            assert_eq!(got.name, n);
            assert_same_weights(&got, &a);
        }
    });
}

#[test]
fn same_name_different_content_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let store = open(root.path(), IoMode::Pread);
    store.import_adapter("a", &adapter(1, 8, &QV), BASE_HASH).unwrap();
    let err = store.import_adapter("a", &adapter(2, 8, &QV), BASE_HASH).unwrap_err();
    assert!(matches!(err, StoreError::AdapterExists { .. }), "{err:?}");
    assert!(err.to_string().contains("`a`"));
    // An adapter whose recorded hash is stale is refused.
    let mut stale = adapter(3, 8, &QV);
    stale.weights[0].a[0] += 1.0;
    let err = store.import_adapter("stale", &stale, BASE_HASH).unwrap_err();
    assert!(err.to_string().contains("content_hash"), "{err}");
    assert_eq!(store.list().len(), 1);
}

#[test]
fn remove_keeps_a_shared_blob() {
    each_mode(|root, mode| {
        let store = open(root, mode);
        let a = adapter(5, 8, &QV);
        store.import_adapter("a", &a, BASE_HASH).unwrap();
        store.import_adapter("b", &a, BASE_HASH).unwrap();
        store.remove("a").unwrap();
        assert!(matches!(store.get("a"), Err(StoreError::NotFound { .. })));
        assert!(matches!(store.remove("a"), Err(StoreError::NotFound { .. })));
        assert!(!store.contains("a") && store.contains("b"));
        assert_same_weights(&store.load("b", &small()).unwrap(), &a);
        let report = store.gc().unwrap();
        assert_eq!(report.bytes_reclaimed, 0, "{report:?}");
        assert_same_weights(&store.load("b", &small()).unwrap(), &a);
        store.remove("b").unwrap();
        let report = store.gc().unwrap();
        assert!(report.bytes_reclaimed > 0, "{report:?}");
        assert_eq!(store.disk_bytes(), 4096, "only the newest segment's header remains");
        assert!(store.list().is_empty());
    });
}

/// A damaged index record (here the `Put` of `b`, with valid records after it) hides what it
/// held, so gc refuses rather than reclaim bytes it may have named; discarding on purpose drops
/// it, and the adapters around the damage were never at risk.
#[test]
fn gc_refuses_while_index_records_are_damaged() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let adapters: Vec<Adapter> = (0..3).map(|i| adapter(40 + i, 8, &QV)).collect();
    {
        let store = open(root, IoMode::Pread);
        for (name, a) in ["a", "b", "c"].iter().zip(&adapters) {
            store.import_adapter(name, a, BASE_HASH).unwrap();
        }
    }
    // Slot 1 (after the 512-byte header) is `b`'s Put: damage its payload.
    flip_byte(&root.join("index"), 512 + 512 + 40);
    let store = open(root, IoMode::Pread);
    assert!(store.contains("a") && !store.contains("b") && store.contains("c"));
    let disk_before = store.disk_bytes();
    let e = store.gc().unwrap_err();
    assert!(matches!(&e, StoreError::DamagedIndex { offsets, .. } if offsets == &[1024]), "{e}");
    assert!(e.to_string().contains("--discard-damaged"), "{e}");
    assert_eq!(store.disk_bytes(), disk_before, "a refused gc touches nothing");
    let report = store.gc_discarding_damaged().unwrap();
    assert_eq!(report.index_records_after, 2, "{report:?}");
    for (name, a) in [("a", &adapters[0]), ("c", &adapters[2])] {
        assert_same_weights(&store.load(name, &small()).unwrap(), a);
    }
    // The compacted index has no damage left: a plain gc runs again.
    open(root, IoMode::Pread).gc().unwrap();
}

#[test]
fn reopen_sees_everything_and_pins_persist() {
    each_mode(|root, mode| {
        let adapters: Vec<Adapter> =
            (0..5).map(|i| adapter(10 + i, 4 + 4 * i as usize, &QV)).collect();
        let listed = {
            let store = open(root, mode);
            for (i, a) in adapters.iter().enumerate() {
                store.import_adapter(&format!("n{i}"), a, BASE_HASH).unwrap();
            }
            store.set_pinned("n1", true).unwrap();
            store.set_pinned("n2", true).unwrap();
            store.set_pinned("n2", false).unwrap();
            store.remove("n3").unwrap();
            assert!(store.get("n1").unwrap().pinned);
            store.list()
        };
        let store = open(root, mode);
        assert_eq!(store.list(), listed);
        assert!(store.get("n1").unwrap().pinned && !store.get("n2").unwrap().pinned);
        assert!(!store.contains("n3"));
        for i in [0, 1, 2, 4] {
            assert_same_weights(&store.load(&format!("n{i}"), &small()).unwrap(), &adapters[i]);
        }
        // Pins survive compaction too.
        store.gc().unwrap();
        assert!(open(root, mode).get("n1").unwrap().pinned);
    });
}

#[test]
fn refresh_sees_another_instance() {
    each_mode(|root, mode| {
        let reader = open(root, mode);
        let writer = open(root, mode);
        let big = adapter(1, 32, &TargetModule::ALL);
        let small_a = adapter(2, 4, &QV);
        writer.import_adapter("big", &big, BASE_HASH).unwrap();
        assert!(reader.list().is_empty(), "no refresh yet");
        // get/load of an unknown name refresh on their own.
        assert_same_weights(&reader.load("big", &small()).unwrap(), &big);
        writer.import_adapter("small", &small_a, BASE_HASH).unwrap();
        writer.set_pinned("big", true).unwrap();
        reader.refresh().unwrap();
        assert_eq!(reader.list(), writer.list());
        assert_same_weights(&reader.load("small", &small()).unwrap(), &small_a);

        // The writer removes "big" and gc moves "small" out of the mostly-dead segment, deletes
        // it and rewrites the index. `reader` has the old segment open: until it refreshes it
        // serves its stale view from the deleted file. `stale` never opened it: its reads hit the
        // missing file, refresh, and retry.
        let stale = open(root, mode);
        writer.remove("big").unwrap();
        let report = writer.gc().unwrap();
        assert_eq!((report.blobs_moved, report.segments_deleted), (1, 1), "{report:?}");
        assert_same_weights(&reader.load("small", &small()).unwrap(), &small_a);
        assert_same_weights(&stale.load("small", &small()).unwrap(), &small_a);
        assert!(matches!(stale.load("big", &small()), Err(StoreError::NotFound { .. })));
        reader.refresh().unwrap();
        assert!(matches!(reader.load("big", &small()), Err(StoreError::NotFound { .. })));
        assert_same_weights(&reader.load("small", &small()).unwrap(), &small_a);
        assert_eq!(reader.list(), writer.list());
        // And the other direction: the reader can write too.
        reader.import_adapter("third", &big, BASE_HASH).unwrap();
        assert_same_weights(&writer.load("third", &small()).unwrap(), &big);
    });
}

#[test]
fn every_tensor_is_4k_aligned() {
    let root = tempfile::tempdir().unwrap();
    let store = open(root.path(), IoMode::Auto);
    let mut names = Vec::new();
    for (i, targets) in
        [&QV[..], &TargetModule::ALL[..], &[TargetModule::DownProj][..]].iter().enumerate()
    {
        for rank in [1, 3, 8, 17] {
            let name = format!("a{i}-{rank}");
            let a = adapter(100 + i as u64 * 10 + rank as u64, rank, targets);
            store.import_adapter(&name, &a, BASE_HASH).unwrap();
            names.push(name);
        }
    }
    for name in &names {
        let blob = store.read_blob(name).unwrap();
        let loc = blob.location();
        assert_eq!(loc.offset % 4096, 0, "{name}");
        assert_eq!(loc.len % 4096, 0, "{name}");
        assert_eq!(*loc, store.location(name).unwrap());
        for p in blob.manifest() {
            for t in [&p.a, &p.b] {
                assert_eq!((loc.offset + t.offset) % 4096, 0, "{name} {:?}", p.module);
                assert!(t.offset + t.len <= loc.len);
            }
        }
        let mut magic = [0u8; 8];
        std::fs::File::open(&loc.path).unwrap().read_exact_at(&mut magic, loc.offset).unwrap();
        assert_eq!(&magic, b"LORADBLB");
    }
}

#[test]
fn a_flipped_byte_quarantines_only_its_adapter() {
    each_mode(|root, mode| {
        let adapters: Vec<Adapter> = (0..3).map(|i| adapter(20 + i, 8, &QV)).collect();
        let names = ["a", "b", "c"];
        let store = open(root, mode);
        for (n, a) in names.iter().zip(&adapters) {
            store.import_adapter(n, a, BASE_HASH).unwrap();
        }
        let blob = store.read_blob("b").unwrap();
        let pair = blob.manifest()[1].clone();
        flip_byte(&blob.location().path, blob.location().offset + pair.b.offset + 3);
        drop(blob);

        let err = store.load("b", &small()).unwrap_err();
        assert!(matches!(err, StoreError::Checksum { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("`b`") && text.contains(&pair.tensor_name(true)), "{text}");
        let check_state = |store: &Store| {
            for info in store.list() {
                match (info.name.as_str(), &info.state) {
                    ("b", EntryState::Quarantined { reason }) => {
                        assert!(reason.contains("checksum"), "{reason}")
                    }
                    ("b", s) => panic!("b should be quarantined, is {s:?}"),
                    (_, s) => assert_eq!(*s, EntryState::Ready),
                }
            }
            let err = store.load("b", &small()).unwrap_err();
            assert!(matches!(err, StoreError::Quarantined { .. }), "{err:?}");
            assert!(err.to_string().contains("`b`"));
            for i in [0, 2] {
                assert_same_weights(&store.load(names[i], &small()).unwrap(), &adapters[i]);
            }
            let report = store.verify();
            assert_eq!(report.ok, 2);
            let failed: Vec<_> = report.failed.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(failed, ["b"]);
        };
        check_state(&store);
        check_state(&open(root, mode));
        // Re-importing the same content repairs it (with a fresh blob).
        store.import_adapter("b", &adapters[1], BASE_HASH).unwrap();
        assert_same_weights(&store.load("b", &small()).unwrap(), &adapters[1]);
        assert_eq!(store.verify().ok, 3);
    });
}

#[test]
fn verify_finds_damage_nobody_loaded_and_hash_mismatches() {
    each_mode(|root, mode| {
        let store = open(root, mode);
        let a = adapter(30, 8, &QV);
        let b = adapter(31, 8, &QV);
        store.import_adapter("a", &a, BASE_HASH).unwrap();
        store.import_adapter("b", &b, BASE_HASH).unwrap();
        store.import_adapter("b-alias", &b, BASE_HASH).unwrap();
        let loc = store.location("b").unwrap();
        // Damage a tensor *and* fix up its CRC and the manifest CRC: only the content hash
        // recomputation can notice.
        let f = OpenOptions::new().read(true).write(true).open(&loc.path).unwrap();
        let mut blob = vec![0u8; loc.len as usize];
        f.read_exact_at(&mut blob, loc.offset).unwrap();
        let pairs = u32::from_le_bytes(blob[12..16].try_into().unwrap()) as usize;
        let manifest_len = 64 + pairs * 64 + 4;
        let a_off = u64::from_le_bytes(blob[64 + 24..64 + 32].try_into().unwrap()) as usize;
        let a_len = u64::from_le_bytes(blob[64 + 32..64 + 40].try_into().unwrap()) as usize;
        blob[a_off] ^= 1;
        let crc = crc32fast::hash(&blob[a_off..a_off + a_len]);
        blob[64 + 56..64 + 60].copy_from_slice(&crc.to_le_bytes());
        let mcrc = crc32fast::hash(&blob[..manifest_len - 4]);
        blob[manifest_len - 4..manifest_len].copy_from_slice(&mcrc.to_le_bytes());
        f.write_all_at(&blob, loc.offset).unwrap();

        let fresh = open(root, mode);
        let report = fresh.verify();
        assert_eq!(report.ok, 1);
        let mut failed: Vec<_> = report.failed.iter().map(|(n, _)| n.as_str()).collect();
        failed.sort();
        assert_eq!(failed, ["b", "b-alias"], "a shared damaged blob quarantines every name");
        let text = report.failed[0].1.to_string();
        assert!(text.contains("hash"), "{text}");
        assert!(matches!(fresh.load("b-alias", &small()), Err(StoreError::Quarantined { .. })));
        assert_same_weights(&fresh.load("a", &small()).unwrap(), &a);
    });
}

#[test]
fn truncated_segment_is_a_clean_error() {
    each_mode(|root, mode| {
        let store = open(root, mode);
        let a = adapter(40, 8, &QV);
        let b = adapter(41, 8, &TargetModule::ALL);
        store.import_adapter("a", &a, BASE_HASH).unwrap();
        store.import_adapter("b", &b, BASE_HASH).unwrap();
        let loc = store.location("b").unwrap();
        let f = OpenOptions::new().write(true).open(&loc.path).unwrap();
        f.set_len(loc.offset + loc.len / 2).unwrap();
        drop(f);
        let fresh = open(root, mode);
        let err = fresh.load("b", &small()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`b`") && text.contains("truncated"), "{text}");
        assert_same_weights(&fresh.load("a", &small()).unwrap(), &a);
        // Truncated into the manifest of "a" as well.
        let la = fresh.location("a").unwrap();
        OpenOptions::new().write(true).open(&la.path).unwrap().set_len(la.offset + 10).unwrap();
        let text = fresh.load("a", &small()).unwrap_err().to_string();
        assert!(text.contains("`a`"), "{text}");
        assert_eq!(fresh.verify().failed.len(), 2);
    });
}

#[test]
fn unknown_index_version_and_damaged_index_are_clear_errors() {
    let root = tempfile::tempdir().unwrap();
    drop(open(root.path(), IoMode::Pread));
    let index = root.path().join("index");
    let f = OpenOptions::new().write(true).open(&index).unwrap();
    f.write_all_at(&99u32.to_le_bytes(), 8).unwrap();
    let err = Store::open(root.path(), StoreConfig::default()).unwrap_err();
    assert!(matches!(err, StoreError::IndexVersion { found: 99, supported: 1, .. }), "{err:?}");
    assert!(err.to_string().contains("version 99"), "{err}");
    f.write_all_at(b"X", 0).unwrap();
    let err = Store::open(root.path(), StoreConfig::default()).unwrap_err().to_string();
    assert!(err.contains("corrupt") && err.contains("index"), "{err}");
    f.set_len(100).unwrap();
    let err = Store::open(root.path(), StoreConfig::default()).unwrap_err().to_string();
    assert!(err.contains("shorter than the header"), "{err}");
}

#[test]
fn torn_tails_are_invisible_and_overwritten() {
    each_mode(|root, mode| {
        let a = adapter(50, 8, &QV);
        let b = adapter(51, 8, &QV);
        let loc = {
            let store = open(root, mode);
            store.import_adapter("a", &a, BASE_HASH).unwrap();
            store.location("a").unwrap()
        };
        // A crashed import: half a blob after "a", and half a record after the last one.
        let seg = OpenOptions::new().write(true).open(&loc.path).unwrap();
        seg.write_all_at(&[0xee; 6000], loc.offset + loc.len).unwrap();
        let index = OpenOptions::new().write(true).open(root.join("index")).unwrap();
        let index_len = index.metadata().unwrap().len();
        index.write_all_at(&[0x4c; 300], index_len).unwrap();

        let store = open(root, mode);
        assert_eq!(store.list().len(), 1);
        store.import_adapter("b", &b, BASE_HASH).unwrap();
        assert_eq!(
            store.location("b").unwrap().offset,
            loc.offset + loc.len,
            "torn blob overwritten"
        );
        let again = open(root, mode);
        assert_same_weights(&again.load("a", &small()).unwrap(), &a);
        assert_same_weights(&again.load("b", &small()).unwrap(), &b);
        assert_eq!(std::fs::metadata(root.join("index")).unwrap().len(), index_len + 512);
    });
}

#[test]
fn gc_reclaims_space_and_everything_still_loads() {
    each_mode(|root, mode| {
        let store = open(root, mode);
        store.set_max_segment_bytes(200 * 1024);
        let adapters: Vec<Adapter> = (0..12)
            .map(|i| {
                adapter(60 + i, 4 << (i % 3), if i % 2 == 0 { &QV } else { &TargetModule::ALL })
            })
            .collect();
        for (i, a) in adapters.iter().enumerate() {
            store.import_adapter(&format!("g{i:02}"), a, BASE_HASH).unwrap();
        }
        store.import_adapter("alias", &adapters[11], BASE_HASH).unwrap();
        let segments = std::fs::read_dir(root.join("segments")).unwrap().count();
        assert!(segments >= 3, "expected several segments, got {segments}");
        let keep = [1usize, 6, 11];
        for i in (0..12).filter(|i| !keep.contains(i)) {
            store.remove(&format!("g{i:02}")).unwrap();
        }
        store.remove("g11").unwrap(); // its blob lives on as "alias"
        let before = store.disk_bytes();
        let report = store.gc().unwrap();
        assert!(report.bytes_reclaimed > 0 && report.segments_deleted > 0, "{report:?}");
        assert_eq!(store.disk_bytes(), before - report.bytes_reclaimed);
        assert_eq!(report.index_records_after, 3);
        assert!(report.index_records_before > report.index_records_after);
        let check = |store: &Store| {
            let names: Vec<_> = store.list().into_iter().map(|i| i.name).collect();
            assert_eq!(names, ["alias", "g01", "g06"]);
            assert_same_weights(&store.load("g01", &small()).unwrap(), &adapters[1]);
            assert_same_weights(&store.load("g06", &small()).unwrap(), &adapters[6]);
            assert_same_weights(&store.load("alias", &small()).unwrap(), &adapters[11]);
            assert_eq!(store.verify().ok, 3);
        };
        check(&store);
        check(&open(root, mode));
        // Every kept segment is at least half live (mostly-dead ones were evacuated), and gc is
        // now a no-op.
        let live: u64 = store.list().iter().map(|i| i.bytes).sum::<u64>();
        let kept = std::fs::read_dir(root.join("segments")).unwrap().count() as u64;
        assert!(store.disk_bytes() <= 2 * live + kept * 4096, "{} vs {live}", store.disk_bytes());
        let again = store.gc().unwrap();
        assert_eq!((again.bytes_reclaimed, again.blobs_moved, again.segments_deleted), (0, 0, 0));
        check(&open(root, mode));
    });
}

#[test]
fn gc_moves_several_blobs_out_of_a_mostly_dead_segment() {
    each_mode(|root, mode| {
        let store = open(root, mode);
        let big = adapter(70, 32, &TargetModule::ALL);
        let keep: Vec<Adapter> = (0..3).map(|i| adapter(71 + i, 2, &QV)).collect();
        store.import_adapter("big", &big, BASE_HASH).unwrap();
        for (i, a) in keep.iter().enumerate() {
            store.import_adapter(&format!("k{i}"), a, BASE_HASH).unwrap();
        }
        store.remove("big").unwrap();
        let report = store.gc().unwrap();
        assert_eq!((report.blobs_moved, report.segments_deleted), (3, 1), "{report:?}");
        let offsets: BTreeSet<u64> =
            (0..3).map(|i| store.location(&format!("k{i}")).unwrap().offset).collect();
        assert_eq!(offsets.len(), 3, "each moved blob has its own place");
        for store in [&store, &open(root, mode)] {
            for (i, a) in keep.iter().enumerate() {
                assert_same_weights(&store.load(&format!("k{i}"), &small()).unwrap(), a);
            }
        }
    });
}

#[test]
fn concurrent_writers_and_readers() {
    let root = tempfile::tempdir().unwrap();
    let shared = open(root.path(), IoMode::Auto);
    let other = open(root.path(), IoMode::Pread);
    let adapters: Vec<Adapter> = (0..24).map(|i| adapter(200 + i, 4, &QV)).collect();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (store, adapters) = (if t % 2 == 0 { &shared } else { &other }, &adapters);
            s.spawn(move || {
                for i in (t..24).step_by(4) {
                    store.import_adapter(&format!("c{i:02}"), &adapters[i], BASE_HASH).unwrap();
                    // Everything this thread imported so far loads, from either instance.
                    let got = store.load(&format!("c{i:02}"), &small()).unwrap();
                    assert_same_weights(&got, &adapters[i]);
                }
            });
        }
    });
    shared.refresh().unwrap();
    let reopened = open(root.path(), IoMode::Pread);
    assert_eq!(reopened.list().len(), 24);
    assert_eq!(shared.list(), reopened.list());
    for (i, a) in adapters.iter().enumerate() {
        assert_same_weights(&reopened.load(&format!("c{i:02}"), &small()).unwrap(), a);
    }
}

#[test]
fn adapter_names_are_validated() {
    let long_ok = "a".repeat(128);
    for ok in ["a", "my-adapter_v1.2", "A.b-C_9", long_ok.as_str()] {
        lorad_store::validate_adapter_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    let too_long = "a".repeat(129);
    let cases = [
        ("", "empty"),
        (".hidden", "starts with '.'"),
        ("a/b", "characters"),
        ("../x", "starts with '.'"),
        ("a b", "characters"),
        ("naïve", "characters"),
        (too_long.as_str(), "longer than 128"),
    ];
    let root = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let store = open(root.path(), IoMode::Pread);
    let a = adapter(1, 4, &[TargetModule::QProj]);
    let dir = src.path().join("ok");
    lorad_store::write_peft_dir(&dir, &a, lorad_store::TensorDtype::F32).unwrap();
    for (name, why) in cases {
        let e = lorad_store::validate_adapter_name(name).unwrap_err().to_string();
        assert!(e.contains(why), "{name}: {e}");
        let e = store.import_dir(&dir, Some(name), &small(), "base").unwrap_err().to_string();
        assert!(e.contains("invalid adapter name") && e.contains(why), "{name}: {e}");
        assert!(store.get(name).is_err() && store.remove(name).is_err() && !store.contains(name));
    }
    // A default name taken from an unusable directory name is refused too.
    let bad_dir = src.path().join("has space");
    lorad_store::write_peft_dir(&bad_dir, &a, lorad_store::TensorDtype::F32).unwrap();
    let e = store.import_dir(&bad_dir, None, &small(), "base").unwrap_err().to_string();
    assert!(e.contains("has space") && e.contains("characters"), "{e}");
    assert!(store.list().is_empty());
}
