//! The command line (clap derive). Every flag is documented here; `lorad help <command>` shows
//! the same text.

use std::path::PathBuf;

use crate::logging::LogFormat;
use candle_core::DType;
use clap::{Args, Parser, Subcommand, ValueEnum};

mod serve;
mod settlement;
mod speculative;
pub use serve::{ServeArgs, parse_bytes, parse_kv_memory};
pub use settlement::{ChainCommand, ChainConn, ConfigCommand, ReceiptsCommand};
pub use speculative::{SpeculativeConfig, parse_speculative};

/// lorad: one daemon per GPU node serving many LoRA adapters over one base LLM through an
/// OpenAI-compatible API.
#[derive(Debug, Parser)]
#[command(name = "lorad", version, propagate_version = true)]
pub struct Cli {
    /// Data directory holding `models/` and the adapter store `store/` [default:
    /// $XDG_DATA_HOME/lorad, else ~/.local/share/lorad].
    #[arg(long, global = true, env = "LORAD_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// How the adapter store reads from disk: `auto` (io_uring, falling back to pread with a
    /// warning where the kernel or a sandbox refuses it), `io-uring` (fail if unavailable) or
    /// `pread`.
    #[arg(long, global = true, env = "LORAD_STORE_IO", value_enum, default_value_t = StoreIo::Auto)]
    pub store_io: StoreIo,

    /// Configuration file (docs/configuration.md); flags and environment variables override it.
    #[arg(long, global = true, env = "LORAD_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Log filter (`error`, `warn`, `info`, `debug`, `trace`, or a tracing `EnvFilter` directive
    /// such as `lorad=debug,tower_http=debug`); overrides RUST_LOG [default: RUST_LOG, else info].
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,

