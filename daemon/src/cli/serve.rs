//! `lorad serve`'s flags, and the byte-size parsers they share with the configuration file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use lorad_engine::{EngineConfig, KvMemory, SchedulingPolicy};

use super::{ModelArgs, parse_speculative};

/// `lorad serve`
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The model to serve.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Most sequences decoded together in one step.
    #[arg(long, default_value_t = EngineConfig::default().max_batch_size)]
    pub max_batch_size: usize,
    /// Most tokens (prefill chunks + decode tokens) in one step.
    #[arg(long, default_value_t = EngineConfig::default().max_batch_tokens)]
    pub max_batch_tokens: usize,
    /// The longest context (prompt and answer) a request may use, below the model's own (vLLM's
    /// `--max-model-len`) [default: the model's context, capped at the KV cache size].
    #[arg(long, value_name = "TOKENS")]
    pub max_model_len: Option<usize>,
    /// Requests allowed to wait for a batch slot; beyond that requests get HTTP 429.
    #[arg(long, default_value_t = EngineConfig::default().max_waiting)]
    pub max_waiting: usize,
    /// KV cache size in tokens, shared by all running requests.
    #[arg(long, default_value_t = EngineConfig::default().kv_cache_tokens)]
    pub kv_cache_tokens: usize,
    /// KV cache size as memory instead of tokens: a byte size (`8GiB`) or a share of the
    /// device memory free once the model is loaded (`90%`, vLLM's `gpu_memory_utilization`).
    #[arg(long, value_name = "SIZE|PERCENT", value_parser = parse_kv_memory, conflicts_with = "kv_cache_tokens")]
    pub kv_cache_memory: Option<KvMemory>,
    /// Which waiting request runs next: `fcfs` (first come, first served; requests must not
    /// set `priority`), `priority` (vLLM's: lower `priority` first, then arrival; a waiting
    /// request preempts running ones of a lower priority) or `fair` (between adapters: the
    /// oldest request of the adapter served least so far, by weighted tokens).
    #[arg(long, default_value = "fcfs", value_parser = ["fcfs", "priority", "fair"])]
    pub scheduling_policy: String,
    /// Speculative decoding by prompt lookup, as vLLM's JSON: `{"method": "ngram",
    /// "num_speculative_tokens": 4, "prompt_lookup_min": 2, "prompt_lookup_max": 4}` (as in
    /// vLLM a missing bound takes the other's value, both 5 when neither is set; also
    /// `disable_by_batch_size`). Each step also runs up to that many tokens found after the
    /// answer's last n tokens earlier in the prompt or answer; answers are unchanged, and come
    /// sooner where they repeat their input (summaries, edits, extraction, code) [default: off].
    #[arg(long, value_name = "JSON", value_parser = parse_speculative)]
    pub speculative_config: Option<lorad_engine::NgramSpec>,
    /// Share the K/V of common prompt prefixes (system prompts, chat history) between requests
    /// of the same model or adapter, computing them once: `true` or `false`.
    #[arg(long, default_value_t = EngineConfig::default().prefix_caching, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub prefix_caching: bool,
    /// Largest accepted request body in bytes (larger bodies get HTTP 413).
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Model id clients use for the base model [default: the model's name, e.g.
    /// SmolLM2-135M-Instruct].
    #[arg(long, value_name = "NAME")]
    pub served_model_name: Option<String>,
    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM before they are cancelled.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub shutdown_timeout: u64,
    /// Byte budget of the device working set of adapters (LoRA weights resident next to the
    /// base model), e.g. `4GiB`.
    #[arg(long, default_value = "4GiB", value_parser = parse_bytes, value_name = "BYTES")]
    pub device_adapter_bytes: u64,
    /// What resident adapters' weights are kept in (vLLM's `--lora-dtype`): `auto` (the
    /// model's dtype; on the CPU weights saved in bf16 stay bf16) or `bf16` (every weight
    /// rounded to bf16: half the memory of f32 weights, and on the CPU a decode step over many
    /// adapters reads half the bytes; answers are the rounded adapter's).
    #[arg(long, value_enum, default_value_t = crate::cli::AdapterDtypeArg::Auto, value_name = "DTYPE")]
    pub adapter_dtype: crate::cli::AdapterDtypeArg,
    /// Byte budget of the host cache of adapters read from the store, e.g. `8GiB`.
    #[arg(long, default_value = "8GiB", value_parser = parse_bytes, value_name = "BYTES")]
    pub host_adapter_bytes: u64,
    /// Seconds a request for an adapter waits for device room that running requests hold
    /// (their adapters drain meanwhile) before it gets a 503 `adapter_capacity`. Raise it where
    /// adapters are large and requests long; 1 to 3600.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub adapter_admit_timeout: u64,
    /// File holding the bearer token of the admin API (`/v1/adapters` uploads, pins, removals);
    /// also read from $LORAD_ADMIN_TOKEN. Without one the admin API is disabled (403).
    #[arg(long, value_name = "PATH")]
    pub admin_token_file: Option<PathBuf>,
    /// File of the API keys clients must send (`Authorization: Bearer <key>`) on the OpenAI
    /// routes (completions, chat, responses, models, receipts), one a line; also one key from
    /// $LORAD_API_KEY. Without either those routes are open (vLLM's `--api-key`).
    #[arg(long, value_name = "PATH")]
    pub api_key_file: Option<PathBuf>,
    /// Reasoning models: chat answers' thinking (`<think>…</think>`) goes to
    /// `reasoning_content`, the rest to `content` (vLLM's `--reasoning-parser`): `deepseek_r1`
    /// (DeepSeek R1 and its distills, QwQ) or `qwen3`. Off by default.
    #[arg(long, value_enum, value_name = "PARSER")]
    pub reasoning_parser: Option<crate::api::ReasoningParser>,
    /// Proof of Attribution on adapter answers that have a gradient index (`lorad finetune` or
    /// `lorad attribution index` builds it): `on` (every answer unless the request sends
    /// `"attribution": false`), `opt-in` (only requests sending `"attribution": true`), `off`.
    #[arg(long, value_enum, default_value_t = crate::api::AttributionMode::On, env = "LORAD_ATTRIBUTION")]
    pub attribution: crate::api::AttributionMode,
    /// Settlement contract address: turns signed receipts on (with --chain-id). Answers then
    /// carry `receipt` (or `receipt: null` and `receipt_refused` with the reason).
    #[arg(
        long,
        env = "LORAD_SETTLEMENT",
        value_name = "ADDRESS",
        requires = "chain_id",
        conflicts_with = "deployment"
    )]
    pub settlement: Option<alloy_primitives::Address>,
    /// Chain id of the Settlement contract (part of every receipt's signing domain).
    #[arg(long, env = "LORAD_CHAIN_ID", requires = "settlement")]
    pub chain_id: Option<u64>,
    /// Deployment file (`lorad chain deploy`): turns receipts on like --settlement and names the
    /// registries the gate proves facts from.
    #[arg(long, env = "LORAD_DEPLOYMENT", value_name = "PATH")]
    pub deployment: Option<PathBuf>,
    /// L2 JSON-RPC serving `eth_getProof`: the gate proves each answer's adapter registration
    /// and this node's stake from it (needs --deployment).
    #[arg(long, env = "LORAD_L2_RPC", value_name = "URL", requires = "deployment")]
    pub l2_rpc: Option<String>,
    /// L1 Beacon API the light client syncs from (for --l2-rpc).
    #[arg(long, env = "LORAD_BEACON_URL", value_name = "URL")]
    pub l1_beacon_url: Option<String>,
    /// L1 execution JSON-RPC serving eth_getProof of the rollup's L1 contracts (for --l2-rpc).
    #[arg(long, env = "LORAD_EXECUTION_URL", value_name = "URL")]
    pub l1_execution_url: Option<String>,
    /// The rollup's config (chain id, L1 anchor contract), as for `lorad lightclient storage --l2`.
    #[arg(long, value_name = "PATH")]
    pub rollup: Option<PathBuf>,
    /// The L1 network of the light client (`mainnet`, `sepolia` or a config file).
    #[arg(long, default_value = "mainnet", value_name = "NETWORK")]
    pub lc_network: String,
    /// Trusted beacon block root to start from when no light-client state is saved yet.
    #[arg(long, value_name = "ROOT")]
    pub lc_checkpoint: Option<String>,
    /// Seconds between rounds of the L2 follower (sync L1, prove the newest anchored L2 block).
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub l2_follow_secs: u64,
    /// Development chains only: read at the L2 RPC's newest block (its hash checked, every
    /// value proven against its state root) instead of a block the light client anchored to L1.
    #[arg(long, requires = "l2_rpc")]
    pub l2_trust_rpc_head: bool,
    /// Receipt-signing key file [default: node.key in the home]; created (mode 0600) on first start,
    /// refused when group or others can read it.
    #[arg(long, env = "LORAD_NODE_KEY", value_name = "PATH")]
    pub node_key: Option<PathBuf>,
    /// Oldest verified L2 block a receipt may rest on, in seconds. L1-anchored output roots
    /// trail the L2 head by the proposal interval (about an hour on OP mainnet).
    #[arg(long, default_value_t = 4 * 3600, value_name = "SECS")]
    pub receipt_max_block_age: u64,
    /// Weakest label of that block: `safe` (output proposed on finalized L1) or `finalized`.
    #[arg(long, default_value = "safe", value_parser = ["safe", "finalized"])]
    pub receipt_min_label: String,
    /// NodeRegistry's minimum stake in OPEN base units (the gate refuses below it).
    #[arg(long, default_value = "1000000000000000000000", value_name = "WEI")]
    pub min_stake: alloy_primitives::U256,
}

