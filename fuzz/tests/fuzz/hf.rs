//! Hugging Face model directories: `config.json`, `tokenizer.json` and `tokenizer_config.json`
//! (mutated as JSON trees, so they parse and reach the checks behind the parser) and
//! `model.safetensors` (mutated bytes), loaded every way the daemon loads a model.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use lorad_fuzz::{Campaign, FileSet, JsonMutator, Mutator, Outcome};
use lorad_model::testing::tiny::{FF, H, HD, HEADS, KV};
use lorad_model::{ChatMessage, LoadOptions, load_model, load_text, read_config};
use serde_json::{Value, json};

const VOCAB: usize = 5;
const FILES: [&str; 4] =
    ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"];

fn config() -> Value {
    json!({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H,
        "intermediate_size": FF, "num_hidden_layers": 2, "num_attention_heads": HEADS,
        "num_key_value_heads": KV, "head_dim": HD, "vocab_size": VOCAB, "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0, "max_position_embeddings": 128, "tie_word_embeddings": true,
        "rope_scaling": null, "bos_token_id": 0, "eos_token_id": 1})
}

fn tokenizer_json() -> Value {
    json!({"version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [
            {"id": 0, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 1, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null, "pre_tokenizer": {"type": "WhitespaceSplit"}, "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"<s>": 0, "</s>": 1, "<unk>": 2, "hello": 3, "world": 4},
            "unk_token": "<unk>"}})
}

fn tokenizer_config() -> Value {
    json!({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": true,
        "chat_template": "{% for m in messages %}{{ bos_token }}{{ m.role }}: {{ m.content }}{{ eos_token }}{% endfor %}"})
}

fn safetensors() -> Vec<u8> {
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut add = |name: String, shape: &[usize]| {
        let n: usize = shape.iter().product();
        let t = Tensor::arange(0f32, n as f32, &Device::Cpu)
            .and_then(|t| t.affine(0.37, tensors.len() as f64))
            .and_then(|t| t.sin())
            .and_then(|t| t.reshape(shape))
            .expect("seed tensor");
        tensors.insert(name, t);
    };
    add("model.embed_tokens.weight".into(), &[VOCAB, H]);
    add("model.norm.weight".into(), &[H]);
    for i in 0..2 {
        let l = format!("model.layers.{i}");
        for (name, shape) in [
            ("input_layernorm.weight", vec![H]),
            ("post_attention_layernorm.weight", vec![H]),
            ("self_attn.q_proj.weight", vec![HEADS * HD, H]),
            ("self_attn.k_proj.weight", vec![KV * HD, H]),
            ("self_attn.v_proj.weight", vec![KV * HD, H]),
            ("self_attn.o_proj.weight", vec![H, HEADS * HD]),
            ("mlp.gate_proj.weight", vec![FF, H]),
            ("mlp.up_proj.weight", vec![FF, H]),
            ("mlp.down_proj.weight", vec![H, FF]),
        ] {
            add(format!("{l}.{name}"), &shape);
        }
    }
    let tmp = tempfile::NamedTempFile::new().expect("temp file");
    candle_core::safetensors::save(&tensors, tmp.path()).expect("writing safetensors");
    std::fs::read(tmp.path()).expect("reading safetensors")
}

fn load(dir: &Path) -> Outcome {
    let err = |e: lorad_model::ModelError| e.to_string();
    let config = read_config(dir).map_err(err);
    if let Ok((tokenizer, template)) = load_text(dir) {
        let ids = tokenizer.encode("hello world <s> ?").map_err(err)?;
        tokenizer.decode(&ids, false).map_err(err)?;
        let _ = tokenizer.decode(&[0, 4, u32::MAX], true);
        let _ = template.render(&[ChatMessage::new("user", "hello")], true);
    }
    let model =
        load_model(dir, &LoadOptions { dtype: DType::F32, device: Device::Cpu }).map_err(err)?;
    assert_eq!(config.ok().as_ref(), Some(&model.config), "read_config disagrees with load_model");
    Ok(())
}

#[test]
fn hf_model_dir() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let contents = [
        config().to_string().into_bytes(),
        tokenizer_json().to_string().into_bytes(),
        tokenizer_config().to_string().into_bytes(),
        safetensors(),
    ];
    let files = FILES.iter().zip(contents).map(|(n, c)| ((*n).to_owned(), c)).collect();
    let set = FileSet::new(tmp.path(), files).expect("model dir");
    let dir = set.dir();
    set.write_with(0, set.original(0)).expect("seed dir");
    load(dir).expect("the seed model loads");
    let keys = [
        "model_type",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "vocab_size",
        "rope_scaling",
        "rope_type",
        "factor",
        "original_max_position_embeddings",
        "max_position_embeddings",
        "sliding_window",
        "layer_types",
        "partial_rotary_factor",
        "tie_word_embeddings",
        "eos_token_id",
        "added_tokens",
        "special",
        "content",
        "model",
        "vocab",
        "merges",
        "type",
        "pre_tokenizer",
        "decoder",
        "normalizer",
        "chat_template",
        "bos_token",
        "add_bos_token",
    ];
    for (k, file) in FILES.iter().enumerate().take(3) {
        let seed: Value = serde_json::from_slice(set.original(k)).expect("seed JSON");
        let campaign = Campaign::new(&format!("hf-{file}"), 200);
        let mut m = JsonMutator::new(campaign.seed(), keys);
        campaign.run(
            std::slice::from_ref(&seed),
            |s| m.mutate(s),
            |v| {
                set.write_with(k, v.to_string().as_bytes())?;
                load(dir)
            },
        );
    }
    let campaign = Campaign::new("hf-model.safetensors", 200);
    let mut m = Mutator::new(campaign.seed(), 1 << 20).with_dictionary([
        &br#""dtype":"#[..],
        br#""shape":["#,
        br#""data_offsets":["#,
        br#""F16""#,
    ]);
    let report = campaign.run(
        &[set.original(3).to_vec()],
        |s| m.mutate(s),
        |bytes| {
            set.write_with(3, bytes)?;
            load(dir)
        },
    );
    assert!(report.rejected > 0, "{report:?}");
}
