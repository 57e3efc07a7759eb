//! The on-disk gradient index: a JSON header, the records' projected gradients and the
//! preconditioner, written atomically into one directory and memory-mapped when opened.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use lorad_train::ProbeSpec;
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::precond::{DAMPING_FACTOR, Preconditioner};
use crate::{AttributionError, Result};

const HEADER: &str = "grad-index.json";
const FEATURES: &str = "features.f32";
const PRECOND: &str = "precond.f32";
const NORMS: &str = "norms.f32";
const FORMAT_VERSION: u32 = 1;

/// One indexed record: its Datanet id and contributor (index into
/// [`GradIndexHeader::contributors`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedRecord {
    /// The record's id in its Datanet.
    pub id: String,
    /// Index of its contributor.
    pub contributor: u32,
}

/// Everything about an index except the numbers: what it was built from and how. Callers of
/// [`GradIndex::build`] set what it was built from and leave the derived fields (format
/// version, `dim`, `lambdas`, hashes) to their defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GradIndexHeader {
    /// Always 1 for this layout.
    pub format_version: u32,
    /// Adapter name at build time.
    pub adapter: String,
    /// The adapter's content hash: an index is only valid for exactly these weights.
    pub adapter_hash: String,
    /// Datanet name.
    pub datanet: String,
    /// The Datanet's Merkle root (`0x`-hex): which records, exactly.
    pub datanet_root: String,
    /// Projection sizes and seed; queries must use the same.
    pub probe: ProbeSpec,
    /// Feature block widths (one per LoRA pair, in the adapter's pair order).
    pub blocks: Vec<usize>,
    /// Sum of `blocks`.
    pub dim: usize,
    /// Damping per block.
    pub lambdas: Vec<f64>,
    /// `lambda = damping_factor * trace(F) / min(n, d)`; 0 at build time picks
    /// [`DAMPING_FACTOR`](super::DAMPING_FACTOR).
    pub damping_factor: f64,
    /// The records, in feature-row order.
    pub records: Vec<IndexedRecord>,
    /// Contributor names by index.
    pub contributors: Vec<String>,
    /// Hex SHA-256 of `features.f32`.
    pub features_sha256: String,
    /// Hex SHA-256 of `precond.f32`.
    pub precond_sha256: String,
    /// Hex SHA-256 of `norms.f32` (per record `|g|`, then per record `sqrt(g^T K g)`).
    pub norms_sha256: String,
}

/// An opened gradient index.
#[derive(Debug)]
pub struct GradIndex {
    dir: PathBuf,
    header: GradIndexHeader,
    features: Floats,
    precond: Preconditioner,
    /// `|g_i|` for every record, then `sqrt(g_i^T K g_i)`.
    norms: Vec<f32>,
}

/// f32 values of a mapped file; decoded into memory when the mapping cannot be viewed in place.
#[derive(Debug)]
enum Floats {
    Mapped(Mmap),
    Owned(Vec<f32>),
}

impl Floats {
    fn as_slice(&self) -> &[f32] {
        match self {
            Floats::Owned(v) => v,
            Floats::Mapped(m) => {
                // SAFETY: `open_floats` only keeps a mapping whose address is 4-byte aligned
                // (mappings are page aligned) and whose length is a multiple of 4 on a
                // little-endian target, so every 4 bytes are one valid f32 (any bit pattern is).
                unsafe { std::slice::from_raw_parts(m.as_ptr().cast::<f32>(), m.len() / 4) }
            }
        }
    }
}

/// Maps `path` read-only.
///
/// SIGBUS: reading a page of a mapped file that was truncated underneath raises SIGBUS. Index
/// directories are written once into a temporary directory and renamed into place; nothing ever
/// truncates or rewrites their files, so a live mapping only loses its file to deliberate
/// tampering, which the content hashes in the header detect on `verify`.
fn open_floats(path: &Path) -> Result<Floats> {
    let file = File::open(path).map_err(AttributionError::io("opening", path))?;
    let len = file.metadata().map_err(AttributionError::io("reading", path))?.len();
    if len % 4 != 0 {
        return Err(AttributionError::Format {
            path: path.to_owned(),
            reason: format!("{len} bytes is not a whole number of f32 values"),
        });
    }
    if len == 0 {
        return Ok(Floats::Owned(Vec::new()));
    }
    // SAFETY: read-only shared mapping of a file that is never modified after its directory is
    // renamed into place (see the SIGBUS note above).
    let map = unsafe { Mmap::map(&file) }.map_err(AttributionError::io("mapping", path))?;
    if cfg!(target_endian = "little") && (map.as_ptr() as usize).is_multiple_of(4) {
        return Ok(Floats::Mapped(map));
    }
    Ok(Floats::Owned(
        map.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
    ))
}

