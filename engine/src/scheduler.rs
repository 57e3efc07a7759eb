//! Iteration-level continuous batching. Between two forward steps requests join (admitted from
//! the waiting queue when a batch slot and KV blocks are free) and leave (finished, cancelled by
//! a dropped stream, or preempted when the KV cache runs out).
//!
//! Each step packs every running sequence's pending tokens: one token for a decoding sequence,
//! a prefill chunk for a new one, within `max_batch_tokens`. Preemption is by recompute: the
//! last in line (the youngest, or under the priority policy the youngest of the lowest
//! priority) gives back its blocks and re-queues in its place with all its tokens, its sampler
//! state kept so seeded output stays reproducible.
//!
//! The waiting queue is ordered by (priority, arrival): first come, first served when every
//! priority is 0 (the default policy). Under the priority policy a waiting request that finds
//! no slot or blocks preempts running ones of a strictly lower priority. Under the fair policy
//! the next admitted is the oldest of the adapter with the least service so far ([`Vtc`]), and
//! the last in line is the youngest of the adapter with the most.
//!
//! With speculative decoding, a decoding sequence's step also carries draft tokens
//! (`speculative.rs`); `scheduler/sample.rs` turns every step's logits into tokens and checks
//! the drafts.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};

use lorad_model::Tokenizer;
use tokio::sync::mpsc::UnboundedSender;

use crate::adapters::ResidentAdapter;
use crate::constrained::{Constrained, MaskJob};
use crate::engine::{EngineConfig, EngineStats, SchedulingPolicy};
use crate::fairness::{PROMPT_WEIGHT, Vtc};
use crate::kv::{BlockHash, KvCache, block_hash};
use crate::llama::{ForwardSeq, Llama};
use crate::output::OutputState;
use crate::request::{FinishReason, GenerationEvent, Usage};
use crate::sampling::{Sampler, SamplingParams};

mod sample;

/// Messages from handles to the engine thread.
#[derive(Debug)]
pub(crate) enum Command {
    Submit(Box<SeqInit>),
    /// Answered between steps: proves the loop is turning (the service watchdog).
    Ping(std::sync::mpsc::SyncSender<()>),
    Shutdown,
}

/// A validated request as the handle hands it over.
#[derive(Debug)]
pub(crate) struct SeqInit {
    pub(crate) prompt: Vec<u32>,
    pub(crate) adapter: Option<Arc<ResidentAdapter>>,
    pub(crate) sampling: SamplingParams,
    pub(crate) max_tokens: usize,
    pub(crate) stop: Vec<String>,
    pub(crate) ignore_eos: bool,
    pub(crate) stop_token_ids: Vec<u32>,
    pub(crate) min_tokens: usize,
    pub(crate) include_stop_str_in_output: bool,
    pub(crate) prompt_logprobs: Option<usize>,
    pub(crate) cache_salt: Option<String>,
    pub(crate) constraint: Option<Constrained>,
    pub(crate) priority: i64,
    pub(crate) tx: UnboundedSender<GenerationEvent>,
}

