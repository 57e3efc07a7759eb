//! `lorad-bench span`: the suffix-array span index at scale, measured in one run:
//!
//! 1. **build** of a synthetic corpus of `--tokens` tokens (Zipf-distributed ids over a
//!    `--vocab`-token vocabulary, documents of 200–2000 tokens, plus planted passages repeated
//!    in 2–6 documents so answers can find long spans): tokens/s, suffix array time, peak RSS
//!    (`VmHWM`, the whole process), bytes per token on disk;
//! 2. **open** time;
//! 3. **attribute** latency with the default [`SpanParams`] for `--answers` answers of
//!    `--answer-len` tokens, (a) random Zipf tokens and (b) corpus passages spliced with random
//!    tokens: p50 / p99 against the goal ≤ 20 ms per answer.
//!
//! Writes `<out>/<name>.{json,md}` and `<out>/<name>.png` (p50 / p99 per answer kind).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use lorad_attribution::span::{SpanIndex, SpanIndexStats, SpanParams};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};

use crate::scratch::{Scratch, progress};
use crate::stats::{peak_rss, percentile};

/// The latency goal per answer.
const GOAL_MS: f64 = 20.0;

/// Options of `lorad-bench span`.
#[derive(Debug, Args)]
pub(crate) struct SpanArgs {
    /// Corpus tokens (separators not counted).
    #[arg(long, default_value_t = 100_000_000)]
    tokens: usize,
    /// Answers timed per kind (random, spliced).
    #[arg(long, default_value_t = 50)]
    answers: usize,
    /// Tokens per answer.
    #[arg(long, default_value_t = 256)]
    answer_len: usize,
    /// Vocabulary size (below 65535: tokens stored 2 bytes wide).
    #[arg(long, default_value_t = 49_152)]
    vocab: usize,
    /// Zipf exponent of token frequencies (about 1 for natural-language tokens).
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Seed of everything random.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Parent of the scratch directory holding the index (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the scratch directory instead of deleting it at the end.
    #[arg(long)]
    keep: bool,
}

/// Synthetic documents, generated lazily so the bench holds no copy of the corpus.
struct CorpusGen {
    rng: ChaCha8Rng,
    zipf: Zipf<f64>,
    left: usize,
    next_doc: usize,
    /// Planted passages, and the documents each is planted in.
    passages: Vec<Vec<u32>>,
    plan: HashMap<usize, Vec<usize>>,
}

impl CorpusGen {
    fn new(args: &SpanArgs) -> anyhow::Result<CorpusGen> {
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        let zipf = Zipf::new(args.vocab as f64, args.zipf).context("Zipf distribution")?;
        let est_docs = (args.tokens / 1100).max(1);
        let n_passages = (args.tokens / 100_000).clamp(4, 1000);
        let mut passages = Vec::with_capacity(n_passages);
        let mut plan: HashMap<usize, Vec<usize>> = HashMap::new();
        for p in 0..n_passages {
            let len = rng.random_range(64..=192);
            passages.push((0..len).map(|_| token(&zipf, &mut rng)).collect());
            for _ in 0..rng.random_range(2..=6) {
                plan.entry(rng.random_range(0..est_docs)).or_default().push(p);
            }
        }
        Ok(CorpusGen { rng, zipf, left: args.tokens, next_doc: 0, passages, plan })
    }

    /// The next document, or `None` once `--tokens` are out.
    fn next_doc(&mut self) -> Option<Vec<u32>> {
        if self.left == 0 {
            return None;
        }
        let len = self.rng.random_range(200..=2000).min(self.left);
        self.left -= len;
        let mut doc: Vec<u32> = (0..len).map(|_| token(&self.zipf, &mut self.rng)).collect();
        for &p in self.plan.get(&self.next_doc).into_iter().flatten() {
            let passage = &self.passages[p];
            if passage.len() <= doc.len() {
                let at = self.rng.random_range(0..=doc.len() - passage.len());
                doc[at..at + passage.len()].copy_from_slice(passage);
            }
        }
        self.next_doc += 1;
        Some(doc)
    }
}

/// A Zipf-distributed token id (rank 1 → id 0).
fn token(zipf: &Zipf<f64>, rng: &mut ChaCha8Rng) -> u32 {
    (zipf.sample(rng) as u32).saturating_sub(1)
}

/// Latency figures of one answer kind.
#[derive(Debug, serde::Serialize)]
struct Latency {
    kind: &'static str,
    answers: usize,
    p50_ms: f64,
    p99_ms: f64,
    mean_ms: f64,
    max_ms: f64,
    mean_spans: f64,
    /// Fraction of answer tokens inside a kept span.
    coverage: f64,
    pass: bool,
}

pub(crate) fn run(out: &Path, args: &SpanArgs) -> anyhow::Result<()> {
    if args.tokens == 0 || args.answers == 0 || args.answer_len == 0 {
        bail!("--tokens, --answers and --answer-len must be at least 1");
    }
    if args.vocab < 2 || !(args.zipf.is_finite() && args.zipf > 0.0) {
        bail!("--vocab must be at least 2 and --zipf a finite number > 0");
    }
    let scratch = Scratch::create(args.dir.as_deref(), args.keep, "index")?;
    let dir = scratch.path.join("span-index");
    eprintln!("span index at {} ({})", dir.display(), if args.keep { "kept" } else { "scratch" });

    let (stats, peak_rss) = build(args, &dir)?;
    let started = Instant::now();
    let index = SpanIndex::open(&dir).context("opening the span index")?;
    let open_ms = started.elapsed().as_secs_f64() * 1e3;

    let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0x5EED);
    let zipf = Zipf::new(args.vocab as f64, args.zipf).context("Zipf distribution")?;
    let passages = CorpusGen::new(args)?.passages;
    let random: Vec<Vec<u32>> = (0..args.answers)
        .map(|_| (0..args.answer_len).map(|_| token(&zipf, &mut rng)).collect())
        .collect();
    let spliced: Vec<Vec<u32>> = (0..args.answers)
        .map(|_| spliced_answer(&index, &passages, &zipf, &mut rng, args.answer_len))
        .collect();
    let params = SpanParams::default();
    // One untimed pass so both kinds run against the same (warm) page cache.
    for a in random.iter().chain(&spliced) {
        index.attribute(a, &params)?;
    }
    let lat = vec![
        time(&index, &params, "random", &random)?,
        time(&index, &params, "spliced", &spliced)?,
    ];

