//! Opening, reading and checking a stored Datanet.
//!
//! `open` checks structure (versions, counts, token ranges against `tokens.bin`'s length) so that
//! accessors can index without further checks; [`Datanet::verify`] additionally recomputes every
//! record hash and the Merkle root from the stored content, which costs a pass over all texts.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

use crate::error::DatanetError;
use crate::fsutil::read;
use crate::hash::{RECORD_HASH_SCHEME, record_hash, to_0x_hex, tokens_sha256};
use crate::manifest::{
    ContributorInfo, FORMAT_VERSION, MANIFEST_FILE, Manifest, RECORDS_FILE, RecordLine, RecordMeta,
    TOKENS_FILE,
};
use crate::merkle::{MERKLE_SCHEME, MerkleTree};
use crate::name::validate_name;
use crate::tokens::Tokens;

/// An opened, immutable Datanet: its manifest, records and (memory-mapped) tokens.
///
/// Indexed accessors take a record index `i` in `0..len()` and panic outside it, like slice
/// indexing; use [`Datanet::records`] with `.get(i)` for indices from untrusted input.
pub struct Datanet {
    dir: PathBuf,
    manifest: Manifest,
    records: Vec<RecordMeta>,
    tokens: Tokens,
    /// Built on the first proof request: most users never ask for one.
    tree: OnceLock<MerkleTree>,
}

impl fmt::Debug for Datanet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Datanet")
            .field("dir", &self.dir)
            .field("name", &self.manifest.name)
            .field("records", &self.records.len())
            .field("tokens", &self.tokens)
            .field("merkle_root", &to_0x_hex(&self.manifest.merkle_root))
            .finish()
    }
}

impl Datanet {
    /// Opens the Datanet in `dir`: reads and checks the manifest and `records.jsonl`, and maps
    /// `tokens.bin`, checking its length and every record's token range.
    pub fn open(dir: &Path) -> Result<Self, DatanetError> {
        let manifest = read_manifest(dir)?;
        let records_path = dir.join(RECORDS_FILE);
        let records = read_records(&records_path, &manifest)?;
        let tokens = Tokens::open(&dir.join(TOKENS_FILE), manifest.tokens)?;
        Ok(Self { dir: dir.to_owned(), manifest, records, tokens, tree: OnceLock::new() })
    }

    /// Opens `<root>/<name>`, after checking `name` against the naming rule.
    pub fn open_named(root: &Path, name: &str) -> Result<Self, DatanetError> {
        validate_name(name)?;
        Self::open(&root.join(name))
    }

    /// The Datanet's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Datanet's name.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// The manifest (`datanet.json`).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are no records (never true for a Datanet built by this crate).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// All records, in order.
    pub fn records(&self) -> &[RecordMeta] {
        &self.records
    }

    /// Record `i`.
    pub fn record(&self, i: usize) -> &RecordMeta {
        &self.records[i]
    }

    /// Record `i`'s token ids (prompt then completion).
    pub fn tokens(&self, i: usize) -> &[u32] {
        let r = &self.records[i];
        // In range: `open` checked every record's range against the token count.
        &self.all_tokens()[r.token_offset as usize..(r.token_offset + r.token_len) as usize]
    }

    /// Every record's tokens, concatenated in record order.
    pub fn all_tokens(&self) -> &[u32] {
        self.tokens.as_slice()
    }

    /// How many leading tokens of record `i` are prompt, not trained on (0 for text records).
    pub fn prompt_len(&self, i: usize) -> usize {
        self.records[i].prompt_len as usize
    }

    /// The contributors table, in order of first appearance.
    pub fn contributors(&self) -> &[ContributorInfo] {
        &self.manifest.contributors
    }

    /// The contributor of record `i`.
    pub fn contributor_of(&self, i: usize) -> &ContributorInfo {
        // In range: `open` checked every record's contributor index.
        &self.manifest.contributors[self.records[i].contributor as usize]
    }

    /// The Merkle root the Datanet commits to.
    pub fn merkle_root(&self) -> [u8; 32] {
        self.manifest.merkle_root
    }

    /// The Merkle proof of record `i` (siblings, bottom up), for
    /// [`crate::verify_merkle_proof`] or the Solidity verifier.
    pub fn proof(&self, i: usize) -> Vec<[u8; 32]> {
        let tree = self.tree.get_or_init(|| {
            MerkleTree::new(&self.records.iter().map(|r| r.hash).collect::<Vec<_>>())
        });
        let n = self.records.len();
        tree.proof(i).unwrap_or_else(|| panic!("proof: record {i} out of range for {n} records"))
    }