#[derive(Debug)]
struct Seq {
    /// Prompt followed by generated tokens.
    tokens: Vec<u32>,
    prompt_len: usize,
    /// Tokens whose K/V are in the cache.
    computed: usize,
    /// Its block table, position `p` in `blocks[p / block_size]`.
    blocks: Vec<u32>,
    /// How many of `blocks`, from the first, went back to the cache because every layer
    /// attends within a window they fell out of ([`Scheduler::release_behind_window`]).
    /// Their ids stay in the table (attention never reads them) so positions keep indexing it.
    released: usize,
    adapter: Option<Arc<ResidentAdapter>>,
    sampler: Sampler,
    out: OutputState,
    max_tokens: usize,
    ignore_eos: bool,
    /// Tokens that end it like end-of-sequence.
    stop_token_ids: Vec<u32>,
    /// End-of-sequence and stop tokens are banned until it has generated this many.
    min_tokens: usize,
    /// Alternatives per scored prompt token, when the prompt is scored.
    prompt_logprobs: Option<usize>,
    /// The next prompt position to score (position 0 has nothing before it). It survives
    /// preemption, so a recomputed prefill does not score a position twice.
    prompt_scored: usize,
    /// What its K/V depend on besides its tokens, for the prefix cache: the adapter's content
    /// hash (empty for the base model), then the request's salt if it has one.
    cache_ns: String,
    /// Hashes of its full blocks registered in the prefix cache so far, in order.
    hashes: Vec<BlockHash>,
    /// Hashes of every full block of its known tokens but the last ([`prefix_chain`]), made
    /// when it is queued (again, after a preemption). Admission looks them up in the cache;
    /// while it runs, those past `hashes` are the blocks it has yet to compute, which a
    /// request needing the same blocks waits for instead of computing them a second time.
    chain: Vec<BlockHash>,
    /// Structured output's state, when the answer is constrained.
    constraint: Option<Constrained>,
    /// Prompt tokens its first admission found in the prefix cache.
    cached_tokens: usize,
    /// When the scheduler received it.
    arrived: std::time::Instant,
    /// From `arrived` to its first admission.
    queued: std::time::Duration,
    /// Counted in `EngineStats::waiting` (by the handle at submit) and not yet admitted.
    /// Preempted sequences re-queue without it: they were admitted once already.
    counted_waiting: bool,
    /// Its place in line: (priority, arrival number); lower goes first.
    order: (i64, u64),
    /// Whom its service is charged to under the fair policy: its adapter's content hash,
    /// empty for the base model.
    tenant: Arc<str>,
    tx: UnboundedSender<GenerationEvent>,
}

impl Seq {
    /// Takes the blocks it still holds, to be given back (those it released went back already).
    fn take_blocks(&mut self) -> Vec<u32> {
        let live = self.blocks.split_off(self.released.min(self.blocks.len()));
        self.blocks.clear();
        self.released = 0;
        live
    }

    fn generated(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }

    /// Whether prompt positions are still waiting for their log-probabilities.
    fn scoring(&self) -> bool {
        self.prompt_logprobs.is_some() && self.prompt_scored < self.prompt_len
    }
}

/// One sequence's part of a step: what it computes and which logits rows come back for it.
#[derive(Debug, Clone, Copy)]
struct Part {
    /// Index in `running`.
    seq: usize,
    /// Position of its first token this step.
    start: usize,
    /// Tokens this step, its draft tokens included.
    len: usize,
    /// Logits for every token (prompt scoring), not only the last.
    all: bool,
    /// Samples its next token from the last row.
    sample: bool,
    /// Draft tokens after its last token: a row for each, verified in turn.
    drafts: usize,
}

impl Part {
    fn rows(&self) -> usize {
        if self.all || self.drafts > 0 { self.len } else { usize::from(self.sample) }
    }
}

pub(crate) struct Scheduler {
    model: Llama,
    kv: KvCache,
    rx: mpsc::Receiver<Command>,
    cfg: EngineConfig,
    tokenizer: Arc<Tokenizer>,
    stats: Arc<EngineStats>,
    max_seq_len: usize,
    eos: Vec<u32>,
    waiting: VecDeque<Seq>,
    running: Vec<Seq>,
    /// Requests submitted so far (arrival numbers).
    arrivals: u64,
    /// Service per tenant, under the fair policy.
    fair: Option<Vtc>,
    /// The window every layer attends within, when all do: blocks behind it are given back.
    window: Option<usize>,
}

impl Scheduler {
    pub(crate) fn new(
        model: Llama,
        kv: KvCache,
        rx: mpsc::Receiver<Command>,
        cfg: EngineConfig,
        tokenizer: Arc<Tokenizer>,
        stats: Arc<EngineStats>,
        max_seq_len: usize,
    ) -> Self {
        let eos = tokenizer.eos_token_ids().to_vec();
        let fair = (cfg.scheduling == SchedulingPolicy::Fair).then(Vtc::default);
        let window = model.config().uniform_window();
        Self {
            window,
            model,
            kv,
            rx,
            cfg,
            tokenizer,
            stats,
            max_seq_len,
            eos,
            waiting: VecDeque::new(),
            arrivals: 0,
            running: Vec::new(),
            fair,
        }
    }

