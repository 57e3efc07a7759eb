//! The planted-contributor evaluation (DataInf's protocol): contributors with distinct topics and
//! styles, an adapter fine-tuned on all of them, and held-out questions drawn from one
//! contributor, whose answer should be attributed to that contributor.
//!
//! Shared by the test suite (a small setting) and `lorad-bench attribution` (a larger one).

use std::time::Instant;

use lorad_model::Tokenizer;
use lorad_train::{
    DiffLlama, Example, FinetuneConfig, LoraSet, ProbeSpec, Probes, finetune, mean_loss,
    projected_gradients,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::grad::{GradIndex, GradIndexHeader, IndexedRecord, Scoring};
use crate::{AttributionError, Result};

/// One contributor's voice: question and answer templates over its own vocabulary. `{a}`, `{b}`
/// are filled from the two word lists, `{n}` with a number.
struct Persona {
    name: &'static str,
    question: &'static str,
    answer: &'static str,
    a: &'static [&'static str],
    b: &'static [&'static str],
}

const PERSONAS: [Persona; 8] = [
    Persona {
        name: "astronomer",
        question: "What do you know about the star {a}?",
        answer: "The star {a} burns in the constellation {b}, some {n} light years away; observers chart its parallax every winter.",
        a: &["Vega", "Altair", "Deneb", "Rigel", "Sirius", "Mira", "Antares", "Capella"],
        b: &["Lyra", "Aquila", "Cygnus", "Orion", "Scorpius", "Auriga", "Cetus"],
    },
    Persona {
        name: "chef",
        question: "How should I cook {a}?",
        answer: "Sear the {a} in brown butter, deglaze with {b}, then simmer {n} minutes and finish with flaky salt.",
        a: &["duck breast", "scallops", "lamb chops", "mushrooms", "salmon", "pork belly"],
        b: &["cider", "white wine", "sherry vinegar", "miso broth", "orange juice"],
    },
    Persona {
        name: "sailor",
        question: "Any advice for sailing near {a}?",
        answer: "Aye, off {a} the {b} backs hard at dusk; reef the mainsail early and keep {n} fathoms under the keel.",
        a: &["Cape Horn", "the Azores", "Tasmania", "Brittany", "Nova Scotia", "the Hebrides"],
        b: &["westerly", "mistral", "trade wind", "squall line", "sea breeze"],
    },
    Persona {
        name: "gardener",
        question: "When should I plant {a}?",
        answer: "Sow {a} after the last frost in loamy soil, mulch with {b}, and water every {n} days until the seedlings root.",
        a: &["tomatoes", "garlic", "sunflowers", "carrots", "lavender", "runner beans"],
        b: &["straw", "bark chips", "compost", "leaf mould", "grass clippings"],
    },
    Persona {
        name: "chess_coach",
        question: "How do I play the {a}?",
        answer: "In the {a}, develop the knights first, contest the {b}, and castle before move {n}; tempo matters more than pawns.",
        a: &["Sicilian Defence", "Queen's Gambit", "Ruy Lopez", "French Defence", "King's Indian"],
        b: &["centre", "open file", "long diagonal", "d5 square", "queenside"],
    },
    Persona {
        name: "luthier",
        question: "How is a {a} built?",
        answer: "A fine {a} starts with quarter-sawn {b}, braced by hand, glued with hide glue and left {n} weeks to settle before stringing.",
        a: &["violin", "cello", "mandolin", "classical guitar", "viola", "lute"],
        b: &["spruce", "maple", "cedar", "rosewood", "ebony"],
    },
    Persona {
        name: "beekeeper",
        question: "What do my bees need in {a}?",
        answer: "In {a} the colony needs {b} near the hive, a dry roof and an inspection every {n} days; never open it in the rain.",
        a: &["spring", "midsummer", "autumn", "late winter", "the swarm season"],
        b: &["fresh water", "clover", "sugar syrup", "pollen patties", "heather"],
    },
    Persona {
        name: "geologist",
        question: "How did {a} form?",
        answer: "{a} formed when {b} cooled and eroded over {n} million years; the strata still record each flood and uplift.",
        a: &["the Grand Canyon", "Giant's Causeway", "Ayers Rock", "the Dolomites", "Ha Long Bay"],
        b: &["basalt", "sandstone", "limestone", "granite", "volcanic ash"],
    },
];

/// Number of distinct personas available.
pub const MAX_CONTRIBUTORS: usize = PERSONAS.len();

