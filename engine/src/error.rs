//! The engine's error type.

/// Errors from loading, submitting to and running the engine. Display texts are written for the
/// API's JSON error bodies: they name the parameter or adapter at fault.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A tensor op or kernel failed.
    #[error("kernel: {0}")]
    Kernel(#[from] lorad_kernels::KernelError),
    /// A tensor op failed.
    #[error("tensor: {0}")]
    Candle(#[from] candle_core::Error),
    /// The model's weights do not fit its configuration.
    #[error("model weights: {0}")]
    Weights(String),
    /// An adapter does not fit the base model.
    #[error("adapter '{name}': {reason}")]
    BadAdapter {
        /// The adapter.
        name: String,
        /// What does not fit.
        reason: String,
    },
    /// No adapter of that name is loaded.
    #[error("the model '{0}' does not exist")]
    UnknownAdapter(String),
    /// The prompt is empty.
    #[error("prompt: must contain at least one token")]
    EmptyPrompt,
    /// Prompt plus requested completion exceed the context window.
    #[error(
        "This model's maximum context length is {max} tokens. However, you requested {requested} tokens ({prompt} in the messages, {completion} in the completion). Please reduce the length of the messages or completion."
    )]
    ContextLength {
        /// The context window.
        max: usize,
        /// prompt + completion.
        requested: usize,
        /// Prompt tokens.
        prompt: usize,
        /// Requested completion tokens.
        completion: usize,
    },
    /// The request could never fit in the KV cache.
    #[error("prompt: {tokens} tokens exceed the KV cache capacity of {capacity} tokens")]
    ExceedsKvCache {
        /// Tokens needed.
        tokens: usize,
        /// Cache capacity.
        capacity: usize,
    },
    /// Too many requests are waiting.
    #[error("the server is at capacity ({0} requests waiting); retry later")]
    QueueFull(usize),
    /// A sampling parameter is out of range.
    #[error("{field}: {reason}")]
    InvalidParam {
        /// The parameter's API name.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// The engine configuration is invalid.
    #[error("engine config: {0}")]
    Config(String),
    /// A running request failed inside the engine.
    #[error("generation failed: {0}")]
    Generation(String),
    /// The engine thread has stopped.
    #[error("the engine has shut down")]
    Shutdown,
    /// The device working set cannot take an adapter: the rest of its budget is pinned or
    /// leased by requests.
    #[error("adapter '{name}' cannot be made resident: the device adapter budget {full}")]
    AdapterPoolFull {
        /// The adapter.
        name: String,
        /// Budget figures.
        full: lorad_store::tiers::TierFull,
    },
    /// An adapter waited its whole admit timeout behind other adapters' turns at the device
    /// budget (requests on the adapters ahead of it held the room).
    #[error(
        "adapter '{name}' cannot be made resident: it waited {waited_secs} s behind {ahead} other \
         adapter(s) for room in the device adapter budget"
    )]
    AdmitTimeout {
        /// The adapter.
        name: String,
        /// Seconds waited.
        waited_secs: u64,
        /// Adapters that were ahead in the queue when it gave up.
        ahead: usize,
    },
    /// A pin refused: the pinned adapters would leave less of the device budget than another
    /// registered adapter may need, so that one could never be served.
    #[error(
        "pinning adapter '{name}' would leave {room} of the {budget}-byte device adapter budget \
         unpinned ({pinned} bytes pinned), and adapter '{other}' may need {needs}: unpin others \
         or raise adapters.device_bytes"
    )]
    PinLeavesNoRoom {
        /// The adapter to pin.
        name: String,
        /// Bytes pinned with it.
        pinned: u64,
        /// The device budget.
        budget: u64,
        /// `budget - pinned`.
        room: u64,
        /// The largest other registered adapter.
        other: String,
        /// What it may take on the device (an upper bound from its stored size).
        needs: u64,
    },
    /// An adapter's turn at the device budget came, but the requests on the adapters draining
    /// for it still held the room when its admit timeout ran out.
    #[error(
        "adapter '{name}' cannot be made resident: it waited {waited_secs} s for running \
         requests on other adapters to release the device adapter budget, which {full}"
    )]
    DrainTimeout {
        /// The adapter.
        name: String,
        /// Seconds waited in all.
        waited_secs: u64,
        /// Budget figures when it gave up.
        full: lorad_store::tiers::TierFull,
    },
    /// A forced removal is draining the adapter: it takes no new requests.
    #[error("adapter '{0}' is being removed")]
    AdapterRemoving(String),
    /// Requests are running on the adapter (removal refused).
    #[error("adapter '{0}' is in use by running requests; drain them first or force the removal")]
    AdapterInUse(String),
    /// Reading an adapter from the store failed (names the adapter and what is wrong). Boxed:
    /// store errors carry paths and reasons, and every `Result` of this crate pays for the
    /// largest variant.
    #[error(transparent)]
    Store(Box<lorad_store::StoreError>),
    /// The adapter was imported for another base model.
    #[error(
        "adapter '{name}' was imported for base model {adapter_base}, but this server runs {served_base}"
    )]
    BaseMismatch {
        /// The adapter.
        name: String,
        /// Base hash recorded at import.
        adapter_base: String,
        /// Hash of the served base.
        served_base: String,
    },
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

impl From<lorad_store::StoreError> for EngineError {
    fn from(e: lorad_store::StoreError) -> Self {
        EngineError::Store(Box::new(e))
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, EngineError>;
