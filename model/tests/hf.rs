//! Loading Hugging Face directories (tiny synthetic models written here), and their errors.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use lorad_model::{
    Arch, ChatMessage, LoadOptions, ModelConfig, ModelError, RopeScaling, load_model, read_config,
};
use serde_json::json;
use sha2::{Digest, Sha256};

const TOKENIZER_JSON: &str = r#"{
  "version": "1.0", "truncation": null, "padding": null,
  "added_tokens": [
    {"id": 0, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 1, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
  ],
  "normalizer": null,
  "pre_tokenizer": {"type": "WhitespaceSplit"},
  "post_processor": {
    "type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
    "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
    "special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]}}
  },
  "decoder": null,
  "model": {"type": "WordLevel", "vocab": {"<s>": 0, "</s>": 1, "<unk>": 2, "hello": 3, "world": 4}, "unk_token": "<unk>"}
}"#;

/// Deterministic, distinct-per-tensor values.
fn det(shape: &[usize], seed: f64) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::arange(0f32, n as f32, &Device::Cpu)
        .and_then(|t| t.affine(0.37, seed))
        .and_then(|t| t.sin())
        .and_then(|t| t.reshape(shape))
        .unwrap()
}

struct Tiny {
    model_type: &'static str,
    tie: bool,
}

const H: usize = 64;
const HEADS: usize = 4;
const KV: usize = 2;
const HD: usize = 16;
const FF: usize = 96;
const VOCAB: usize = 32;
const LAYERS: usize = 2;

impl Tiny {
    fn config(&self) -> serde_json::Value {
        json!({
            "architectures": ["X"], "model_type": self.model_type, "hidden_size": H,
            "intermediate_size": FF, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
            "num_key_value_heads": KV, "vocab_size": VOCAB, "rms_norm_eps": 1e-6, "rope_theta": 50000.0,
            "max_position_embeddings": 512, "tie_word_embeddings": self.tie, "hidden_act": "silu",
            "head_dim": null, "rope_scaling": null, "torch_dtype": "float32"
        })
    }

    fn tensors(&self) -> BTreeMap<String, Tensor> {
        let mut t = BTreeMap::new();
        let mut seed = 0.0;
        let mut add = |name: String, shape: &[usize]| {
            seed += 1.0;
            t.insert(name, det(shape, seed));
        };
        add("model.embed_tokens.weight".into(), &[VOCAB, H]);
        add("model.norm.weight".into(), &[H]);
        // Present in some tied checkpoints anyway; must be ignored when tied.
        add("lm_head.weight".into(), &[VOCAB, H]);
        for i in 0..LAYERS {
            let l = format!("model.layers.{i}");
            add(format!("{l}.input_layernorm.weight"), &[H]);
            add(format!("{l}.post_attention_layernorm.weight"), &[H]);
            add(format!("{l}.self_attn.q_proj.weight"), &[HEADS * HD, H]);
            add(format!("{l}.self_attn.k_proj.weight"), &[KV * HD, H]);
            add(format!("{l}.self_attn.v_proj.weight"), &[KV * HD, H]);
            add(format!("{l}.self_attn.o_proj.weight"), &[H, HEADS * HD]);
            add(format!("{l}.mlp.gate_proj.weight"), &[FF, H]);
            add(format!("{l}.mlp.up_proj.weight"), &[FF, H]);
            add(format!("{l}.mlp.down_proj.weight"), &[H, FF]);
            if self.model_type == "qwen2" {
                add(format!("{l}.self_attn.q_proj.bias"), &[HEADS * HD]);
                add(format!("{l}.self_attn.k_proj.bias"), &[KV * HD]);
                add(format!("{l}.self_attn.v_proj.bias"), &[KV * HD]);
            }
            if self.model_type == "qwen3" {
                add(format!("{l}.self_attn.q_norm.weight"), &[HD]);
                add(format!("{l}.self_attn.k_norm.weight"), &[HD]);
            }
        }
        t
    }

