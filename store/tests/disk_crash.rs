//! Crash safety of the on-disk store: a writer process is killed with SIGKILL at random points of
//! imports, removals and gc (and, through the store's crash-injection hook, at every step of the
//! write path), then the store must open cleanly, expose no partial adapter, keep every
//! acknowledged one intact, and survive gc.
//!
//! The writer is this test binary re-executed (`crash_child`, ignored in normal runs and inert
//! without its environment variables). It prints `ACK <name>` after each import returns,
//! `DELETING <name>` before and `DEL <name>` after each removal, flushing every line, so the
//! parent knows exactly which operations were acknowledged before the kill.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{QV, small, spec};
use lorad_store::paging::IoMode;
use lorad_store::{Adapter, EntryState, Store, StoreConfig, TargetModule, random_adapter};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ENV_ROOT: &str = "LORAD_CRASH_TEST_ROOT";
const ENV_START: &str = "LORAD_CRASH_TEST_START";
const ENV_GC: &str = "LORAD_CRASH_TEST_GC";
/// The store's crash-injection hook (`<step>[@<n>]`, see `disk/segment.rs`).
const ENV_CRASH_AT: &str = "LORAD_STORE_CRASH_AT";
const BASE_HASH: &str = "ba5eba5eba5eba5eba5eba5eba5eba5eba5eba5eba5eba5eba5eba5eba5eba5e";
/// Imports per child process.
const PER_CHILD: usize = 40;
/// Small segments, so imports roll over to new segment files often.
const SEGMENT_BYTES: u64 = 160 * 1024;

fn name(i: usize) -> String {
    format!("n{i:04}")
}

fn index_of(name: &str) -> Option<usize> {
    name.strip_prefix('n')?.parse().ok()
}

/// The content imported as `name(i)`: every fourth repeats the previous one (the dedup path);
/// sizes vary so blobs straddle segment boundaries.
fn expected(i: usize) -> Adapter {
    let seed = if i % 4 == 3 { i - 1 } else { i };
    let rank = [2, 4, 8][seed % 3];
    let targets: &[TargetModule] = if seed % 2 == 0 { &QV } else { &TargetModule::ALL };
    random_adapter("x", &small(), &spec(rank, 8.0, targets, 1000 + seed as u64))
}

/// The writer process. Inert unless the parent set its environment.
#[test]
#[ignore = "not a test on its own: the crash tests in this file re-run this binary with \
            `--ignored --exact crash_child` and its environment set, then SIGKILL it"]
fn crash_child() {
    let Ok(root) = std::env::var(ENV_ROOT) else { return };
    let start: usize = std::env::var(ENV_START).unwrap().parse().unwrap();
    let gc = std::env::var(ENV_GC).is_ok();
    let store = Store::open(Path::new(&root), StoreConfig::default()).unwrap();
    store.set_max_segment_bytes(SEGMENT_BYTES);
    let say = |line: String| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    };
    let remove = |i: usize| {
        say(format!("DELETING {}", name(i)));
        store.remove(&name(i)).unwrap();
        say(format!("DEL {}", name(i)));
    };
    let mut live = Vec::new();
    for i in start..start + PER_CHILD {
        store.import_adapter(&name(i), &expected(i), BASE_HASH).unwrap();
        say(format!("ACK {}", name(i)));
        live.push(i);
        if i % 5 == 4 {
            remove(live.remove(live.len() / 2));
        }
    }
    if gc {
        // Leave most segments mostly dead, so gc has blobs to move.
        let victims: Vec<usize> = live.iter().copied().filter(|i| i % 3 != 0).collect();
        for i in victims {
            remove(i);
        }
        store.gc().unwrap();
        say("GC done".to_owned());
    }
}

/// What the children acknowledged, accumulated over a run.
#[derive(Debug, Default)]
struct Log {
    attempted: BTreeSet<usize>,
    acked: BTreeSet<usize>,
    deleting: BTreeSet<usize>,
    deleted: BTreeSet<usize>,
}

/// How a child run ends.
enum End {
    /// Runs to completion.
    Complete,
    /// Killed after this long.
    KillAfter(Duration),
    /// Kills itself at this crash-hook step.
    CrashAt(String),
}

fn run_child(root: &Path, start: usize, gc: bool, end: &End, log: &mut Log) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "crash_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env(ENV_ROOT, root)
        .env(ENV_START, start.to_string())
        .env_remove(ENV_CRASH_AT)
        .env_remove(ENV_GC)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if gc {
        cmd.env(ENV_GC, "1");
    }
    if let End::CrashAt(at) = end {
        cmd.env(ENV_CRASH_AT, at);
    }
    let mut child = cmd.spawn().unwrap();
    if let End::KillAfter(d) = end {
        std::thread::sleep(*d);
        // SIGKILL; an error only means it already exited.
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    match end {
        End::Complete => assert!(
            out.status.success(),
            "child failed: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        End::CrashAt(at) => assert!(!out.status.success(), "crash hook {at} never fired\n{stdout}"),
        End::KillAfter(_) => {}
    }
    log.attempted.extend(start..start + PER_CHILD);
    // Only whole lines count: the kill may cut the last one.
    for line in stdout.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let mut parts = line.split_whitespace();
        let (Some(tag), Some(n)) = (parts.next(), parts.next().and_then(index_of)) else {
            continue;
        };
        let set = match tag {
            "ACK" => &mut log.acked,
            "DELETING" => &mut log.deleting,
            "DEL" => &mut log.deleted,
            _ => continue,
        };
        set.insert(n);
    }
}

