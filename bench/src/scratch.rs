//! What several benchmarks share: a scratch directory that cleans up after itself, and the
//! progress bar style.

use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

/// A scratch directory: created fresh, removed on drop unless kept.
#[derive(Debug)]
pub(crate) struct Scratch {
    pub(crate) path: PathBuf,
    keep: bool,
    what: &'static str,
}

impl Scratch {
    /// `<parent or the temp dir>/lorad-bench-<what>-<pid>-<nanos>`; `what` also names it in the
    /// "kept" message.
    pub(crate) fn create(
        parent: Option<&Path>,
        keep: bool,
        what: &'static str,
    ) -> anyhow::Result<Scratch> {
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = parent.join(format!("lorad-bench-{what}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Scratch { path, keep, what })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("kept the scratch {} at {}", self.what, self.path.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("lorad-bench: warning: cannot remove {}: {e}", self.path.display());
        }
    }
}

/// A progress bar over `n` steps labelled `what`.
pub(crate) fn progress(n: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(n);
    bar.set_style(
        ProgressStyle::with_template("{msg:>26} [{bar:30}] {pos}/{len} {elapsed} (eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}
