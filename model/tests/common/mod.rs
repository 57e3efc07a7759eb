//! Shared by the integration tests that need the real default model.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use lorad_model::{LoadOptions, LoadedModel, load_model, testing};

/// The default model, loaded once per test binary (`None`, after a SKIPPING line, when absent).
pub(crate) fn model() -> Option<&'static LoadedModel> {
    static MODEL: OnceLock<Option<(PathBuf, LoadedModel)>> = OnceLock::new();
    let loaded = MODEL.get_or_init(|| {
        let path = testing::test_model_path()?;
        let start = Instant::now();
        let model = load_model(&path, &LoadOptions::default())
            .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
        eprintln!("loaded {} in {:.3} s", path.display(), start.elapsed().as_secs_f64());
        Some((path, model))
    });
    loaded.as_ref().map(|(_, m)| m)
}
