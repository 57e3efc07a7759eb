//! Helpers for tests (of this crate and of crates built on it) that read the real-chain
//! fixtures. Fixtures are public chain data kept outside the repository (see
//! `shared/fixtures/lightclient/README.md` next to the checkout); they are read, never copied in.

use std::io::Write as _;
use std::path::PathBuf;

/// Where the fixtures live: `$LORAD_LIGHTCLIENT_FIXTURES`, else `shared/fixtures/lightclient`
/// next to the workspace checkout.
///
/// Returns `None` (after a loud message) when they are missing, so local runs without the
/// data still pass.
///
/// # Panics
/// Under `CI=true` when they are missing: a silently skipped verifier test is worse than a
/// red build.
pub fn fixtures_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("LORAD_LIGHTCLIENT_FIXTURES").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/lightclient")),
        PathBuf::from,
    );
    if dir.is_dir() {
        return Some(dir);
    }
    let test = std::thread::current().name().unwrap_or("<unknown test>").to_owned();
    let msg = format!(
        "SKIPPING {test}: light-client fixtures not found at {} (set LORAD_LIGHTCLIENT_FIXTURES)",
        dir.display()
    );
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "{msg} [CI=true: fixtures are required]"
    );
    // Written straight to stderr (not eprintln!) so libtest's capture cannot hide it.
    let _ = writeln!(std::io::stderr(), "\n!!!!! {msg} !!!!!\n");
    None
}
