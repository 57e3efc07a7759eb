//! The crate's single error type.
//!
//! Every variant names what was at fault (a file, a metadata key, a config field, a tensor), so an
//! operator reading a log line can fix the input without a debugger.

use std::path::PathBuf;

/// Everything that can go wrong while fetching, reading or interpreting a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file or directory could not be read, written or renamed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("reading", "creating", ...).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The path is neither a `.gguf` file nor a directory holding a Hugging Face `config.json`.
    #[error(
        "{path} is not a model: expected a .gguf file or a Hugging Face directory with config.json"
    )]
    NotAModel {
        /// The path given.
        path: PathBuf,
    },

    /// A GGUF file could not be parsed, or one of its tensors could not be read.
    #[error("invalid GGUF file {path}: {source}")]
    Gguf {
        /// The GGUF file.
        path: PathBuf,
        /// The error from the GGUF reader.
        #[source]
        source: Box<candle_core::Error>,
    },

    /// A metadata key the loader needs is absent from a GGUF file.
    #[error("GGUF file {path} lacks metadata key `{key}`")]
    MissingMetadata {
        /// The GGUF file.
        path: PathBuf,
        /// The missing key.
        key: String,
    },

    /// A GGUF metadata key has the wrong type or an unusable value.
    #[error("GGUF file {path}: metadata key `{key}`: {reason}")]
    BadMetadata {
        /// The GGUF file.
        path: PathBuf,
        /// The offending key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A JSON file (config.json, tokenizer_config.json, an index, ...) is not valid JSON.
    #[error("invalid JSON in {path}: {source}")]
    Json {
        /// The JSON file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },

    /// A field of a Hugging Face JSON file is missing, has the wrong type, or an unsupported value.
    #[error("{path}: field `{field}`: {reason}")]
    ConfigField {
        /// The JSON file.
        path: PathBuf,
        /// The field at fault (dotted for nested fields, e.g. `rope_scaling.factor`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A model configuration is internally inconsistent (see [`crate::ModelConfig::validate`]).
    #[error("invalid model config: `{field}`: {reason}")]
    InvalidConfig {
        /// The config field at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A model uses a feature this crate does not implement.
    #[error("{path}: unsupported {what}")]
    Unsupported {
        /// The model file or directory.
        path: PathBuf,
        /// The feature, naming the key or tensor that carries it.
        what: String,
    },

    /// A tensor the architecture needs is absent from the weights.
    #[error("{path}: missing tensor `{name}`")]
    MissingTensor {
        /// The model file or directory.
        path: PathBuf,
        /// The tensor's name in the source format (GGUF or Hugging Face).
        name: String,
    },

    /// A tensor has a shape other than the config implies.
    #[error("{path}: tensor `{name}` has shape {actual:?}, expected {expected:?}")]
    TensorShape {
        /// The model file or directory.
        path: PathBuf,
        /// The tensor's name in the source format.
        name: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape found.
        actual: Vec<usize>,
    },

    /// A tensor could not be read, dequantized, converted or moved to the device.
    #[error("{path}: tensor `{name}`: {source}")]
    Tensor {
        /// The model file or directory.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// The error from candle.
        #[source]
        source: Box<candle_core::Error>,
    },

    /// A safetensors file could not be parsed.
    #[error("invalid safetensors file {path}: {source}")]
    Safetensors {
        /// The safetensors file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: Box<candle_core::Error>,
    },

    /// A tokenizer could not be built, loaded, or run.
    #[error("tokenizer ({context}): {source}")]
    Tokenizer {
        /// Which tokenizer or operation (a file path, "encode", ...).
        context: String,
        /// The error from the tokenizers library.
        #[source]
        source: tokenizers::Error,
    },

    /// A chat template failed to compile or to render (including `raise_exception` calls).
    /// Shown without minijinja's debug dump (the template's source and every variable it
    /// read), which would put whole conversations into one-line API errors and logs.
    #[error("chat template: {source}")]
    Template {
        /// The template engine's error, with line information.
        #[source]
        source: minijinja::Error,
    },

    /// `python3` could not be started while fetching the default model.
    #[error("cannot run `python3` (needed to download the default model with pip): {source}")]
    PythonMissing {
        /// The spawn error.
        #[source]
        source: std::io::Error,
    },

    /// `python3` runs but has no pip module.
    #[error(
        "`python3 -m pip` is not available (install pip, e.g. the python3-pip package): {stderr}"
    )]
    PipMissing {
        /// The tail of pip's standard error.
        stderr: String,
    },

    /// `pip download` failed.
    #[error("`python3 -m pip download` failed ({status}):\n{stderr}")]
    PipFailed {
        /// The exit status.
        status: String,
        /// The tail of pip's standard error.
        stderr: String,
    },

    /// pip finished but left no wheel in its download directory.
    #[error("pip download left no .whl file in {dir}")]
    NoWheel {
        /// The download directory.
        dir: PathBuf,
    },

    /// A wheel (zip archive) could not be read or lacks a member.
    #[error("wheel {path}: member `{member}`: {source}")]
    Zip {
        /// The wheel.
        path: PathBuf,
        /// The member being extracted (empty when the archive itself is unreadable).
        member: String,
        /// The zip error.
        #[source]
        source: zip::result::ZipError,
    },

    /// A file's sha256 is not the expected one.
    #[error("sha256 mismatch for {path}: expected {expected}, got {actual}")]
    HashMismatch {
        /// The file (or archive member) checked.
        path: PathBuf,
        /// The expected hex digest.
        expected: String,
        /// The digest found.
        actual: String,
    },
}

impl ModelError {
    /// Shorthand for [`ModelError::Io`].
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { action, path, source }
    }
}
