//! Building a Datanet: JSONL in, a crash-safe directory of manifest, records and tokens out.
//!
//! The directory is assembled under `<root>/.tmp-<name>-<pid>-<n>`, every file fsynced, then
//! renamed into place and the root fsynced: readers (and a crash) see either no Datanet or a
//! complete one. Replacing with `force` renames the old directory aside only once the new one is
//! complete, so a failed rebuild leaves the old Datanet untouched.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::error::{DatanetError, RecordProblem};
use crate::fsutil::{read, sync_dir, unique_suffix, write_line, write_new_synced};
use crate::hash::{RECORD_HASH_SCHEME, tokens_sha256};
use crate::manifest::{
    ContributorInfo, FORMAT_VERSION, MANIFEST_FILE, Manifest, RECORDS_FILE, RecordLineRef,
    RecordMeta, SourceInfo, TOKENS_FILE, TokenizerInfo,
};
use crate::merkle::{MERKLE_SCHEME, merkle_root};
use crate::name::validate_name;
use crate::record::parse_records;
use crate::tokenize::{TextSide, tokenize_all};

/// How a build treats bad input and an existing Datanet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildOptions {
    /// Build from the valid records and list the invalid lines in the manifest's `skipped`,
    /// instead of failing with [`DatanetError::BadRecords`].
    pub skip_invalid: bool,
    /// Replace an existing Datanet of the same name (only once the new one is complete).
    pub force: bool,
    /// The caller wants progress shown; the build then logs its stages at `info` level.
    pub progress: bool,
}

/// What a successful build made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildReport {
    /// The Datanet's name.
    pub name: String,
    /// Its directory, `<root>/<name>`.
    pub dir: PathBuf,
    /// Number of records.
    pub records: u64,
    /// Number of tokens.
    pub tokens: u64,
    /// The contributors table.
    pub contributors: Vec<ContributorInfo>,
    /// The Merkle root over the record hashes.
    pub merkle_root: [u8; 32],
    /// Input lines left out as invalid (only non-empty with `skip_invalid`).
    pub skipped: Vec<RecordProblem>,
    /// Wall time of the build.
    pub elapsed: Duration,
}

/// Builds the Datanet `name` under `root` from the JSONL file `input`, tokenized with `text`.
///
/// Fails with [`DatanetError::InvalidName`], [`DatanetError::Exists`] (unless `opts.force`),
/// [`DatanetError::BadRecords`] listing every bad line (unless `opts.skip_invalid`),
/// [`DatanetError::NoRecords`] when nothing valid is left, or [`DatanetError::Io`].
pub fn build(
    input: &Path,
    name: &str,
    root: &Path,
    text: &TextSide<'_>,
    opts: &BuildOptions,
) -> Result<BuildReport, DatanetError> {
    let start = Instant::now();
    validate_name(name)?;
    let dir = root.join(name);
    // Checked early to fail before the expensive part; checked again when publishing.
    if !opts.force && dir.symlink_metadata().is_ok() {
        return Err(DatanetError::Exists { dir });
    }
    let bytes = read(input)?;
    let source = SourceInfo {
        path: std::path::absolute(input).unwrap_or_else(|_| input.to_owned()).display().to_string(),
        sha256: hex::encode(Sha256::digest(&bytes)),
    };
    let (parsed, mut problems) = parse_records(&bytes);
    drop(bytes);
    if opts.progress {
        tracing::info!(input = %input.display(), records = parsed.len(), "tokenizing Datanet records");
    }
    let tokenized = tokenize_all(&parsed, text);

    let mut records = Vec::with_capacity(parsed.len());
    let mut tokens: Vec<u32> = Vec::new();
    let mut contributors: Vec<ContributorInfo> = Vec::new();
    let mut contributor_index: HashMap<String, u32> = HashMap::new();
    for ((line, rec), tk) in parsed.into_iter().zip(tokenized) {
        let tk = match tk {
            Ok(tk) => tk,
            Err(reason) => {
                problems.push(RecordProblem::new(line, Some(rec.id), reason));
                continue;
            }
        };
        let contributor = match contributor_index.get(&rec.contributor) {
            Some(&c) => c,
            None => {
                let Ok(c) = u32::try_from(contributors.len()) else {
                    problems.push(RecordProblem::new(line, Some(rec.id), "too many contributors"));
                    continue;
                };
                contributor_index.insert(rec.contributor.clone(), c);
                contributors.push(ContributorInfo {
                    index: c,
                    name: rec.contributor.clone(),
                    records: 0,
                    tokens: 0,
                });
                c
            }
        };
        let info = &mut contributors[contributor as usize];
        info.records += 1;
        info.tokens += tk.tokens.len() as u64;
        records.push(RecordMeta {
            index: records.len() as u64,
            line,
            hash: rec.hash(),
            id: rec.id,
            contributor,
            token_offset: tokens.len() as u64,
            token_len: tk.tokens.len() as u64,
            prompt_len: tk.prompt_len as u64,
            content: rec.content,
        });
        tokens.extend_from_slice(&tk.tokens);
    }
    problems.sort_by_key(|p| p.line);
    if !problems.is_empty() && !opts.skip_invalid {
        return Err(DatanetError::BadRecords { path: input.to_owned(), problems });
    }
    if records.is_empty() {
        return Err(DatanetError::NoRecords { path: input.to_owned(), skipped: problems.len() });
    }

    let hashes: Vec<[u8; 32]> = records.iter().map(|r| r.hash).collect();
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        name: name.to_owned(),
        created: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        source,
        tokenizer: TokenizerInfo {
            vocab_size: text.tokenizer.vocab_size() as u64,
            base_hash: text.base_hash.to_owned(),
        },
        records: records.len() as u64,
        tokens: tokens.len() as u64,
        tokens_sha256: Some(tokens_sha256(&tokens)),
        merkle_root: merkle_root(&hashes),
        record_hash: RECORD_HASH_SCHEME.to_owned(),
        merkle: MERKLE_SCHEME.to_owned(),
        contributors,
        skipped: problems,
    };
    if opts.progress {
        tracing::info!(
            records = manifest.records,
            tokens = manifest.tokens,
            "writing Datanet {name}"
        );
    }
    fs::create_dir_all(root).map_err(DatanetError::io("creating", root))?;
    let tmp = root.join(format!(".tmp-{name}-{}", unique_suffix()));
    let written = write_dir(&tmp, &manifest, &records, &tokens)
        .and_then(|()| publish(&tmp, &dir, root, name, opts.force));
    if written.is_err() {
        // Best effort: the error being returned matters more than a leftover (invisible) temp dir.
        let _ = fs::remove_dir_all(&tmp);
    }
    written?;
    Ok(BuildReport {
        name: manifest.name,
        dir,
        records: manifest.records,
        tokens: manifest.tokens,
        contributors: manifest.contributors,
        merkle_root: manifest.merkle_root,
        skipped: manifest.skipped,
        elapsed: start.elapsed(),
    })
}