    /// Writes the model into `dir`, sharded over two files (with an index) when `sharded`.
    fn write(&self, dir: &Path, tensors: &BTreeMap<String, Tensor>, sharded: bool) {
        std::fs::write(dir.join("config.json"), self.config().to_string()).unwrap();
        std::fs::write(dir.join("tokenizer.json"), TOKENIZER_JSON).unwrap();
        if !sharded {
            let all: HashMap<&String, Tensor> =
                tensors.iter().map(|(n, t)| (n, t.clone())).collect();
            candle_core::safetensors::save(&all, dir.join("model.safetensors")).unwrap();
            return;
        }
        let files = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];
        let shard = |name: &str| {
            usize::from(
                name.contains("layers.1.")
                    || name.starts_with("lm_head")
                    || name == "model.norm.weight",
            )
        };
        let mut weight_map = serde_json::Map::new();
        for (i, file) in files.iter().enumerate() {
            let part: HashMap<&String, Tensor> = tensors
                .iter()
                .filter(|(n, _)| shard(n) == i)
                .map(|(n, t)| (n, t.clone()))
                .collect();
            candle_core::safetensors::save(&part, dir.join(file)).unwrap();
            for name in part.keys() {
                weight_map.insert((*name).clone(), json!(file));
            }
        }
        let index = json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
        std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    }
}

fn model_dir(parent: &Path, name: &str) -> std::path::PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir(&dir).unwrap();
    dir
}

#[test]
fn sharded_llama() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(tmp.path(), "tiny-llama");
    let tiny = Tiny { model_type: "llama", tie: false };
    let tensors = tiny.tensors();
    tiny.write(&dir, &tensors, true);

    let m = load_model(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(m.name, "tiny-llama");
    let c = &m.config;
    assert_eq!(
        (c.arch, c.hidden_size, c.num_layers, c.num_heads, c.num_kv_heads),
        (Arch::Llama, H, LAYERS, HEADS, KV)
    );
    assert_eq!((c.head_dim, c.intermediate_size, c.vocab_size), (HD, FF, VOCAB));
    assert_eq!((c.rope_theta, c.rms_norm_eps, c.max_position_embeddings), (50000.0, 1e-6, 512));
    assert!(!c.tie_word_embeddings && !c.attention_bias);
    assert_eq!(&read_config(&dir).unwrap(), c);

    // Every tensor, and only those, with the values written.
    assert_eq!(m.weights.len(), tensors.len());
    for (name, want) in &tensors {
        let got = &m.weights[name];
        assert_eq!(got.dims(), want.dims(), "{name}");
        assert_eq!(
            got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            want.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            "{name}"
        );
    }
    // The hash covers the shard files' bytes in file-name order.
    let mut h = Sha256::new();
    for f in ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"] {
        h.update(std::fs::read(dir.join(f)).unwrap());
    }
    assert_eq!(m.base_hash, hex::encode(h.finalize()));
    assert_eq!(lorad_model::base_hash(&dir).unwrap(), m.base_hash, "hash without loading");

    // tokenizer.json's post-processor adds <s>, so BOS is added (once).
    assert_eq!(m.tokenizer.encode("hello world").unwrap(), [0, 3, 4]);
    assert_eq!(m.tokenizer.encode("<s> hello").unwrap(), [0, 3]);
    assert_eq!(m.tokenizer.bos_token_id(), Some(0));
    // No template shipped: ChatML.
    let out = m.chat_template.render(&[ChatMessage::new("user", "hello")], true).unwrap();
    assert_eq!(out, "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n");

    // Half precision on request.
    let half = load_model(&dir, &LoadOptions { dtype: DType::F16, device: Device::Cpu }).unwrap();
    assert!(half.weights.values().all(|t| t.dtype() == DType::F16));
}

/// Qwen3: per-head q/k norm weights, read and checked; a checkpoint without them fails naming
/// the missing tensor.
#[test]
fn qwen3_with_head_norms() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(tmp.path(), "tiny-qwen3");
    let tiny = Tiny { model_type: "qwen3", tie: false };
    let mut tensors = tiny.tensors();
    tiny.write(&dir, &tensors, true);
    let m = load_model(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(m.config.arch, Arch::Qwen3);
    assert!(m.config.qk_norm() && !m.config.attention_bias);
    assert_eq!(m.weights.len(), tensors.len());
    assert_eq!(
        m.weights["model.layers.1.self_attn.k_norm.weight"].to_vec1::<f32>().unwrap(),
        tensors["model.layers.1.self_attn.k_norm.weight"].to_vec1::<f32>().unwrap()
    );
    let dir = model_dir(tmp.path(), "tiny-qwen3-no-norm");
    tensors.remove("model.layers.0.self_attn.q_norm.weight");
    tiny.write(&dir, &tensors, false);
    let err = load_model(&dir, &LoadOptions::default()).unwrap_err().to_string();
    assert!(err.contains("model.layers.0.self_attn.q_norm.weight"), "{err}");
}

