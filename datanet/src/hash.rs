//! The record hash: SHA-256 over a canonical, length-prefixed encoding of a normalized record.
//!
//! The encoding is normative (`docs/datanet-format.md`, "Canonical record bytes"), pinned by golden
//! tests: contracts and other implementations recompute it. Token ids are deliberately left out,
//! so a record's hash is about what was contributed, not about which tokenizer read it.

use sha2::{Digest, Sha256};

use crate::record::RecordContent;

/// The domain tag that starts every canonical record encoding (ASCII, no length prefix).
pub const RECORD_TAG: &[u8] = b"lorad/datanet/record/v1";

/// The name of the record-hash scheme, as written in the manifest.
pub const RECORD_HASH_SCHEME: &str = "sha256-v1";

/// The canonical bytes of a record: [`RECORD_TAG`], then `id` and `contributor` (each as a u32
/// big-endian byte length followed by the bytes), a kind byte (0 text, 1 chat), then for text the
/// length-prefixed text, for chat a u32 big-endian message count and each message's role and
/// content, length-prefixed.
///
/// The strings are used as given: pass normalized fields (as [`crate::parse_records`] returns
/// them) to get the hash a Datanet stores. Fields are at most `u32::MAX` bytes long once parsed;
/// a longer one would have its prefix saturated, which parsing never lets happen.
pub fn canonical_record_bytes(id: &str, contributor: &str, content: &RecordContent) -> Vec<u8> {
    let body_len = match content {
        RecordContent::Text(t) => t.len() + 4,
        RecordContent::Chat(ms) => {
            4 + ms.iter().map(|m| 8 + m.role.len() + m.content.len()).sum::<usize>()
        }
    };
    let mut out =
        Vec::with_capacity(RECORD_TAG.len() + 8 + id.len() + contributor.len() + 1 + body_len);
    out.extend_from_slice(RECORD_TAG);
    put_prefixed(&mut out, id.as_bytes());
    put_prefixed(&mut out, contributor.as_bytes());
    out.push(content.kind_byte());
    match content {
        RecordContent::Text(t) => put_prefixed(&mut out, t.as_bytes()),
        RecordContent::Chat(ms) => {
            put_u32(&mut out, ms.len());
            for m in ms {
                put_prefixed(&mut out, m.role.as_bytes());
                put_prefixed(&mut out, m.content.as_bytes());
            }
        }
    }
    out
}

/// SHA-256 of [`canonical_record_bytes`]: the record's identity, and the Merkle tree's input.
pub fn record_hash(id: &str, contributor: &str, content: &RecordContent) -> [u8; 32] {
    Sha256::digest(canonical_record_bytes(id, contributor, content)).into()
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// `0x` followed by lowercase hex: how 32-byte hashes appear in the manifest (EVM style).
pub fn to_0x_hex(h: &[u8; 32]) -> String {
    format!("0x{}", hex::encode(h))
}

/// Parses 64 hex digits, with or without a `0x` prefix.
pub(crate) fn parse_hash(s: &str) -> Result<[u8; 32], String> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    let mut out = [0u8; 32];
    hex::decode_to_slice(digits, &mut out)
        .map_err(|e| format!("{s:?} is not a 32-byte hex hash: {e}"))?;
    Ok(out)
}

/// Serde helpers for a `[u8; 32]` written as `0x`-hex.
pub(crate) mod hex0x {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::to_0x_hex(h))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        super::parse_hash(&s).map_err(serde::de::Error::custom)
    }
}

/// Serde helpers for a `[u8; 32]` written as plain hex (records.jsonl's `hash`).
pub(crate) mod hex_plain {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        super::parse_hash(&s).map_err(serde::de::Error::custom)
    }
}

/// Hex SHA-256 of `tokens` as `tokens.bin` stores them (u32 little-endian, back to back).
pub(crate) fn tokens_sha256(tokens: &[u32]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut buf = Vec::with_capacity(1 << 16);
    for chunk in tokens.chunks(1 << 14) {
        buf.clear();
        buf.extend(chunk.iter().flat_map(|t| t.to_le_bytes()));
        hasher.update(&buf);
    }
    hex::encode(hasher.finalize())
}