/// Creates `tmp` and writes the three files into it, each fsynced, then fsyncs `tmp`.
fn write_dir(
    tmp: &Path,
    manifest: &Manifest,
    records: &[RecordMeta],
    tokens: &[u32],
) -> Result<(), DatanetError> {
    fs::create_dir(tmp).map_err(DatanetError::io("creating", tmp))?;
    write_new_synced(&tmp.join(TOKENS_FILE), |w| {
        tokens.iter().try_for_each(|t| w.write_all(&t.to_le_bytes()))
    })?;
    write_new_synced(&tmp.join(RECORDS_FILE), |w| {
        records.iter().try_for_each(|r| {
            let line = serde_json::to_vec(&RecordLineRef::from(r))?;
            write_line(w, &line)
        })
    })?;
    // The manifest last: a directory with a manifest has everything the manifest describes.
    write_new_synced(&tmp.join(MANIFEST_FILE), |w| {
        let json = serde_json::to_vec_pretty(manifest)?;
        write_line(w, &json)
    })?;
    sync_dir(tmp)
}

/// Renames the complete `tmp` to `dir`; with `force`, an existing `dir` is renamed aside first
/// and removed after the new one is in place.
fn publish(
    tmp: &Path,
    dir: &Path,
    root: &Path,
    name: &str,
    force: bool,
) -> Result<(), DatanetError> {
    let exists = dir.symlink_metadata().is_ok();
    if exists && !force {
        return Err(DatanetError::Exists { dir: dir.to_owned() });
    }
    if !exists {
        return match fs::rename(tmp, dir) {
            Ok(()) => sync_dir(root),
            // Another builder got there between the check and the rename.
            Err(_) if dir.symlink_metadata().is_ok() => {
                Err(DatanetError::Exists { dir: dir.to_owned() })
            }
            Err(e) => Err(DatanetError::io("renaming into place", tmp)(e)),
        };
    }
    let old = root.join(format!(".tmp-{name}-{}-old", unique_suffix()));
    fs::rename(dir, &old).map_err(DatanetError::io("renaming aside", dir))?;
    if let Err(e) = fs::rename(tmp, dir) {
        // Put the old Datanet back so a failed replacement loses nothing.
        let _ = fs::rename(&old, dir);
        return Err(DatanetError::io("renaming into place", tmp)(e));
    }
    sync_dir(root)?;
    if let Err(e) = fs::remove_dir_all(&old) {
        // The new Datanet is in place; a leftover `.tmp-*` directory is invisible to `list`.
        tracing::warn!(path = %old.display(), error = %e, "could not remove the replaced Datanet");
    }
    Ok(())
}
