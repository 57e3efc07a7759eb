//! The on-disk metadata of a Datanet: `datanet.json` (the manifest) and the lines of
//! `records.jsonl`. Field names and meanings are normative (`docs/datanet-format.md`).

use lorad_model::ChatMessage;
use serde::{Deserialize, Serialize};

use crate::error::RecordProblem;
use crate::hash::{hex_plain, hex0x};
use crate::record::RecordContent;

/// The manifest format this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// File name of the manifest inside a Datanet directory.
pub const MANIFEST_FILE: &str = "datanet.json";
/// File name of the per-record metadata (one JSON object per line).
pub const RECORDS_FILE: &str = "records.jsonl";
/// File name of the concatenated token ids (u32 little-endian).
pub const TOKENS_FILE: &str = "tokens.bin";

/// `datanet.json`: what a Datanet is, where it came from, and what it commits to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT_VERSION`] for Datanets this code writes.
    pub format_version: u32,
    /// The Datanet's name (also its directory's name).
    pub name: String,
    /// When it was built, Unix seconds.
    pub created: u64,
    /// The input file it was built from.
    pub source: SourceInfo,
    /// The tokenizer its tokens come from.
    pub tokenizer: TokenizerInfo,
    /// Number of records.
    pub records: u64,
    /// Number of tokens in `tokens.bin` (its length is four times this).
    pub tokens: u64,
    /// Hex SHA-256 of `tokens.bin`, checked by `verify`: the record hashes cover the records'
    /// text, not their tokens, so this is what catches a damaged token file. Absent in Datanets
    /// built before it was recorded (then not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_sha256: Option<String>,
    /// Merkle root over the record hashes, written as `0x` followed by 64 hex digits.
    #[serde(with = "hex0x")]
    pub merkle_root: [u8; 32],
    /// The record-hash scheme, `"sha256-v1"`.
    pub record_hash: String,
    /// The Merkle scheme, `"keccak256-sorted-pairs-v1"`.
    pub merkle: String,
    /// Contributors in order of first appearance; a record's `contributor` indexes this list.
    pub contributors: Vec<ContributorInfo>,
    /// Input lines left out because they were invalid (only with `skip_invalid`).
    pub skipped: Vec<RecordProblem>,
}

/// Where a Datanet's records came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// The input file's absolute path at build time (informational).
    pub path: String,
    /// Hex SHA-256 of the input file's bytes.
    pub sha256: String,
}

/// Which tokenizer produced `tokens.bin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerInfo {
    /// The tokenizer's vocabulary size (added tokens included).
    pub vocab_size: u64,
    /// The base model's hash, as given by the builder (lorad uses `lorad_model::base_hash`).
    pub base_hash: String,
}

/// One contributor and how much they contributed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContributorInfo {
    /// Position in the contributors table (0-based, order of first appearance).
    pub index: u32,
    /// The contributor as written in the records (normalized).
    pub name: String,
    /// Number of records they contributed.
    pub records: u64,
    /// Number of tokens in those records.
    pub tokens: u64,
}

/// One record of a stored Datanet: a line of `records.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta {
    /// Position in the Datanet (0-based); also the Merkle leaf index.
    pub index: u64,
    /// 1-based line of the input file it came from.
    pub line: u64,
    /// The record's id.
    pub id: String,
    /// Index into the contributors table.
    pub contributor: u32,
    /// The record hash (SHA-256 of the canonical bytes).
    pub hash: [u8; 32],
    /// Offset of its first token in `tokens.bin`, in tokens.
    pub token_offset: u64,
    /// Number of its tokens.
    pub token_len: u64,
    /// How many of its leading tokens are prompt (not trained on): 0 for text records.
    pub prompt_len: u64,
    /// The normalized text or conversation.
    pub content: RecordContent,
}

/// The serialized shape of a [`RecordMeta`], borrowing (writing a large Datanet must not copy
/// every text once more).
#[derive(Serialize)]
pub(crate) struct RecordLineRef<'a> {
    index: u64,
    line: u64,
    id: &'a str,
    contributor: u32,
    #[serde(with = "hex_plain")]
    hash: [u8; 32],
    token_offset: u64,
    token_len: u64,
    prompt_len: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<&'a [ChatMessage]>,
}

impl<'a> From<&'a RecordMeta> for RecordLineRef<'a> {
    fn from(r: &'a RecordMeta) -> Self {
        let (text, messages) = match &r.content {
            RecordContent::Text(t) => (Some(t.as_str()), None),
            RecordContent::Chat(m) => (None, Some(m.as_slice())),
        };
        Self {
            index: r.index,
            line: r.line,
            id: &r.id,
            contributor: r.contributor,
            hash: r.hash,
            token_offset: r.token_offset,
            token_len: r.token_len,
            prompt_len: r.prompt_len,
            text,
            messages,
        }
    }
}

/// The deserialized shape of a [`RecordMeta`].
#[derive(Deserialize)]
pub(crate) struct RecordLine {
    index: u64,
    line: u64,
    id: String,
    contributor: u32,
    #[serde(with = "hex_plain")]
    hash: [u8; 32],
    token_offset: u64,
    token_len: u64,
    prompt_len: u64,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    messages: Option<Vec<ChatMessage>>,
}

impl TryFrom<RecordLine> for RecordMeta {
    type Error = String;

    fn try_from(l: RecordLine) -> Result<Self, String> {
        let content = match (l.text, l.messages) {
            (Some(t), None) => RecordContent::Text(t),
            (None, Some(m)) => RecordContent::Chat(m),
            (Some(_), Some(_)) => return Err("has both `text` and `messages`".into()),
            (None, None) => return Err("has neither `text` nor `messages`".into()),
        };
        Ok(Self {
            index: l.index,
            line: l.line,
            id: l.id,
            contributor: l.contributor,
            hash: l.hash,
            token_offset: l.token_offset,
            token_len: l.token_len,
            prompt_len: l.prompt_len,
            content,
        })
    }
}