#[test]
fn qwen2_with_biases_tied() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(tmp.path(), "tiny-qwen");
    let tiny = Tiny { model_type: "qwen2", tie: true };
    let tensors = tiny.tensors();
    tiny.write(&dir, &tensors, false);
    std::fs::write(
        dir.join("tokenizer_config.json"),
        json!({"add_bos_token": false, "eos_token": "</s>", "bos_token": {"content": "<s>"},
               "chat_template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{{ eos_token }}{% endfor %}"})
        .to_string(),
    )
    .unwrap();
    std::fs::write(dir.join("generation_config.json"), json!({"eos_token_id": [4, 1]}).to_string())
        .unwrap();

    let m = load_model(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(m.config.arch, Arch::Qwen2);
    assert!(m.config.attention_bias && m.config.tie_word_embeddings);
    assert!(!m.weights.contains_key("lm_head.weight"), "tied: lm_head dropped");
    assert_eq!(m.weights.len(), tensors.len() - 1);
    let bias = &m.weights["model.layers.1.self_attn.k_proj.bias"];
    assert_eq!(bias.dims(), [KV * HD]);
    assert_eq!(
        bias.to_vec1::<f32>().unwrap(),
        tensors["model.layers.1.self_attn.k_proj.bias"].to_vec1::<f32>().unwrap()
    );
    let mut h = Sha256::new();
    h.update(std::fs::read(dir.join("model.safetensors")).unwrap());
    assert_eq!(m.base_hash, hex::encode(h.finalize()));

    // add_bos_token = false wins over the post-processor; EOS: tokenizer_config's, then generation_config's.
    assert_eq!(m.tokenizer.encode("hello world").unwrap(), [3, 4]);
    assert_eq!(m.tokenizer.eos_token_ids(), [1, 4]);
    let out = m.chat_template.render(&[ChatMessage::new("user", "hi")], false).unwrap();
    assert_eq!(out, "<s>[user] hi</s>");

    // chat_template.jinja takes precedence over tokenizer_config.json.
    std::fs::write(
        dir.join("chat_template.jinja"),
        "{% for m in messages %}{{ m.content }}|{% endfor %}",
    )
    .unwrap();
    let m = load_model(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(m.chat_template.render(&[ChatMessage::new("user", "hi")], false).unwrap(), "hi|");
}

fn expect_err(dir: &Path) -> String {
    match load_model(dir, &LoadOptions::default()) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_tensor_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(tmp.path(), "m");
    let tiny = Tiny { model_type: "qwen2", tie: false };
    let mut tensors = tiny.tensors();
    tensors.remove("model.layers.1.self_attn.v_proj.bias");
    tiny.write(&dir, &tensors, true);
    let e = expect_err(&dir);
    assert!(e.contains("missing tensor `model.layers.1.self_attn.v_proj.bias`"), "{e}");
}

#[test]
fn wrong_shape_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(tmp.path(), "m");
    let tiny = Tiny { model_type: "llama", tie: false };
    let mut tensors = tiny.tensors();
    tensors.insert("model.layers.0.self_attn.k_proj.weight".into(), det(&[HEADS * HD, H], 9.0));
    tiny.write(&dir, &tensors, true);
    let e = expect_err(&dir);
    assert!(
        e.contains(
            "`model.layers.0.self_attn.k_proj.weight` has shape [64, 64], expected [32, 64]"
        ),
        "{e}"
    );
    assert!(e.contains("model-00001-of-00002.safetensors"), "{e}");
}

