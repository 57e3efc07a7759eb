//! The engine handle: configuration, start-up, submission and adapter management. The step
//! loop itself is in `scheduler.rs`.

use crate::memory::{KvMemory, device_memory, kv_bytes_per_token, kv_tokens};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use candle_core::{DType, Device};
use lorad_kernels::KernelPath;
use lorad_model::{ChatTemplate, LoadedModel, ModelConfig, Tokenizer};
use lorad_store::{Adapter, BaseShape, Blob};

use crate::adapters::{AdapterDtype, AdapterPool, ResidentAdapter};
use crate::kv::KvCache;
use crate::llama::Llama;
use crate::request::{GenerateRequest, GenerationStream};
use crate::scheduler::{Command, Scheduler, SeqInit};
use crate::{EngineError, Result};

/// Engine limits. Defaults suit the default model on a CPU host.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Most sequences decoded together in one step.
    pub max_batch_size: usize,
    /// Most tokens (prefill chunks + decode tokens) in one step; longer prompts are prefilled
    /// in chunks so running requests keep decoding.
    pub max_batch_tokens: usize,
    /// Requests allowed to wait for a batch slot before new ones get `QueueFull` (HTTP 429).
    pub max_waiting: usize,
    /// KV cache size in tokens, shared by all sequences.
    pub kv_cache_tokens: usize,
    /// KV cache size as memory; when set, it decides the size (in whole blocks) instead of
    /// `kv_cache_tokens`.
    pub kv_cache_memory: Option<KvMemory>,
    /// Tokens per KV block.
    pub block_size: usize,
    /// Context window; `None` uses the model's.
    pub max_seq_len: Option<usize>,
    /// Byte budget of the device working set of adapters (resident LoRA weights).
    pub adapter_pool_bytes: u64,
    /// Which kernels the forward pass uses. [`KernelPath::Auto`] (the fused CPU kernels where
    /// they apply) except to measure or pin the device-generic path on the CPU.
    pub kernels: KernelPath,
    /// Share the K/V of full blocks between sequences whose tokens (and adapter) start the
    /// same, so a common system prompt or chat history is computed once.
    pub prefix_caching: bool,
    /// Which waiting request runs next.
    pub scheduling: SchedulingPolicy,
    /// Speculative decoding by prompt lookup; `None` decodes one token per step.
    pub speculative: Option<crate::NgramSpec>,
    /// The precision adapters are kept in once resident.
    pub adapter_dtype: AdapterDtype,
}

/// Which waiting request runs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchedulingPolicy {
    /// First come, first served; requests must not set a priority.
    #[default]
    Fcfs,
    /// By each request's `priority` (lower first), then arrival. A waiting request preempts
    /// running ones of a strictly lower priority (higher number) when it finds no batch slot
    /// or KV blocks; they are recomputed later, their output unchanged.
    Priority,
    /// Fair sharing between adapters (the Virtual Token Counter, OSDI 2024): the oldest
    /// waiting request of the adapter that has received the least service runs next, so a
    /// burst on one adapter does not starve the others. Requests must not set a priority.
    Fair,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_batch_size: 64,
            max_batch_tokens: 512,
            max_waiting: 256,
            kv_cache_tokens: 16384,
            kv_cache_memory: None,
            block_size: 16,
            max_seq_len: None,
            adapter_pool_bytes: 4 << 30,
            kernels: KernelPath::Auto,
            prefix_caching: true,
            scheduling: SchedulingPolicy::Fcfs,
            speculative: None,
            adapter_dtype: AdapterDtype::Auto,
        }
    }
}

impl EngineConfig {
    /// Checks the limits, naming the bad one.
    pub fn validate(&self) -> Result<()> {
        let zero = |name: &str| Err(EngineError::Config(format!("{name} must be at least 1")));
        if self.max_batch_size == 0 {
            return zero("max_batch_size");
        }
        if self.max_batch_tokens == 0 {
            return zero("max_batch_tokens");
        }
        if self.block_size == 0 {
            return zero("block_size");
        }
        if self.kv_cache_memory.is_none() && self.kv_cache_tokens < self.block_size {
            return Err(EngineError::Config(format!(
                "kv_cache_tokens ({}) must hold at least one block ({} tokens)",
                self.kv_cache_tokens, self.block_size
            )));
        }
        if self.max_seq_len == Some(0) {
            return zero("max_model_len");
        }
        if self.adapter_pool_bytes == 0 {
            return zero("adapter_pool_bytes");
        }
        if let Some(spec) = &self.speculative {
            spec.validate()?;
        }
        Ok(())
    }
}

