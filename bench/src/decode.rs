//! `lorad-bench decode`: generation throughput of one batch of requests in three set-ups,
//! measured back to back on the same loaded model:
//!
//! * **a** — every request on the base model (the ceiling);
//! * **b** — every request on its own adapter, all batched over the shared base (lorad);
//! * **c** — merge-per-request: for each request merge `W + s·B·A` into a copy of the targeted
//!   weights, run the request alone, drop the merge (what serving without multi-LoRA costs).
//!
//! Goals (issue 2): b/a ≥ 0.90 with 32 distinct rank-16 adapters; b/c ≥ 10 with 100.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use candle_core::{DType, Device, Tensor};
use clap::Args;
use indicatif::ProgressBar;
use lorad_engine::{
    EngineConfig, EngineHandle, ForwardSeq, GenerateRequest, KernelPath, KvCache, Llama,
    ResidentAdapter,
};
use lorad_model::LoadOptions;
use lorad_store::{Adapter, RandomAdapterSpec, TargetModule};

/// Options of `lorad-bench decode`.
#[derive(Debug, Args)]
pub(crate) struct DecodeArgs {
    /// Model file or directory (default: the default model under --home).
    #[arg(long)]
    model: Option<std::path::PathBuf>,
    /// Requests in the batch, each on its own adapter in set-up b.
    #[arg(long, default_value_t = 32)]
    requests: usize,
    /// Distinct adapters in set-up b, shared round-robin by the requests (default: one per
    /// request). Fewer than `--requests` models popular adapters, whose rows share weights.
    #[arg(long)]
    adapters: Option<usize>,
    /// Tokens generated per request (EOS ignored so every request generates exactly this many).
    #[arg(long, default_value_t = 32)]
    max_tokens: usize,
    /// LoRA rank of every adapter.
    #[arg(long, default_value_t = 16)]
    rank: usize,
    /// Projections the adapters target (comma-separated PEFT names).
    #[arg(long, default_value = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")]
    targets: String,
    /// Requests run in the merge-per-request baseline (it is slow; the rate is per request).
    #[arg(long, default_value_t = 4)]
    merge_requests: usize,
    /// Skip set-up c.
    #[arg(long)]
    no_merge: bool,
    /// Device to run on: `cpu`, or `cuda` (GPU 0; needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: BenchDevice,
    /// Precision the adapters were saved in: `f32` (PEFT's default) or `bf16` (every weight
    /// rounded to bf16, as an adapter trained and saved in bf16). The CPU engine keeps bf16-exact
    /// weights in bf16, halving the adapter bytes a decode step reads.
    #[arg(long, default_value = "f32")]
    saved_dtype: SavedDtype,
    /// What resident adapters are kept in (lorad's `--adapter-dtype`): `auto`, or `bf16`
    /// (every weight rounded: f32 adapters then decode at the `--saved-dtype bf16` rate).
    #[arg(long, default_value = "auto")]
    adapter_dtype: BenchAdapterDtype,
    /// Times a and b are each measured, interleaved (a, b, a, b, …); the best run of each
    /// counts, which filters out interference from other processes on the host.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Kernels of the forward pass: `auto` (the fused CPU kernels on the CPU) or `generic`
    /// (candle tensor ops, what CUDA runs): on the CPU, `generic` shows what the device path
    /// costs per step without a GPU.
    #[arg(long, default_value = "auto")]
    kernels: BenchKernels,
}

/// `--adapter-dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum BenchAdapterDtype {
    /// The engine's dtype (weights saved in bf16 stay bf16 on the CPU).
    Auto,
    /// Every weight rounded to bf16.
    Bf16,
}

/// `--kernels`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum BenchKernels {
    /// Fused CPU kernels where they apply.
    Auto,
    /// Device-generic tensor ops everywhere.
    Generic,
}

/// `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum BenchDevice {
    /// The CPU.
    Cpu,
    /// CUDA GPU 0.
    Cuda,
}

impl BenchDevice {
    /// The candle device, or an error naming the flag when CUDA is not there.
    pub(crate) fn open(self) -> anyhow::Result<Device> {
        match self {
            BenchDevice::Cpu => Ok(Device::Cpu),
            BenchDevice::Cuda if !candle_core::utils::cuda_is_available() => {
                bail!("--device cuda: this lorad-bench was built without `--features cuda`")
            }
            BenchDevice::Cuda => Device::new_cuda(0).context("--device cuda: cannot open GPU 0"),
        }
    }
}