#[test]
fn config_errors_name_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(tmp.path(), "m");
    let tiny = Tiny { model_type: "llama", tie: false };
    tiny.write(&dir, &tiny.tensors(), false);
    let base = tiny.config();
    let cases: [(&str, serde_json::Value, &str); 8] = [
        ("model_type", json!("gpt2"), "field `model_type`: unsupported model type `gpt2`"),
        ("hidden_size", serde_json::Value::Null, "field `hidden_size`: missing"),
        ("num_attention_heads", json!("four"), "field `num_attention_heads`"),
        ("hidden_act", json!("gelu"), "field `hidden_act`"),
        (
            "rope_scaling",
            json!({"rope_type": "dynamic", "factor": 4.0}),
            "field `rope_scaling.rope_type`: unsupported RoPE scaling `dynamic`",
        ),
        ("num_key_value_heads", json!(3), "num_kv_heads"),
        ("partial_rotary_factor", json!(1.5), "field `partial_rotary_factor`: 1.5 is not in"),
        ("partial_rotary_factor", json!(0.1875), "`partial_rotary_factor`: rotates 3 of 16"),
    ];
    for (field, value, want) in cases {
        let mut cfg = base.clone();
        cfg[field] = value;
        std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
        let e = read_config(&dir).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(want), "{field}: {msg}");
        if !matches!(e, ModelError::InvalidConfig { .. }) {
            assert!(msg.contains("config.json"), "{field}: {msg}");
        }
    }
    // Phi-4 mini's partial rotary embedding: transformers' `int(head_dim · factor)`.
    let mut cfg = base.clone();
    cfg["partial_rotary_factor"] = json!(0.75);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    assert_eq!(read_config(&dir).unwrap().rotary_dim(), 12);
    // LLaMA-3 scaling is accepted and parsed.
    let mut cfg = base.clone();
    cfg["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let c = read_config(&dir).unwrap();
    assert!(matches!(c.rope_scaling, Some(RopeScaling::Llama3 { factor: 8.0, .. })), "{c:?}");
    assert_eq!(c.max_position_embeddings, 512, "LLaMA 3 checkpoints already name their context");
    // A broken JSON file is reported with its path.
    std::fs::write(dir.join("config.json"), "{ nope").unwrap();
    let e = read_config(&dir).unwrap_err().to_string();
    assert!(e.contains("config.json") && e.contains("invalid JSON"), "{e}");
}

/// `config.json` as `edit` leaves the tiny model's, parsed.
fn config_with(model_type: &'static str, edit: impl FnOnce(&mut serde_json::Value)) -> ModelConfig {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(tmp.path(), "m");
    let mut cfg = Tiny { model_type, tie: true }.config();
    edit(&mut cfg);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    read_config(&dir).unwrap()
}

#[test]
fn rope_scaling_kinds_and_the_context_they_serve() {
    // Qwen's documented long-context switch: YaRN over the 512 pre-trained positions, factor 4.
    let c = config_with("qwen2", |c| {
        c["rope_scaling"] = json!({"rope_type": "yarn", "factor": 4.0,
            "original_max_position_embeddings": 512});
    });
    let Some(RopeScaling::Yarn {
        factor, original_max_position_embeddings, attention_factor, ..
    }) = c.rope_scaling
    else {
        panic!("{c:?}")
    };
    assert_eq!((factor, original_max_position_embeddings), (4.0, 512));
    assert!((attention_factor - (0.1 * 4f64.ln() + 1.0)).abs() < 1e-12);
    assert_eq!(c.max_position_embeddings, 2048, "vLLM's derivation: 512 × 4");
    // transformers 5 spelling, an explicit attention factor, the pre-trained context defaulting
    // to max_position_embeddings.
    let c = config_with("qwen3", |c| {
        c["rope_parameters"] = json!({"rope_type": "yarn", "factor": 2.0,
            "attention_factor": 1.5, "rope_theta": 1e6});
        c["rope_theta"] = serde_json::Value::Null;
    });
    assert!(matches!(
        c.rope_scaling,
        Some(RopeScaling::Yarn {
            attention_factor: 1.5,
            original_max_position_embeddings: 512,
            ..
        })
    ));
    assert_eq!(
        (c.max_position_embeddings, c.rope_theta, c.rope_attention_factor()),
        (1024, 1e6, 1.5)
    );
    // Linear position interpolation (the `type` spelling of older configs).
    let c = config_with("llama", |c| c["rope_scaling"] = json!({"type": "linear", "factor": 4.0}));
    assert_eq!(c.rope_scaling, Some(RopeScaling::Linear { factor: 4.0 }));
    assert_eq!(c.max_position_embeddings, 2048);
}

