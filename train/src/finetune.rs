//! Fine-tuning a LoRA adapter: AdamW with linear warm-up, cosine decay and global-norm clipping.

use std::time::{Duration, Instant};

use candle_core::{Tensor, Var};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::batch::{Batch, Example, LossNorm};
use crate::lora::{LoraSet, LoraSpec};
use crate::model::DiffLlama;
use crate::{Result, TrainError};

/// Training hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct FinetuneConfig {
    /// The adapter's shape.
    pub lora: LoraSpec,
    /// Optimizer steps.
    pub steps: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Examples per step.
    pub batch_size: usize,
    /// Steps of linear warm-up from 0 to `lr` (then cosine decay to `lr / 10`).
    pub warmup_steps: usize,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clip (0: none).
    pub grad_clip: f64,
    /// Seeds the LoRA initialisation and the example order.
    pub seed: u64,
}

impl Default for FinetuneConfig {
    /// Rank 8 on q/v (PEFT's common setup), 100 steps of 8 examples, peak lr 1e-3 (above the
    /// usual 2e-4 because CPU runs are short), 10 % warm-up, no weight decay, clip 1.0.
    fn default() -> Self {
        Self {
            lora: LoraSpec::default(),
            steps: 100,
            lr: 1e-3,
            batch_size: 8,
            warmup_steps: 10,
            weight_decay: 0.0,
            grad_clip: 1.0,
            seed: 0,
        }
    }
}

/// One optimizer step, as reported to the progress callback.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct StepLog {
    /// 1-based step.
    pub step: usize,
    /// Token-mean training loss of the step's batch (before the update).
    pub loss: f32,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    /// Target tokens in the batch.
    pub tokens: usize,
}

/// What [`finetune`] returns.
#[derive(Debug)]
pub struct FinetuneReport {
    /// The trained parameters.
    pub lora: LoraSet,
    /// Every step.
    pub steps: Vec<StepLog>,
    /// Wall time of the training loop.
    pub elapsed: Duration,
}

/// Trains a fresh LoRA on `train`. Examples are visited in seeded random order, epoch after
/// epoch; `on_step` sees every step (progress bars, logs).
pub fn finetune(
    model: &DiffLlama,
    train: &[Example],
    cfg: &FinetuneConfig,
    mut on_step: impl FnMut(&StepLog),
) -> Result<FinetuneReport> {
    if cfg.steps == 0 || cfg.batch_size == 0 {
        return Err(TrainError::Config("steps and batch size must be at least 1".into()));
    }
    if !(cfg.lr.is_finite() && cfg.lr > 0.0) {
        return Err(TrainError::Config(format!("learning rate {} is not positive", cfg.lr)));
    }
    if train.is_empty() {
        return Err(TrainError::Config("no training examples".into()));
    }
    let mc = model.config();
    for (i, e) in train.iter().enumerate() {
        e.check(i, mc.vocab_size, mc.max_position_embeddings)?;
    }
    let start = Instant::now();
    let lora = LoraSet::init(&model.base_shape(), &cfg.lora, cfg.seed, model.device())?;
    let mut opt = AdamW::new(lora.vars(), cfg.weight_decay)?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x005e_ed0f_0dde_u64);
    let mut order: Vec<usize> = Vec::new();
    let mut steps = Vec::with_capacity(cfg.steps);
    for step in 1..=cfg.steps {
        let mut picked = Vec::with_capacity(cfg.batch_size);
        while picked.len() < cfg.batch_size.min(train.len()) {
            if order.is_empty() {
                order = (0..train.len()).collect();
                order.shuffle(&mut rng);
                order.reverse();
            }
            if let Some(i) = order.pop() {
                picked.push(&train[i]);
            }
        }
        let batch = Batch::new(&picked, LossNorm::TokenMean, model.device())?;
        let loss = model.loss(&batch, Some(&lora), None)?;
        let loss_v = loss.to_scalar::<f32>()?;
        if !loss_v.is_finite() {
            return Err(TrainError::Diverged { step, loss: loss_v });
        }
        let grads = loss.backward()?;
        let lr = schedule(cfg, step);
        let grad_norm = opt.step(&grads, lr, cfg.grad_clip)?;
        let log = StepLog { step, loss: loss_v, lr, grad_norm, tokens: batch.num_targets() };
        on_step(&log);
        steps.push(log);
    }
    Ok(FinetuneReport { lora, steps, elapsed: start.elapsed() })
}

