//! The Datanet naming rule: names become directory names and appear in URLs and on chain, so they
//! are kept to a small, portable alphabet.

use crate::error::DatanetError;

/// Longest allowed Datanet name, in characters.
pub const MAX_NAME_LEN: usize = 64;

/// The rule, as quoted in errors.
const RULE: &str =
    "a name is 1 to 64 characters from A-Z a-z 0-9 . _ - and does not start with '.'";

/// Checks `name` against the rule: 1..=64 characters of `[A-Za-z0-9._-]`, not starting with `.`
/// (which also rules out `.`, `..` and the `.tmp-*` build directories).
pub fn validate_name(name: &str) -> Result<(), DatanetError> {
    let fail = |what: String| DatanetError::InvalidName {
        name: name.to_owned(),
        reason: format!("{what}; {RULE}"),
    };
    if name.is_empty() {
        return Err(fail("it is empty".into()));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(fail(format!("it is {} characters long", name.chars().count())));
    }
    if let Some(c) =
        name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(fail(format!("it contains {c:?}")));
    }
    if name.starts_with('.') {
        return Err(fail("it starts with '.'".into()));
    }
    Ok(())
}
