//! The served base's differentiable twin, which gradient attribution runs on.
//!
//! The twin computes in f32 (bf16 gradients are too coarse for stable scores). Over f32 weights it
//! shares the engine's tensors and costs nothing, so it is built at once. Over bf16 or f16 weights
//! it is a full f32 copy (four bytes a parameter: 32 GB for an 8B model), which a node without a
//! gradient index never needs: then it is built when an adapter with an index first answers.
//! `lorad serve` builds it at start when an index already exists, so on a GPU the copy is in
//! place before the KV cache is sized from the memory left.

use std::sync::{Arc, Mutex};

use candle_core::{DType, Device};
use lorad_engine::BaseWeights;
use lorad_model::ModelConfig;
use lorad_store::BaseShape;
use lorad_train::DiffLlama;

/// The twin, or what builds it.
#[derive(Debug)]
pub struct Twin {
    cfg: ModelConfig,
    device: Device,
    state: Mutex<State>,
}

#[derive(Debug)]
enum State {
    /// The base's weights (shared with the engine, so free to hold) until first use.
    Waiting(BaseWeights),
    Built(Arc<DiffLlama>),
}

impl Twin {
    /// A twin over the base `weights` (as the model loader returns them): built now when they
    /// are f32 or `now` asks for it, else on first `Twin::get`.
    pub fn new(
        cfg: &ModelConfig,
        weights: &std::collections::HashMap<String, candle_core::Tensor>,
        now: bool,
    ) -> Result<Self, String> {
        let base = BaseWeights::gather(cfg, weights).map_err(|e| e.to_string())?;
        let device = base.embed.device().clone();
        let state = if now || base.embed.dtype() == DType::F32 {
            State::Built(Arc::new(DiffLlama::from_base(cfg, base).map_err(|e| e.to_string())?))
        } else {
            State::Waiting(base)
        };
        Ok(Self { cfg: cfg.clone(), device, state: Mutex::new(state) })
    }

    /// A twin built already.
    pub fn built(model: Arc<DiffLlama>) -> Self {
        Self {
            cfg: model.config().clone(),
            device: model.device().clone(),
            state: Mutex::new(State::Built(model)),
        }
    }

    /// Whether the twin exists yet.
    pub fn is_built(&self) -> bool {
        matches!(*self.lock(), State::Built(_))
    }

    /// The twin, built now if it was waiting (callers wait behind the one building it).
    pub(crate) fn get(&self) -> Result<Arc<DiffLlama>, String> {
        let mut state = self.lock();
        if let State::Waiting(base) = &*state {
            let head =
                if base.lm_head.id() == base.embed.id() { 0 } else { base.lm_head.elem_count() };
            let proj: usize =
                base.layers.iter().flat_map(|l| l.proj.iter()).map(|t| t.elem_count()).sum();
            let params = base.embed.elem_count() + head + proj;
            tracing::info!(
                f32_mb = (params * 4) >> 20,
                "building the f32 twin of the base for gradient attribution (an adapter with a \
                 gradient index answered first); start with the index in place to reserve it up \
                 front"
            );
            let model = DiffLlama::from_base(&self.cfg, base.clone()).map_err(|e| e.to_string())?;
            *state = State::Built(Arc::new(model));
        }
        match &*state {
            State::Built(m) => Ok(m.clone()),
            State::Waiting(_) => Err("the attribution twin was not built".into()),
        }
    }

    /// The base's hyper-parameters.
    pub(crate) fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Adapter-facing projection shapes.
    pub(crate) fn base_shape(&self) -> BaseShape {
        lorad_engine::base_shape(&self.cfg)
    }

    /// Where the twin computes.
    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while building leaves `Waiting`, which the next caller retries.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use lorad_model::{LoadOptions, load_model, testing::test_model_path};

    use super::*;
    use crate::api::has_grad_index;

    #[test]
    fn an_f32_copy_waits_for_its_first_use_unless_asked_for_now() {
        let Some(path) = test_model_path() else { return };
        let opts = LoadOptions { dtype: DType::BF16, ..LoadOptions::default() };
        let m = load_model(&path, &opts).expect("load bf16");
        let lazy = Twin::new(&m.config, &m.weights, false).expect("twin");
        assert!(!lazy.is_built(), "a bf16 base's twin must not be copied before it is needed");
        assert_eq!(lazy.base_shape(), lorad_engine::base_shape(&m.config));
        let built = lazy.get().expect("build");
        assert!(lazy.is_built());
        assert!(Arc::ptr_eq(&built, &lazy.get().expect("again")), "built once");
        assert!(Twin::new(&m.config, &m.weights, true).expect("twin").is_built());
        // Over f32 weights the twin shares them, so it is made at once.
        let m = load_model(&path, &LoadOptions::default()).expect("load f32");
        assert!(Twin::new(&m.config, &m.weights, false).expect("twin").is_built());
    }

    #[test]
    fn grad_indexes_are_found_by_their_layout() {
        let root = tempfile::tempdir().expect("tempdir");
        assert!(!has_grad_index(&root.path().join("absent")));
        assert!(!has_grad_index(root.path()));
        // A hash directory with no Datanet under it, and a build in progress (hidden), do not
        // count.
        std::fs::create_dir_all(root.path().join("ab12")).expect("mkdir");
        std::fs::create_dir_all(root.path().join("cd34/.dn.tmp")).expect("mkdir");
        assert!(!has_grad_index(root.path()));
        std::fs::create_dir_all(root.path().join("cd34/dn")).expect("mkdir");
        assert!(has_grad_index(root.path()));
    }
}