/// The model a benchmark runs, in f32 on `device`: `path` (`--model`), or the default model
/// under `home`, fetched when it is not there yet.
pub(crate) fn load_f32(
    home: &Path,
    path: Option<&std::path::PathBuf>,
    device: &Device,
) -> anyhow::Result<lorad_model::LoadedModel> {
    let path = match path {
        Some(p) => p.clone(),
        None => lorad_model::fetch_default_model(home, true)?,
    };
    let opts = LoadOptions { dtype: DType::F32, device: device.clone() };
    lorad_model::load_model(&path, &opts).with_context(|| format!("loading {}", path.display()))
}

/// `--saved-dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SavedDtype {
    /// Full precision.
    F32,
    /// Rounded to bf16.
    Bf16,
}

const PROMPTS: [&str; 8] = [
    "The history of Rome begins with",
    "Write a short poem about the sea:",
    "def quicksort(xs):",
    "The three most important things about",
    "Dear customer, thank you for",
    "In 1969, the first humans",
    "A good recipe for bread needs",
    "The weather tomorrow will be",
];

pub(crate) fn run(home: &Path, out: &Path, args: &DecodeArgs) -> anyhow::Result<()> {
    if args.requests == 0 || args.max_tokens == 0 || args.rank == 0 {
        bail!("--requests, --max-tokens and --rank must be at least 1");
    }
    let distinct = args.adapters.unwrap_or(args.requests);
    if distinct == 0 || distinct > args.requests {
        bail!("--adapters must be between 1 and --requests ({})", args.requests);
    }
    let targets: Vec<TargetModule> = args
        .targets
        .split(',')
        .map(|t| {
            TargetModule::from_peft_name(t.trim())
                .with_context(|| format!("--targets: unknown projection '{t}'"))
        })
        .collect::<anyhow::Result<_>>()?;
    let device = args.device.open()?;
    let model = load_f32(home, args.model.as_ref(), &device)?;
    let base = lorad_engine::base_shape(&model.config);
    let adapters: Vec<Adapter> = (0..distinct)
        .map(|i| {
            let spec = RandomAdapterSpec {
                rank: args.rank,
                alpha: 2.0 * args.rank as f64,
                targets: targets.clone(),
                use_rslora: false,
                layers: None,
                seed: 1000 + i as u64,
            };
            let mut adapter = lorad_store::random_adapter(&format!("bench-{i}"), &base, &spec);
            if args.saved_dtype == SavedDtype::Bf16 {
                for w in &mut adapter.weights {
                    for v in w.a.iter_mut().chain(w.b.iter_mut()) {
                        *v = half::bf16::from_f32(*v).to_f32();
                    }
                }
            }
            adapter
        })
        .collect();
    let prompts: Vec<Vec<u32>> = (0..args.requests)
        .map(|i| model.tokenizer.encode(PROMPTS[i % PROMPTS.len()]))
        .collect::<Result<_, _>>()?;

    let merge_weights = model.weights.clone();
    let merge_cfg = model.config.clone();
    let cfg = EngineConfig {
        max_batch_size: args.requests,
        max_waiting: args.requests,
        kv_cache_tokens: args.requests * (args.max_tokens + 64),
        kernels: match args.kernels {
            BenchKernels::Auto => KernelPath::Auto,
            BenchKernels::Generic => KernelPath::Generic,
        },
        adapter_dtype: match args.adapter_dtype {
            BenchAdapterDtype::Auto => lorad_engine::AdapterDtype::Auto,
            BenchAdapterDtype::Bf16 => lorad_engine::AdapterDtype::Bf16,
        },
        ..EngineConfig::default()
    };
    let engine = EngineHandle::start(model, cfg)?;
    for a in &adapters {
        engine.add_adapter(a)?;
    }
    // Warm-up (first-touch page faults, thread pools).
    run_batch(&engine, &prompts[..1], None, 4)?;
    let names: Vec<String> =
        (0..args.requests).map(|i| adapters[i % distinct].name.clone()).collect();
    let (mut a_runs, mut b_runs) = (Vec::new(), Vec::new());
    for _ in 0..args.repeats.max(1) {
        a_runs.push(run_batch(&engine, &prompts, None, args.max_tokens)?);
        b_runs.push(run_batch(&engine, &prompts, Some(&names), args.max_tokens)?);
    }
    let best = |runs: &[(f64, f64)]| {
        runs.iter().copied().fold((0.0, 0.0), |m, r| if r.0 > m.0 { r } else { m })
    };
    let ((a_tps, a_secs), (b_tps, b_secs)) = (best(&a_runs), best(&b_runs));
    engine.shutdown();
    let c = if args.no_merge {
        None
    } else {
        let n = args.merge_requests.min(distinct).max(1);
        Some(run_merge(
            &merge_cfg,
            &merge_weights,
            &adapters[..n],
            &prompts[..n],
            args.max_tokens,
            &device,
        )?)
    };
    let (b_over_a, b_over_c) = (b_tps / a_tps, c.map(|(tps, _)| b_tps / tps));
    let mut md = format!(
        "# lorad-bench decode\n\n{} requests × {} tokens, rank {}, targets {}, adapters saved in {:?} (kept {:?}), f32 on {} ({} CPU threads), {:?} kernels, best of {} interleaved runs.\n\n| set-up | tokens/s | seconds |\n|---|---:|---:|\n| a: base only | {a_tps:.1} | {a_secs:.2} |\n| b: {}, batched | {b_tps:.1} | {b_secs:.2} |\n",
        args.requests,
        args.max_tokens,
        args.rank,
        args.targets,
        args.saved_dtype,
        args.adapter_dtype,
        crate::report::device_name(&device),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        args.kernels,
        args.repeats.max(1),
        match distinct == args.requests {
            true => format!("{distinct} distinct adapters"),
            false => format!("{distinct} adapters shared by the requests"),
        }
    );
    if let Some((tps, secs)) = c {
        md += &format!(
            "| c: merge per request ({} requests, sequential) | {tps:.1} | {secs:.2} |\n",
            args.merge_requests.min(distinct)
        );
    }
    md += &format!("\n**b/a = {b_over_a:.3}** (goal ≥ 0.90)");
    if let Some(r) = b_over_c {
        md += &format!(", **b/c = {r:.2}** (goal ≥ 10 with 100 distinct adapters)");
    }
    md += "\n";
    let name = format!(
        "decode-{}x{}{}-r{}-{}proj{}{}{}",
        args.requests,
        args.max_tokens,
        if distinct == args.requests { String::new() } else { format!("-{distinct}ad") },
        args.rank,
        targets.len(),
        match (args.saved_dtype, args.adapter_dtype) {
            (SavedDtype::Bf16, _) => "-bf16",
            (_, BenchAdapterDtype::Bf16) => "-kept-bf16",
            _ => "",
        },
        crate::report::device_suffix(&device),
        if args.kernels == BenchKernels::Generic { "-generic" } else { "" },
    );
    let mut title = format!(
        "decode: {} requests × {} tokens, rank {}  |  b/a = {b_over_a:.3}",
        args.requests, args.max_tokens, args.rank
    );
    if let Some(r) = b_over_c {
        title += &format!(", b/c = {r:.2}");
    }
    let png = plot_decode(out, &name, &title, &a_runs, &b_runs, c.map(|x| x.0));
    if let Some(p) = &png {
        md +=
            &format!("\n![tokens/s of a, b, c]({})\n", p.file_name().unwrap_or_default().display());
    }
    println!("{md}");
    let json = serde_json::json!({
        "benchmark": "decode",
        "machine": crate::report::machine(),
        "requests": args.requests, "adapters": distinct, "max_tokens": args.max_tokens, "rank": args.rank, "targets": args.targets,
        "device": crate::report::device_name(&device), "saved_dtype": format!("{:?}", args.saved_dtype).to_lowercase(),
        "adapter_dtype": format!("{:?}", args.adapter_dtype).to_lowercase(),
        "repeats": args.repeats, "kernels": format!("{:?}", args.kernels).to_lowercase(),
        "a_base_tokens_per_s": a_tps, "b_multi_lora_tokens_per_s": b_tps,
        "a_runs_tokens_per_s": a_runs.iter().map(|r| r.0).collect::<Vec<_>>(),
        "b_runs_tokens_per_s": b_runs.iter().map(|r| r.0).collect::<Vec<_>>(),
        "c_merge_per_request_tokens_per_s": c.map(|x| x.0),
        "b_over_a": b_over_a, "b_over_c": b_over_c,
        "plot": png.as_ref().and_then(|p| p.file_name()).map(|f| f.to_string_lossy().into_owned()),
    });
    crate::report::write(out, &name, &json, &md)
}