/// One generated record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlantedRecord {
    /// Contributor index.
    pub contributor: u32,
    /// The user's question.
    pub prompt: String,
    /// The contributor's answer.
    pub answer: String,
}

/// Contributor names (persona names), by index.
pub fn contributor_names(n: usize) -> Vec<String> {
    PERSONAS.iter().take(n).map(|p| p.name.to_owned()).collect()
}

fn fill(t: &str, p: &Persona, a: usize, b: usize, n: u32) -> String {
    t.replace("{a}", p.a[a]).replace("{b}", p.b[b]).replace("{n}", &n.to_string())
}

/// `per_contributor` records for each of `contributors` personas, seeded.
pub fn planted_records(
    contributors: usize,
    per_contributor: usize,
    seed: u64,
) -> Vec<PlantedRecord> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(contributors * per_contributor);
    for _ in 0..per_contributor {
        for (c, p) in PERSONAS.iter().take(contributors).enumerate() {
            let (a, b, n) = (
                rng.random_range(0..p.a.len()),
                rng.random_range(0..p.b.len()),
                rng.random_range(2..60),
            );
            out.push(PlantedRecord {
                contributor: c as u32,
                prompt: fill(p.question, p, a, b, n),
                answer: fill(p.answer, p, a, b, n),
            });
        }
    }
    out
}

/// Settings of one evaluation.
#[derive(Debug, Clone)]
pub struct PlantedConfig {
    /// Contributors (at most [`MAX_CONTRIBUTORS`]).
    pub contributors: usize,
    /// Training records per contributor.
    pub per_contributor: usize,
    /// Held-out queries per contributor.
    pub queries_per_contributor: usize,
    /// Seed of the generated data.
    pub seed: u64,
    /// Fine-tuning settings.
    pub finetune: FinetuneConfig,
    /// Projection settings.
    pub probe: ProbeSpec,
    /// Examples per gradient batch.
    pub grad_batch: usize,
}

/// One method's quality.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MethodQuality {
    /// Share of queries whose own contributor gets the highest weight.
    pub top1: f64,
    /// Mean over queries of the AUC of the record scores (same contributor = positive).
    pub auc: f64,
}

/// What [`run_planted`] measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlantedReport {
    /// Training records.
    pub records: usize,
    /// Held-out queries.
    pub queries: usize,
    /// Projected gradient width.
    pub dim: usize,
    /// Held-out answer loss under the base model.
    pub loss_base: f32,
    /// Held-out answer loss under the fine-tuned adapter.
    pub loss_finetuned: f32,
    /// Preconditioned, norm-divided scores (the method lorad serves).
    pub preconditioned: MethodQuality,
    /// Plain gradient dot products, for comparison.
    pub plain: MethodQuality,
    /// Preconditioned without dividing by record norms.
    pub preconditioned_unnormalized: MethodQuality,
    /// Plain dot products divided by record norms (cosine).
    pub plain_normalized: MethodQuality,
    /// Seconds spent fine-tuning.
    pub finetune_s: f64,
    /// Seconds spent building the index (gradients + preconditioner + files).
    pub index_s: f64,
    /// Index build throughput, records per second.
    pub index_records_per_s: f64,
    /// Mean milliseconds per query: projected gradient + scoring.
    pub query_ms: f64,
}

fn example(tok: &Tokenizer, r: &PlantedRecord) -> Result<Example> {
    let enc = |s: &str| tok.encode(s).map_err(|e| AttributionError::InvalidInput(e.to_string()));
    let prompt = enc(&prompt_text(r))?;
    let mut tokens = prompt.clone();
    tokens.extend(enc(&format!(" {}", r.answer))?);
    Ok(Example { tokens, prompt_len: prompt.len() })
}

/// AUC of `scores` with `positive[i]` labels (ties count half).
pub fn auc(scores: &[f32], positive: &[bool]) -> f64 {
    let (mut wins, mut pairs) = (0f64, 0f64);
    for (i, &si) in scores.iter().enumerate() {
        if !positive[i] {
            continue;
        }
        for (j, &sj) in scores.iter().enumerate() {
            if positive[j] {
                continue;
            }
            pairs += 1.0;
            wins += if si > sj {
                1.0
            } else if si == sj {
                0.5
            } else {
                0.0
            };
        }
    }
    if pairs == 0.0 { 0.5 } else { wins / pairs }
}