    let name = format!("span-{}t-{}x{}", args.tokens, args.answers, args.answer_len);
    let mut md = markdown(args, &stats, peak_rss, open_ms, &lat);
    let png = plot(out, &name, &lat);
    if let Some(p) = &png {
        md += &format!("\n![attribute latency]({})\n", p.file_name().unwrap_or_default().display());
    }
    println!("{md}");
    let json = serde_json::json!({
        "benchmark": "span",
        "machine": crate::report::machine(),
        "args": {
            "tokens": args.tokens, "answers": args.answers, "answer_len": args.answer_len,
            "vocab": args.vocab, "zipf": args.zipf, "seed": args.seed,
        },
        "build": stats,
        "build_tokens_per_s": stats.num_tokens as f64 / stats.total_secs,
        "peak_rss_bytes": peak_rss,
        "open_ms": open_ms,
        "params": params,
        "goal_ms": GOAL_MS,
        "attribute": lat,
        "plot": png.as_ref().and_then(|p| p.file_name()).map(|f| f.to_string_lossy().into_owned()),
    });
    crate::report::write(out, &name, &json, &md)?;
    drop(index);
    drop(scratch);
    Ok(())
}

/// Generates the corpus into the index with a progress bar; returns the build stats and the
/// process's peak RSS right after the build.
fn build(args: &SpanArgs, dir: &Path) -> anyhow::Result<(SpanIndexStats, Option<u64>)> {
    let mut corpus = CorpusGen::new(args)?;
    let bar = progress(args.tokens as u64, "generating + assembling");
    bar.enable_steady_tick(Duration::from_millis(500));
    let docs = std::iter::from_fn(|| {
        let doc = corpus.next_doc();
        match &doc {
            Some(d) => bar.inc(d.len() as u64),
            // The build goes on to sort suffixes: the bar keeps ticking its elapsed time.
            None => bar.set_message("suffix array + write"),
        }
        doc
    });
    let stats = SpanIndex::build(docs, args.vocab, dir).context("building the span index")?;
    bar.finish_and_clear();
    let peak = peak_rss();
    eprintln!(
        "built: {} tokens, {} docs in {:.1} s (suffix array {:.1} s), {:.2} bytes/token",
        stats.num_tokens,
        stats.num_docs,
        stats.total_secs,
        stats.suffix_array_secs,
        stats.bytes_per_token
    );
    Ok((stats, peak))
}

/// An answer of `len` tokens: corpus passages (from random documents, and planted passages
/// that occur 2–6 times) of 16–64 tokens interleaved with 4–24 random tokens.
fn spliced_answer(
    index: &SpanIndex,
    passages: &[Vec<u32>],
    zipf: &Zipf<f64>,
    rng: &mut ChaCha8Rng,
    len: usize,
) -> Vec<u32> {
    let mut a = Vec::with_capacity(len + 64);
    while a.len() < len {
        let source = if rng.random_bool(0.5) && !passages.is_empty() {
            passages[rng.random_range(0..passages.len())].clone()
        } else {
            index.doc_tokens(rng.random_range(0..index.num_docs().max(1))).unwrap_or_default()
        };
        if !source.is_empty() {
            let n = rng.random_range(16..=64).min(source.len());
            let s = rng.random_range(0..=source.len() - n);
            a.extend_from_slice(&source[s..s + n]);
        }
        for _ in 0..rng.random_range(4..=24) {
            a.push(token(zipf, rng));
        }
    }
    a.truncate(len);
    a
}