/// Writes `<out>/<name>.png`: tokens/s of a, b, c (best run, then each interleaved run of a and
/// b) under `title`. Returns the path, or `None` (with a warning) if it could not be written:
/// a chart never fails the benchmark.
fn plot_decode(
    out: &Path,
    name: &str,
    title: &str,
    a_runs: &[(f64, f64)],
    b_runs: &[(f64, f64)],
    c_tps: Option<f64>,
) -> Option<std::path::PathBuf> {
    let (a, b) = ("a: base only".to_string(), "b: multi-LoRA batched".to_string());
    let best = |runs: &[(f64, f64)]| runs.iter().map(|r| r.0).fold(0.0, f64::max);
    let mut best = vec![(a.clone(), best(a_runs)), (b.clone(), best(b_runs))];
    if let Some(tps) = c_tps {
        best.push(("c: merge per request".to_string(), tps));
    }
    let mut groups = vec![(format!("best of {}", a_runs.len()), best)];
    if a_runs.len() > 1 {
        for (i, (ra, rb)) in a_runs.iter().zip(b_runs).enumerate() {
            groups.push((format!("run {}", i + 1), vec![(a.clone(), ra.0), (b.clone(), rb.0)]));
        }
    }
    let path = out.join(format!("{name}.png"));
    let written = std::fs::create_dir_all(out)
        .map_err(anyhow::Error::from)
        .and_then(|()| crate::plot::bar_chart(&path, title, "generated tokens/s", &groups));
    match written {
        Ok(()) => {
            println!("chart: {}", path.display());
            Some(path)
        }
        Err(e) => {
            eprintln!("lorad-bench: warning: no chart: {e:#}");
            None
        }
    }
}

