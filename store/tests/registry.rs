//! The directory-backed registry: lifecycle, atomicity, naming, and content identity.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use lorad_store::{
    Registry, StoreError, TargetModule, TensorDtype, random_adapter, read_peft_dir,
    validate_adapter_name, write_peft_dir,
};

fn entries(root: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn import_list_get_load_remove() {
    let src = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let reg = Registry::open(root.path()).unwrap();
    assert!(reg.list().unwrap().is_empty());

    let qv = qv_adapter(&small(), 1);
    let all = random_adapter("x", &small(), &spec(16, 8.0, &TargetModule::ALL, 2));
    let d_qv = write_dir(src.path(), "qv-src", &qv);
    let d_all = write_dir(src.path(), "all", &all);

    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let info_b = reg.import(&d_qv, Some("b-qv"), &small()).unwrap();
    // The name defaults to the source directory's name.
    let info_a = reg.import(&d_all, None, &small()).unwrap();
    assert_eq!(info_a.name, "all");
    assert_eq!(info_b.name, "b-qv");
    assert_eq!((info_b.rank, info_b.alpha, info_b.use_rslora), (8, 16.0, false));
    assert_eq!(info_b.targets, QV);
    assert_eq!(info_a.targets, TargetModule::ALL);
    assert_eq!(info_b.content_hash, qv.content_hash);
    let size = |f: &str| std::fs::metadata(d_qv.join(f)).unwrap().len();
    assert_eq!(info_b.bytes, size("adapter_config.json") + size("adapter_model.safetensors"));
    assert!(info_b.created >= before && info_b.created <= before + 60);

    let names: Vec<String> = reg.list().unwrap().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["all", "b-qv"]);
    assert_eq!(reg.get("b-qv").unwrap(), info_b);
    assert!(reg.contains("all") && reg.contains("b-qv") && !reg.contains("nope"));

    let loaded = reg.load("b-qv", &small()).unwrap();
    assert_eq!(loaded.name, "b-qv");
    assert_eq!(loaded.weights, qv.weights);
    assert_eq!(loaded.content_hash, info_b.content_hash);

    // The registry survives reopening.
    let reg = Registry::open(root.path()).unwrap();
    assert_eq!(reg.list().unwrap().len(), 2);

    reg.remove("b-qv").unwrap();
    assert!(!reg.contains("b-qv"));
    let names: Vec<String> = reg.list().unwrap().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["all"]);
    assert_eq!(entries(root.path()), ["all"], "nothing left behind");
    for r in
        [reg.get("b-qv").map(|_| ()), reg.remove("b-qv"), reg.load("b-qv", &small()).map(|_| ())]
    {
        let e = r.unwrap_err();
        assert!(matches!(e, StoreError::NotFound { .. }), "{e:?}");
        assert_mentions(&e.to_string(), &["`b-qv`", "not found"]);
    }
}

#[test]
fn open_creates_missing_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("a/b/registry");
    let reg = Registry::open(&root).unwrap();
    assert!(root.is_dir());
    assert!(reg.list().unwrap().is_empty());
    std::fs::write(tmp.path().join("file"), b"x").unwrap();
    assert!(Registry::open(&tmp.path().join("file")).is_err());
}

#[test]
fn leftovers_are_invisible_and_failed_imports_leave_nothing() {
    let src = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    // A crashed import and a crashed removal.
    let tmp_dir = root.path().join(".tmp-ghost-4242-0");
    std::fs::create_dir_all(&tmp_dir).unwrap();
    std::fs::write(tmp_dir.join("adapter_config.json"), b"{").unwrap();
    let trash = root.path().join(".trash-old-4242-1");
    std::fs::create_dir_all(&trash).unwrap();
    std::fs::write(trash.join("lorad.json"), b"{}").unwrap();

    let reg = Registry::open(root.path()).unwrap();
    assert!(!trash.exists(), "removal leftovers are finished on open");
    assert!(tmp_dir.exists(), "import leftovers may belong to a live process");
    assert!(reg.list().unwrap().is_empty());
    assert!(!reg.contains(".tmp-ghost-4242-0"));

    // Invalid adapter (shape mismatch against the base): refused before anything is copied.
    let wider = lorad_store::BaseShape { hidden_size: 96, ..small() };
    let d = write_dir(src.path(), "bad", &qv_adapter(&wider, 1));
    let e = reg.import(&d, None, &small()).unwrap_err();
    assert!(matches!(e, StoreError::TensorShape { .. }), "{e:?}");
    assert_eq!(entries(root.path()), [".tmp-ghost-4242-0"]);
    assert!(!reg.contains("bad"));

    // A stray directory without metadata is skipped by list (and reported by get).
    std::fs::create_dir_all(root.path().join("stray")).unwrap();
    assert!(reg.list().unwrap().is_empty());
    let e = reg.get("stray").unwrap_err();
    assert!(matches!(e, StoreError::CorruptEntry { .. }), "{e:?}");
    assert_mentions(&e.to_string(), &["lorad.json"]);
}