/// Phi-3's LongRoPE (the 128k variants, Phi-3.5 mini): short and long divisors per frequency,
/// the pre-trained length at the top level, the attention factor transformers derives from the
/// two lengths when the config gives none; the whole stretched context served.
#[test]
fn longrope_is_read_as_transformers_reads_it() {
    let half = HD / 2;
    let short: Vec<f64> = (0..half).map(|i| 1.0 + i as f64 * 0.01).collect();
    let long: Vec<f64> = (0..half).map(|i| 1.0 + i as f64 * 0.5).collect();
    for kind in ["longrope", "su"] {
        let c = config_with("phi3", |c| {
            c["max_position_embeddings"] = json!(131072);
            c["original_max_position_embeddings"] = json!(4096);
            c["rope_scaling"] =
                json!({"type": kind, "short_factor": short.clone(), "long_factor": long.clone()});
        });
        let Some(RopeScaling::LongRope {
            short_factor,
            long_factor,
            original_max_position_embeddings,
            attention_factor,
        }) = &c.rope_scaling
        else {
            panic!("{kind}: {c:?}")
        };
        assert_eq!(short_factor.len(), half);
        assert_eq!((long_factor[1], *original_max_position_embeddings), (1.5, 4096));
        // sqrt(1 + ln(131072 / 4096) / ln(4096)) = sqrt(1 + 5 ln 2 / (12 ln 2)) = sqrt(17 / 12).
        assert!((attention_factor - (17.0f64 / 12.0).sqrt()).abs() < 1e-12, "{attention_factor}");
        assert_eq!(c.max_position_embeddings, 131072);
        assert_eq!(c.long_rope_after(), Some(4096));
    }
    // An explicit attention factor wins; without a top-level length, the scaling's own.
    let c = config_with("phi3", |c| {
        c["rope_scaling"] = json!({"rope_type": "longrope", "short_factor": short.clone(),
            "long_factor": long.clone(), "attention_factor": 1.25,
            "original_max_position_embeddings": 256});
    });
    assert!(matches!(
        c.rope_scaling,
        Some(RopeScaling::LongRope {
            attention_factor: 1.25,
            original_max_position_embeddings: 256,
            ..
        })
    ));
    // Factors that do not fit the head, or are missing, are named.
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(tmp.path(), "m");
    for (scaling, want) in [
        (
            json!({"type": "longrope", "short_factor": short.clone(), "long_factor": [1.0]}),
            "1 long_factor for a head of",
        ),
        (json!({"type": "longrope", "short_factor": short.clone()}), "rope_scaling.long_factor"),
        (
            json!({"type": "longrope", "short_factor": short.clone(), "long_factor": ["x"]}),
            "is not a number",
        ),
    ] {
        let mut cfg = Tiny { model_type: "phi3", tie: true }.config();
        cfg["rope_scaling"] = scaling;
        std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
        let e = read_config(&dir).unwrap_err().to_string();
        assert!(e.contains(want) && e.contains("rope_scaling"), "{e}");
    }
}