/// Linear warm-up to `lr`, then cosine decay to `lr / 10` at the last step.
fn schedule(cfg: &FinetuneConfig, step: usize) -> f64 {
    if step <= cfg.warmup_steps {
        return cfg.lr * step as f64 / cfg.warmup_steps as f64;
    }
    let span = (cfg.steps - cfg.warmup_steps).max(1) as f64;
    let progress = (step - cfg.warmup_steps) as f64 / span;
    let floor = cfg.lr / 10.0;
    floor + (cfg.lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// Token-mean negative log-likelihood of the completions of `examples` under the base
/// (`lora = None`) or an adapter: the held-out loss fine-tuning must reduce.
pub fn mean_loss(
    model: &DiffLlama,
    lora: Option<&LoraSet>,
    examples: &[Example],
    batch_size: usize,
) -> Result<f32> {
    let mc = model.config();
    let mut total = 0f64;
    let mut count = 0usize;
    for (c, chunk) in examples.chunks(batch_size.max(1)).enumerate() {
        for (i, e) in chunk.iter().enumerate() {
            e.check(c * batch_size.max(1) + i, mc.vocab_size, mc.max_position_embeddings)?;
        }
        let refs: Vec<&Example> = chunk.iter().collect();
        let batch = Batch::new(&refs, LossNorm::TokenMean, model.device())?;
        let logp = model.target_log_probs(&batch, lora, None)?.detach();
        total -= logp.sum_all()?.to_scalar::<f32>()? as f64;
        count += batch.num_targets();
    }
    if count == 0 {
        return Err(TrainError::Config("no examples to evaluate".into()));
    }
    Ok((total / count as f64) as f32)
}

/// AdamW (Loshchilov & Hutter) with bias correction, as torch implements it; written here rather
/// than taken from candle-nn so that clipping sees the global norm first.
#[derive(Debug)]
struct AdamW {
    vars: Vec<(Var, Tensor, Tensor)>,
    t: i32,
    weight_decay: f64,
}

impl AdamW {
    const BETA1: f64 = 0.9;
    const BETA2: f64 = 0.999;
    const EPS: f64 = 1e-8;

    fn new(vars: &[Var], weight_decay: f64) -> Result<Self> {
        let vars = vars
            .iter()
            .map(|v| Ok((v.clone(), v.zeros_like()?, v.zeros_like()?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { vars, t: 0, weight_decay })
    }

    /// One update; returns the global gradient norm before clipping.
    fn step(
        &mut self,
        grads: &candle_core::backprop::GradStore,
        lr: f64,
        clip: f64,
    ) -> Result<f32> {
        let mut sq = 0f64;
        for (v, _, _) in &self.vars {
            if let Some(g) = grads.get(v.as_tensor()) {
                sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        let norm = sq.sqrt();
        let factor = if clip > 0.0 && norm > clip { clip / norm } else { 1.0 };
        self.t += 1;
        let bc1 = 1.0 - Self::BETA1.powi(self.t);
        let bc2 = 1.0 - Self::BETA2.powi(self.t);
        for (v, m, s) in &mut self.vars {
            let Some(g) = grads.get(v.as_tensor()) else { continue };
            let g = (g * factor)?;
            *m = ((&*m * Self::BETA1)? + (&g * (1.0 - Self::BETA1))?)?;
            *s = ((&*s * Self::BETA2)? + (g.sqr()? * (1.0 - Self::BETA2))?)?;
            let update = ((&*m / bc1)? / ((&*s / bc2)?.sqrt()? + Self::EPS)?)?;
            let decayed = (v.as_tensor() * (1.0 - lr * self.weight_decay))?;
            v.set(&(decayed - (update * lr)?)?)?;
        }
        Ok(norm as f32)
    }
}
