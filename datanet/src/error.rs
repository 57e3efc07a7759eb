//! The crate's single error type, and the per-line problems a build collects.
//!
//! Messages name the file, line, record or directory at fault: they end up verbatim in the
//! daemon's HTTP error bodies and in the CLI's output, read by whoever has to fix the input.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How many problems [`DatanetError::BadRecords`] spells out before summarizing the rest: enough to
/// see the pattern, short enough to read in a terminal.
pub const SHOWN_PROBLEMS: usize = 20;

/// One input line that could not become a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordProblem {
    /// 1-based line number in the input file.
    pub line: u64,
    /// The record's id, when it could be read.
    pub id: Option<String>,
    /// What is wrong, in words.
    pub reason: String,
}

impl RecordProblem {
    /// A problem on `line`, for the record `id` if known.
    pub fn new(line: u64, id: Option<String>, reason: impl Into<String>) -> Self {
        Self { line, id, reason: reason.into() }
    }
}

impl fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.id {
            Some(id) => write!(f, "line {} (id {id:?}): {}", self.line, self.reason),
            None => write!(f, "line {}: {}", self.line, self.reason),
        }
    }
}

/// Everything that can go wrong while building, opening or checking a Datanet.
#[derive(Debug, thiserror::Error)]
pub enum DatanetError {
    /// A filesystem operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("reading", "renaming", ...).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying OS error.
        #[source]
        source: std::io::Error,
    },

    /// Some input lines are not valid records (and `skip_invalid` was off).
    #[error("{}", bad_records_message(path, problems))]
    BadRecords {
        /// The input file.
        path: PathBuf,
        /// Every problem found, in line order.
        problems: Vec<RecordProblem>,
    },

    /// The input holds no valid record at all, so there is nothing to commit to.
    #[error(
        "{}: no valid records ({skipped} invalid line(s) skipped); a Datanet needs at least one",
        path.display()
    )]
    NoRecords {
        /// The input file.
        path: PathBuf,
        /// How many lines were skipped as invalid.
        skipped: usize,
    },

    /// A Datanet name breaks the naming rule.
    #[error("invalid Datanet name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Which part of the rule it breaks, with the rule.
        reason: String,
    },

    /// The target directory already exists and `force` was not set.
    #[error("Datanet {} already exists (build with force to replace it)", dir.display())]
    Exists {
        /// The existing Datanet directory.
        dir: PathBuf,
    },

    /// No Datanet lives at the given place.
    #[error("no Datanet at {} (datanet.json not found)", dir.display())]
    NotFound {
        /// The directory that was opened.
        dir: PathBuf,
    },

    /// The manifest declares a format version this code does not read.
    #[error(
        "{}: Datanet format_version {found} is not supported; this lorad reads version {supported}",
        path.display()
    )]
    UnsupportedVersion {
        /// The manifest file.
        path: PathBuf,
        /// The version it declares (as written).
        found: String,
        /// The version this code reads.
        supported: u32,
    },

    /// A stored Datanet is damaged or inconsistent with itself.
    #[error("corrupt Datanet file {}: {reason}", path.display())]
    Corrupt {
        /// The file at fault.
        path: PathBuf,
        /// What is inconsistent.
        reason: String,
    },
}

impl DatanetError {
    /// A closure for `map_err` that wraps an I/O error with its action and path.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { action, path, source }
    }

    /// A [`DatanetError::Corrupt`] for `path`.
    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Corrupt { path: path.into(), reason: reason.into() }
    }
}

/// The text of [`DatanetError::BadRecords`]: a count, the first [`SHOWN_PROBLEMS`] problems one per
/// line, and how many more there are.
fn bad_records_message(path: &std::path::Path, problems: &[RecordProblem]) -> String {
    use std::fmt::Write;
    let mut out = format!("{}: {} invalid record line(s)", path.display(), problems.len());
    for p in problems.iter().take(SHOWN_PROBLEMS) {
        let _ = write!(out, "\n  {p}");
    }
    if problems.len() > SHOWN_PROBLEMS {
        let _ = write!(out, "\n  ... and {} more", problems.len() - SHOWN_PROBLEMS);
    }
    out.push_str("\n(fix them, or build with skip_invalid to leave them out)");
    out
}