#[test]
fn sliding_windows_are_read_per_layer() {
    let window = |c: &ModelConfig| (0..LAYERS).map(|l| c.attention_window(l)).collect::<Vec<_>>();
    // Mistral 7B v0.1: a 4,096-token window in every layer, under a 32,768-token context that
    // stays served in full.
    let c = config_with("mistral", |c| {
        c["max_position_embeddings"] = json!(32768);
        c["sliding_window"] = json!(4096);
    });
    assert_eq!(c.max_position_embeddings, 32768);
    assert_eq!(window(&c), vec![Some(4096); LAYERS]);
    // v0.2 and later: no window.
    let c = config_with("mistral", |c| {
        c["max_position_embeddings"] = json!(32768);
        c["sliding_window"] = serde_json::Value::Null;
    });
    assert_eq!((c.max_position_embeddings, c.sliding_window), (32768, None));
    // Qwen writes a window it does not use unless `use_sliding_window` is set; then the layers
    // from `max_window_layers` on use it.
    for (used, max_window_layers, want) in [
        (false, 0, vec![None, None]),
        (true, LAYERS, vec![None, None]),
        (true, 1, vec![None, Some(4096)]),
        (true, 0, vec![Some(4096), Some(4096)]),
    ] {
        let c = config_with("qwen2", |c| {
            c["sliding_window"] = json!(4096);
            c["use_sliding_window"] = json!(used);
            c["max_window_layers"] = json!(max_window_layers);
        });
        assert_eq!(window(&c), want, "use {used}, from layer {max_window_layers}");
    }
    // `layer_types` decides when present, and must name every layer.
    for (types, want) in [
        (vec!["sliding_attention", "full_attention"], vec![Some(4096), None]),
        (vec!["full_attention"; 2], vec![None, None]),
    ] {
        let c = config_with("llama", |c| {
            c["sliding_window"] = json!(4096);
            c["layer_types"] = json!(types);
        });
        assert_eq!(window(&c), want, "{types:?}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(tmp.path(), "m");
    let mut json = Tiny { model_type: "mistral", tie: true }.config();
    json["sliding_window"] = json!(16);
    json["layer_types"] = json!(["sliding_attention"]);
    std::fs::write(dir.join("config.json"), json.to_string()).unwrap();
    let e = read_config(&dir).unwrap_err().to_string();
    assert!(e.contains("layer_types") && e.contains("1 entries for 2 layers"), "{e}");
}

#[test]
fn missing_tokenizer_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(tmp.path(), "m");
    let tiny = Tiny { model_type: "mistral", tie: true };
    tiny.write(&dir, &tiny.tensors(), false);
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let e = expect_err(&dir);
    assert!(e.contains("tokenizer.json"), "{e}");
}

/// Added tokens that are not special (Qwen 2.5's `<tool_call>`) and tool-call markers are text a
/// grammar may produce whole; other special tokens stay out of reach.
#[test]
fn non_special_added_tokens_are_text_to_structured_output() {
    let tmp = tempfile::tempdir().unwrap();
    // `</tool_call>` is marked special, as some Hermes tokenizers do: lorad reads it as text.
    let added = r#"{"id": 5, "content": "<tool_call>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": false},
    {"id": 6, "content": "</tool_call>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 7, "content": "[ARGS]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 0, "content": "<s>""#;
    let vocab = r#""world": 4, "<tool_call>": 5, "</tool_call>": 6, "[ARGS]": 7}"#;
    let text = TOKENIZER_JSON.replacen(r#"{"id": 0, "content": "<s>""#, added, 1).replacen(
        r#""world": 4}"#,
        vocab,
        1,
    );
    std::fs::write(tmp.path().join("tokenizer.json"), text).unwrap();
    let tk = lorad_model::Tokenizer::from_hf_dir(tmp.path()).unwrap();
    let bytes = tk.text_token_bytes();
    assert_eq!(bytes.len(), 8);
    assert_eq!(bytes[0], None, "<s> is special");
    assert_eq!(bytes[1], None, "</s> is special");
    assert_eq!(bytes[3].as_deref(), Some(&b"hello"[..]));
    assert_eq!(bytes[5].as_deref(), Some(&b"<tool_call>"[..]), "a non-special added token");
    assert_eq!(bytes[6].as_deref(), Some(&b"</tool_call>"[..]), "a marker marked special");
    assert_eq!(bytes[7].as_deref(), Some(&b"[ARGS]"[..]), "Mistral's [ARGS], marked special");
    assert!(tk.decode(&[4, 7], true).unwrap().ends_with("[ARGS]"), "decoding keeps it");
    // Decoding keeps them, so what the grammar saw is what the answer's text holds.
    assert_eq!(tk.encode("<tool_call> hello </tool_call>").unwrap(), [0, 5, 3, 6]);
    let decoded = tk.decode(&[0, 5, 3, 6], true).unwrap();
    assert!(decoded.contains("<tool_call>") && decoded.contains("</tool_call>"), "{decoded}");
    assert_eq!(tk.decode(&[0, 3], true).unwrap(), "hello");
}