    pub(crate) fn run(mut self) {
        loop {
            // Idle: block until work arrives. Busy: take whatever has arrived, then step.
            if self.running.is_empty() && self.waiting.is_empty() {
                match self.rx.recv() {
                    Ok(cmd) => {
                        if !self.handle(cmd) {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
            while let Ok(cmd) = self.rx.try_recv() {
                if !self.handle(cmd) {
                    self.abort_all("the engine is shutting down");
                    return;
                }
            }
            self.drop_cancelled();
            self.admit();
            self.step();
            self.publish_kv();
        }
    }

    /// The KV cache's block counts, for `/metrics`.
    fn publish_kv(&self) {
        let b = &self.kv.blocks;
        let st = &self.stats;
        st.kv_blocks_total.store(b.total(), Ordering::Relaxed);
        st.kv_blocks_used.store(b.total() - b.available(), Ordering::Relaxed);
        st.kv_blocks_cached.store(b.cached(), Ordering::Relaxed);
    }

    fn handle(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Submit(init) => {
                let init = *init;
                let mut cache_ns =
                    init.adapter.as_ref().map_or(String::new(), |a| a.content_hash.clone());
                if let Some(salt) = &init.cache_salt {
                    // Content hashes are hex: a NUL cannot be part of one.
                    cache_ns.push('\0');
                    cache_ns.push_str(salt);
                }
                // LongRoPE rotates a prompt that outgrows the pre-trained context with other
                // factors from its first position on: its K/V are not another prompt's. (A
                // prefix, so no salt can spell it.)
                if self.model.config().long_rope_at(init.prompt.len(), 0) {
                    cache_ns.insert_str(0, "longrope\u{1}");
                }
                let sampler = Sampler::new(init.sampling).with_prompt(&init.prompt);
                let tenant: Arc<str> =
                    init.adapter.as_ref().map_or(Arc::from(""), |a| Arc::from(&*a.content_hash));
                if let Some(v) = &mut self.fair {
                    let backlog = self.waiting.iter().chain(&self.running);
                    v.arrive(&tenant, backlog.map(|s| &*s.tenant));
                }
                let mut seq = Seq {
                    cache_ns,
                    prompt_len: init.prompt.len(),
                    tokens: init.prompt,
                    computed: 0,
                    blocks: Vec::new(),
                    released: 0,
                    adapter: init.adapter,
                    sampler,
                    out: OutputState::new(
                        init.stop,
                        init.include_stop_str_in_output,
                        self.tokenizer.incremental_decoder(),
                    ),
                    max_tokens: init.max_tokens,
                    ignore_eos: init.ignore_eos,
                    stop_token_ids: init.stop_token_ids,
                    min_tokens: init.min_tokens,
                    prompt_logprobs: init.prompt_logprobs,
                    prompt_scored: 1,
                    hashes: Vec::new(),
                    chain: Vec::new(),
                    cached_tokens: 0,
                    arrived: std::time::Instant::now(),
                    queued: std::time::Duration::ZERO,
                    constraint: init.constraint,
                    counted_waiting: true,
                    order: (init.priority, self.arrivals),
                    tenant,
                    tx: init.tx,
                };
                self.arrivals += 1;
                if self.cfg.prefix_caching {
                    seq.chain = prefix_chain(self.kv.block_size, &seq);
                }
                if seq.constraint.is_some() {
                    self.stats.structured_requests.fetch_add(1, Ordering::Relaxed);
                }
                self.enqueue(seq);
                true
            }
            Command::Ping(reply) => {
                let _ = reply.try_send(());
                true
            }
            Command::Shutdown => false,
        }
    }

    fn abort_all(&mut self, why: &str) {
        for s in self.running.drain(..).chain(self.waiting.drain(..)) {
            let _ = s.tx.send(GenerationEvent::Error(why.into()));
        }
    }

    /// A client that hung up frees its slot and blocks before the next step.
    fn drop_cancelled(&mut self) {
        let kv = &mut self.kv;
        self.running.retain_mut(|s| {
            let keep = !s.tx.is_closed();
            if !keep {
                kv.blocks.free(s.take_blocks());
            }
            keep
        });
        let stats = &self.stats;
        self.waiting.retain(|s| {
            let keep = !s.tx.is_closed();
            if !keep && s.counted_waiting {
                stats.waiting.fetch_sub(1, Ordering::SeqCst);
            }
            keep
        });
        self.stats.running.store(self.running.len(), Ordering::Relaxed);
    }

    /// Admission in line ([`Self::next_waiting`]): a request joins when a slot is free and
    /// its whole known sequence fits. Blocks its prompt shares with the prefix cache are taken,
    /// not computed again; when a running request is still computing the next block it shares
    /// (answers `n > 1` of one prompt, a burst of requests with one system prompt), it waits a
    /// step for that block.
    fn admit(&mut self) {
        loop {
            let next = self.next_waiting();
            let Some(front) = self.waiting.get(next) else { break };
            if self.running.len() >= self.cfg.max_batch_size {
                let order = front.order;
                if self.preempt_for(order) {
                    continue;
                }
                break;
            }
            let need = self.kv.blocks_for(front.tokens.len() + 1);
            // A prompt still to be scored computes every position (cached blocks skip the rows
            // that score it).
            let reuse = self.cfg.prefix_caching && !front.scoring();
            let hits = if reuse { cached_prefix(&mut self.kv, &front.chain) } else { Vec::new() };
            if reuse
                && let Some(next) = front.chain.get(hits.len())
                && self
                    .running
                    .iter()
                    .any(|r| r.chain.get(r.hashes.len()..).is_some_and(|p| p.contains(next)))
            {
                self.kv.blocks.free(hits);
                break;
            }
            let Some(fresh) = self.kv.blocks.alloc(need - hits.len()) else {
                self.kv.blocks.free(hits);
                let order = front.order;
                if self.preempt_for(order) {
                    continue;
                }
                break;
            };
            let Some(mut s) = self.waiting.remove(next) else { break };
            let cached = hits.len() * self.kv.block_size;
            s.computed = cached;
            s.hashes = s.chain[..hits.len()].to_vec();
            s.blocks = hits;
            s.blocks.extend(fresh);
            if std::mem::take(&mut s.counted_waiting) {
                self.stats.waiting.fetch_sub(1, Ordering::SeqCst);
                s.cached_tokens = cached;
                s.queued = s.arrived.elapsed();
                // Charged once: a preempted request's recomputation is the node's loss.
                if let Some(v) = &mut self.fair {
                    v.charge(&s.tenant, s.prompt_len, PROMPT_WEIGHT);
                }
            }
            if self.cfg.prefix_caching {
                self.stats.prefix_cache_queried_tokens.fetch_add(s.tokens.len(), Ordering::Relaxed);
                self.stats.prefix_cache_hit_tokens.fetch_add(cached, Ordering::Relaxed);
            }
            self.running.push(s);
        }
        self.stats.running.store(self.running.len(), Ordering::Relaxed);
    }

    /// Registers the blocks of running sequence `i` that its last step filled.
    fn register_full_blocks(&mut self, i: usize) {
        let bs = self.kv.block_size;
        let s = &mut self.running[i];
        while (s.hashes.len() + 1) * bs <= s.computed {
            let j = s.hashes.len();
            // Blocks of the tokens it was queued with were hashed then.
            let h = match s.chain.get(j) {
                Some(&h) => h,
                None => block_hash(s.hashes.last(), &s.cache_ns, &s.tokens[j * bs..(j + 1) * bs]),
            };
            self.kv.blocks.register(s.blocks[j], h);
            s.hashes.push(h);
        }
    }

    /// Gives back the blocks of running sequence `i` that no query will read again: with every
    /// layer attending within `w` positions, its next position (`computed`: later ones see
    /// less, and a rejected draft never rolls back past it) sees from `computed + 1 - w` on, so
    /// every block wholly before that is done with, as vLLM frees a sliding window's blocks.
    /// With prefix caching, only blocks already registered go (they stay cached for prompts
    /// that share them, until evicted).
    fn release_behind_window(&mut self, i: usize) {
        let Some(w) = self.window else { return };
        let s = &mut self.running[i];
        let mut behind =
            ((s.computed + 1).saturating_sub(w) / self.kv.block_size).min(s.blocks.len());
        if self.cfg.prefix_caching {
            behind = behind.min(s.hashes.len());
        }
        if behind > s.released {
            self.kv.blocks.free(s.blocks[s.released..behind].iter().copied());
            s.released = behind;
        }
    }

    /// Plans token counts per running sequence (draft tokens included) and makes sure each
    /// has blocks for them, preempting the youngest sequences when the cache is full.
    fn plan(&mut self) -> (Vec<usize>, Vec<Vec<u32>>) {
        loop {
            let mut budget = self.cfg.max_batch_tokens;
            let mut plan = vec![0usize; self.running.len()];
            let mut drafts = vec![Vec::new(); self.running.len()];
            // Decoding sequences first (one token each), then their drafts, then prefill chunks.
            for (i, s) in self.running.iter().enumerate() {
                if s.tokens.len() - s.computed == 1 && budget > 0 {
                    plan[i] = 1;
                    budget -= 1;
                }
            }
            // One row per decoding sequence so far.
            let mut rows = plan.iter().sum::<usize>();
            if let Some(spec) = self.cfg.speculative
                && spec.disable_by_batch_size.is_none_or(|b| rows < b)
            {
                // Drafts ride on a step only while its decode rows stay few enough to cost
                // what one row costs (the weights are read once for all of them).
                for (i, s) in self.running.iter().enumerate() {
                    // A constrained answer's masks are per token; scoring needs every row.
                    if plan[i] == 1 && s.constraint.is_none() && !s.scoring() {
                        let room = s.max_tokens.saturating_sub(s.generated() + 1);
                        let fits = self.max_seq_len.saturating_sub(s.tokens.len() + 1);
                        let spare = lorad_kernels::SMALL_ROWS.saturating_sub(rows);
                        drafts[i] = spec.propose(&s.tokens, room.min(fits).min(budget).min(spare));
                        plan[i] += drafts[i].len();
                        budget -= drafts[i].len();
                        rows += drafts[i].len();
                    }
                }
            }
            for (i, s) in self.running.iter().enumerate() {
                let pending = s.tokens.len() - s.computed;
                if pending > 1 && budget > 0 {
                    plan[i] = pending.min(budget);
                    budget -= plan[i];
                }
            }
            let mut short = None;
            for (i, s) in self.running.iter_mut().enumerate() {
                let mut need = self.kv.blocks_for(s.computed + plan[i]);
                if need > s.blocks.len() && !drafts[i].is_empty() {
                    // Drafts never preempt anyone: without blocks to spare, decode plainly.
                    match self.kv.blocks.alloc(need - s.blocks.len()) {
                        Some(b) => s.blocks.extend(b),
                        None => {
                            plan[i] -= std::mem::take(&mut drafts[i]).len();
                            need = self.kv.blocks_for(s.computed + plan[i]);
                        }
                    }
                }
                if need > s.blocks.len() {
                    match self.kv.blocks.alloc(need - s.blocks.len()) {
                        Some(b) => s.blocks.extend(b),
                        None => {
                            short = Some(i);
                            break;
                        }
                    }
                }
            }
            if short.is_none() {
                return (plan, drafts);
            }
            // Preempt the last in line and retry.
            let Some(last) = self.last_in_line() else { return (Vec::new(), Vec::new()) };
            tracing::debug!("KV cache full: preempting a sequence");
            self.preempt(last);
        }
    }

    /// Queues `seq` in its place: after every waiting sequence that goes before it.
    fn enqueue(&mut self, seq: Seq) {
        let at = self.waiting.partition_point(|w| w.order <= seq.order);
        self.waiting.insert(at, seq);
    }

    /// The waiting sequence to admit next: the first in line, or under the fair policy the
    /// first of the tenant with the lowest counter (`waiting` is in arrival order then).
    fn next_waiting(&self) -> usize {
        let Some(v) = &self.fair else { return 0 };
        (0..self.waiting.len())
            .min_by_key(|&i| (v.counter(&self.waiting[i].tenant), i))
            .unwrap_or(0)
    }

    /// The running sequence that goes last: the highest order, or under the fair policy the
    /// youngest of the tenant with the highest counter.
    fn last_in_line(&self) -> Option<usize> {
        let key = |i: usize| {
            let s = &self.running[i];
            (self.fair.as_ref().map_or(0, |v| v.counter(&s.tenant)), s.order)
        };
        (0..self.running.len()).max_by_key(|&i| key(i))
    }

    /// Gives running sequence `i`'s blocks back and queues it to be recomputed.
    fn preempt(&mut self, i: usize) {
        let mut victim = self.running.remove(i);
        self.kv.blocks.free(victim.take_blocks());
        self.stats.preemptions.fetch_add(1, Ordering::Relaxed);
        victim.computed = 0;
        victim.hashes.clear();
        if self.cfg.prefix_caching {
            victim.chain = prefix_chain(self.kv.block_size, &victim);
        }
        self.enqueue(victim);
    }

    /// Under the priority policy, preempts the last running sequence in line when its
    /// priority is strictly lower than `order`'s (a higher number); whether it did.
    fn preempt_for(&mut self, order: (i64, u64)) -> bool {
        if self.cfg.scheduling != SchedulingPolicy::Priority {
            return false;
        }
        match self.last_in_line() {
            Some(i) if self.running[i].order.0 > order.0 => {
                tracing::debug!(priority = order.0, "preempting a lower-priority sequence");
                self.preempt(i);
                self.stats.running.store(self.running.len(), Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    fn step(&mut self) {
        if self.running.is_empty() {
            return;
        }
        let (plan, drafts) = self.plan();
        // A drafting sequence's input: its last token, then its drafts.
        let inputs: Vec<Vec<u32>> = self
            .running
            .iter()
            .zip(&drafts)
            .map(|(s, d)| {
                if d.is_empty() {
                    Vec::new()
                } else {
                    s.tokens[s.computed..].iter().chain(d).copied().collect()
                }
            })
            .collect();
        let mut fwd = Vec::with_capacity(self.running.len());
        let mut parts = Vec::with_capacity(self.running.len());
        for (i, s) in self.running.iter().enumerate() {
            let n = plan[i];
            if n == 0 {
                continue;
            }
            let known = n - drafts[i].len();
            let part = Part {
                seq: i,
                start: s.computed,
                len: n,
                all: s.scoring(),
                sample: s.computed + known == s.tokens.len(),
                drafts: drafts[i].len(),
            };
            parts.push(part);
            fwd.push(ForwardSeq {
                tokens: match part.drafts {
                    0 => &s.tokens[s.computed..s.computed + n],
                    _ => &inputs[i],
                },
                start_pos: s.computed,
                block_table: &s.blocks,
                adapter: s.adapter.as_deref(),
                want_logits: part.sample,
                all_logits: part.all || part.drafts > 0,
                prompt_len: s.prompt_len,
            });
        }
        if fwd.is_empty() {
            return;
        }
        // Structured output's uncached masks are computed while the forward pass runs (on a
        // GPU the host is otherwise idle), so sampling finds them in the cache.
        let jobs: Vec<MaskJob> = parts
            .iter()
            .filter(|p| p.sample)
            .filter_map(|p| self.running[p.seq].constraint.as_ref()?.mask_job())
            .collect();
        let started = std::time::Instant::now();
        let (model, kv) = (&self.model, &self.kv);
        let forward = || model.forward_pooled(&fwd, kv).and_then(|l| Ok(l.to_vec2::<f32>()?));
        let logits = if jobs.is_empty() {
            forward()
        } else {
            let stats = &self.stats;
            std::thread::scope(|scope| {
                // Several new masks (requests on different schemas) are computed side by
                // side: each is a walk of the whole vocabulary.
                scope.spawn(|| {
                    use rayon::prelude::*;
                    jobs.into_par_iter().for_each(|job| {
                        let t = std::time::Instant::now();
                        job.run();
                        stats.grammar_mask_seconds.observe(t.elapsed());
                        stats.grammar_masks.fetch_add(1, Ordering::Relaxed);
                    });
                });
                forward()
            })
        };
        drop(fwd);
        self.stats.steps.fetch_add(1, Ordering::Relaxed);
        self.stats.step_tokens.fetch_add(plan.iter().sum(), Ordering::Relaxed);
        let logits = match logits {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "forward step failed; failing the batch");
                let msg = format!("internal error: {e}");
                for mut s in self.running.drain(..) {
                    self.kv.blocks.free(s.take_blocks());
                    let _ = s.tx.send(GenerationEvent::Error(msg.clone()));
                }
                return;
            }
        };
        // Draft positions count once verified.
        for (i, s) in self.running.iter_mut().enumerate() {
            s.computed += plan[i] - drafts[i].len();
        }
        if self.cfg.prefix_caching {
            for i in 0..self.running.len() {
                self.register_full_blocks(i);
            }
        }
        let mut finished = Vec::new();
        let mut rows = logits.into_iter();
        for part in parts {
            let mut mine: Vec<Vec<f32>> = rows.by_ref().take(part.rows()).collect();
            if part.drafts > 0 {
                if let Some(reason) = self.verify(part.seq, &drafts[part.seq], mine) {
                    finished.push((part.seq, reason));
                }
                continue;
            }
            if part.all {
                self.score_prompt(part, &mine);
            }
            if let (true, Some(mut last)) = (part.sample, mine.pop())
                && let Some(reason) = self.sample_one(part.seq, &mut last)
            {
                finished.push((part.seq, reason));
            }
        }
        for i in 0..self.running.len() {
            self.release_behind_window(i);
        }
        self.stats.step_seconds.observe(started.elapsed());
        // Remove finished sequences, highest index first so indices stay valid. Their blocks go
        // back (and the counts are published) and their adapter leases are dropped before their
        // requests hear they are done, so a client that reads /metrics after its answer sees the
        // cache without it, and one that replaces or removes the adapter finds it idle.
        finished.sort_by_key(|f| std::cmp::Reverse(f.0));
        let done: Vec<(Seq, FinishReason)> = finished
            .into_iter()
            .map(|(i, reason)| {
                let mut s = self.running.remove(i);
                self.kv.blocks.free(s.take_blocks());
                s.adapter = None;
                (s, reason)
            })
            .collect();
        self.publish_kv();
        for (mut s, reason) in done {
            let tail = s.out.flush();
            if !tail.is_empty() {
                let _ = s.tx.send(GenerationEvent::Delta {
                    text: tail,
                    tokens: Vec::new(),
                    logprobs: Vec::new(),
                });
            }
            let usage = Usage {
                prompt_tokens: s.prompt_len,
                completion_tokens: s.generated(),
                cached_tokens: s.cached_tokens.min(s.prompt_len),
                queued: s.queued,
            };
            let _ = s.tx.send(GenerationEvent::Done { finish_reason: reason, usage });
        }
        self.stats.running.store(self.running.len(), Ordering::Relaxed);
    }
}

/// The hashes of the full blocks of `s`'s tokens but the last: a request always computes at
/// least its last token, for the logits of the next one.
fn prefix_chain(bs: usize, s: &Seq) -> Vec<BlockHash> {
    let mut chain: Vec<BlockHash> = Vec::new();
    for block in s.tokens[..s.tokens.len().saturating_sub(1)].chunks_exact(bs) {
        let h = block_hash(chain.last(), &s.cache_ns, block);
        chain.push(h);
    }
    chain
}

/// The cached blocks `chain` starts with, a reference taken on each.
fn cached_prefix(kv: &mut KvCache, chain: &[BlockHash]) -> Vec<u32> {
    chain.iter().map_while(|h| kv.blocks.take_cached(h)).collect()
}