/// What the API needs to know about the served base model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// Served id of the base model.
    pub name: String,
    /// Hex SHA-256 identifying the base weights.
    pub base_hash: String,
    /// Context window in tokens.
    pub max_seq_len: usize,
    /// The architecture.
    pub config: ModelConfig,
    /// Chat template.
    pub chat_template: ChatTemplate,
    /// Projection shapes adapters must match.
    pub base_shape: BaseShape,
}

/// Live counters, read by the API and metrics.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Requests waiting for a slot.
    pub waiting: AtomicUsize,
    /// Draft tokens proposed by speculative decoding.
    pub spec_draft_tokens: AtomicUsize,
    /// Draft tokens the model accepted.
    pub spec_accepted_tokens: AtomicUsize,
    /// Requests in the running batch.
    pub running: AtomicUsize,
    /// Forward steps run.
    pub steps: AtomicUsize,
    /// Tokens generated.
    pub generated_tokens: AtomicUsize,
    /// Sequences preempted (KV cache full) and later recomputed.
    pub preemptions: AtomicUsize,
    /// Tokens of admitted sequences looked up in the prefix cache.
    pub prefix_cache_queried_tokens: AtomicUsize,
    /// Of those, tokens whose K/V came from the cache instead of being computed.
    pub prefix_cache_hit_tokens: AtomicUsize,
    /// Tokens computed by forward steps (prefill chunks and decodes): over `steps`, the mean
    /// batch size in tokens.
    pub step_tokens: AtomicUsize,
    /// Wall time of each forward step, sampling included.
    pub step_seconds: crate::residency::Histogram,
    /// Requests with a structured-output constraint, queued so far.
    pub structured_requests: AtomicUsize,
    /// Structured-output token masks computed (each new matcher state; cached ones are not
    /// counted).
    pub grammar_masks: AtomicUsize,
    /// Time to compute each of those masks (overlapped with the forward pass).
    pub grammar_mask_seconds: crate::residency::Histogram,
    /// Constrained answers that ended incomplete because no token could continue them (the
    /// constraint needs a byte no token has, or went past the matcher's ambiguity limit).
    pub grammar_dead_ends: AtomicUsize,
    /// KV cache blocks in all.
    pub kv_blocks_total: AtomicUsize,
    /// Blocks held by running sequences.
    pub kv_blocks_used: AtomicUsize,
    /// Blocks held by no sequence but kept for the prefix cache (reclaimed when needed).
    pub kv_blocks_cached: AtomicUsize,
}

#[derive(Debug)]
struct Shared {
    tx: Mutex<mpsc::Sender<Command>>,
    adapters: AdapterPool,
    tokenizer: Arc<Tokenizer>,
    info: ModelInfo,
    stats: Arc<EngineStats>,
    cfg: EngineConfig,
    kv_capacity: usize,
    device: Device,
    dtype: DType,
    /// The tokenizer's tokens as bytes, built on the first structured-output request.
    vocab: std::sync::OnceLock<Arc<lorad_grammar::Vocab>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Most positions an engine started with `cfg` can serve for model `mc`: the model's context,
/// cut to `max_model_len` and to a KV cache sized in tokens or bytes (a cache sized by free
/// memory is measured only once the model is resident, so it cannot cut it here).
fn position_cap(mc: &ModelConfig, cfg: &EngineConfig) -> usize {
    let mut cap = mc.max_position_embeddings;
    if let Some(asked) = cfg.max_seq_len {
        cap = cap.min(asked);
    }
    let kv_tokens = match cfg.kv_cache_memory {
        None => Some(cfg.kv_cache_tokens),
        // The narrowest element type bounds the tokens from above, whatever the model's is.
        Some(KvMemory::Bytes(bytes)) => {
            let per_token = kv_bytes_per_token(mc, DType::BF16).max(1);
            Some(usize::try_from(bytes / per_token).unwrap_or(usize::MAX))
        }
        Some(KvMemory::FreeFraction(_)) => None,
    };
    if let Some(tokens) = kv_tokens {
        // `cfg` is validated: the block size is not 0.
        cap = cap.min(tokens.div_ceil(cfg.block_size).saturating_mul(cfg.block_size));
    }
    cap.max(1)
}

/// Refuses a KV cache sized in tokens that the device cannot hold (a typo's extra zeros would
/// otherwise abort the process on the allocation), or that has more blocks than block ids.
/// When free memory cannot be read the size is left for the allocation to judge.
fn check_kv_fits(mc: &ModelConfig, llama: &Llama, tokens: usize, block_size: usize) -> Result<()> {
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let blocks = tokens / block_size;
    if u32::try_from(blocks).is_err() {
        return Err(EngineError::Config(format!(
            "kv_cache_tokens {tokens} makes {blocks} blocks of {block_size}, more than the \
             {} a cache can address",
            u32::MAX
        )));
    }
    let Ok((free, _)) = device_memory(llama.device()) else { return Ok(()) };
    let need = (tokens as u64).checked_mul(kv_bytes_per_token(mc, llama.dtype()));
    match need {
        Some(need) if need <= free => Ok(()),
        _ => Err(EngineError::Config(format!(
            "kv_cache_tokens {tokens} needs {} of KV cache, more than the {:.1} GiB the device \
             has free; lower it, or size the cache by memory (kv_cache_memory)",
            need.map_or("more than 16 EiB".to_owned(), |n| format!("{:.1} GiB", gib(n))),
            gib(free)
        ))),
    }
}

/// A cheap, clonable handle to the running engine.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    inner: Arc<Shared>,
}

