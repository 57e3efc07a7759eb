//! Exit statuses: which failure gets which code, so systemd (`RestartPreventExitStatus=`) and
//! scripts can tell a misconfiguration (do not restart) from a transient failure (restart).
//!
//! Errors are `anyhow` chains. Code that knows the class of a failure wraps it once with
//! [`ExitExt::exit_kind`]; `main` then finds the first [`Coded`] in the chain
//! ([`exit_code_of`]). Context added later (`.context(...)`) does not hide the code.

/// The class of a failure, mapped to a `sysexits.h` status where one fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitKind {
    /// 1: a runtime failure (the default for uncoded errors).
    Runtime,
    /// 64 (`EX_USAGE`): a flag or argument value is unusable (e.g. `--max-batch-size 0`,
    /// an unknown adapter name, an invalid log filter).
    Usage,
    /// 65 (`EX_DATAERR`): an input file is bad (an adapter that fails validation on import).
    DataErr,
    /// 69 (`EX_UNAVAILABLE`): the listen address cannot be bound, or the GPU `--device` names
    /// does not open.
    Unavailable,
    /// 78 (`EX_CONFIG`): the environment is misconfigured: unusable home directory, missing or
    /// unloadable model that cannot be fetched.
    Config,
}

impl ExitKind {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Self::Runtime => 1,
            Self::Usage => 64,
            Self::DataErr => 65,
            Self::Unavailable => 69,
            Self::Config => 78,
        }
    }
}

/// An error tagged with the exit status it should produce. Transparent: it displays as the
/// wrapped error and forwards its source chain, so wrapping never changes the message.
#[derive(Debug)]
pub struct Coded {
    /// The class of the failure.
    pub kind: ExitKind,
    error: anyhow::Error,
}

impl std::fmt::Display for Coded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for Coded {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

/// Tags a `Result`'s error with an [`ExitKind`].
pub trait ExitExt<T> {
    /// Wraps the error (if any) in a [`Coded`] of `kind`.
    fn exit_kind(self, kind: ExitKind) -> anyhow::Result<T>;
}

impl<T, E: Into<anyhow::Error>> ExitExt<T> for Result<T, E> {
    fn exit_kind(self, kind: ExitKind) -> anyhow::Result<T> {
        self.map_err(|e| coded(kind, e))
    }
}

/// An error of `kind` from `error` (an `anyhow::Error`, any std error, or a message via
/// `anyhow!`).
pub fn coded(kind: ExitKind, error: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(Coded { kind, error: error.into() })
}

/// The exit status for `err`: the kind of the outermost [`Coded`] in its chain, else 1.
pub fn exit_code_of(err: &anyhow::Error) -> u8 {
    err.chain().find_map(|e| e.downcast_ref::<Coded>()).map_or(ExitKind::Runtime, |c| c.kind).code()
}

/// Whether `err` is a write to a closed pipe (`lorad ... | head`): the reader has all it
/// wanted, so like other Unix tools the process ends quietly with success.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `err` and its causes as one line, `outer: inner: root`. Causes whose text the previous
/// message already ends with are skipped: many library errors (I/O wrappers) print their source
/// in their own message and return it from `source()` too.
pub fn render(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let msg = cause.to_string();
        if out.is_empty() {
            out = msg;
        } else if !out.ends_with(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn broken_pipe_is_recognised_through_context() {
        let e = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("printing");
        assert!(super::is_broken_pipe(&e));
        let other = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(!super::is_broken_pipe(&other));
    }

    use anyhow::Context;

    use super::*;

    #[test]
    fn code_survives_context_and_message_is_unchanged() {
        let r: Result<(), std::io::Error> = Err(std::io::Error::other("port taken"));
        let err =
            r.exit_kind(ExitKind::Unavailable).context("cannot listen on 127.0.0.1:1").unwrap_err();
        assert_eq!(exit_code_of(&err), 69);
        assert_eq!(format!("{err:#}"), "cannot listen on 127.0.0.1:1: port taken");
        assert_eq!(exit_code_of(&anyhow::anyhow!("plain")), 1);
        let err = coded(ExitKind::Config, anyhow::anyhow!("no model"));
        assert_eq!((exit_code_of(&err), err.to_string()), (78, "no model".to_string()));
        let inner = anyhow::anyhow!("disk full").context("cannot write x");
        let err = coded(ExitKind::DataErr, inner).context("cannot import");
        assert_eq!(
            (exit_code_of(&err), format!("{err:#}")),
            (65, "cannot import: cannot write x: disk full".into())
        );
        assert_eq!(render(&err), "cannot import: cannot write x: disk full");
        let io = std::io::Error::other("Not a directory");
        let err = anyhow::Error::new(WithSource(io)).context("cannot open");
        assert_eq!(format!("{err:#}"), "cannot open: creating x: Not a directory: Not a directory");
        assert_eq!(render(&err), "cannot open: creating x: Not a directory");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("creating x: {0}")]
    struct WithSource(#[source] std::io::Error);
}