    /// Log line format: `auto` (`journal` when stderr is the systemd journal, else `text`),
    /// `text`, `journal` (syslog priority prefix, no timestamp) or `json` (one object a line).
    #[arg(long, global = true, env = "LORAD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage base models.
    Model {
        /// The model subcommand.
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Serve the OpenAI-compatible HTTP API until SIGINT/SIGTERM.
    Serve(Box<ServeArgs>),
    /// Manage adapters in the store (`<home>/store`).
    Adapter {
        /// The adapter subcommand.
        #[command(subcommand)]
        command: AdapterCommand,
    },
    /// Maintain the adapter store.
    Store {
        /// The store subcommand.
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Generate once, locally, without HTTP, streaming the text to stdout.
    Generate(GenerateArgs),
    /// Manage Datanets: contributed training records, tokenized and Merkle-committed
    /// (`<home>/datanets`).
    Datanet {
        /// The datanet subcommand.
        #[command(subcommand)]
        command: DatanetCommand,
    },
    /// Fine-tune a LoRA adapter on a Datanet (CPU, candle autograd), import it into the store and
    /// build its gradient attribution index.
    Finetune(FinetuneArgs),
    /// The embedded light client (offline verification for now).
    Lightclient {
        /// The lightclient subcommand.
        #[command(subcommand)]
        command: LightclientCommand,
    },
    /// The configuration file.
    Config {
        /// The config subcommand.
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// The settlement contracts over JSON-RPC: deploy, stake, register, fund, inspect.
    Chain {
        /// The chain subcommand.
        #[command(subcommand)]
        command: ChainCommand,
    },
    /// The node's receipt-signing key and its receipt journal.
    Receipts {
        /// The receipts subcommand.
        #[command(subcommand)]
        command: ReceiptsCommand,
    },
    /// Proof-of-Attribution indexes.
    Attribution {
        /// The attribution subcommand.
        #[command(subcommand)]
        command: AttributionCommand,
    },
}

/// `lorad datanet ...`
#[derive(Debug, Subcommand)]
pub enum DatanetCommand {
    /// Build a Datanet from a JSONL file of `{id, contributor, text}` or
    /// `{id, contributor, messages}` records; bad records are listed with their line numbers.
    Build {
        /// The JSONL file.
        input: PathBuf,
        /// The Datanet's name.
        #[arg(long)]
        name: String,
        /// Build from the valid records and list the skipped ones (default: refuse the file).
        #[arg(long)]
        skip_invalid: bool,
        /// Replace an existing Datanet of that name.
        #[arg(long)]
        force: bool,
        /// Base model whose tokenizer to use [default: the default model].
        #[arg(long, value_name = "PATH")]
        model: Option<PathBuf>,
    },
    /// List Datanets.
    Ls {
        /// Print JSON manifests instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Recompute every record hash and the Merkle root of a Datanet; exit 65 on a mismatch.
    Verify {
        /// The Datanet's name.
        name: String,
    },
    /// Build a Datanet's suffix-array span index (`<home>/datanets/<name>/span`), which
    /// attributes answers of the base model (and adds exact-match spans to adapter answers).
    Index {
        /// The Datanet's name.
        name: String,
        /// Build the suffix array (the only index kind so far; required, so that later kinds
        /// can be added without changing what the bare command does).
        #[arg(long, required = true)]
        suffix_array: bool,
        /// Replace an existing span index.
        #[arg(long)]
        force: bool,
    },
}

/// `lorad finetune ...`
#[derive(Debug, Args)]
pub struct FinetuneArgs {
    /// The Datanet to train on.
    #[arg(long)]
    pub datanet: String,
    /// Name of the adapter to create.
    #[arg(long)]
    pub name: String,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    /// LoRA alpha.
    #[arg(long, default_value_t = 16.0)]
    pub alpha: f64,
    /// Projections to adapt: q,k,v,o,gate,up,down (or their PEFT names `q_proj`, ...).
    #[arg(long, value_delimiter = ',', default_value = "q,v")]
    pub targets: Vec<String>,
    /// Optimizer steps.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Peak learning rate (linear warm-up over 10 % of the steps, cosine decay to a tenth).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Records per step.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Seed of the initialisation, the record order and the held-out split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Records longer than this many tokens are cut.
    #[arg(long, default_value_t = 256)]
    pub max_len: usize,
    /// Share of the records held out to measure the loss before and after (0 to train on all).
    #[arg(long, default_value_t = 0.1)]
    pub eval_fraction: f64,
    /// Skip building the gradient attribution index.
    #[arg(long)]
    pub no_index: bool,
    /// Replace an existing adapter of that name.
    #[arg(long)]
    pub force: bool,
    /// Base model [default: the default model].
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
}

/// `lorad lightclient ...`
#[derive(Debug, Subcommand)]
pub enum LightclientCommand {
    /// Verify a saved `eth_getProof` response (the result object, or a JSON-RPC envelope) against
    /// a state root: the account proof and every storage proof. Exits 0 only when all verify,
    /// 65 with the typed error otherwise. No network.
    VerifyProof {
        /// The saved `eth_getProof` response.
        file: PathBuf,
        /// The (already verified) state root, `0x` + 64 hex digits.
        #[arg(long)]
        state_root: String,
    },
    /// Replay saved Beacon-API light-client responses (`bootstrap.json`, and optionally
    /// `updates.json`, `finality.json`, `optimistic.json`) from a trusted checkpoint; prints
    /// each verified step and the verified finalized execution block. Exits 0 only when
    /// everything verifies, 65 with the typed error otherwise. No network.
    Replay {
        /// Directory holding the saved responses.
        dir: PathBuf,
        /// The trusted checkpoint: a beacon block root, `0x` + 64 hex digits.
        #[arg(long)]
        checkpoint: String,
        /// `mainnet`, `sepolia`, or a JSON file with a custom network config.
        #[arg(long, default_value = "mainnet")]
        network: String,
        /// The clock's slot [default: the latest signature slot in the data, i.e. verify the
        /// data as of when it was saved].
        #[arg(long)]
        current_slot: Option<u64>,
        /// Refuse a checkpoint older than this many seconds before now (weak subjectivity;
        /// off by default because saved data is usually old).
        #[arg(long, value_name = "SECONDS")]
        max_checkpoint_age: Option<u64>,
        /// Print the report as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Sync the L1 light client from a beacon node: bootstrap from the checkpoint (or the
    /// last finalized root saved under `<home>/lightclient/<network>`), verify every period up
    /// to now, then finality and the optimistic head. Prints each verified step and saves the
    /// new finalized root for the next start.
    Sync(LightclientSyncArgs),
    /// Print the saved light-client state (no network).
    Status {
        /// `mainnet`, `sepolia`, or a custom network config file.
        #[arg(long, default_value = "mainnet")]
        network: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Read one storage slot with proofs: on L1 at the verified finalized block, or with
    /// `--l2` on the rollup at the newest L2 block its L1 contracts anchor.
    Storage {
        /// Contract address.
        address: String,
        /// Storage slot (`0x` + up to 64 hex digits, or decimal).
        slot: String,
        /// Read on the L2 named by `--rollup` instead of L1.
        #[arg(long)]
        l2: bool,
        /// L1 execution JSON-RPC endpoint (serves `eth_getProof`).
        #[arg(long, env = "LORAD_EXECUTION_URL")]
        execution_url: String,
        /// L2 execution JSON-RPC endpoint (with `--l2`).
        #[arg(long, env = "LORAD_L2_URL")]
        l2_url: Option<String>,
        /// Rollup config JSON: chain id and the L1 anchor contract (with `--l2`).
        #[arg(long)]
        rollup: Option<PathBuf>,
        /// How the L1 side is synced.
        #[command(flatten)]
        sync: LightclientSyncArgs,
    },
}

/// How the L1 light client syncs (shared by `sync` and `storage`).
#[derive(Debug, clap::Args)]
pub struct LightclientSyncArgs {
    /// Beacon node REST endpoint (serves the light-client API).
    #[arg(long, env = "LORAD_BEACON_URL")]
    pub beacon_url: String,
    /// Trusted checkpoint block root [default: the saved finalized root].
    #[arg(long)]
    pub checkpoint: Option<String>,
    /// `mainnet`, `sepolia`, or a custom network config file.
    #[arg(long, default_value = "mainnet")]
    pub network: String,
    /// Refuse a checkpoint older than this many seconds (weak subjectivity).
    #[arg(long, value_name = "SECONDS", default_value_t = 14 * 24 * 3600)]
    pub max_checkpoint_age: u64,
    /// Sync as if the clock were at this slot [default: now] (audits of old data, tests).
    #[arg(long)]
    pub current_slot: Option<u64>,
    /// Seconds before an HTTP request gives up.
    #[arg(long, default_value_t = 30)]
    pub timeout_secs: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `lorad attribution ...`
#[derive(Debug, Subcommand)]
pub enum AttributionCommand {
    /// Build the gradient attribution index of an adapter over a Datanet.
    Index {
        /// The adapter (in the store).
        #[arg(long)]
        adapter: String,
        /// The Datanet it was trained on.
        #[arg(long)]
        datanet: String,
        /// Projected input width per LoRA pair.
        #[arg(long, default_value_t = 16)]
        k_in: usize,
        /// Projected output width per LoRA pair.
        #[arg(long, default_value_t = 16)]
        k_out: usize,
        /// Records longer than this many tokens are cut.
        #[arg(long, default_value_t = 256)]
        max_len: usize,
        /// Replace an existing index.
        #[arg(long)]
        force: bool,
        /// Base model [default: the default model].
        #[arg(long, value_name = "PATH")]
        model: Option<PathBuf>,
    },
}

/// `lorad model ...`
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Download the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) into `<home>/models`, verify
    /// it, and print its path. Does nothing but verify when it is already there.
    Fetch,
    /// Describe a model from its header alone (GGUF metadata or `config.json` and tokenizer):
    /// architecture, the context lorad serves and why, parameters, weight and KV-cache bytes
    /// per dtype, tokenizer and chat template. Exits 65 when lorad cannot serve it, naming why.
    Info {
        /// A `.gguf` file or a Hugging Face directory [default: the default model under the
        /// home].
        path: Option<std::path::PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Read path of the adapter store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreIo {
    /// io_uring when available, else pread (logged).
    Auto,
    /// io_uring, or fail at start.
    IoUring,
    /// Always pread.
    Pread,
}

impl StoreIo {
    /// The store's config for this choice.
    pub fn store_config(self) -> lorad_store::disk::StoreConfig {
        use lorad_store::paging::IoMode;
        let io_mode = match self {
            Self::Auto => IoMode::Auto,
            Self::IoUring => IoMode::IoUring,
            Self::Pread => IoMode::Pread,
        };
        lorad_store::disk::StoreConfig { io_mode, ..lorad_store::disk::StoreConfig::default() }
    }
}

/// `lorad store ...`
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Check every adapter's bytes against its checksums and content hash; quarantine (and list)
    /// the ones that fail. Exits 65 when any fails.
    Verify,
    /// Reclaim space: torn imports, removed adapters, dead segments. Refused (exit 65) while
    /// the index holds damaged records, which may have named adapters.
    Gc {
        /// Drop damaged index records and reclaim what only they referenced (back the store
        /// up first).
        #[arg(long)]
        discard_damaged: bool,
    },
}

/// `lorad adapter ...`
#[derive(Debug, Subcommand)]
pub enum AdapterCommand {
    /// Validate a PEFT LoRA adapter directory against the base model and import it.
    Import {
        /// Directory with `adapter_config.json` and `adapter_model.safetensors`.
        dir: PathBuf,
        /// Registry name [default: the directory's name].
        #[arg(long)]
        name: Option<String>,
        /// Base model the adapter must fit (`.gguf` file or Hugging Face directory) [default: the
        /// default model under the home].
        #[arg(long, value_name = "PATH")]
        model: Option<PathBuf>,
    },
    /// List imported adapters.
    Ls {
        /// Print JSON (an array of adapter records) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove an imported adapter (a running server stops serving it on its next refresh).
    Rm {
        /// The adapter's name.
        name: String,
    },
    /// Pin an adapter: a server keeps it resident in every tier (never evicted).
    Pin {
        /// The adapter's name.
        name: String,
    },
    /// Unpin an adapter.
    Unpin {
        /// The adapter's name.
        name: String,
    },
    /// Write a deterministic random PEFT adapter (non-zero A and B) for tests and benchmarks.
    #[command(hide = true)]
    GenerateRandom {
        /// Output directory (created if missing).
        dir: PathBuf,
        /// LoRA rank.
        #[arg(long, default_value_t = 8)]
        rank: usize,
        /// `lora_alpha` [default: 2 × rank].
        #[arg(long)]
        alpha: Option<f64>,
        /// PRNG seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Comma-separated target projections.
        #[arg(long, value_delimiter = ',', default_value = "q_proj,v_proj")]
        targets: Vec<String>,
        /// Base model whose shapes the adapter fits [default: the default model].
        #[arg(long, value_name = "PATH")]
        model: Option<PathBuf>,
    },
}

/// What resident adapters' weights are kept in (`--adapter-dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AdapterDtypeArg {
    /// The model's dtype (the CPU's f32 engine keeps weights saved in bf16 in bf16).
    Auto,
    /// Every weight rounded to bf16: half the memory and bytes read of f32 weights.
    Bf16,
}

impl AdapterDtypeArg {
    /// The engine's setting.
    pub fn to_engine(self) -> lorad_engine::AdapterDtype {
        match self {
            Self::Auto => lorad_engine::AdapterDtype::Auto,
            Self::Bf16 => lorad_engine::AdapterDtype::Bf16,
        }
    }
}

/// Weight element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dtype {
    /// 32-bit float.
    F32,
    /// bfloat16.
    Bf16,
    /// IEEE half.
    F16,
}

impl Dtype {
    /// The candle dtype.
    pub fn to_candle(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::Bf16 => DType::BF16,
            Self::F16 => DType::F16,
        }
    }
}

/// Where the model runs: `--device auto|cpu|cuda|cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceArg {
    /// CUDA GPU 0 when this build has CUDA and finds a GPU, else the CPU (with a warning).
    #[default]
    Auto,
    /// The CPU, even where a GPU is present.
    Cpu,
    /// CUDA GPU `N`. Failing to open it is an error, never a silent fall-back to the CPU: a
    /// GPU node that lost its GPU should stop (and be restarted by systemd), not serve at a
    /// hundredth of its speed.
    Cuda(usize),
}

impl std::str::FromStr for DeviceArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| "expected auto, cpu, cuda or cuda:N (N: GPU index)".to_owned()),
        }
    }
}

