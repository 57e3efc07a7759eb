//! PEFT adapter uploads (`POST /v1/adapters`, `lorad adapter import`): `adapter_config.json`
//! and `adapter_model.safetensors` as sent, imported into a live store. Besides never
//! panicking, an import must never harm what the store already holds: after every input the
//! adapters imported so far still load, and the store reopens and verifies clean.

use std::path::Path;

use lorad_fuzz::{Campaign, JsonMutator, Mutator, Outcome};
use lorad_store::{
    BaseShape, RandomAdapterSpec, Store, StoreConfig, TargetModule, TensorDtype, random_adapter,
    write_peft_dir,
};
use serde_json::Value;

const BASE_HASH: &str = "ab00000000000000000000000000000000000000000000000000000000000000";

fn base() -> BaseShape {
    BaseShape { num_layers: 2, hidden_size: 32, q_dim: 32, kv_dim: 16, intermediate_size: 64 }
}

/// `(adapter_config.json, adapter_model.safetensors)` of a few real PEFT adapters.
fn seeds(dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let specs = [
        (4, vec![TargetModule::QProj, TargetModule::VProj], false, None, TensorDtype::F32),
        (8, TargetModule::ALL.to_vec(), true, None, TensorDtype::BF16),
        (
            16,
            vec![TargetModule::DownProj, TargetModule::KProj],
            false,
            Some(vec![1]),
            TensorDtype::F16,
        ),
    ];
    specs
        .into_iter()
        .enumerate()
        .map(|(i, (rank, targets, use_rslora, layers, dtype))| {
            let spec = RandomAdapterSpec {
                rank,
                alpha: 2.0 * rank as f64,
                targets,
                use_rslora,
                layers,
                seed: i as u64,
            };
            let adapter = random_adapter("seed", &base(), &spec);
            let out = dir.join(format!("seed{i}"));
            write_peft_dir(&out, &adapter, dtype).expect("writing a seed adapter");
            let read = |f: &str| std::fs::read(out.join(f)).expect("reading a seed adapter");
            (read("adapter_config.json"), read("adapter_model.safetensors"))
        })
        .collect()
}

/// The store under test and the adapters it acknowledged.
struct Live {
    store: Store,
    root: std::path::PathBuf,
    acknowledged: Vec<String>,
    count: usize,
}

impl Live {
    fn new(root: &Path) -> Self {
        let store = Store::open(root, StoreConfig::default()).expect("opening the store");
        Live { store, root: root.to_owned(), acknowledged: Vec::new(), count: 0 }
    }

    fn import(&mut self, config: &[u8], weights: &[u8]) -> Outcome {
        self.count += 1;
        let name = format!("fuzz-{}", self.count);
        let result = self.store.import_files(&name, config, weights, &base(), BASE_HASH);
        if self.count.is_multiple_of(50) {
            self.check_intact();
        }
        let info = result.map_err(|e| e.to_string())?;
        // What the store acknowledged must load back.
        let adapter = self
            .store
            .load(&info.name, &base())
            .map_err(|e| format!("acknowledged adapter `{}` does not load: {e}", info.name));
        assert!(adapter.is_ok(), "{adapter:?}");
        self.acknowledged.push(info.name);
        Ok(())
    }

    /// Every acknowledged adapter loads, and a reopened store verifies clean.
    fn check_intact(&mut self) {
        for name in &self.acknowledged {
            let loaded = self.store.load(name, &base());
            assert!(loaded.is_ok(), "adapter `{name}` lost after later imports: {loaded:?}");
        }
        let reopened = Store::open(&self.root, StoreConfig::default()).expect("reopening");
        let report = reopened.verify();
        assert!(report.failed.is_empty(), "store no longer verifies: {:?}", report.failed);
        for name in &self.acknowledged {
            assert!(reopened.contains(name), "`{name}` missing after reopening");
        }
        self.store = reopened;
    }
}

#[test]
fn peft_upload_weights() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pairs = seeds(tmp.path());
    let mut live = Live::new(&tmp.path().join("store"));
    // The input is the weights file; the config stays the seed's (the next target mutates it).
    let weights: Vec<Vec<u8>> = pairs.iter().map(|p| p.1.clone()).collect();
    let campaign = Campaign::new("peft-weights", 400);
    let mut m = Mutator::new(campaign.seed(), 1 << 20).with_dictionary([
        &br#""dtype":"#[..],
        br#""shape":["#,
        br#""data_offsets":["#,
        br#""BF16""#,
        br#""F64""#,
        br#""__metadata__""#,
        b"lora_A",
        b"lora_B",
        b"base_model.model.model.layers.",
    ]);
    let mut turn = 0;
    let report = campaign.run(
        &weights,
        |s| m.mutate(s),
        |w| {
            // Each input goes with the config of the seed it came from, in turn.
            let config = &pairs[turn % pairs.len()].0;
            turn += 1;
            live.import(config, w)
        },
    );
    live.check_intact();
    assert!(report.rejected > 0, "{report:?}");
}

#[test]
fn peft_upload_config() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pairs = seeds(tmp.path());
    let mut live = Live::new(&tmp.path().join("store"));
    let configs: Vec<Value> =
        pairs.iter().map(|p| serde_json::from_slice(&p.0).expect("seed config is JSON")).collect();
    let campaign = Campaign::new("peft-config", 400);
    let mut m = JsonMutator::new(
        campaign.seed(),
        [
            "r",
            "lora_alpha",
            "target_modules",
            "rank_pattern",
            "alpha_pattern",
            "layers_to_transform",
            "layers_pattern",
            "use_rslora",
            "use_dora",
            "fan_in_fan_out",
            "bias",
            "modules_to_save",
            "peft_type",
            "task_type",
            "lora_dropout",
            "init_lora_weights",
            "base_model_name_or_path",
            "q_proj",
            "v_proj",
            "model.layers.0.self_attn.q_proj",
        ],
    );
    let mut turn = 0;
    let report = campaign.run(
        &configs,
        |s| m.mutate(s),
        |c| {
            let weights = &pairs[turn % pairs.len()].1;
            turn += 1;
            live.import(c.to_string().as_bytes(), weights)
        },
    );
    live.check_intact();
    assert!(report.rejected > 0, "{report:?}");
}
