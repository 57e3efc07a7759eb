//! LoRA parameters as candle tensors: PEFT-initialised for training, or loaded from an adapter.

use candle_core::{DType, Device, Tensor, Var};
use lorad_store::{Adapter, BaseShape, LoraWeights, PeftConfig, TargetModule};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Result, TrainError};

/// What to train: PEFT's `LoraConfig` fields that shape the parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSpec {
    /// LoRA rank `r`.
    pub rank: usize,
    /// `lora_alpha`.
    pub alpha: f64,
    /// Projections to adapt.
    pub targets: Vec<TargetModule>,
    /// rsLoRA scaling (`alpha / sqrt(r)`).
    pub use_rslora: bool,
}

impl Default for LoraSpec {
    /// Rank 8, alpha 16 on q/v: PEFT's most common setup.
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            targets: vec![TargetModule::QProj, TargetModule::VProj],
            use_rslora: false,
        }
    }
}

impl LoraSpec {
    /// `alpha / r`, or `alpha / sqrt(r)` with rsLoRA, computed as PEFT does.
    pub fn scale(&self) -> f32 {
        let r = self.rank as f64;
        (if self.use_rslora { self.alpha / r.sqrt() } else { self.alpha / r }) as f32
    }

    fn check(&self) -> Result<()> {
        if self.rank == 0 {
            return Err(TrainError::Config("LoRA rank must be at least 1".into()));
        }
        if self.targets.is_empty() {
            return Err(TrainError::Config("no target modules".into()));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(TrainError::Config(format!("lora_alpha {} is not positive", self.alpha)));
        }
        Ok(())
    }
}

/// One adapted projection.
#[derive(Debug, Clone)]
pub struct LoraPair {
    /// Decoder layer.
    pub layer: usize,
    /// Projection.
    pub module: TargetModule,
    /// `[r, in]`.
    pub a: Tensor,
    /// `[out, r]`.
    pub b: Tensor,
    /// Multiplier of `b @ a`.
    pub scale: f32,
}

/// Every LoRA pair of one adapter, addressable by `(layer, module)`.
#[derive(Debug)]
pub struct LoraSet {
    pairs: Vec<LoraPair>,
    index: Vec<[Option<usize>; 7]>,
    vars: Vec<Var>,
    base_model: Option<String>,
    spec: LoraSpec,
}

impl LoraSet {
    /// Fresh trainable parameters the way PEFT initialises them: `A` kaiming-uniform with
    /// `a = sqrt(5)` (bound `1 / sqrt(in)`), `B` zero, so the untrained adapter is exactly the base.
    /// Each tensor draws from its own seeded stream.
    pub fn init(base: &BaseShape, spec: &LoraSpec, seed: u64, device: &Device) -> Result<Self> {
        spec.check()?;
        let mut targets = spec.targets.clone();
        targets.sort();
        targets.dedup();
        let mut pairs = Vec::new();
        let mut vars = Vec::new();
        for layer in 0..base.num_layers {
            for &module in &targets {
                let (out_f, in_f) = base.shape(module);
                let bound = 1.0 / (in_f as f32).sqrt();
                let stream = seed ^ ((layer as u64) << 32) ^ ((module.index() as u64) << 48);
                let mut rng = ChaCha8Rng::seed_from_u64(stream);
                let a: Vec<f32> =
                    (0..spec.rank * in_f).map(|_| rng.random_range(-bound..bound)).collect();
                let a = Var::from_tensor(&Tensor::from_vec(a, (spec.rank, in_f), device)?)?;
                let b = Var::zeros((out_f, spec.rank), DType::F32, device)?;
                pairs.push(LoraPair {
                    layer,
                    module,
                    a: a.as_tensor().clone(),
                    b: b.as_tensor().clone(),
                    scale: spec.scale(),
                });
                vars.push(a);
                vars.push(b);
            }
        }
        Ok(Self::assemble(pairs, vars, base.num_layers, None, spec.clone()))
    }