impl std::fmt::Display for DeviceArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Which model to load and how.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Base model: a `.gguf` file or a Hugging Face directory [default: the default model under
    /// the home, fetched on first use].
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Weight dtype.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// Where the model runs: `auto` (GPU 0 if this build has CUDA and finds one, else the CPU),
    /// `cpu`, or `cuda` / `cuda:N` (an error if that GPU cannot be opened).
    #[arg(long, env = "LORAD_DEVICE", default_value_t = DeviceArg::Auto, value_name = "DEVICE")]
    pub device: DeviceArg,
    /// Jinja chat template to use instead of the model's own (vLLM's `--chat-template`): a file,
    /// or the template itself on one line. For models that ship none (lorad would use ChatML)
    /// or a wrong one.
    #[arg(long, value_name = "FILE|TEMPLATE")]
    pub chat_template: Option<String>,
}

/// `lorad generate`
#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// The model to run.
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt (with `--chat`, the user message).
    #[arg(long)]
    pub prompt: String,
    /// Stored adapter to apply [default: the base model].
    #[arg(long)]
    pub adapter: Option<String>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Render the prompt as a user message with the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Sampling seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Structured output: the answer is JSON valid under the JSON Schema in this file.
    #[arg(long, value_name = "FILE", group = "constraint")]
    pub json_schema: Option<PathBuf>,
    /// Structured output: the answer is a JSON object.
    #[arg(long, group = "constraint")]
    pub json: bool,
    /// Structured output: the answer matches this regular expression in full.
    #[arg(long, value_name = "PATTERN", group = "constraint")]
    pub regex: Option<String>,
    /// Structured output: the answer is one of these (repeat the flag for each).
    #[arg(long, value_name = "TEXT", group = "constraint")]
    pub choice: Vec<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_consistent_and_hides_dev_commands() {
        Cli::command().debug_assert();
        let help =
            Cli::command().find_subcommand_mut("adapter").map(|c| c.render_help().to_string());
        assert!(!help.unwrap_or_default().contains("generate-random"));
        let cli = Cli::parse_from(["lorad", "serve", "--max-waiting", "0", "--dtype", "bf16"]);
        let Command::Serve(args) = cli.command else { panic!("not serve") };
        assert_eq!((args.max_waiting, args.model.dtype), (0, Dtype::Bf16));
        assert_eq!(args.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(args.max_body_bytes, 4 << 20);
        assert_eq!(args.device_adapter_bytes, 4 << 30);
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("2 GB"), Ok(2_000_000_000));
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("99999999999TiB").is_err());
    }

    #[test]
    fn device_is_auto_cpu_or_a_cuda_index() {
        assert_eq!(DeviceArg::default(), DeviceArg::Auto);
        for (text, want) in [
            ("auto", DeviceArg::Auto),
            ("cpu", DeviceArg::Cpu),
            ("cuda", DeviceArg::Cuda(0)),
            ("cuda:3", DeviceArg::Cuda(3)),
        ] {
            let cli = Cli::parse_from(["lorad", "generate", "--prompt", "hi", "--device", text]);
            let Command::Generate(args) = cli.command else { panic!("not generate") };
            assert_eq!(args.model.device, want, "{text}");
        }
        assert_eq!(DeviceArg::Cuda(0).to_string(), "cuda:0");
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "CPU"] {
            let err = Cli::try_parse_from(["lorad", "serve", "--device", bad])
                .expect_err(bad)
                .to_string();
            assert!(err.contains("--device") && err.contains("cuda:N"), "{bad}: {err}");
        }
    }
}