/// Submits all prompts at once and waits for all; returns (generated tokens/s, seconds).
fn run_batch(
    engine: &EngineHandle,
    prompts: &[Vec<u32>],
    adapters: Option<&[String]>,
    max_tokens: usize,
) -> anyhow::Result<(f64, f64)> {
    let bar = progress(prompts.len(), if adapters.is_some() { "b: multi-LoRA" } else { "a: base" });
    let start = Instant::now();
    let streams: Vec<_> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let req = GenerateRequest {
                adapter: adapters.map(|a| a[i].clone()),
                ignore_eos: true,
                ..GenerateRequest::greedy(p.clone(), max_tokens)
            };
            engine.submit(req)
        })
        .collect::<Result<_, _>>()?;
    let mut tokens = 0;
    for s in streams {
        tokens += s.collect_blocking()?.usage.completion_tokens;
        bar.inc(1);
    }
    let secs = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    Ok((tokens as f64 / secs, secs))
}

/// The merge-per-request baseline; returns (generated tokens/s, seconds) over its requests.
fn run_merge(
    cfg: &lorad_model::ModelConfig,
    weights: &std::collections::HashMap<String, Tensor>,
    adapters: &[Adapter],
    prompts: &[Vec<u32>],
    max_tokens: usize,
    device: &Device,
) -> anyhow::Result<(f64, f64)> {
    let bar = progress(adapters.len(), "c: merge per request");
    let start = Instant::now();
    // Merging runs where b's steps run (a rayon worker on the CPU, see `forward_pooled`), so
    // that c pays no hand-over costs b does not.
    let merge_all = || -> anyhow::Result<usize> {
        let mut tokens = 0;
        for (a, p) in adapters.iter().zip(prompts) {
            let mut merged = weights.clone();
            for w in &a.weights {
                let name = lorad_engine::projection_weight_name(w.layer, w.module);
                let base = &weights[&name];
                let (o, i) = base.dims2()?;
                let aa = Tensor::from_slice(&w.a, (w.rank, i), device)?;
                let bb = (Tensor::from_slice(&w.b, (o, w.rank), device)? * f64::from(w.scale))?;
                merged.insert(name, (base + bb.matmul(&aa)?)?);
            }
            let llama = Llama::new(cfg, &merged)?;
            tokens += greedy_alone(&llama, p, max_tokens, None)?.len();
            bar.inc(1);
            // Unmerge = dropping the merged copies; the base tensors were never modified.
        }
        Ok(tokens)
    };
    let tokens = if device.is_cpu() { rayon::scope(|_| merge_all())? } else { merge_all()? };
    let secs = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    Ok((tokens as f64 / secs, secs))
}

/// One request alone, greedy, EOS ignored; returns the generated tokens.
pub(crate) fn greedy_alone(
    llama: &Llama,
    prompt: &[u32],
    max_tokens: usize,
    adapter: Option<&ResidentAdapter>,
) -> anyhow::Result<Vec<u32>> {
    let c = llama.config();
    let len = prompt.len() + max_tokens;
    let kv = KvCache::new(
        c.num_layers,
        len,
        16,
        c.num_kv_heads,
        c.head_dim,
        llama.dtype(),
        llama.device(),
    )?;
    let blocks: Vec<u32> = (0..len.div_ceil(16) as u32).collect();
    let mut tokens = prompt.to_vec();
    let mut pos = 0;
    for _ in 0..max_tokens {
        let seq = ForwardSeq {
            tokens: &tokens[pos..],
            start_pos: pos,
            block_table: &blocks,
            adapter,
            want_logits: true,
            all_logits: false,
            prompt_len: prompt.len(),
        };
        let logits = llama.forward_pooled(&[seq], &kv)?.to_vec2::<f32>()?;
        pos = tokens.len();
        tokens.push(lorad_engine::argmax(&logits[0]));
    }
    Ok(tokens.split_off(prompt.len()))
}

fn progress(n: usize, what: &str) -> ProgressBar {
    crate::scratch::progress(n as u64, what)
}