impl EngineHandle {
    /// Builds the model from `model`, allocates the KV cache and starts the engine thread.
    pub fn start(model: LoadedModel, mut cfg: EngineConfig) -> Result<Self> {
        cfg.validate()?;
        // The RoPE tables hold a row per position the engine can serve: sized by the window
        // this engine can actually serve, not by the model's whole context (a million-token
        // model, or a corrupt context length, would allocate gigabytes of tables up front).
        let mut rope_cfg = model.config.clone();
        rope_cfg.max_position_embeddings = position_cap(&model.config, &cfg);
        let mut llama = Llama::new(&rope_cfg, &model.weights)?;
        llama.set_kernel_path(cfg.kernels);
        drop(model.weights);
        let mc = &model.config;
        if let Some(mem) = cfg.kv_cache_memory {
            // Measured now: the base model is resident, nothing else of the engine is yet.
            let free = match mem {
                KvMemory::FreeFraction(_) => device_memory(llama.device())?.0,
                KvMemory::Bytes(_) => 0,
            };
            let per_token = kv_bytes_per_token(mc, llama.dtype());
            let (tokens, bytes) = kv_tokens(mem, per_token, cfg.block_size, free)?;
            tracing::info!(tokens, bytes, free, per_token, "KV cache sized by memory");
            cfg.kv_cache_tokens = tokens;
        }
        // A sequence must always fit the KV cache on its own, or preemption could only ever
        // evict it and retry: the context window is capped at the cache's capacity.
        let kv_tokens = cfg.kv_cache_tokens.div_ceil(cfg.block_size).saturating_mul(cfg.block_size);
        if cfg.kv_cache_memory.is_none() {
            check_kv_fits(mc, &llama, kv_tokens, cfg.block_size)?;
        }
        // A longer window than the model serves would only fail later, mid-answer (vLLM refuses
        // it at start too).
        if let Some(asked) = cfg.max_seq_len
            && asked > mc.max_position_embeddings
        {
            return Err(EngineError::Config(format!(
                "max_model_len {asked} exceeds the {} tokens of context the model serves",
                mc.max_position_embeddings
            )));
        }
        let max_seq_len = cfg
            .max_seq_len
            .unwrap_or(mc.max_position_embeddings)
            .min(mc.max_position_embeddings)
            .min(kv_tokens);
        let kv = KvCache::new(
            mc.num_layers,
            cfg.kv_cache_tokens,
            cfg.block_size,
            mc.num_kv_heads,
            mc.head_dim,
            llama.dtype(),
            llama.device(),
        )?;
        let info = ModelInfo {
            name: model.name.clone(),
            base_hash: model.base_hash.clone(),
            max_seq_len,
            config: mc.clone(),
            chat_template: model.chat_template.clone(),
            base_shape: llama.base_shape(),
        };
        let tokenizer = Arc::new(model.tokenizer);
        let stats = Arc::new(EngineStats::default());
        let (tx, rx) = mpsc::channel();
        let (device, dtype) = (llama.device().clone(), llama.dtype());
        let kv_capacity = kv.capacity_tokens();
        let sched = Scheduler::new(
            llama,
            kv,
            rx,
            cfg.clone(),
            tokenizer.clone(),
            stats.clone(),
            max_seq_len,
        );
        let thread = std::thread::Builder::new()
            .name("lorad-engine".into())
            .spawn(move || sched.run())
            .map_err(|e| EngineError::Config(format!("cannot spawn engine thread: {e}")))?;
        Ok(Self {
            inner: Arc::new(Shared {
                tx: Mutex::new(tx),
                adapters: AdapterPool::new(cfg.adapter_pool_bytes),
                tokenizer,
                info,
                stats,
                cfg,
                kv_capacity,
                device,
                dtype,
                vocab: std::sync::OnceLock::new(),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// KV cache capacity in tokens (whole blocks).
    pub fn kv_capacity_tokens(&self) -> usize {
        self.inner.kv_capacity
    }

    /// The served base model.
    pub fn info(&self) -> &ModelInfo {
        &self.inner.info
    }

    /// The device the model and adapters live on.
    pub fn device(&self) -> &Device {
        &self.inner.device
    }

    /// The vocabulary as bytes, for structured output's token masks (built on first use).
    pub fn grammar_vocab(&self) -> &Arc<lorad_grammar::Vocab> {
        self.inner.vocab.get_or_init(|| {
            Arc::new(lorad_grammar::Vocab::new(self.inner.tokenizer.text_token_bytes()))
        })
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.inner.tokenizer
    }

    /// Live counters.
    pub fn stats(&self) -> &EngineStats {
        &self.inner.stats
    }

    /// The engine's limits.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.cfg
    }

    /// Makes `adapter` servable (replacing one of the same name), evicting unleased adapters
    /// from the device working set if its budget requires. Requests already running on an older
    /// version finish on it. Returns a lease on the resident adapter.
    pub fn add_adapter(&self, adapter: &Adapter) -> Result<Arc<ResidentAdapter>> {
        let r = ResidentAdapter::new_as(
            adapter,
            &self.inner.info.base_shape,
            self.inner.dtype,
            self.inner.cfg.adapter_dtype,
            &self.inner.device,
        )?;
        self.inner.adapters.insert(Arc::new(r))
    }

    /// Uploads a store blob's tensors (see [`ResidentAdapter::from_blob`]) without making the
    /// adapter servable: [`AdapterPool::insert`] on [`EngineHandle::adapter_pool`] does that, and
    /// can be retried with the same upload while the working set is full.
    pub fn upload_blob(&self, blob: &Blob) -> Result<ResidentAdapter> {
        ResidentAdapter::from_blob_as(
            blob,
            &self.inner.info.base_shape,
            self.inner.dtype,
            self.inner.cfg.adapter_dtype,
            &self.inner.device,
        )
    }

    /// An upper bound of the device bytes the adapter `info` describes takes once resident,
    /// without reading it: its blob's bytes (tensors, their 4 KiB alignment, its manifest)
    /// times the widening from the stored element to the engine's, by the rules of
    /// [`ResidentAdapter::from_blob`] (the CPU's f32 engine keeps bf16 weights in bf16;
    /// [`AdapterDtype::Bf16`] keeps every weight in bf16).
    pub fn resident_bytes_bound(&self, info: &lorad_store::disk::StoredInfo) -> u64 {
        // "mixed" holds some 2-byte tensors: the blob then has at most bytes/2 elements.
        let stored = if info.dtype == "f32" { 4 } else { 2 };
        let kept_bf16 = crate::adapters::keeps_bf16(&self.inner.device, self.inner.dtype)
            && info.dtype == "bf16";
        let device = match self.inner.cfg.adapter_dtype {
            AdapterDtype::Bf16 => 2,
            AdapterDtype::Auto if kept_bf16 => 2,
            AdapterDtype::Auto => self.inner.dtype.size_in_bytes() as u64,
        };
        info.bytes.saturating_mul(device) / stored
    }

    /// The device working set.
    pub fn adapter_pool(&self) -> &AdapterPool {
        &self.inner.adapters
    }

    /// Stops serving an adapter; returns whether it was loaded.
    pub fn remove_adapter(&self, name: &str) -> bool {
        self.inner.adapters.remove(name)
    }

    /// Whether an adapter of that name is loaded.
    pub fn has_adapter(&self, name: &str) -> bool {
        self.inner.adapters.contains(name)
    }

    /// Names of loaded adapters.
    pub fn adapter_names(&self) -> Vec<String> {
        self.inner.adapters.names()
    }

    /// Queues a request. Errors (unknown adapter, context length, queue full, bad parameters)
    /// are returned here, before anything runs.
    pub fn submit(&self, req: GenerateRequest) -> Result<GenerationStream> {
        req.sampling.validate()?;
        if req.prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let vocab = self.inner.info.config.vocab_size;
        if let Some(&bad) = req.prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(EngineError::InvalidParam {
                field: "prompt",
                reason: format!("token id {bad} is not in the vocabulary ({vocab})"),
            });
        }
        // `peek`: the caller already counted this lookup when it acquired the adapter.
        let adapter = match &req.adapter {
            Some(name) => Some(
                self.inner
                    .adapters
                    .peek(name)
                    .ok_or_else(|| EngineError::UnknownAdapter(name.clone()))?,
            ),
            None => None,
        };
        let max_len = self.inner.info.max_seq_len;
        let prompt = req.prompt.len();
        if req.max_tokens == Some(0) && req.prompt_logprobs.is_none() {
            return Err(EngineError::InvalidParam {
                field: "max_tokens",
                reason: "must be at least 1 (0 only scores the prompt: with prompt logprobs)"
                    .into(),
            });
        }
        if let Some(&(bad, _)) = req.sampling.logit_bias.iter().find(|(t, _)| *t as usize >= vocab)
        {
            return Err(EngineError::InvalidParam {
                field: "logit_bias",
                reason: format!("token id {bad} is not in the vocabulary ({vocab})"),
            });
        }
        if let Some(&bad) = req.stop_token_ids.iter().find(|&&t| t as usize >= vocab) {
            return Err(EngineError::InvalidParam {
                field: "stop_token_ids",
                reason: format!("token id {bad} is not in the vocabulary ({vocab})"),
            });
        }
        if req.max_tokens.is_some_and(|m| req.min_tokens > m) {
            return Err(EngineError::InvalidParam {
                field: "min_tokens",
                reason: "must be at most max_tokens".into(),
            });
        }
        if req.priority != 0 && self.inner.cfg.scheduling != SchedulingPolicy::Priority {
            let policy = match self.inner.cfg.scheduling {
                SchedulingPolicy::Fair => "shares fairly between adapters",
                _ => "schedules first come, first served",
            };
            return Err(EngineError::InvalidParam {
                field: "priority",
                reason: format!("this server {policy} (its scheduling policy is not 'priority')"),
            });
        }
        if req.prompt_logprobs.is_some_and(|n| n > crate::MAX_LOGPROBS) {
            return Err(EngineError::InvalidParam {
                field: "prompt_logprobs",
                reason: "at most 20 alternatives per token".into(),
            });
        }
        let completion = req.max_tokens.unwrap_or(max_len.saturating_sub(prompt));
        if prompt >= max_len || prompt + completion > max_len {
            return Err(EngineError::ContextLength {
                max: max_len,
                requested: prompt + completion.max(1),
                prompt,
                completion: completion.max(1),
            });
        }
        if prompt + 1 > self.inner.kv_capacity {
            return Err(EngineError::ExceedsKvCache {
                tokens: prompt + 1,
                capacity: self.inner.kv_capacity,
            });
        }
        let waiting = &self.inner.stats.waiting;
        if waiting.fetch_add(1, Ordering::SeqCst) >= self.inner.cfg.max_waiting {
            waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(EngineError::QueueFull(self.inner.cfg.max_waiting));
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let init = SeqInit {
            prompt: req.prompt,
            adapter,
            sampling: req.sampling,
            max_tokens: completion,
            stop: req.stop,
            ignore_eos: req.ignore_eos,
            stop_token_ids: req.stop_token_ids,
            min_tokens: req.min_tokens,
            include_stop_str_in_output: req.include_stop_str_in_output,
            prompt_logprobs: req.prompt_logprobs,
            cache_salt: req.cache_salt,
            constraint: req.constraint.map(|g| {
                let vocab = self.grammar_vocab().clone();
                match &req.constraint_after {
                    Some(t) => crate::constrained::Constrained::after(
                        g,
                        vocab,
                        &t.close,
                        t.opening.as_deref(),
                    ),
                    None => crate::constrained::Constrained::new(g, vocab),
                }
            }),
            priority: req.priority,
            tx,
        };
        let sent = self
            .inner
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .send(Command::Submit(Box::new(init)));
        if sent.is_err() {
            waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(EngineError::Shutdown);
        }
        Ok(GenerationStream { rx, prompt_tokens: prompt })
    }

    /// Whether the scheduler loop answers within `timeout`. It answers between forward
    /// steps, so a wedged step (or a dead engine thread) makes this false; the daemon feeds
    /// the systemd watchdog only while it is true.
    pub fn is_responsive(&self, timeout: std::time::Duration) -> bool {
        let (reply, answered) = mpsc::sync_channel(1);
        let sent = self
            .inner
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .send(Command::Ping(reply));
        sent.is_ok() && answered.recv_timeout(timeout).is_ok()
    }

    /// Stops the engine thread after the current step; running requests get an error event.
    pub fn shutdown(&self) {
        let _ = self
            .inner
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .send(Command::Shutdown);
        if let Some(t) =
            self.inner.thread.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
        {
            let _ = t.join();
        }
    }
}
