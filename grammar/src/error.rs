//! [`GrammarError`], the crate's single error type.

/// Why a constraint could not be compiled. Every variant names where in the request's
/// constraint the problem is (`at`: a JSON pointer into a schema, or the constraint's kind).
#[derive(Debug, thiserror::Error)]
pub enum GrammarError {
    /// A JSON Schema keyword lorad cannot enforce while decoding. Refused rather than ignored:
    /// an answer that silently breaks the schema is worse than a clear 400.
    #[error("JSON Schema keyword `{keyword}` at `{at}` is not supported for structured output")]
    Unsupported {
        /// The keyword.
        keyword: String,
        /// JSON pointer of the schema holding it.
        at: String,
    },
    /// A schema or constraint value of the wrong shape.
    #[error("invalid constraint at `{at}`: {reason}")]
    Invalid {
        /// Where.
        at: String,
        /// What is wrong.
        reason: String,
    },
    /// A regular expression that does not parse, or uses a feature that cannot be decoded
    /// token by token (look-around, word boundaries).
    #[error("regular expression at `{at}`: {reason}")]
    Regex {
        /// Where the pattern came from.
        at: String,
        /// What is wrong.
        reason: String,
    },
    /// The constraint matches no text at all, so no answer could satisfy it.
    #[error("the constraint at `{at}` matches no text")]
    Empty {
        /// Where.
        at: String,
    },
    /// The compiled grammar would exceed the size limit (large repetition counts).
    #[error("the constraint at `{at}` is too large: more than {limit} grammar elements")]
    TooLarge {
        /// Where.
        at: String,
        /// The limit.
        limit: usize,
    },
    /// A token id outside the vocabulary was fed to a matcher.
    #[error("token {0} is not in the vocabulary")]
    UnknownToken(u32),
    /// A token the grammar does not allow here was fed to a matcher.
    #[error("token {0} is not allowed by the constraint at this point")]
    Rejected(u32),
}

impl GrammarError {
    /// The error with `prefix` put before its place (a schema embedded in a larger
    /// constraint: `structures[0].schema` + `#/properties/x`).
    pub(crate) fn prefixed(self, prefix: &str) -> Self {
        // Only schema pointers (`#...`) are places in the schema; a builder's own name stays.
        let join = |at: String| match at.strip_prefix('#') {
            Some(rest) => format!("{prefix}{rest}"),
            None => at,
        };
        match self {
            Self::Unsupported { keyword, at } => Self::Unsupported { keyword, at: join(at) },
            Self::Invalid { at, reason } => Self::Invalid { at: join(at), reason },
            Self::Regex { at, reason } => Self::Regex { at: join(at), reason },
            Self::Empty { at } => Self::Empty { at: join(at) },
            Self::TooLarge { at, limit } => Self::TooLarge { at: join(at), limit },
            other => other,
        }
    }
}
