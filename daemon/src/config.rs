//! The configuration file (`/etc/lorad/lorad.toml`, `--config` or `$LORAD_CONFIG`): every
//! `lorad serve` setting under a documented key (docs/configuration.md).
//!
//! Precedence, highest first: a command-line flag, its environment variable, the file, the
//! built-in default. The file only fills in what the command line and the environment left
//! at its default, which [`clap::parser::ValueSource`] tells apart. Unknown keys are errors
//! (a typo must not silently fall back to a default), and every error names its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::ArgMatches;
use clap::ValueEnum;
use clap::parser::ValueSource;
use serde::Deserialize;

use crate::cli::{Cli, Command, ServeArgs, parse_bytes, parse_kv_memory};
use crate::exit::{ExitExt, ExitKind, coded};
use lorad_engine::KvMemory;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Data directory (`--home`).
    pub home: Option<PathBuf>,
    /// Log filter (`--log-level`).
    pub log_level: Option<String>,
    /// Log line format (`--log-format`).
    pub log_format: Option<String>,
    /// `[server]`.
    #[serde(default)]
    pub server: Server,
    /// `[model]`.
    #[serde(default)]
    pub model: Model,
    /// `[engine]`.
    #[serde(default)]
    pub engine: Engine,
    /// `[adapters]`.
    #[serde(default)]
    pub adapters: Adapters,
    /// `[attribution]`.
    #[serde(default)]
    pub attribution: Attribution,
    /// `[receipts]`.
    #[serde(default)]
    pub receipts: Receipts,
    /// `[chain]`.
    #[serde(default)]
    pub chain: Chain,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--max-body-bytes` (an integer or "4MiB").
    pub max_body_bytes: Option<Bytes>,
    /// `--served-model-name`.
    pub served_model_name: Option<String>,
    /// `--shutdown-timeout`.
    pub shutdown_timeout_secs: Option<u64>,
    /// `--admin-token-file`.
    pub admin_token_file: Option<PathBuf>,
    /// `--api-key-file`.
    pub api_key_file: Option<PathBuf>,
}

/// `[model]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// `--model`.
    pub path: Option<PathBuf>,
    /// `--dtype`.
    pub dtype: Option<String>,
    /// `--device`.
    pub device: Option<String>,
    /// `--chat-template`.
    pub chat_template: Option<String>,
    /// `--reasoning-parser`.
    pub reasoning_parser: Option<String>,
}

/// `[engine]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Engine {
    /// `--max-batch-size`.
    pub max_batch_size: Option<usize>,
    /// `--max-batch-tokens`.
    pub max_batch_tokens: Option<usize>,
    /// `--max-model-len`.
    pub max_model_len: Option<usize>,
    /// `--max-waiting`.
    pub max_waiting: Option<usize>,
    /// `--kv-cache-tokens`.
    pub kv_cache_tokens: Option<usize>,
    /// `--kv-cache-memory`: a byte size (number or "8GiB") or a share of free memory ("90%").
    pub kv_cache_memory: Option<Bytes>,
    /// `--prefix-caching`.
    pub prefix_caching: Option<bool>,
    /// `--scheduling-policy`: "fcfs", "priority" or "fair".
    pub scheduling_policy: Option<String>,
    /// `--speculative-config`, as a table.
    pub speculative_config: Option<crate::cli::SpeculativeConfig>,
}

/// `[adapters]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adapters {
    /// `--device-adapter-bytes`.
    pub device_bytes: Option<Bytes>,
    /// `--host-adapter-bytes`.
    pub host_bytes: Option<Bytes>,
    /// `--adapter-admit-timeout`.
    pub admit_timeout_secs: Option<u64>,
    /// `--store-io`.
    pub store_io: Option<String>,
    /// `--adapter-dtype`.
    pub dtype: Option<String>,
}

/// `[attribution]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attribution {
    /// `--attribution`.
    pub mode: Option<String>,
}

