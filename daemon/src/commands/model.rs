//! `lorad model fetch`, `lorad model info`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use candle_core::DType;
use lorad_model::{ModelConfig, RopeScaling, ToolSupport};
use serde::Serialize;

use crate::cli::ModelCommand;
use crate::exit::{ExitExt, ExitKind};

/// Runs a model subcommand.
pub(crate) fn run(home: &Path, command: ModelCommand) -> anyhow::Result<()> {
    match command {
        ModelCommand::Fetch => {
            let path = lorad_model::fetch_default_model(home, true)
                .exit_kind(ExitKind::Config)
                .context("cannot fetch the default model")?;
            println!("{}", path.display());
            Ok(())
        }
        ModelCommand::Info { path, json } => {
            let path = match path {
                Some(p) => p,
                None => default_model(home)?,
            };
            let info = describe(&path)
                .exit_kind(ExitKind::DataErr)
                .with_context(|| format!("lorad cannot serve {}", path.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print!("{}", info.text());
            }
            Ok(())
        }
    }
}

/// The default model's path, which must have been fetched.
fn default_model(home: &Path) -> anyhow::Result<PathBuf> {
    let path = lorad_model::default_model_path(home);
    if !path.is_file() {
        return Err(anyhow::anyhow!(
            "the default model is not at {}; run `lorad model fetch`, or name a model",
            path.display()
        ))
        .exit_kind(ExitKind::Config);
    }
    Ok(path)
}

/// What `lorad model info` reports.
#[derive(Debug, Serialize)]
struct Info {
    path: PathBuf,
    arch: String,
    layers: usize,
    hidden_size: usize,
    intermediate_size: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    vocab_size: usize,
    /// The context lorad serves (before `--max-seq-len` and KV-cache caps).
    context: usize,
    /// Sliding attention window, in positions, and the layers that attend within it.
    sliding_window: Option<usize>,
    sliding_layers: Option<usize>,
    rope_theta: f64,
    /// Dimensions of each head RoPE rotates (fewer than `head_dim` for a partial one).
    rotary_dim: usize,
    rope_scaling: Option<String>,
    tied_embeddings: bool,
    parameters: u64,
    /// Weight bytes at f32 and at bf16 / f16.
    weight_bytes_f32: u64,
    weight_bytes_bf16: u64,
    /// KV-cache bytes per token at f32 and at bf16 / f16.
    kv_bytes_per_token_f32: u64,
    kv_bytes_per_token_bf16: u64,
    tokenizer_vocab: usize,
    bos: Option<String>,
    eos: Vec<String>,
    tool_calls: &'static str,
}

fn describe(path: &Path) -> Result<Info, lorad_model::ModelError> {
    let c = lorad_model::read_config(path)?;
    let (tok, template) = lorad_model::load_text(path)?;
    let parameters = c.parameter_count();
    let kv = |d: DType| lorad_engine::kv_bytes_per_token(&c, d);
    Ok(Info {
        path: path.to_owned(),
        arch: c.arch.to_string(),
        layers: c.num_layers,
        hidden_size: c.hidden_size,
        intermediate_size: c.intermediate_size,
        heads: c.num_heads,
        kv_heads: c.num_kv_heads,
        head_dim: c.head_dim,
        vocab_size: c.vocab_size,
        context: c.max_position_embeddings,
        sliding_window: c.sliding_window.as_ref().map(|w| w.size),
        sliding_layers: c.sliding_window.as_ref().map(|w| w.layers.iter().filter(|&&l| l).count()),
        rope_theta: c.rope_theta,
        rotary_dim: c.rotary_dim(),
        rope_scaling: c.rope_scaling.as_ref().map(|s| scaling(&c, s)),
        tied_embeddings: c.tie_word_embeddings,
        parameters,
        weight_bytes_f32: parameters * 4,
        weight_bytes_bf16: parameters * 2,
        kv_bytes_per_token_f32: kv(DType::F32),
        kv_bytes_per_token_bf16: kv(DType::BF16),
        tokenizer_vocab: tok.vocab_size(),
        bos: tok.bos_token(),
        eos: tok.eos_token_ids().iter().filter_map(|&id| tok.id_to_token(id)).collect(),
        tool_calls: match template.tool_support() {
            ToolSupport::None => "lorad's Hermes prompt (the template ignores tools)",
            ToolSupport::Hermes => "hermes <tool_call>",
            ToolSupport::Llama3Json => "llama3 json",
            ToolSupport::Mistral => "mistral [TOOL_CALLS] list",
            ToolSupport::MistralArgs => "mistral [TOOL_CALLS]name[ARGS]",
            ToolSupport::Other => "a syntax lorad does not read (tool_choice auto refused)",
        },
    })
}

/// One line on the RoPE scaling.
fn scaling(c: &ModelConfig, s: &RopeScaling) -> String {
    match s {
        RopeScaling::Llama3 { factor, original_max_position_embeddings, .. } => {
            format!("llama3, factor {factor} over {original_max_position_embeddings} positions")
        }
        RopeScaling::Linear { factor } => format!("linear, factor {factor}"),
        RopeScaling::Yarn { factor, original_max_position_embeddings, .. } => format!(
            "yarn, factor {factor} over {original_max_position_embeddings} positions, \
             attention factor {:.4}",
            c.rope_attention_factor()
        ),
        RopeScaling::Factors { divisors: f } => {
            format!("per-frequency divisors ({} of them, GGUF)", f.len())
        }
        RopeScaling::LongRope { original_max_position_embeddings, .. } => format!(
            "longrope, long factors past {original_max_position_embeddings} positions, \
             attention factor {:.4}",
            c.rope_attention_factor()
        ),
    }
}

impl Info {
    fn text(&self) -> String {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        let kib = |b: u64| b as f64 / 1024.0;
        let mut out = String::new();
        let mut line = |k: &str, v: String| out.push_str(&format!("{k:<16} {v}\n"));
        line("model", self.path.display().to_string());
        line("architecture", self.arch.clone());
        line(
            "shape",
            format!(
                "{} layers, hidden {}, MLP {}, {} heads ({} KV) of {}",
                self.layers,
                self.hidden_size,
                self.intermediate_size,
                self.heads,
                self.kv_heads,
                self.head_dim
            ),
        );
        line("parameters", format!("{} ({:.1} M)", self.parameters, self.parameters as f64 / 1e6));
        line(
            "weights",
            format!(
                "{:.2} GiB in f32, {:.2} GiB in bf16/f16",
                gib(self.weight_bytes_f32),
                gib(self.weight_bytes_bf16)
            ),
        );
        line(
            "KV cache",
            format!(
                "{:.1} KiB a token in f32, {:.1} KiB in bf16/f16",
                kib(self.kv_bytes_per_token_f32),
                kib(self.kv_bytes_per_token_bf16)
            ),
        );
        line(
            "context",
            match (self.sliding_window, self.sliding_layers) {
                (Some(w), Some(n)) if n == self.layers => {
                    format!("{} tokens, every layer attending within a window of {w}", self.context)
                }
                (Some(w), Some(n)) => format!(
                    "{} tokens, {n} of {} layers attending within a window of {w}",
                    self.context, self.layers
                ),
                _ => format!("{} tokens", self.context),
            },
        );
        line("RoPE", {
            let partial = if self.rotary_dim < self.head_dim {
                format!(", rotating {} of {} dimensions", self.rotary_dim, self.head_dim)
            } else {
                String::new()
            };
            match &self.rope_scaling {
                Some(s) => format!("theta {}{partial}, {s}", self.rope_theta),
                None => format!("theta {}{partial}", self.rope_theta),
            }
        });
        line(
            "vocabulary",
            format!(
                "{} ({} in the tokenizer){}",
                self.vocab_size,
                self.tokenizer_vocab,
                if self.tied_embeddings { ", tied embeddings" } else { "" }
            ),
        );
        line(
            "special tokens",
            format!("BOS {}, EOS {}", self.bos.as_deref().unwrap_or("none"), self.eos.join(" ")),
        );
        line("tool calls", self.tool_calls.to_owned());
        out
    }
}
