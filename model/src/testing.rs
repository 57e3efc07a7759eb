//! Helpers for tests (of this crate and of crates built on it) that need the real default model.

use std::io::Write;
use std::path::PathBuf;

use crate::fetch::default_model_path;
use crate::paths::default_home;

/// The model file tests should use: `$LORAD_TEST_MODEL` (a `.gguf` path), else the default
/// model's path under [`default_home`].
///
/// Returns `None` after printing a loud `SKIPPING` line when the file is absent, so developers
/// without the model still get a green run. Under CI (`CI=true`) a missing model is a failure
/// instead: this function panics, so the model-dependent tests cannot be skipped silently there.
pub fn test_model_path() -> Option<PathBuf> {
    let path = std::env::var_os("LORAD_TEST_MODEL")
        .filter(|p| !p.is_empty())
        .map_or_else(|| default_model_path(&default_home()), PathBuf::from);
    if path.is_file() {
        return Some(path);
    }
    // libtest names each test's thread after the test.
    let current = std::thread::current();
    let test = current.name().unwrap_or("test");
    let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    assert!(
        !ci,
        "{test}: model not found at {} with CI=true; run `lorad model fetch` (or set LORAD_TEST_MODEL)",
        path.display()
    );
    // Written to the stderr handle directly: libtest captures `eprintln!` of passing tests, and a
    // skip must be visible in a plain `cargo test` run.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPING {test}: model not found at {}, run `lorad model fetch` (or set LORAD_TEST_MODEL)",
        path.display()
    );
    None
}
