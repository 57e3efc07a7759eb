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
    /// 69 (`EX_UNAVAILABLE`): the listen address cannot be bound.
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

/// An error tagged with the exit status it should produce. Displays as the wrapped error's
/// whole chain, so wrapping never changes the message.
#[derive(Debug, thiserror::Error)]
#[error("{error:#}")]
pub struct Coded {
    /// The class of the failure.
    pub kind: ExitKind,
    error: anyhow::Error,
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
    err.chain()
        .find_map(|e| e.downcast_ref::<Coded>())
        .map_or(ExitKind::Runtime, |c| c.kind)
        .code()
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    #[test]
    fn code_survives_context_and_message_is_unchanged() {
        let r: Result<(), std::io::Error> = Err(std::io::Error::other("port taken"));
        let err = r.exit_kind(ExitKind::Unavailable).context("cannot listen on 127.0.0.1:1").unwrap_err();
        assert_eq!(exit_code_of(&err), 69);
        assert_eq!(format!("{err:#}"), "cannot listen on 127.0.0.1:1: port taken");
        assert_eq!(exit_code_of(&anyhow::anyhow!("plain")), 1);
        let err = coded(ExitKind::Config, anyhow::anyhow!("no model"));
        assert_eq!((exit_code_of(&err), err.to_string()), (78, "no model".to_string()));
    }
}