/// `[receipts]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipts {
    /// `--deployment`.
    pub deployment: Option<PathBuf>,
    /// `--settlement`.
    pub settlement: Option<String>,
    /// `--chain-id`.
    pub chain_id: Option<u64>,
    /// `--node-key`.
    pub node_key: Option<PathBuf>,
    /// `--receipt-max-block-age`.
    pub max_block_age_secs: Option<u64>,
    /// `--receipt-min-label`.
    pub min_label: Option<String>,
    /// `--min-stake` (decimal base units, a string: it exceeds TOML's integers).
    pub min_stake: Option<String>,
}

/// `[chain]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chain {
    /// `--l2-rpc`.
    pub l2_rpc: Option<String>,
    /// `--l2-trust-rpc-head`.
    pub l2_trust_rpc_head: Option<bool>,
    /// `--l1-beacon-url`.
    pub l1_beacon_url: Option<String>,
    /// `--l1-execution-url`.
    pub l1_execution_url: Option<String>,
    /// `--rollup`.
    pub rollup: Option<PathBuf>,
    /// `--lc-network`.
    pub network: Option<String>,
    /// `--lc-checkpoint`.
    pub checkpoint: Option<String>,
    /// `--l2-follow-secs`.
    pub follow_secs: Option<u64>,
}

/// A byte count: an integer, or a string such as "4GiB".
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Bytes {
    /// A plain number of bytes.
    Number(u64),
    /// With a unit (`parse_bytes`).
    Text(String),
}

impl Bytes {
    fn get(&self, key: &str) -> anyhow::Result<u64> {
        match self {
            Self::Number(n) => Ok(*n),
            Self::Text(s) => parse_bytes(s).map_err(|e| bad(key, e)),
        }
    }
}

fn bad(key: &str, why: impl std::fmt::Display) -> anyhow::Error {
    coded(ExitKind::Config, anyhow::anyhow!("config key `{key}`: {why}"))
}

/// Reads and parses the file; unknown keys and wrong types are errors naming the key.
pub fn load(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .exit_kind(ExitKind::Config)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    toml::from_str(&text)
        .map_err(|e| coded(ExitKind::Config, anyhow::anyhow!("{}: {e}", path.display())))
}

/// Whether the user set `id` on the command line or through its environment variable.
fn from_user(m: Option<&ArgMatches>, id: &str) -> bool {
    m.and_then(|m| m.value_source(id))
        .is_some_and(|s| matches!(s, ValueSource::CommandLine | ValueSource::EnvVariable))
}

fn parse<T: std::str::FromStr>(key: &str, s: &str) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>().map_err(|e| bad(key, format!("'{s}': {e}")))
}

fn value_enum<T: ValueEnum>(key: &str, s: &str) -> anyhow::Result<T> {
    T::from_str(s, false).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|p| p.get_name().to_string())
            .collect();
        bad(key, format!("'{s}' is not one of {}", names.join(", ")))
    })
}

/// Fills `cli`'s settings the user left at their defaults from the file named by `--config`
/// (or `$LORAD_CONFIG`). `matches` are the parsed command line.
pub fn merge(cli: &mut Cli, matches: &ArgMatches) -> anyhow::Result<()> {
    let Some(path) = cli.config.clone() else { return Ok(()) };
    let file = load(&path)?;
    if let Some(home) = file.home.clone().filter(|_| !from_user(Some(matches), "home")) {
        cli.home = Some(home);
    }
    if let Some(level) = file.log_level.clone().filter(|_| !from_user(Some(matches), "log_level")) {
        cli.log_level = Some(level);
    }
    if let Some(format) = &file.log_format
        && !from_user(Some(matches), "log_format")
    {
        cli.log_format = value_enum("log_format", format)?;
    }
    if let Some(io) = &file.adapters.store_io
        && !from_user(Some(matches), "store_io")
    {
        cli.store_io = value_enum("adapters.store_io", io)?;
    }
    if let Command::Serve(args) = &mut cli.command {
        apply_serve(args, matches.subcommand_matches("serve"), &file)?;
    }
    Ok(())
}

/// Sets `$field` from the file when the user did not set arg `$id`.
macro_rules! fill {
    ($m:expr, $id:literal, $field:expr, $value:expr) => {
        if !from_user($m, $id) {
            if let Some(v) = $value {
                $field = v;
            }
        }
    };
}