#[test]
fn duplicate_names_and_idempotent_reimport() {
    let src = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let reg = Registry::open(root.path()).unwrap();
    let one = write_dir(src.path(), "one", &qv_adapter(&small(), 1));
    let two = write_dir(src.path(), "two", &qv_adapter(&small(), 2));
    let first = reg.import(&one, Some("x"), &small()).unwrap();

    let e = reg.import(&two, Some("x"), &small()).unwrap_err();
    assert!(matches!(e, StoreError::AdapterExists { .. }), "{e:?}");
    assert_mentions(&e.to_string(), &["`x`", "already exists"]);
    assert_eq!(reg.load("x", &small()).unwrap().content_hash, first.content_hash, "untouched");

    // Same content again (even re-serialised from the loaded copy): a no-op.
    let again = write_dir(src.path(), "again", &reg.load("x", &small()).unwrap());
    assert_eq!(reg.import(&again, Some("x"), &small()).unwrap(), first);
    assert_eq!(reg.import(&one, Some("x"), &small()).unwrap(), first);
    assert_eq!(entries(root.path()), ["x"]);
}

#[test]
fn adapter_names_are_validated() {
    let long_ok = "a".repeat(128);
    for ok in ["a", "my-adapter_v1.2", "A.b-C_9", long_ok.as_str()] {
        validate_adapter_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
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
    let src = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let reg = Registry::open(root.path()).unwrap();
    let d = write_dir(src.path(), "ok", &qv_adapter(&small(), 1));
    for (name, why) in cases {
        assert_mentions(&err_text(validate_adapter_name(name)), &[why]);
        assert_mentions(
            &err_text(reg.import(&d, Some(name), &small())),
            &["invalid adapter name", why],
        );
        assert!(reg.get(name).is_err() && reg.remove(name).is_err() && !reg.contains(name));
    }
    // A default name taken from an unusable directory name is refused too.
    let d2 = write_dir(src.path(), "has space", &qv_adapter(&small(), 1));
    assert_mentions(&err_text(reg.import(&d2, None, &small())), &["has space", "characters"]);
    assert!(reg.list().unwrap().is_empty());
}

#[test]
fn content_hash_is_stable_across_f32_reimport_and_tracks_changes() {
    let src = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let reg = Registry::open(root.path()).unwrap();
    let adapter = qv_adapter(&smol(), 5);
    let a = reg.import(&write_dir(src.path(), "a", &adapter), None, &smol()).unwrap();

    // Export the stored copy as F32 and import it under another name: same hash.
    let exported = reg.load("a", &smol()).unwrap();
    let b = reg.import(&write_dir(src.path(), "b", &exported), None, &smol()).unwrap();
    assert_eq!(a.content_hash, b.content_hash);
    assert_eq!(a.content_hash, adapter.content_hash);

    // F16 storage hashes the rounded values: different from F32.
    let f16_dir = src.path().join("c");
    write_peft_dir(&f16_dir, &adapter, TensorDtype::F16).unwrap();
    let c = reg.import(&f16_dir, None, &smol()).unwrap();
    assert_ne!(c.content_hash, a.content_hash);
    assert_eq!(c.content_hash, read_peft_dir(&f16_dir, "c", &smol()).unwrap().content_hash);

    // One changed weight: different hash.
    let mut changed = adapter.clone();
    changed.weights[7].b[0] += 0.25;
    let d = reg.import(&write_dir(src.path(), "d", &changed), None, &smol()).unwrap();
    assert_ne!(d.content_hash, a.content_hash);
}

#[test]
fn load_detects_corruption_on_disk() {
    let src = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let reg = Registry::open(root.path()).unwrap();
    reg.import(&write_dir(src.path(), "a", &qv_adapter(&small(), 1)), None, &small()).unwrap();
    let st = root.path().join("a/adapter_model.safetensors");
    let mut bytes = std::fs::read(&st).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    // Low byte of the first f32: still a valid, finite adapter, just different.
    bytes[8 + header_len] ^= 0x01;
    std::fs::write(&st, bytes).unwrap();
    let e = reg.load("a", &small()).unwrap_err();
    assert!(matches!(e, StoreError::CorruptEntry { .. }), "{e:?}");
    assert_mentions(&e.to_string(), &["content hash", "does not match"]);
}
