//! The adapter store on disk, damaged: the index (sometimes with its CRCs fixed up, so the
//! damage reaches the record parser) and the segment files. Opening, listing, loading,
//! verifying and collecting garbage must answer or fail cleanly; damage to a segment must stay
//! with the adapter whose bytes it hit; and a store whose index opens must still open after
//! `verify` and `gc` ran on it.

use std::path::{Path, PathBuf};

use lorad_fuzz::{Campaign, Mutator, Outcome};
use lorad_store::{
    BaseShape, RandomAdapterSpec, Store, StoreConfig, TargetModule, TensorDtype, random_adapter,
    write_peft_dir,
};

const BASE_HASH: &str = "cd00000000000000000000000000000000000000000000000000000000000000";
const SLOT: usize = 512;

fn base() -> BaseShape {
    BaseShape { num_layers: 2, hidden_size: 32, q_dim: 32, kv_dim: 16, intermediate_size: 64 }
}

/// A store with a history: imports of mixed ranks and dtypes, a removal, a pin, a quarantine
/// (an adapter re-imported over), so every record kind is in the index.
fn pristine(root: &Path, scratch: &Path) {
    let store = Store::open(root, StoreConfig::default()).expect("creating the store");
    for i in 0..5u64 {
        let targets =
            if i % 2 == 0 { TargetModule::ALL.to_vec() } else { vec![TargetModule::VProj] };
        let spec = RandomAdapterSpec {
            rank: 4 << (i % 3),
            alpha: 8.0,
            targets,
            use_rslora: i == 3,
            layers: None,
            seed: i,
        };
        let adapter = random_adapter("seed", &base(), &spec);
        let dir = scratch.join(format!("a{i}"));
        let dtype = [TensorDtype::F32, TensorDtype::BF16, TensorDtype::F16][i as usize % 3];
        write_peft_dir(&dir, &adapter, dtype).expect("writing a seed adapter");
        store.import_dir(&dir, Some(&format!("a{i}")), &base(), BASE_HASH).expect("import");
    }
    store.set_pinned("a1", true).expect("pin");
    store.remove("a2").expect("remove");
    // The same content under a second name: the dedup path.
    store.import_dir(&scratch.join("a0"), Some("again"), &base(), BASE_HASH).expect("dedup");
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}

/// Recomputes the CRC of the header and of every slot that still starts with a record magic.
fn fix_crcs(index: &mut [u8]) {
    for slot in index.chunks_mut(SLOT) {
        if slot.len() == SLOT && (slot.starts_with(b"LREC") || slot.starts_with(b"LORADIDX")) {
            let crc = crc32fast::hash(&slot[..SLOT - 4]);
            slot[SLOT - 4..].copy_from_slice(&crc.to_le_bytes());
        }
    }
}

/// Everything a daemon and an operator do with a store, on the damaged copy at `root`.
fn exercise(root: &Path) -> Outcome {
    let store = Store::open(root, StoreConfig::default()).map_err(|e| e.to_string())?;
    let names: Vec<String> = store.list().into_iter().map(|i| i.name).collect();
    for name in &names {
        let _ = store.load(name, &base());
        let _ = store.location(name);
    }
    let _ = store.verify();
    let gc = store.gc();
    drop(store);
    let again = Store::open(root, StoreConfig::default());
    assert!(
        again.is_ok(),
        "the store opened, verified and collected ({gc:?}), then failed to open: {again:?}"
    );
    Ok(())
}

struct Fixture {
    _tmp: tempfile::TempDir,
    pristine: PathBuf,
    work: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pristine = tmp.path().join("pristine");
    pristine_store(&pristine, tmp.path());
    let work = tmp.path().join("work");
    Fixture { pristine, work, _tmp: tmp }
}

fn pristine_store(root: &Path, scratch: &Path) {
    pristine(root, scratch);
}

fn fresh_copy(f: &Fixture) -> Result<(), String> {
    if f.work.exists() {
        std::fs::remove_dir_all(&f.work).map_err(|e| e.to_string())?;
    }
    copy_dir(&f.pristine, &f.work).map_err(|e| e.to_string())
}

#[test]
fn store_index_damage() {
    let f = fixture();
    let index = std::fs::read(f.pristine.join("index")).expect("index");
    let campaign = Campaign::new("store-index", 300);
    let mut m = Mutator::new(campaign.seed(), 1 << 20).with_dictionary([
        &b"LREC"[..],
        b"LORADIDX",
        b"\x01\x00\x00\x00",
        b"\x05",
    ]);
    let report = campaign.run(
        &[index],
        |s| {
            let mut out = m.mutate(s);
            if m.rng().one_in(2) {
                fix_crcs(&mut out);
            }
            out
        },
        |bytes| {
            fresh_copy(&f)?;
            std::fs::write(f.work.join("index"), bytes).map_err(|e| e.to_string())?;
            exercise(&f.work)
        },
    );
    assert!(report.rejected > 0 || report.accepted > 0);
}

#[test]
fn store_segment_damage() {
    let f = fixture();
    let store = Store::open(&f.pristine, StoreConfig::default()).expect("open");
    let names: Vec<String> = store.list().into_iter().map(|i| i.name).collect();
    let locations: Vec<_> = names.iter().map(|n| store.location(n).expect("location")).collect();
    drop(store);
    let segment = locations[0].path.clone();
    let seg_name = segment.strip_prefix(&f.pristine).expect("segment inside the store").to_owned();
    let original = std::fs::read(&segment).expect("segment");
    let campaign = Campaign::new("store-segment", 300);
    let mut m = Mutator::new(campaign.seed(), original.len() + 4096);
    let report = campaign.run(
        std::slice::from_ref(&original),
        |s| m.mutate(s),
        |bytes| {
            fresh_copy(&f)?;
            std::fs::write(f.work.join(&seg_name), bytes).map_err(|e| e.to_string())?;
            let store = Store::open(&f.work, StoreConfig::default());
            let store =
                store.map_err(|e| format!("a damaged segment made the index unreadable: {e}"));
            assert!(store.is_ok(), "{store:?}");
            let store = store?;
            // Bytes before the first difference are intact: every adapter stored wholly there
            // (and not cut off by a truncation) must still load.
            let first_diff = original.iter().zip(bytes).position(|(a, b)| a != b);
            let intact_until = first_diff.unwrap_or(original.len().min(bytes.len())) as u64;
            let mut failed = Vec::new();
            for (name, loc) in names.iter().zip(&locations) {
                let loaded = store.load(name, &base());
                if loc.path == segment && loc.offset + loc.len <= intact_until {
                    assert!(loaded.is_ok(), "`{name}` was not damaged but fails: {loaded:?}");
                }
                if let Err(e) = loaded {
                    failed.push(e.to_string());
                }
            }
            drop(store);
            exercise(&f.work)?;
            if failed.is_empty() { Ok(()) } else { Err(failed.join("; ")) }
        },
    );
    assert!(report.rejected > 0, "{report:?}");
}