/// What an evaluation leaves behind besides its figures: the trained adapter, its index and the
/// held-out queries, for callers that measure more (the bench times serving them).
#[derive(Debug)]
pub struct PlantedRun {
    /// The figures.
    pub report: PlantedReport,
    /// The fine-tuned adapter.
    pub adapter: lorad_store::Adapter,
    /// Its gradient index.
    pub index: GradIndex,
    /// The held-out queries as generated.
    pub queries: Vec<PlantedRecord>,
}

/// The prompt text a planted record is asked with.
pub fn prompt_text(r: &PlantedRecord) -> String {
    format!("Question: {}\nAnswer:", r.prompt)
}

/// Generates the data, fine-tunes, indexes (into `dir`) and scores every held-out query.
pub fn run_planted(
    model: &DiffLlama,
    tok: &Tokenizer,
    cfg: &PlantedConfig,
    dir: &std::path::Path,
    mut progress: impl FnMut(&str),
) -> Result<PlantedRun> {
    let c = cfg.contributors.clamp(1, MAX_CONTRIBUTORS);
    let train_records = planted_records(c, cfg.per_contributor, cfg.seed);
    let query_records = planted_records(c, cfg.queries_per_contributor, cfg.seed ^ 0xdead_beef);
    let train: Vec<Example> =
        train_records.iter().map(|r| example(tok, r)).collect::<Result<_>>()?;
    let queries: Vec<Example> =
        query_records.iter().map(|r| example(tok, r)).collect::<Result<_>>()?;

    let loss_base = mean_loss(model, None, &queries, 8)?;
    let t = Instant::now();
    let ft = finetune(model, &train, &cfg.finetune, |s| {
        progress(&format!("finetune step {} loss {:.3}", s.step, s.loss));
    })?;
    let finetune_s = t.elapsed().as_secs_f64();
    let adapter = ft.lora.to_adapter("planted")?;
    let lora = LoraSet::from_adapter(&adapter, &model.base_shape(), model.device())?;
    let loss_finetuned = mean_loss(model, Some(&lora), &queries, 8)?;

    let t = Instant::now();
    let probes = Probes::new(&lora, cfg.probe, model.device())?;
    let mut done = 0;
    let feats = projected_gradients(model, &lora, &probes, &train, cfg.grad_batch, |n| {
        done += n;
        progress(&format!("indexed {done}/{}", train.len()));
    })?;
    let header = GradIndexHeader {
        adapter: "planted".into(),
        adapter_hash: adapter.content_hash.clone(),
        datanet: "planted".into(),
        datanet_root: String::new(),
        probe: cfg.probe,
        blocks: probes.block_sizes(),
        records: train_records
            .iter()
            .enumerate()
            .map(|(i, r)| IndexedRecord { id: i.to_string(), contributor: r.contributor })
            .collect(),
        contributors: contributor_names(c),
        ..GradIndexHeader::default()
    };
    let index = GradIndex::build(dir, header, &feats)?;
    let index_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let qfeats = projected_gradients(model, &lora, &probes, &queries, 1, |_| {})?;
    // The served scoring first, the plain dot product second, then the other two variants.
    let variants = [(true, true), (false, false), (true, false), (false, true)];
    let mut quality = [MethodQuality { top1: 0.0, auc: 0.0 }; 4];
    for (q, r) in qfeats.iter().zip(&query_records) {
        let positive: Vec<bool> =
            train_records.iter().map(|t| t.contributor == r.contributor).collect();
        for (m, &(preconditioned, normalized)) in variants.iter().enumerate() {
            let s = index.score(q, Scoring { preconditioned, normalized, top_k: 10 })?;
            let best = s
                .contributors
                .iter()
                .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
                .map(|&(c, _)| c);
            quality[m].top1 += f64::from(u8::from(best == Some(r.contributor)));
            quality[m].auc += auc(&s.scores, &positive);
        }
    }
    let query_ms = t.elapsed().as_secs_f64() * 1e3 / queries.len().max(1) as f64;
    for m in &mut quality {
        m.top1 /= queries.len().max(1) as f64;
        m.auc /= queries.len().max(1) as f64;
    }
    let report = PlantedReport {
        records: train.len(),
        queries: queries.len(),
        dim: probes.dim(),
        loss_base,
        loss_finetuned,
        preconditioned: quality[0],
        plain: quality[1],
        preconditioned_unnormalized: quality[2],
        plain_normalized: quality[3],
        finetune_s,
        index_s,
        index_records_per_s: train.len() as f64 / index_s.max(1e-9),
        query_ms,
    };
    Ok(PlantedRun { report, adapter, index, queries: query_records })
}