/// Times `attribute` on each answer.
fn time(
    index: &SpanIndex,
    params: &SpanParams,
    kind: &'static str,
    answers: &[Vec<u32>],
) -> anyhow::Result<Latency> {
    let mut ms = Vec::with_capacity(answers.len());
    let (mut spans, mut covered, mut total) = (0usize, 0usize, 0usize);
    for a in answers {
        let started = Instant::now();
        let r = index.attribute(a, params)?;
        ms.push(started.elapsed().as_secs_f64() * 1e3);
        spans += r.spans.len();
        covered += r.spans.iter().map(|s| s.end - s.start).sum::<usize>();
        total += a.len();
    }
    ms.sort_by(f64::total_cmp);
    let p99 = percentile(&ms, 0.99);
    Ok(Latency {
        kind,
        answers: answers.len(),
        p50_ms: percentile(&ms, 0.5),
        p99_ms: p99,
        mean_ms: ms.iter().sum::<f64>() / ms.len().max(1) as f64,
        max_ms: ms.last().copied().unwrap_or(0.0),
        mean_spans: spans as f64 / answers.len().max(1) as f64,
        coverage: covered as f64 / total.max(1) as f64,
        pass: p99 <= GOAL_MS,
    })
}

/// The human-readable report (also printed).
fn markdown(
    args: &SpanArgs,
    s: &SpanIndexStats,
    peak_rss: Option<u64>,
    open_ms: f64,
    lat: &[Latency],
) -> String {
    let gib = |b: f64| b / (1u64 << 30) as f64;
    let mut md = format!(
        "# lorad-bench span\n\nSynthetic corpus: {} tokens in {} documents of 200–2000 tokens, \
         Zipf (s = {}) over a {}-token vocabulary, planted passages (64–192 tokens) repeated in \
         2–6 documents; {} CPU threads (the build is single-threaded).\n\n",
        args.tokens,
        s.num_docs,
        args.zipf,
        args.vocab,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    md += &format!(
        "## Build\n\n| corpus positions | tokens/s | total | suffix array | peak RSS (process) | index size | bytes/token | open |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n| {} | {:.2} M | {:.1} s | {:.1} s | {} | {:.2} GiB | **{:.3}** | {:.2} ms |\n\n",
        s.num_tokens,
        s.num_tokens as f64 / s.total_secs / 1e6,
        s.total_secs,
        s.suffix_array_secs,
        peak_rss.map_or("n/a".to_string(), |b| format!("{:.2} GiB", gib(b as f64))),
        gib(s.index_bytes as f64),
        s.bytes_per_token,
        open_ms,
    );
    md += "tokens/s and total include generating the synthetic documents (the build consumes \
           them lazily). Peak RSS is the process's `VmHWM` after the build: the corpus as \
           libsais sorts it (2 B/token, 4 for vocabularies of 65535 or more) and the 32-bit \
           suffix array (4 B/token); the generator keeps one document at a time.\n\n";
    md += &format!(
        "## attribute\n\n`SpanIndex::attribute`, default params (min_len 8, max_count 10, \
         density 0.05, 10 docs per span), {}-token answers, index warm in the page cache. \
         Goal: p99 ≤ {GOAL_MS} ms.\n\n| answers | n | p50 | p99 | mean | max | spans / answer | \
         tokens in spans | p99 ≤ goal |\n|---|---:|---:|---:|---:|---:|---:|---:|:-:|\n",
        args.answer_len
    );
    for l in lat {
        md += &format!(
            "| {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.1} | {:.1} % | {} |\n",
            l.kind,
            l.answers,
            l.p50_ms,
            l.p99_ms,
            l.mean_ms,
            l.max_ms,
            l.mean_spans,
            100.0 * l.coverage,
            if l.pass { "✅" } else { "❌" },
        );
    }
    md += "\nrandom: every token drawn from the corpus's Zipf distribution. spliced: passages \
           of 16–64 tokens (half from random documents, half from planted passages) \
           interleaved with 4–24 random tokens.\n";
    md
}

/// Writes `<out>/<name>.png`: p50 and p99 per answer kind; a chart never fails the benchmark.
fn plot(out: &Path, name: &str, lat: &[Latency]) -> Option<PathBuf> {
    let groups: Vec<(String, Vec<(String, f64)>)> = lat
        .iter()
        .map(|l| {
            (
                format!("{} answers", l.kind),
                vec![("p50".to_string(), l.p50_ms), ("p99".to_string(), l.p99_ms)],
            )
        })
        .collect();
    let path = out.join(format!("{name}.png"));
    let title = format!("span attribute latency per answer (goal p99 ≤ {GOAL_MS} ms)");
    let written = std::fs::create_dir_all(out)
        .map_err(anyhow::Error::from)
        .and_then(|()| crate::plot::bar_chart(&path, &title, "ms", &groups));
    match written {
        Ok(()) => Some(path),
        Err(e) => {
            eprintln!("lorad-bench: warning: no chart: {e:#}");
            None
        }
    }
}
