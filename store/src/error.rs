//! The crate's single error type.
//!
//! Every variant carries enough context (file, config field, tensor name, adapter name) for an
//! operator to fix the adapter without reading lorad's source: these messages end up verbatim in
//! the daemon's HTTP error bodies and in `lorad import` output.

use std::path::PathBuf;

/// Everything that can go wrong while reading, writing or storing adapters.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What lorad was doing ("reading", "renaming", ...).
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying OS error.
        #[source]
        source: std::io::Error,
    },

    /// A required file is absent from an adapter directory.
    #[error("{}: missing {file}", dir.display())]
    MissingFile {
        /// The adapter directory.
        dir: PathBuf,
        /// The file that should be there.
        file: &'static str,
    },

    /// The adapter only ships PyTorch pickle weights.
    #[error(
        "{}: adapter_model.bin (PyTorch pickle) is not supported; convert it to \
         adapter_model.safetensors (e.g. load it with PEFT and call \
         save_pretrained(..., safe_serialization=True))",
        path.display()
    )]
    PickleNotSupported {
        /// The `.bin` file that was found.
        path: PathBuf,
    },

    /// A JSON file is not valid JSON (or not the expected shape of JSON).
    #[error("{}: invalid JSON: {source}", path.display())]
    InvalidJson {
        /// The JSON file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },

    /// A config field has a value of the wrong type or out of range.
    #[error("{}: invalid `{field}`: {reason}", path.display())]
    InvalidConfig {
        /// The config file.
        path: PathBuf,
        /// The offending field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A config field asks for a PEFT feature lorad does not implement.
    #[error("{}: `{field}` = {value} is not supported: {reason}", path.display())]
    Unsupported {
        /// The config file.
        path: PathBuf,
        /// The offending field.
        field: String,
        /// Its value, as compact JSON (truncated).
        value: String,
        /// Why lorad refuses it.
        reason: String,
    },

    /// A config key lorad does not know has a non-default value.
    #[error(
        "{}: unknown config key `{key}` has non-default value {value}; lorad cannot tell whether \
         it changes the adapter's math, so it refuses the adapter",
        path.display()
    )]
    UnknownConfigKey {
        /// The config file.
        path: PathBuf,
        /// The unknown key.
        key: String,
        /// Its value, as compact JSON (truncated).
        value: String,
    },

    /// The safetensors file could not be parsed.
    #[error("{}: invalid safetensors file: {source}", path.display())]
    Safetensors {
        /// The weights file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: safetensors::SafeTensorError,
    },

    /// A tensor is not one lorad knows how to use (wrong name, feature not supported).
    #[error("{}: unexpected tensor `{tensor}`: {reason}", path.display())]
    UnexpectedTensor {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name as stored.
        tensor: String,
        /// Why it is refused.
        reason: String,
    },

    /// Two stored tensors map to the same LoRA matrix.
    #[error("{}: tensors `{first}` and `{second}` are the same LoRA matrix", path.display())]
    DuplicateTensor {
        /// The weights file.
        path: PathBuf,
        /// The first tensor name seen.
        first: String,
        /// The second one.
        second: String,
    },

    /// One half of a LoRA pair is missing.
    #[error("{}: tensor `{present}` has no matching `{missing}`", path.display())]
    MissingTensor {
        /// The weights file.
        path: PathBuf,
        /// The tensor that is present.
        present: String,
        /// The name of the tensor that should accompany it.
        missing: String,
    },

    /// A tensor's shape does not fit the base model.
    #[error(
        "{}: tensor `{tensor}` has shape {actual:?}, expected {expected:?} ({reason})",
        path.display()
    )]
    TensorShape {
        /// The weights file.
        path: PathBuf,
        /// The tensor name as stored.
        tensor: String,
        /// The shape lorad expected.
        expected: Vec<usize>,
        /// The shape in the file.
        actual: Vec<usize>,
        /// Where the expectation comes from.
        reason: String,
    },

    /// A tensor's rank disagrees with `r` / `rank_pattern`.
    #[error(
        "{}: tensor `{tensor}` has rank {actual} but the config says {expected} (from {source_field})",
        path.display()
    )]
    RankMismatch {
        /// The weights file.
        path: PathBuf,
        /// The tensor name as stored.
        tensor: String,
        /// The rank the config resolves to for this module.
        expected: usize,
        /// The rank found in the tensor.
        actual: usize,
        /// `r` or the `rank_pattern` key that applied.
        source_field: String,
    },

    /// A tensor has an element type lorad cannot convert to f32.
    #[error("{}: tensor `{tensor}` has dtype {dtype}; only F32, F16, BF16 (and F64) are supported", path.display())]
    TensorDtype {
        /// The weights file.
        path: PathBuf,
        /// The tensor name as stored.
        tensor: String,
        /// The dtype found.
        dtype: String,
    },

    /// A tensor contains NaN or infinity (after conversion to f32).
    #[error("{}: tensor `{tensor}` contains a non-finite value at element {index}", path.display())]
    NonFinite {
        /// The weights file.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// The flat index of the first bad element.
        index: usize,
    },

    /// A tensor targets a layer the base model does not have.
    #[error("{}: tensor `{tensor}` is for layer {layer} but the base model has {num_layers} layers", path.display())]
    LayerOutOfRange {
        /// The weights file.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// The layer index in the tensor name.
        layer: usize,
        /// The base model's layer count.
        num_layers: usize,
    },

    /// A tensor exists for a module the config does not target.
    #[error("{}: tensor `{tensor}` is for a module the config does not target ({reason})", path.display())]
    NotTargeted {
        /// The weights file.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// Which config field excludes it.
        reason: String,
    },

    /// The weights file holds no LoRA tensors at all.
    #[error("{}: contains no LoRA tensors", path.display())]
    EmptyAdapter {
        /// The weights file.
        path: PathBuf,
    },

    /// The base shape passed in is unusable (a zero dimension).
    #[error("invalid base shape: {reason}")]
    InvalidBaseShape {
        /// What is wrong.
        reason: String,
    },

    /// An in-memory [`crate::Adapter`] is inconsistent and cannot be written.
    #[error("adapter `{name}` is inconsistent: {reason}")]
    InvalidAdapter {
        /// The adapter's name.
        name: String,
        /// What is inconsistent.
        reason: String,
    },

    /// An adapter name breaks the naming rules.
    #[error("invalid adapter name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// An adapter with this name and different content is already registered.
    #[error("adapter `{name}` already exists in {} with different content", root.display())]
    AdapterExists {
        /// The adapter name.
        name: String,
        /// The registry root.
        root: PathBuf,
    },

    /// No adapter with this name is registered.
    #[error("adapter `{name}` not found in {}", root.display())]
    NotFound {
        /// The adapter name.
        name: String,
        /// The registry root.
        root: PathBuf,
    },

    /// A registry entry is damaged (bad metadata, content no longer matches its hash).
    #[error("registry entry {} is corrupt: {reason}", path.display())]
    CorruptEntry {
        /// The entry's directory or metadata file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A read returned fewer bytes than the store's index promised (truncated segment).
    #[error("{}: short read at offset {offset}: wanted {expected} bytes, got {got}", path.display())]
    ShortRead {
        /// The file read.
        path: PathBuf,
        /// Where the read started.
        offset: u64,
        /// Bytes wanted.
        expected: usize,
        /// Bytes obtained before end of file.
        got: usize,
    },

    /// io_uring was required (`IoMode::IoUring`) but the kernel or sandbox refused it.
    #[error(
        "io_uring is unavailable: {reason}; use the pread fallback (io mode `pread` or `auto`)"
    )]
    IoUringUnavailable {
        /// What the probe saw.
        reason: String,
    },

    /// A host-memory pinner could not be installed.
    #[error("cannot page-lock adapter buffers: {reason}")]
    Pinner {
        /// Why.
        reason: String,
    },

    /// The adapter store's index file is damaged (bad magic, header checksum, too short).
    #[error("adapter store index {} is corrupt: {reason}", path.display())]
    CorruptIndex {
        /// The index file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The index holds damaged records (skipped when it was read) that may have referenced
    /// adapter data: garbage collection would reclaim those bytes for good, so it refuses.
    #[error(
        "adapter store index {} has {} damaged record(s) (at byte offsets {offsets:?}) that may \
         have named adapters whose data gc would then reclaim for good; back the store up, then \
         run `lorad store gc --discard-damaged` to drop them",
        path.display(),
        offsets.len()
    )]
    DamagedIndex {
        /// The index file.
        path: PathBuf,
        /// Byte offset of the first slot of each damaged run.
        offsets: Vec<u64>,
    },

    /// The adapter store's index was written by a lorad with another on-disk format.
    #[error(
        "adapter store index {} has format version {found}, but this lorad reads version \
         {supported}; use the matching lorad version (or re-import the adapters into a new store)",
        path.display()
    )]
    IndexVersion {
        /// The index file.
        path: PathBuf,
        /// The version in its header.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },

    /// A segment file of the adapter store has a damaged or unknown header.
    #[error("adapter store segment {} is unusable: {reason}", path.display())]
    CorruptSegment {
        /// The segment file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// An adapter's stored blob is damaged (manifest, truncation, content hash); the adapter is
    /// quarantined.
    #[error("adapter `{name}` is corrupt on disk ({} at offset {offset}): {reason}; it is quarantined", path.display())]
    CorruptBlob {
        /// The adapter name.
        name: String,
        /// The segment file holding its blob.
        path: PathBuf,
        /// The blob's offset in the segment.
        offset: u64,
        /// What is wrong.
        reason: String,
    },

    /// A stored tensor's bytes do not match their CRC32; the adapter is quarantined.
    #[error(
        "adapter `{name}`: tensor `{tensor}` in {} fails its checksum (stored crc32 {expected:08x}, \
         computed {actual:08x}); the adapter is quarantined",
        path.display()
    )]
    Checksum {
        /// The adapter name.
        name: String,
        /// The tensor's canonical PEFT name.
        tensor: String,
        /// The segment file.
        path: PathBuf,
        /// CRC32 recorded at import.
        expected: u32,
        /// CRC32 of the bytes read.
        actual: u32,
    },

    /// The adapter was quarantined after failing an integrity check.
    #[error(
        "adapter `{name}` is quarantined: {reason}; remove it and import it again \
         (re-importing the same content under the same name also repairs it)"
    )]
    Quarantined {
        /// The adapter name.
        name: String,
        /// Why it was quarantined.
        reason: String,
    },

    /// Reading an adapter's blob failed for a reason other than damage (an I/O error).
    #[error("reading adapter `{name}`: {source}")]
    AdapterIo {
        /// The adapter name.
        name: String,
        /// The underlying error.
        #[source]
        source: Box<StoreError>,
    },

    /// A stored adapter does not fit the base model it is being loaded for.
    #[error("adapter `{name}` does not fit the base model: {reason}")]
    ShapeMismatch {
        /// The adapter name.
        name: String,
        /// Which layer or projection disagrees.
        reason: String,
    },

    /// The base-model hash passed to an import is unusable.
    #[error("invalid base model hash {value:?}: {reason}")]
    InvalidBaseHash {
        /// The rejected value (truncated).
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
}

impl StoreError {
    /// Shorthand for [`StoreError::Io`].
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        StoreError::Io { action, path: path.into(), source }
    }
}

/// Renders a JSON value compactly for error messages, truncated so a huge value cannot flood logs.
pub(crate) fn short_json(value: &serde_json::Value) -> String {
    const MAX: usize = 80;
    let s = value.to_string();
    if s.len() <= MAX {
        return s;
    }
    let mut cut = MAX;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}