    /// Recomputes every record hash from the stored content and the Merkle root from them, and
    /// checks the contributors table and token layout; any mismatch is
    /// [`DatanetError::Corrupt`] naming the record or field.
    pub fn verify(&self) -> Result<(), DatanetError> {
        let records_path = self.dir.join(RECORDS_FILE);
        let manifest_path = self.dir.join(MANIFEST_FILE);
        let mut hashes = Vec::with_capacity(self.records.len());
        let mut counts = vec![(0u64, 0u64); self.manifest.contributors.len()];
        let mut offset = 0u64;
        for (i, r) in self.records.iter().enumerate() {
            let contributor = &self.manifest.contributors[r.contributor as usize];
            let h = record_hash(&r.id, &contributor.name, &r.content);
            if h != r.hash {
                return Err(DatanetError::corrupt(
                    &records_path,
                    format!(
                        "record {i} (id {:?}, input line {}): its stored content hashes to {}, \
                         but its recorded hash is {}",
                        r.id,
                        r.line,
                        hex::encode(h),
                        hex::encode(r.hash)
                    ),
                ));
            }
            if r.token_offset != offset {
                return Err(DatanetError::corrupt(
                    &records_path,
                    format!(
                        "record {i} (id {:?}): tokens start at {}, expected {offset} (records' \
                         tokens are stored back to back)",
                        r.id, r.token_offset
                    ),
                ));
            }
            offset += r.token_len;
            let c = &mut counts[r.contributor as usize];
            c.0 += 1;
            c.1 += r.token_len;
            hashes.push(h);
        }
        if offset != self.manifest.tokens {
            return Err(DatanetError::corrupt(
                &manifest_path,
                format!("records hold {offset} tokens, the manifest says {}", self.manifest.tokens),
            ));
        }
        for (c, (records, tokens)) in self.manifest.contributors.iter().zip(counts) {
            if (c.records, c.tokens) != (records, tokens) {
                return Err(DatanetError::corrupt(
                    &manifest_path,
                    format!(
                        "contributor {} ({:?}) is listed with {} records / {} tokens, but has \
                         {records} / {tokens}",
                        c.index, c.name, c.records, c.tokens
                    ),
                ));
            }
        }
        if let Some(want) = &self.manifest.tokens_sha256 {
            let got = tokens_sha256(self.all_tokens());
            if &got != want {
                return Err(DatanetError::corrupt(
                    self.dir.join(TOKENS_FILE),
                    format!("its SHA-256 is {got}, the manifest says {want}"),
                ));
            }
        }
        let root = MerkleTree::new(&hashes).root();
        if root != self.manifest.merkle_root {
            return Err(DatanetError::corrupt(
                &manifest_path,
                format!(
                    "the records' Merkle root is {}, the manifest says {}",
                    to_0x_hex(&root),
                    to_0x_hex(&self.manifest.merkle_root)
                ),
            ));
        }
        Ok(())
    }
}

/// The manifests of every Datanet under `root`, sorted by name. Entries starting with `.` (build
/// and replacement leftovers) and directories without a `datanet.json` are skipped; a missing
/// `root` holds no Datanets. A damaged manifest is an error naming it.
pub fn list(root: &Path) -> Result<Vec<Manifest>, DatanetError> {
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(DatanetError::io("listing", root)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(DatanetError::io("listing", root))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let dir = entry.path();
        if !dir.is_dir() || !dir.join(MANIFEST_FILE).is_file() {
            continue;
        }
        out.push(read_manifest(&dir)?);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Reads `dir/datanet.json`, checking the format version before anything else (another version
/// may shape the rest differently) and then the hash schemes.
fn read_manifest(dir: &Path) -> Result<Manifest, DatanetError> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DatanetError::NotFound { dir: dir.to_owned() });
        }
        Err(e) => return Err(DatanetError::io("reading", &path)(e)),
    };
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| DatanetError::corrupt(&path, format!("invalid JSON: {e}")))?;
    match value.get("format_version") {
        None => return Err(DatanetError::corrupt(&path, "missing `format_version`")),
        Some(v) if v.as_u64() == Some(u64::from(FORMAT_VERSION)) => {}
        Some(v) => {
            return Err(DatanetError::UnsupportedVersion {
                path,
                found: v.to_string(),
                supported: FORMAT_VERSION,
            });
        }
    }
    let manifest: Manifest = serde_json::from_value(value)
        .map_err(|e| DatanetError::corrupt(&path, format!("invalid manifest: {e}")))?;
    for (field, found, want) in [
        ("record_hash", &manifest.record_hash, RECORD_HASH_SCHEME),
        ("merkle", &manifest.merkle, MERKLE_SCHEME),
    ] {
        if found != want {
            return Err(DatanetError::corrupt(
                &path,
                format!("`{field}` is {found:?}; this lorad only knows {want:?}"),
            ));
        }
    }
    if let Some((i, c)) =
        manifest.contributors.iter().enumerate().find(|(i, c)| c.index as usize != *i)
    {
        return Err(DatanetError::corrupt(
            &path,
            format!("contributors[{i}] ({:?}) has index {}", c.name, c.index),
        ));
    }
    Ok(manifest)
}

/// Reads `records.jsonl` and checks each record's position, contributor and token range against
/// the manifest, so that accessors can index without checks.
fn read_records(path: &Path, manifest: &Manifest) -> Result<Vec<RecordMeta>, DatanetError> {
    let bytes = read(path)?;
    let mut records = Vec::with_capacity(usize::try_from(manifest.records).unwrap_or(0));
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let bad = |reason: String| DatanetError::corrupt(path, format!("line {}: {reason}", n + 1));
        let parsed: RecordLine =
            serde_json::from_slice(line).map_err(|e| bad(format!("invalid record: {e}")))?;
        let r = RecordMeta::try_from(parsed).map_err(bad)?;
        let i = records.len();
        if r.index != i as u64 {
            return Err(bad(format!("record index is {}, expected {i}", r.index)));
        }
        if r.contributor as usize >= manifest.contributors.len() {
            return Err(bad(format!(
                "contributor {} is not in the manifest's table of {}",
                r.contributor,
                manifest.contributors.len()
            )));
        }
        match r.token_offset.checked_add(r.token_len) {
            Some(end) if end <= manifest.tokens => {}
            _ => {
                return Err(bad(format!(
                    "tokens {}..+{} are outside tokens.bin's {} tokens",
                    r.token_offset, r.token_len, manifest.tokens
                )));
            }
        }
        if r.prompt_len > r.token_len {
            return Err(bad(format!(
                "prompt_len {} exceeds the record's {} tokens",
                r.prompt_len, r.token_len
            )));
        }
        records.push(r);
    }
    if records.len() as u64 != manifest.records {
        return Err(DatanetError::corrupt(
            path,
            format!("holds {} records, the manifest says {}", records.len(), manifest.records),
        ));
    }
    Ok(records)
}
