//! Adapter names: the rules every stored adapter's name follows.

use crate::error::StoreError;

const MAX_NAME_LEN: usize = 128;

/// Checks an adapter name: 1..=128 characters of `[A-Za-z0-9._-]`, not starting with `.`.
///
/// The rules keep names safe as single path components and URL segments.
pub fn validate_adapter_name(name: &str) -> Result<(), StoreError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_NAME_LEN {
        "it is longer than 128 characters"
    } else if name.starts_with('.') {
        "it starts with '.', which is reserved for hidden entries"
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        "it contains characters other than A-Z, a-z, 0-9, '.', '_' and '-'"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidName { name: name.to_owned(), reason })
}