/// Applies the file's serve settings to `args` (`m`: the serve subcommand's matches).
pub fn apply_serve(
    args: &mut ServeArgs,
    m: Option<&ArgMatches>,
    f: &ConfigFile,
) -> anyhow::Result<()> {
    let s = &f.server;
    fill!(
        m,
        "listen",
        args.listen,
        s.listen.as_deref().map(|v| parse::<SocketAddr>("server.listen", v)).transpose()?
    );
    fill!(
        m,
        "max_body_bytes",
        args.max_body_bytes,
        s.max_body_bytes
            .as_ref()
            .map(|b| b.get("server.max_body_bytes").map(|n| n as usize))
            .transpose()?
    );
    fill!(m, "served_model_name", args.served_model_name, s.served_model_name.clone().map(Some));
    fill!(m, "shutdown_timeout", args.shutdown_timeout, s.shutdown_timeout_secs);
    fill!(m, "admin_token_file", args.admin_token_file, s.admin_token_file.clone().map(Some));
    fill!(m, "api_key_file", args.api_key_file, s.api_key_file.clone().map(Some));
    fill!(m, "model", args.model.model, f.model.path.clone().map(Some));
    fill!(m, "chat_template", args.model.chat_template, f.model.chat_template.clone().map(Some));
    fill!(
        m,
        "reasoning_parser",
        args.reasoning_parser,
        f.model
            .reasoning_parser
            .as_deref()
            .map(|v| value_enum("model.reasoning_parser", v).map(Some))
            .transpose()?
    );
    fill!(
        m,
        "dtype",
        args.model.dtype,
        f.model.dtype.as_deref().map(|v| value_enum("model.dtype", v)).transpose()?
    );
    fill!(
        m,
        "device",
        args.model.device,
        f.model.device.as_deref().map(|v| parse("model.device", v)).transpose()?
    );
    let e = &f.engine;
    fill!(m, "max_batch_size", args.max_batch_size, e.max_batch_size);
    fill!(m, "max_batch_tokens", args.max_batch_tokens, e.max_batch_tokens);
    fill!(m, "max_model_len", args.max_model_len, e.max_model_len.map(Some));
    fill!(m, "max_waiting", args.max_waiting, e.max_waiting);
    fill!(m, "kv_cache_tokens", args.kv_cache_tokens, e.kv_cache_tokens);
    if e.kv_cache_tokens.is_some() && e.kv_cache_memory.is_some() {
        return Err(bad(
            "engine.kv_cache_memory",
            "set either it or engine.kv_cache_tokens, not both",
        ));
    }
    // A size in tokens on the command line wins over a size in memory in the file.
    if !from_user(m, "kv_cache_tokens") {
        fill!(
            m,
            "kv_cache_memory",
            args.kv_cache_memory,
            e.kv_cache_memory
                .as_ref()
                .map(|b| match b {
                    Bytes::Number(n) => Ok(Some(KvMemory::Bytes(*n))),
                    Bytes::Text(t) => parse_kv_memory(t)
                        .map(Some)
                        .map_err(|why| bad("engine.kv_cache_memory", why)),
                })
                .transpose()?
        );
    }
    fill!(m, "prefix_caching", args.prefix_caching, e.prefix_caching);
    if let Some(p) = e.scheduling_policy.as_deref()
        && !matches!(p, "fcfs" | "priority" | "fair")
    {
        return Err(bad(
            "engine.scheduling_policy",
            format!("'{p}': use \"fcfs\", \"priority\" or \"fair\""),
        ));
    }
    fill!(m, "scheduling_policy", args.scheduling_policy, e.scheduling_policy.clone());
    fill!(
        m,
        "speculative_config",
        args.speculative_config,
        e.speculative_config
            .as_ref()
            .map(|c| c.to_spec().map(Some).map_err(|why| bad("engine.speculative_config", why)))
            .transpose()?
    );
    let a = &f.adapters;
    fill!(
        m,
        "device_adapter_bytes",
        args.device_adapter_bytes,
        a.device_bytes.as_ref().map(|b| b.get("adapters.device_bytes")).transpose()?
    );
    fill!(
        m,
        "host_adapter_bytes",
        args.host_adapter_bytes,
        a.host_bytes.as_ref().map(|b| b.get("adapters.host_bytes")).transpose()?
    );
    fill!(m, "adapter_admit_timeout", args.adapter_admit_timeout, a.admit_timeout_secs);
    fill!(
        m,
        "adapter_dtype",
        args.adapter_dtype,
        a.dtype.as_deref().map(|v| value_enum("adapters.dtype", v)).transpose()?
    );
    fill!(
        m,
        "attribution",
        args.attribution,
        f.attribution.mode.as_deref().map(|v| value_enum("attribution.mode", v)).transpose()?
    );
    let r = &f.receipts;
    fill!(m, "deployment", args.deployment, r.deployment.clone().map(Some));
    fill!(
        m,
        "settlement",
        args.settlement,
        r.settlement.as_deref().map(|v| parse("receipts.settlement", v).map(Some)).transpose()?
    );
    fill!(m, "chain_id", args.chain_id, r.chain_id.map(Some));
    fill!(m, "node_key", args.node_key, r.node_key.clone().map(Some));
    fill!(m, "receipt_max_block_age", args.receipt_max_block_age, r.max_block_age_secs);
    if let Some(label) = &r.min_label
        && !matches!(label.as_str(), "safe" | "finalized")
    {
        return Err(bad("receipts.min_label", format!("'{label}' is not one of safe, finalized")));
    }
    fill!(m, "receipt_min_label", args.receipt_min_label, r.min_label.clone());
    fill!(
        m,
        "min_stake",
        args.min_stake,
        r.min_stake.as_deref().map(|v| parse("receipts.min_stake", v)).transpose()?
    );
    let c = &f.chain;
    fill!(m, "l2_rpc", args.l2_rpc, c.l2_rpc.clone().map(Some));
    fill!(m, "l2_trust_rpc_head", args.l2_trust_rpc_head, c.l2_trust_rpc_head);
    fill!(m, "l1_beacon_url", args.l1_beacon_url, c.l1_beacon_url.clone().map(Some));
    fill!(m, "l1_execution_url", args.l1_execution_url, c.l1_execution_url.clone().map(Some));
    fill!(m, "rollup", args.rollup, c.rollup.clone().map(Some));
    fill!(m, "lc_network", args.lc_network, c.network.clone());
    fill!(m, "lc_checkpoint", args.lc_checkpoint, c.checkpoint.clone().map(Some));
    fill!(m, "l2_follow_secs", args.l2_follow_secs, c.follow_secs);
    for (key, url) in [
        ("chain.l2_rpc", &args.l2_rpc),
        ("chain.l1_beacon_url", &args.l1_beacon_url),
        ("chain.l1_execution_url", &args.l1_execution_url),
    ] {
        if let Some(u) = url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(bad(key, format!("'{u}' is not an http:// or https:// URL")));
        }
    }
    if args.settlement.is_some() != args.chain_id.is_some() {
        return Err(bad("receipts.settlement", "settlement and chain_id go together"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};

    use super::*;

    fn merged(argv: &[&str], toml_text: &str) -> anyhow::Result<Cli> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("lorad.toml");
        std::fs::write(&path, toml_text)?;
        let mut full = vec!["lorad".to_string(), "--config".into(), path.display().to_string()];
        full.extend(argv.iter().map(|s| s.to_string()));
        let matches = Cli::command().try_get_matches_from(full)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        merge(&mut cli, &matches)?;
        Ok(cli)
    }

    fn serve(cli: Cli) -> ServeArgs {
        match cli.command {
            Command::Serve(args) => *args,
            _ => panic!("not serve"),
        }
    }

    const FILE: &str = r#"
        home = "/srv/lorad"
        [server]
        listen = "0.0.0.0:9000"
        max_body_bytes = "1MiB"
        [model]
        device = "cuda:1"
        [engine]
        max_waiting = 7
        [adapters]
        host_bytes = 123456
        store_io = "pread"
        dtype = "bf16"
        [attribution]
        mode = "opt-in"
        [receipts]
        settlement = "0x5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e"
        chain_id = 10
        min_label = "finalized"
    "#;

    #[test]
    fn the_file_fills_defaults_and_flags_win() {
        let cli = merged(&["serve", "--max-waiting", "3"], FILE).expect("merged");
        // `$LORAD_HOME` (set by scripts/test-all.sh) beats the file, as documented.
        let expected_home = std::env::var_os("LORAD_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/srv/lorad".into());
        assert_eq!(cli.home, Some(expected_home));
        assert_eq!(cli.store_io, crate::cli::StoreIo::Pread);
        let args = serve(cli);
        assert_eq!(args.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(args.max_body_bytes, 1 << 20);
        assert_eq!(args.max_waiting, 3, "the flag beats the file");
        assert_eq!(args.host_adapter_bytes, 123_456);
        assert_eq!(args.adapter_dtype, crate::cli::AdapterDtypeArg::Bf16);
        assert_eq!(args.engine_config().adapter_dtype, lorad_engine::AdapterDtype::Bf16);
        // `$LORAD_DEVICE`, like a flag, would beat the file.
        if std::env::var_os("LORAD_DEVICE").is_none() {
            assert_eq!(args.model.device, crate::cli::DeviceArg::Cuda(1));
        }
        assert_eq!(args.attribution, crate::api::AttributionMode::OptIn);
        assert_eq!((args.chain_id, args.receipt_min_label.as_str()), (Some(10), "finalized"));
        // Untouched keys keep their defaults.
        assert_eq!(args.max_batch_size, lorad_engine::EngineConfig::default().max_batch_size);
        let flag_home = merged(&["--home", "/elsewhere", "serve"], FILE).expect("merged");
        assert_eq!(flag_home.home.as_deref(), Some(Path::new("/elsewhere")));
    }

    #[test]
    fn bad_keys_and_values_are_errors_naming_the_key() {
        let err = |text: &str| format!("{:#}", merged(&["serve"], text).expect_err(text));
        assert!(err("[server]\nlistn = \"x\"\n").contains("listn"));
        assert!(err("[nope]\nx = 1\n").contains("nope"));
        assert!(err("[server]\nlisten = \"nowhere\"\n").contains("server.listen"));
        assert!(err("[model]\ndtype = \"f8\"\n").contains("model.dtype"));
        assert!(err("[adapters]\ndtype = \"int4\"\n").contains("adapters.dtype"));
        assert!(err("[model]\ndevice = \"gpu0\"\n").contains("model.device"));
        assert!(
            err("[adapters]\ndevice_bytes = \"12 parsecs\"\n").contains("adapters.device_bytes")
        );
        assert!(err("[receipts]\nmin_label = \"unsafe\"\n").contains("receipts.min_label"));
        assert!(err("[receipts]\nchain_id = 10\n").contains("receipts.settlement"));
        assert!(err("[chain]\nl1_beacon_url = \"beacon:5052\"\n").contains("chain.l1_beacon_url"));
        assert!(err("[engine]\nmax_waiting = -1\n").contains("max_waiting"));
        for bad in ["\"150%\"", "\"0%\"", "\"lots\""] {
            let e = err(&format!("[engine]\nkv_cache_memory = {bad}\n"));
            assert!(e.contains("engine.kv_cache_memory"), "{e}");
        }
        assert!(
            err("[engine]\nscheduling_policy = \"lottery\"\n").contains("engine.scheduling_policy")
        );
        assert!(err("[model]\nreasoning_parser = \"o1\"\n").contains("model.reasoning_parser"));
        let both = err("[engine]\nkv_cache_tokens = 4096\nkv_cache_memory = \"1GiB\"\n");
        assert!(both.contains("engine.kv_cache_memory") && both.contains("not both"), "{both}");
    }

    #[test]
    fn the_admit_timeout_and_chat_template_come_from_the_file() {
        let file = "[adapters]\nadmit_timeout_secs = 90\n";
        let args = serve(merged(&["serve"], file).expect("merged"));
        assert_eq!(args.adapter_admit_timeout, 90);
        assert!(crate::commands::serve::validate(&args).is_ok());
        let file = format!("{file}[model]\nchat_template = \"/etc/lorad/chat.jinja\"\n");
        let args = serve(merged(&["serve"], &file).expect("merged"));
        assert_eq!(args.model.chat_template.as_deref(), Some("/etc/lorad/chat.jinja"));
        let parser = "[model]\nreasoning_parser = \"deepseek_r1\"\n";
        let args = serve(merged(&["serve"], parser).expect("merged"));
        assert_eq!(args.reasoning_parser, Some(crate::api::ReasoningParser::DeepseekR1));
        let flag =
            serve(merged(&["serve", "--reasoning-parser", "qwen3"], parser).expect("merged"));
        assert_eq!(flag.reasoning_parser, Some(crate::api::ReasoningParser::Qwen3));
        let args =
            serve(merged(&["serve", "--adapter-admit-timeout", "5"], &file).expect("merged"));
        assert_eq!(args.adapter_admit_timeout, 5, "the flag wins");
        for bad in [0, 3601] {
            let args = serve(
                merged(&["serve"], &format!("[adapters]\nadmit_timeout_secs = {bad}\n"))
                    .expect("merged"),
            );
            let err = format!("{:#}", crate::commands::serve::validate(&args).expect_err("bad"));
            assert!(err.contains("adapters.admit_timeout_secs"), "{err}");
        }
    }

    #[test]
    fn api_keys_come_from_a_file_one_a_line() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let keys = |text: &str, admin: Option<&str>| {
            let path = tmp.path().join("keys");
            std::fs::write(&path, text).expect("write");
            let mut file = format!("[server]\napi_key_file = \"{}\"\n", path.display());
            if let Some(a) = admin {
                let admin_path = tmp.path().join("admin");
                std::fs::write(&admin_path, a).expect("write");
                file.push_str(&format!("admin_token_file = \"{}\"\n", admin_path.display()));
            }
            let args = serve(merged(&["serve"], &file).expect("merged"));
            crate::commands::serve::api_keys(&args).map_err(|e| format!("{e:#}"))
        };
        let two = "# rotated 2026-12\nsk-0123456789abcdef\n\n  sk-fedcba9876543210  \n";
        assert_eq!(keys(two, None).unwrap(), ["sk-0123456789abcdef", "sk-fedcba9876543210"]);
        let short = keys("sk-0123456789abcdef\nshort\n", None).unwrap_err();
        assert!(short.contains("line 2") && short.contains("16 characters"), "{short}");
        let spaced = keys("sk 0123456789abcdef\n", None).unwrap_err();
        assert!(spaced.contains("line 1"), "{spaced}");
        assert!(keys("# none yet\n", None).unwrap_err().contains("no API key"));
        let admin = "admin-token-0123456789";
        let same = keys(&format!("{admin}\n"), Some(admin)).unwrap_err();
        assert!(same.contains("differ from the admin token"), "{same}");
        assert_eq!(keys("sk-0123456789abcdef", Some(admin)).unwrap().len(), 1);
    }

    /// The keys serde accepts in `section` (`""` for the top level), read back from its
    /// unknown-field error, so that a key added to the structs cannot go undocumented.
    fn keys_of(section: &str) -> Vec<String> {
        let probe = "zz_not_a_key = 1\n";
        let text =
            if section.is_empty() { probe.to_owned() } else { format!("[{section}]\n{probe}") };
        let err = toml::from_str::<ConfigFile>(&text).expect_err("an unknown key").to_string();
        let (_, expected) = err.split_once("expected").unwrap_or_else(|| panic!("{err}"));
        expected.split('`').skip(1).step_by(2).map(str::to_owned).collect()
    }

    #[test]
    fn every_key_is_documented_and_in_the_shipped_file() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let docs = std::fs::read_to_string(root.join("docs/configuration.md")).expect("docs");
        let shipped = std::fs::read_to_string(root.join("systemd/lorad.toml")).expect("toml");
        let sections = keys_of("");
        assert!(sections.contains(&"adapters".to_owned()), "{sections:?}");
        let (mut checked, mut missing) = (0, Vec::new());
        for top in &sections {
            let nested = keys_of(top);
            let is_table = !nested.is_empty() && !nested.contains(&"zz_not_a_key".to_owned());
            let keys: Vec<(String, String)> =
                if ["home", "log_level", "log_format"].contains(&top.as_str()) {
                    vec![(top.clone(), top.clone())]
                } else {
                    assert!(is_table, "[{top}] lists no keys");
                    nested.iter().map(|k| (format!("{top}.{k}"), k.clone())).collect()
                };
            for (dotted, key) in keys {
                if !docs.contains(&format!("`{dotted}`")) {
                    missing.push(format!("docs/configuration.md lacks {dotted}"));
                }
                let in_file = shipped.lines().any(|l| {
                    let l = l.trim_start_matches(['#', ' ']);
                    l.split_once('=').is_some_and(|(k, _)| k.trim() == key)
                });
                if !in_file {
                    missing.push(format!("systemd/lorad.toml lacks {dotted}"));
                }
                checked += 1;
            }
        }
        assert!(missing.is_empty(), "{missing:#?}");
        assert!(checked > 30, "only {checked} keys found");
    }

    #[test]
    fn kv_cache_memory_from_the_file_or_a_flag() {
        let file = "[engine]\nkv_cache_memory = \"90%\"\n";
        let args = serve(merged(&["serve"], file).expect("merged"));
        assert_eq!(args.kv_cache_memory, Some(KvMemory::FreeFraction(0.9)));
        assert_eq!(args.engine_config().kv_cache_memory, Some(KvMemory::FreeFraction(0.9)));
        let args =
            serve(merged(&["serve"], "[engine]\nkv_cache_memory = 1048576\n").expect("merged"));
        assert_eq!(args.kv_cache_memory, Some(KvMemory::Bytes(1 << 20)));
        // Tokens on the command line win over memory in the file.
        let args = serve(merged(&["serve", "--kv-cache-tokens", "512"], file).expect("merged"));
        assert_eq!((args.kv_cache_tokens, args.kv_cache_memory), (512, None));
        let args = serve(
            merged(&["serve"], "[engine]\nscheduling_policy = \"priority\"\n").expect("merged"),
        );
        assert_eq!(args.engine_config().scheduling, lorad_engine::SchedulingPolicy::Priority);
        let args =
            serve(merged(&["serve"], "[engine]\nscheduling_policy = \"fair\"\n").expect("merged"));
        assert_eq!(args.engine_config().scheduling, lorad_engine::SchedulingPolicy::Fair);
        let file =
            "[engine]\nspeculative_config = { method = \"ngram\", num_speculative_tokens = 3 }\n";
        let args = serve(merged(&["serve"], file).expect("merged"));
        let spec =
            lorad_engine::NgramSpec { tokens: 3, max_n: 5, min_n: 5, disable_by_batch_size: None };
        assert_eq!(args.engine_config().speculative, Some(spec));
        let flag = r#"{"method": "ngram", "num_speculative_tokens": 2}"#;
        let args = serve(merged(&["serve", "--speculative-config", flag], file).expect("merged"));
        assert_eq!(args.engine_config().speculative.map(|s| s.tokens), Some(2), "the flag wins");
        let bad =
            "[engine]\nspeculative_config = { method = \"medusa\", num_speculative_tokens = 3 }\n";
        let err = format!("{:#}", merged(&["serve"], bad).expect_err("medusa"));
        assert!(err.contains("engine.speculative_config") && err.contains("ngram"), "{err}");
        let args = serve(merged(&["serve", "--kv-cache-memory", "2GiB"], "").expect("merged"));
        assert_eq!(args.kv_cache_memory, Some(KvMemory::Bytes(2 << 30)));
        assert!(
            merged(&["serve", "--kv-cache-memory", "1GiB", "--kv-cache-tokens", "64"], "").is_err()
        );
    }
}