fn write_floats(path: &Path, values: impl Iterator<Item = f32>) -> Result<String> {
    let mut file = std::io::BufWriter::new(
        File::create(path).map_err(AttributionError::io("creating", path))?,
    );
    let mut hash = Sha256::new();
    for v in values {
        let b = v.to_le_bytes();
        hash.update(b);
        file.write_all(&b).map_err(AttributionError::io("writing", path))?;
    }
    let file = file.into_inner().map_err(|e| AttributionError::Io {
        action: "writing",
        path: path.to_owned(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(AttributionError::io("syncing", path))?;
    Ok(hex::encode(hash.finalize()))
}

fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(AttributionError::io("reading", path))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

impl GradIndex {
    /// Fits the preconditioner and writes the index into `dir` (which must not exist; its parent
    /// is created). `header`'s derived fields (`format_version`, `dim`, `lambdas`, hashes) are
    /// filled in here.
    pub fn build(dir: &Path, mut header: GradIndexHeader, features: &[Vec<f32>]) -> Result<Self> {
        if features.len() != header.records.len() {
            return Err(AttributionError::InvalidInput(format!(
                "{} feature rows for {} records",
                features.len(),
                header.records.len()
            )));
        }
        if let Some(r) =
            header.records.iter().find(|r| r.contributor as usize >= header.contributors.len())
        {
            return Err(AttributionError::InvalidInput(format!(
                "record {} names contributor {} of {}",
                r.id,
                r.contributor,
                header.contributors.len()
            )));
        }
        if dir.exists() {
            return Err(AttributionError::InvalidInput(format!(
                "{} already exists; remove it to rebuild",
                dir.display()
            )));
        }
        let damping =
            if header.damping_factor > 0.0 { header.damping_factor } else { DAMPING_FACTOR };
        let precond = Preconditioner::fit(features, &header.blocks, damping)?;
        let parent = dir.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(AttributionError::io("creating", parent))?;
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = parent.join(format!(".tmp-{name}-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(AttributionError::io("removing", &tmp))?;
        }
        std::fs::create_dir(&tmp).map_err(AttributionError::io("creating", &tmp))?;
        header.format_version = FORMAT_VERSION;
        header.dim = header.blocks.iter().sum();
        header.lambdas = precond.lambdas.clone();
        header.damping_factor = damping;
        header.features_sha256 =
            write_floats(&tmp.join(FEATURES), features.iter().flat_map(|r| r.iter().copied()))?;
        header.precond_sha256 = write_floats(&tmp.join(PRECOND), precond.inverses.iter().copied())?;
        let norms = record_norms(features, &precond)?;
        header.norms_sha256 = write_floats(&tmp.join(NORMS), norms.iter().copied())?;
        let json = serde_json::to_vec_pretty(&header)
            .map_err(|e| AttributionError::InvalidInput(format!("encoding header: {e}")))?;
        let hp = tmp.join(HEADER);
        let mut f = File::create(&hp).map_err(AttributionError::io("creating", &hp))?;
        f.write_all(&json).map_err(AttributionError::io("writing", &hp))?;
        f.sync_all().map_err(AttributionError::io("syncing", &hp))?;
        std::fs::rename(&tmp, dir).map_err(AttributionError::io("renaming into place", dir))?;
        if let Ok(d) = File::open(parent) {
            // Best effort: makes the rename durable; some filesystems refuse fsync on directories.
            let _ = d.sync_all();
        }
        Self::open(dir)
    }

    /// Opens the index in `dir`, checking the header against the files' sizes.
    pub fn open(dir: &Path) -> Result<Self> {
        let hp = dir.join(HEADER);
        let bytes = std::fs::read(&hp).map_err(AttributionError::io("reading", &hp))?;
        let header: GradIndexHeader =
            serde_json::from_slice(&bytes).map_err(|e| AttributionError::Format {
                path: hp.clone(),
                reason: format!("not a gradient index header: {e}"),
            })?;
        let bad =
            |file: &str, reason: String| AttributionError::Format { path: dir.join(file), reason };
        if header.format_version != FORMAT_VERSION {
            return Err(bad(
                HEADER,
                format!(
                    "format version {} (this build reads {FORMAT_VERSION})",
                    header.format_version
                ),
            ));
        }
        // Checked: a damaged header's sizes must fail here, not overflow or index out of range
        // when an answer is scored.
        let dim = header.blocks.iter().try_fold(0usize, |sum, &b| sum.checked_add(b));
        if dim != Some(header.dim) || header.lambdas.len() != header.blocks.len() {
            return Err(bad(HEADER, "block widths do not add up to dim".into()));
        }
        if let Some(r) =
            header.records.iter().find(|r| r.contributor as usize >= header.contributors.len())
        {
            return Err(bad(
                HEADER,
                format!(
                    "record {:?} names contributor {} of {}",
                    r.id,
                    r.contributor,
                    header.contributors.len()
                ),
            ));
        }
        let sizes = || -> Option<(usize, usize, usize)> {
            let features = header.records.len().checked_mul(header.dim)?;
            let precond = header
                .blocks
                .iter()
                .try_fold(0usize, |sum, &d| sum.checked_add(d.checked_mul(d)?))?;
            Some((features, precond, header.records.len().checked_mul(2)?))
        };
        let Some((want_features, want_precond, want_norms)) = sizes() else {
            return Err(bad(HEADER, "sizes overflow: not a header this build wrote".into()));
        };
        let features = open_floats(&dir.join(FEATURES))?;
        if features.as_slice().len() != want_features {
            return Err(bad(
                FEATURES,
                format!(
                    "{} values, expected {} records x {} = {want_features}",
                    features.as_slice().len(),
                    header.records.len(),
                    header.dim
                ),
            ));
        }
        let inverses = open_floats(&dir.join(PRECOND))?.as_slice().to_vec();
        if inverses.len() != want_precond {
            return Err(bad(
                PRECOND,
                format!("{} values, expected {want_precond}", inverses.len()),
            ));
        }
        let precond = Preconditioner {
            blocks: header.blocks.clone(),
            lambdas: header.lambdas.clone(),
            inverses,
        };
        let norms = open_floats(&dir.join(NORMS))?.as_slice().to_vec();
        if norms.len() != want_norms {
            return Err(bad(NORMS, format!("{} values, expected {want_norms}", norms.len())));
        }
        Ok(Self { dir: dir.to_owned(), header, features, precond, norms })
    }

    /// Rehashes the data files against the header.
    pub fn verify(&self) -> Result<()> {
        for (file, want) in [
            (FEATURES, &self.header.features_sha256),
            (PRECOND, &self.header.precond_sha256),
            (NORMS, &self.header.norms_sha256),
        ] {
            let got = sha256_file(&self.dir.join(file))?;
            if &got != want {
                return Err(AttributionError::Format {
                    path: self.dir.join(file),
                    reason: format!("content hash {got} does not match the header's {want}"),
                });
            }
        }
        Ok(())
    }

    /// The header.
    pub fn header(&self) -> &GradIndexHeader {
        &self.header
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.header.records.len()
    }

    /// Whether the index holds no record.
    pub fn is_empty(&self) -> bool {
        self.header.records.is_empty()
    }

    /// Record `i`'s projected gradient.
    pub fn features(&self, i: usize) -> &[f32] {
        let d = self.header.dim;
        &self.features.as_slice()[i * d..(i + 1) * d]
    }

    /// The preconditioner.
    pub fn preconditioner(&self) -> &Preconditioner {
        &self.precond
    }

    /// Record `i`'s gradient norm: `sqrt(g^T K g)` when `preconditioned`, else `|g|`.
    pub fn norm(&self, i: usize, preconditioned: bool) -> f32 {
        self.norms[i + if preconditioned { self.len() } else { 0 }]
    }
}

/// `|g_i|` for every record, then `sqrt(g_i^T K g_i)`, accumulated in f64.
fn record_norms(features: &[Vec<f32>], precond: &Preconditioner) -> Result<Vec<f32>> {
    let mut out: Vec<f32> = features
        .iter()
        .map(|g| g.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt() as f32)
        .collect();
    for g in features {
        let kg = precond.apply(g)?;
        let q: f64 = g.iter().zip(&kg).map(|(&a, &b)| a as f64 * b as f64).sum();
        out.push(q.max(0.0).sqrt() as f32);
    }
    Ok(out)
}