/// The store at `root` opens, lists only complete adapters (all loading bit-exactly), and has
/// every acknowledged import that was not (possibly) removed.
fn check(root: &Path, log: &Log, mode: IoMode, what: &str) {
    let store = Store::open(root, StoreConfig { io_mode: mode, queue_depth: 8 })
        .unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
    let listed: BTreeSet<usize> = store
        .list()
        .iter()
        .map(|info| {
            let i = index_of(&info.name)
                .filter(|i| log.attempted.contains(i))
                .unwrap_or_else(|| panic!("{what}: unexpected entry {}", info.name));
            assert_eq!(info.state, EntryState::Ready, "{what}: {}", info.name);
            i
        })
        .collect();
    for &i in &listed {
        let got = store
            .load(&name(i), &small())
            .unwrap_or_else(|e| panic!("{what}: listed {} does not load: {e}", name(i)));
        let want = expected(i);
        assert_eq!(got.content_hash, want.content_hash, "{what}: {}", name(i));
        assert!(got.weights == want.weights, "{what}: {} weights differ", name(i));
    }
    for &i in &log.acked {
        if !log.deleting.contains(&i) {
            assert!(listed.contains(&i), "{what}: acknowledged {} is missing", name(i));
        }
    }
    for &i in &log.deleted {
        assert!(!listed.contains(&i), "{what}: removed {} is back", name(i));
    }
    assert_eq!(store.verify().failed.len(), 0, "{what}");
}

/// Checks, gcs, checks again (same instance and reopened).
fn check_gc_check(root: &Path, log: &Log, mode: IoMode, what: &str) {
    check(root, log, mode, what);
    let store = Store::open(root, StoreConfig::default()).unwrap();
    store.gc().unwrap_or_else(|e| panic!("{what}: gc failed: {e}"));
    drop(store);
    check(root, log, mode, &format!("{what}, after gc"));
}

#[test]
fn kill_9_at_random_points_never_exposes_partial_adapters() {
    let started = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(0x10ad_c4a5);
    for run in 0..50 {
        let root = tempfile::tempdir().unwrap();
        let mut log = Log::default();
        let mode = if run % 2 == 0 { IoMode::Pread } else { IoMode::Auto };
        // Two writer lifetimes on the same root: the second starts from the first's torn state.
        for (life, start) in [0, 1000].into_iter().enumerate() {
            // A child starts in a few ms and finishes its 40 imports in ~30 ms (2 fdatasyncs
            // each): kills land anywhere from before the first import to inside gc.
            let delay = Duration::from_micros(rng.random_range(1_000..45_000));
            let gc = life == 1 && rng.random_bool(0.5);
            run_child(root.path(), start, gc, &End::KillAfter(delay), &mut log);
            check(root.path(), &log, mode, &format!("run {run} life {life} ({delay:?})"));
        }
        check_gc_check(root.path(), &log, mode, &format!("run {run}"));
    }
    eprintln!("random kills: {:?}", started.elapsed());
}

#[test]
fn kill_at_every_step_of_the_write_path() {
    // Steps 1-7: segment creation, half/whole blob, blob synced, half/whole record, record
    // synced — each at the first and a later occurrence.
    for step in 1..=7 {
        for n in [1, 4] {
            let root = tempfile::tempdir().unwrap();
            let mut log = Log::default();
            let what = format!("step {step}@{n}");
            run_child(root.path(), 0, false, &End::CrashAt(format!("{step}@{n}")), &mut log);
            check(root.path(), &log, IoMode::Pread, &what);
            // A writer continuing after the crash, then gc.
            run_child(root.path(), 1000, false, &End::Complete, &mut log);
            check_gc_check(root.path(), &log, IoMode::Auto, &what);
        }
    }
    // Steps 8-11: inside gc (copied, relocated, index written, index renamed).
    for step in 8..=11 {
        let root = tempfile::tempdir().unwrap();
        let mut log = Log::default();
        let what = format!("gc step {step}");
        run_child(root.path(), 0, false, &End::Complete, &mut log);
        run_child(root.path(), 1000, true, &End::CrashAt(step.to_string()), &mut log);
        check_gc_check(root.path(), &log, IoMode::Pread, &what);
    }
}