    /// Frozen parameters of an existing adapter (for scoring and attribution).
    pub fn from_adapter(adapter: &Adapter, base: &BaseShape, device: &Device) -> Result<Self> {
        let mut pairs = Vec::with_capacity(adapter.weights.len());
        for w in &adapter.weights {
            let (out_f, in_f) = base.shape(w.module);
            if w.layer >= base.num_layers
                || w.a.len() != w.rank * in_f
                || w.b.len() != out_f * w.rank
            {
                return Err(TrainError::AdapterShape(format!(
                    "layer {} {}: rank {} with {} A and {} B values, base expects [{}, {in_f}] \
                     and [{out_f}, {}] in {} layers",
                    w.layer,
                    w.module,
                    w.rank,
                    w.a.len(),
                    w.b.len(),
                    w.rank,
                    w.rank,
                    base.num_layers
                )));
            }
            pairs.push(LoraPair {
                layer: w.layer,
                module: w.module,
                a: Tensor::from_slice(&w.a, (w.rank, in_f), device)?,
                b: Tensor::from_slice(&w.b, (out_f, w.rank), device)?,
                scale: w.scale,
            });
        }
        let spec = LoraSpec {
            rank: adapter.config.r,
            alpha: adapter.config.lora_alpha,
            targets: adapter.config.target_modules.clone(),
            use_rslora: adapter.config.use_rslora,
        };
        Ok(Self::assemble(
            pairs,
            Vec::new(),
            base.num_layers,
            adapter.config.base_model_name_or_path.clone(),
            spec,
        ))
    }

    fn assemble(
        pairs: Vec<LoraPair>,
        vars: Vec<Var>,
        num_layers: usize,
        base_model: Option<String>,
        spec: LoraSpec,
    ) -> Self {
        let mut index = vec![[None; 7]; num_layers];
        for (i, p) in pairs.iter().enumerate() {
            index[p.layer][p.module.index()] = Some(i);
        }
        Self { pairs, index, vars, base_model, spec }
    }

    /// Records the base model's name in the exported PEFT config.
    pub fn set_base_model(&mut self, name: impl Into<String>) {
        self.base_model = Some(name.into());
    }

    /// The pair adapting `module` of `layer`, if any.
    pub fn pair(&self, layer: usize, module: TargetModule) -> Option<&LoraPair> {
        self.index.get(layer)?[module.index()].map(|i| &self.pairs[i])
    }

    /// Every pair, ordered by `(layer, module)`.
    pub fn pairs(&self) -> &[LoraPair] {
        &self.pairs
    }

    /// The trainable variables (empty for a set loaded from an adapter).
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// The LoRA configuration.
    pub fn spec(&self) -> &LoraSpec {
        &self.spec
    }

    /// Exports the current values as a PEFT adapter named `name`.
    pub fn to_adapter(&self, name: &str) -> Result<Adapter> {
        let mut weights = Vec::with_capacity(self.pairs.len());
        for p in &self.pairs {
            weights.push(LoraWeights {
                layer: p.layer,
                module: p.module,
                rank: p.a.dims()[0],
                scale: p.scale,
                a: p.a.flatten_all()?.to_vec1::<f32>()?,
                b: p.b.flatten_all()?.to_vec1::<f32>()?,
            });
        }
        let mut targets: Vec<TargetModule> = self.pairs.iter().map(|p| p.module).collect();
        targets.sort();
        targets.dedup();
        let config = PeftConfig {
            r: self.spec.rank,
            lora_alpha: self.spec.alpha,
            target_modules: targets,
            use_rslora: self.spec.use_rslora,
            base_model_name_or_path: self.base_model.clone(),
            task_type: Some("CAUSAL_LM".into()),
            ..PeftConfig::default()
        };
        let mut adapter =
            Adapter { name: name.to_owned(), config, weights, content_hash: String::new() };
        adapter.content_hash = adapter.compute_content_hash();
        Ok(adapter)
    }
}