/// Parses a KV cache memory size: a byte size (`8GiB`) or a share of free memory (`90%`).
pub fn parse_kv_memory(s: &str) -> Result<KvMemory, String> {
    match s.trim().strip_suffix('%') {
        Some(p) => match p.trim().parse::<f64>() {
            Ok(p) if p > 0.0 && p <= 100.0 => Ok(KvMemory::FreeFraction(p / 100.0)),
            _ => Err(format!("'{s}' is not a share of free memory above 0% and at most 100%")),
        },
        None => parse_bytes(s).map(KvMemory::Bytes),
    }
}

/// Parses `123`, `64KiB`, `512MiB`, `4GiB`, `1TiB` (also `KB`/`MB`/`GB`/`TB` as powers of 1000).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("'{s}' is not a byte size such as 4GiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "tib" | "t" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => {
            return Err(format!("unknown unit '{other}' in '{s}' (use B, KiB, MiB, GiB, TiB)"));
        }
    };
    n.checked_mul(mult).ok_or_else(|| format!("'{s}' is too large"))
}

impl ServeArgs {
    /// The engine limits these flags ask for. The engine caps the context window at the KV
    /// cache size itself, so a request that could never fit is refused up front (400
    /// `context_length_exceeded`).
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            max_batch_size: self.max_batch_size,
            max_batch_tokens: self.max_batch_tokens,
            max_waiting: self.max_waiting,
            kv_cache_tokens: self.kv_cache_tokens,
            kv_cache_memory: self.kv_cache_memory,
            prefix_caching: self.prefix_caching,
            scheduling: match self.scheduling_policy.as_str() {
                "priority" => SchedulingPolicy::Priority,
                "fair" => SchedulingPolicy::Fair,
                _ => SchedulingPolicy::Fcfs,
            },
            speculative: self.speculative_config,
            max_seq_len: self.max_model_len,
            adapter_pool_bytes: self.device_adapter_bytes,
            adapter_dtype: self.adapter_dtype.to_engine(),
            ..EngineConfig::default()
        }
    }
}
