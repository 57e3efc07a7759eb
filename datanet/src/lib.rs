//! lorad's Datanets: named, immutable sets of contributed training records.
//!
//! A Datanet is built once from a JSONL file ([`build`]): each record (`{id, contributor, text}`
//! or a chat `{id, contributor, messages}`) is normalized ([`normalize`], [`parse_records`]),
//! tokenized with the base model's tokenizer and chat template ([`tokenize_record`]), hashed
//! ([`record_hash`]), and the whole set is committed to by a keccak256 Merkle root
//! ([`merkle_root`]) that a contract can check membership proofs against
//! ([`verify_merkle_proof`]). Contributors are tabled in order of first appearance, so that
//! training and attribution can credit them by index.
//!
//! On disk a Datanet is a directory `<root>/<name>/` holding `datanet.json` ([`Manifest`]),
//! `records.jsonl` ([`RecordMeta`] per line) and `tokens.bin` (u32 little-endian), published
//! crash-safely by rename; [`Datanet::open`] maps the tokens and serves zero-copy `&[u32]` views.
//! `docs/datanet-format.md` is the normative description of the input, the normalization, the
//! hashes and the layout.
//!
//! Errors are one enum, [`DatanetError`]; bad input lines are collected as [`RecordProblem`]s with
//! their line numbers, never silently dropped.

mod build;
mod datanet;
mod error;
mod fsutil;
mod hash;
mod manifest;
mod merkle;
mod name;
mod record;
mod tokenize;
mod tokens;

pub use build::{BuildOptions, BuildReport, build};
pub use datanet::{Datanet, list};
pub use error::{DatanetError, RecordProblem, SHOWN_PROBLEMS};
pub use hash::{RECORD_HASH_SCHEME, RECORD_TAG, canonical_record_bytes, record_hash, to_0x_hex};
pub use manifest::{
    ContributorInfo, FORMAT_VERSION, MANIFEST_FILE, Manifest, RECORDS_FILE, RecordMeta, SourceInfo,
    TOKENS_FILE, TokenizerInfo,
};
pub use merkle::{
    MERKLE_SCHEME, MerkleTree, leaf_hash, merkle_proof, merkle_root, node_hash, verify_merkle_proof,
};
pub use name::{MAX_NAME_LEN, validate_name};
pub use record::{MAX_ID_BYTES, ROLES, RawRecord, RecordContent, normalize, parse_records};
pub use tokenize::{TextSide, TokenizedRecord, tokenize_record};
