//! Every way a PEFT adapter can be refused, and the error naming what is at fault.

mod common;

use common::*;
use lorad_store::{StoreError, read_peft_dir};
use safetensors::Dtype;
use serde_json::{Value, json};

/// A valid small q/v adapter directory built from `config`, then read.
fn read_with_config(config: &Value) -> Result<lorad_store::Adapter, StoreError> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("adapter");
    write_raw(&dir, config, &tensors_of(&qv_adapter(&small(), 1)));
    read_peft_dir(&dir, "adapter", &small())
}

fn with(key: &str, value: Value) -> Value {
    let mut c = fixture_config();
    c[key] = value;
    c
}

#[test]
fn the_baseline_is_valid() {
    // Every refusal below differs from this accepted adapter in one respect only.
    read_with_config(&fixture_config()).unwrap();
}

#[test]
fn unsupported_fields_are_rejected_naming_the_field() {
    let cases: Vec<(&str, Value)> = vec![
        ("use_dora", json!(true)),
        ("modules_to_save", json!(["lm_head"])),
        ("bias", json!("all")),
        ("bias", json!("lora_only")),
        ("peft_type", json!("IA3")),
        ("layer_replication", json!([[0, 1], [0, 2]])),
        ("lora_bias", json!(true)),
        ("target_parameters", json!(["feed_forward.experts.down_proj"])),
        ("trainable_token_indices", json!([1, 2, 3])),
        ("megatron_config", json!({"tensor_model_parallel_size": 2})),
        ("use_qalora", json!(true)),
        ("alora_invocation_tokens", json!([128000, 9125])),
        ("arrow_config", json!({"top_k": 3})),
        ("use_bdlora", json!({"nblocks": 2})),
        ("velora_config", json!({"num_groups": 4})),
        ("monteclora_config", json!({"num_samples": 8})),
        ("kasa_config", json!({"beta": 0.1})),
        ("init_lora_weights", json!("pissa")),
        ("init_lora_weights", json!("pissa_niter_4")),
        ("init_lora_weights", json!("olora")),
        ("init_lora_weights", json!("corda")),
        ("init_lora_weights", json!("loftq")),
        ("init_lora_weights", json!("lora_ga")),
        ("init_lora_weights", json!("mica")),
        ("init_lora_weights", json!("something_new")),
        ("target_modules", json!(["q_proj", "v_proj", "lm_head"])),
        ("target_modules", json!(["q_proj", "v_proj", "embed_tokens"])),
        ("target_modules", json!(".*")),
        ("target_modules", json!(r"(?=q)q_proj")),
    ];
    for (key, value) in cases {
        let text = err_text(read_with_config(&with(key, value.clone())));
        assert_mentions(&text, &[&format!("`{key}`"), "adapter_config.json"]);
        assert!(text.contains("not supported"), "{key}={value}: {text}");
    }
    let text = err_text(read_with_config(&with("target_modules", json!(["q_proj", "lm_head"]))));
    assert_mentions(&text, &["lm_head"]);
}

#[test]
fn layers_pattern_must_fit_llama_and_needs_layers_to_transform() {
    let mut c = with("layers_to_transform", json!([0, 1]));
    c["layers_pattern"] = json!("layers");
    read_with_config(&c).unwrap();
    c["layers_pattern"] = json!(["h"]);
    assert_mentions(&err_text(read_with_config(&c)), &["`layers_pattern`", "model.layers"]);
    let c = with("layers_pattern", json!("layers"));
    assert_mentions(&err_text(read_with_config(&c)), &["`layers_pattern`", "layers_to_transform"]);
    let mut c = with("layers_to_transform", json!([0]));
    c["target_modules"] = json!(".*_proj");
    assert_mentions(&err_text(read_with_config(&c)), &["`layers_to_transform`", "regex"]);
}

#[test]
fn unknown_keys_accepted_only_at_default_values() {
    let mut c = fixture_config();
    for (k, v) in [
        ("future_flag", json!(false)),
        ("future_config", Value::Null),
        ("future_list", json!([])),
        ("future_map", json!({})),
        ("future_name", json!("")),
    ] {
        c[k] = v;
    }
    read_with_config(&c).unwrap();

    for (k, v) in [
        ("future_flag", json!(true)),
        ("future_config", json!({"on": true})),
        ("future_list", json!([1])),
        ("future_name", json!("x")),
        ("future_size", json!(0)),
    ] {
        let text = err_text(read_with_config(&with(k, v)));
        assert_mentions(&text, &[&format!("`{k}`"), "unknown config key"]);
    }
}

#[test]
fn keys_that_cannot_change_inference_accept_any_value() {
    let mut c = fixture_config();
    for (k, v) in [
        ("eva_config", json!({"rho": 2.0, "tau": 0.99})),
        ("corda_config", json!({"corda_method": "ipm"})),
        ("lora_ga_config", json!({"direction": "ArB2r"})),
        ("loftq_config", json!({"loftq_bits": 4})),
        ("megatron_core", json!("megatron.core")),
        ("qalora_group_size", json!(32)),
        ("lora_dropout", json!(0.1)),
        ("inference_mode", json!(false)),
        ("revision", json!("main")),
        ("peft_version", json!("0.18.0")),
        ("auto_mapping", json!({"base_model_class": "LlamaForCausalLM"})),
        ("ensure_weight_tying", json!(true)),
        ("runtime_config", json!({"ephemeral_gpu_offload": false})),
        ("init_lora_weights", json!("gaussian")),
        ("exclude_modules", json!(["k_proj"])),
    ] {
        c[k] = v;
    }
    read_with_config(&c).unwrap();
}

#[test]
fn invalid_config_values_name_the_field() {
    for (key, value) in [
        ("r", json!("8")),
        ("r", json!(0)),
        ("lora_alpha", json!("16")),
        ("use_rslora", json!(1)),
        ("rank_pattern", json!({"q_proj": -1})),
        ("alpha_pattern", json!([1])),
        ("rank_pattern", json!({"(?<=x)q": 4})),
        ("layers_to_transform", json!(["0"])),
        ("target_modules", json!(7)),
    ] {
        let text = err_text(read_with_config(&with(key, value)));
        assert_mentions(&text, &[&format!("`{key}`"), "adapter_config.json"]);
    }
    let text = err_text(read_with_config(&json!([1, 2])));
    assert_mentions(&text, &["adapter_config.json", "object"]);
}

#[test]
fn invalid_json_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    write_raw(&dir, &fixture_config(), &tensors_of(&qv_adapter(&small(), 1)));
    std::fs::write(dir.join("adapter_config.json"), b"{\"r\": 8,").unwrap();
    let text = err_text(read_peft_dir(&dir, "a", &small()));
    assert_mentions(&text, &["adapter_config.json", "invalid JSON"]);
}

/// Reads an adapter whose tensors are `tensors` with the fixture config (q/v, r=8).
fn read_tensors(tensors: &[RawTensor]) -> Result<lorad_store::Adapter, StoreError> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("adapter");
    write_raw(&dir, &fixture_config(), tensors);
    read_peft_dir(&dir, "adapter", &small())
}

const Q0A: &str = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
const V1B: &str = "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight";

#[test]
fn shape_mismatch_names_the_tensor_and_both_shapes() {
    let mut t = tensors_of(&qv_adapter(&small(), 1));
    let q0a = t.iter_mut().find(|x| x.0 == Q0A).unwrap();
    q0a.1 = vec![8, 63];
    q0a.2.truncate(8 * 63);
    let text = err_text(read_tensors(&t));
    assert_mentions(&text, &[Q0A, "[8, 63]", "[8, 64]", "adapter_model.safetensors"]);

    let mut t = tensors_of(&qv_adapter(&small(), 1));
    let v1b = t.iter_mut().find(|x| x.0 == V1B).unwrap();
    v1b.1 = vec![64, 8];
    v1b.2.resize(64 * 8, 0.01);
    let text = err_text(read_tensors(&t));
    assert_mentions(&text, &[V1B, "[64, 8]", "[32, 8]", "out_features=32"]);

    // A and B disagreeing on the rank.
    let mut t = tensors_of(&qv_adapter(&small(), 1));
    let v1b = t.iter_mut().find(|x| x.0 == V1B).unwrap();
    v1b.1 = vec![32, 4];
    v1b.2.truncate(32 * 4);
    assert_mentions(&err_text(read_tensors(&t)), &[V1B, "[32, 4]", "[32, 8]"]);

    // A 1-D tensor.
    let mut t = tensors_of(&qv_adapter(&small(), 1));
    let q0a = t.iter_mut().find(|x| x.0 == Q0A).unwrap();
    q0a.1 = vec![8 * 64];
    assert_mentions(&err_text(read_tensors(&t)), &[Q0A, "[512]"]);
}

#[test]
fn missing_half_of_a_pair_is_named() {
    let mut t = tensors_of(&qv_adapter(&small(), 1));
    t.retain(|x| x.0 != V1B);
    let text = err_text(read_tensors(&t));
    assert_mentions(&text, &[V1B, "layers.1.self_attn.v_proj.lora_A.weight"]);
    let mut t = tensors_of(&qv_adapter(&small(), 1));
    t.retain(|x| x.0 != Q0A);
    assert_mentions(&err_text(read_tensors(&t)), &[Q0A]);
}

#[test]
fn tensors_outside_the_model_or_the_config_are_refused() {
    let base = tensors_of(&qv_adapter(&small(), 1));
    let extra = |name: &str, shape: Vec<usize>| {
        let mut t = base.clone();
        let n = shape.iter().product();
        t.push((name.to_owned(), shape, vec![0.01; n]));
        t
    };
    let l2 = "base_model.model.model.layers.2.self_attn.q_proj.lora_A.weight";
    assert_mentions(&err_text(read_tensors(&extra(l2, vec![8, 64]))), &[l2, "layer 2", "2 layers"]);
    let head = "base_model.model.lm_head.weight";
    assert_mentions(
        &err_text(read_tensors(&extra(head, vec![4, 64]))),
        &[head, "unexpected tensor"],
    );
    let dora = "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector";
    assert_mentions(&err_text(read_tensors(&extra(dora, vec![64]))), &[dora, "use_dora"]);
    let bias = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias";
    assert_mentions(&err_text(read_tensors(&extra(bias, vec![64]))), &[bias, "lora_bias"]);
    // k_proj is not in target_modules ["q_proj", "v_proj"].
    let k = "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight";
    assert_mentions(&err_text(read_tensors(&extra(k, vec![8, 64]))), &[k, "target_modules"]);
    // The same key spelled with and without the adapter-name infix.
    let dup = Q0A.replace(".weight", ".default.weight");
    assert_mentions(&err_text(read_tensors(&extra(&dup, vec![8, 64]))), &[Q0A, &dup]);
}

#[test]
fn layers_to_transform_and_exclude_modules_are_honoured() {
    let tensors = tensors_of(&qv_adapter(&small(), 1));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    write_raw(&dir, &with("layers_to_transform", json!([0])), &tensors);
    let text = err_text(read_peft_dir(&dir, "a", &small()));
    assert_mentions(&text, &["layers.1.", "`layers_to_transform`"]);
    write_raw(&dir, &with("layers_to_transform", json!(1)), &tensors);
    assert_mentions(
        &err_text(read_peft_dir(&dir, "a", &small())),
        &["layers.0.", "layers_to_transform"],
    );
    write_raw(&dir, &with("exclude_modules", json!(["model.layers.1.self_attn.v_proj"])), &tensors);
    assert_mentions(
        &err_text(read_peft_dir(&dir, "a", &small())),
        &["layers.1.self_attn.v_proj.lora_", "`exclude_modules`"],
    );
    write_raw(&dir, &with("exclude_modules", json!(r".*\.0\..*")), &tensors);
    assert_mentions(
        &err_text(read_peft_dir(&dir, "a", &small())),
        &["layers.0.", "`exclude_modules`"],
    );
    // A regex target list that leaves out v_proj.
    write_raw(&dir, &with("target_modules", json!(r".*q_proj")), &tensors);
    assert_mentions(&err_text(read_peft_dir(&dir, "a", &small())), &["v_proj.lora_", "regex"]);
}

#[test]
fn bad_dtypes_and_values_are_refused() {
    let good = tensors_of(&qv_adapter(&small(), 1));
    let mut typed: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = good
        .iter()
        .map(|(n, s, v)| {
            (n.clone(), Dtype::F32, s.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect())
        })
        .collect();
    let q0a = typed.iter_mut().find(|x| x.0 == Q0A).unwrap();
    q0a.1 = Dtype::I32;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    write_raw_typed(&dir, &fixture_config(), &typed);
    assert_mentions(&err_text(read_peft_dir(&dir, "a", &small())), &[Q0A, "I32"]);

    let mut nan = good.clone();
    nan.iter_mut().find(|x| x.0 == V1B).unwrap().2[5] = f32::NAN;
    assert_mentions(&err_text(read_tensors(&nan)), &[V1B, "non-finite", "element 5"]);
}

#[test]
fn missing_files_pickle_and_corrupt_safetensors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pickle");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("adapter_config.json"), serde_json::to_vec(&fixture_config()).unwrap())
        .unwrap();
    std::fs::write(dir.join("adapter_model.bin"), b"PK\x03\x04 pickle").unwrap();
    let e = read_peft_dir(&dir, "p", &small()).unwrap_err();
    assert!(matches!(e, StoreError::PickleNotSupported { .. }), "{e:?}");
    assert_mentions(
        &e.to_string(),
        &["adapter_model.bin", "not supported", "adapter_model.safetensors"],
    );

    std::fs::remove_file(dir.join("adapter_model.bin")).unwrap();
    assert_mentions(
        &err_text(read_peft_dir(&dir, "p", &small())),
        &["missing adapter_model.safetensors"],
    );

    let dir = tmp.path().join("noconfig");
    write_raw(&dir, &fixture_config(), &tensors_of(&qv_adapter(&small(), 1)));
    std::fs::remove_file(dir.join("adapter_config.json")).unwrap();
    assert_mentions(
        &err_text(read_peft_dir(&dir, "p", &small())),
        &["missing adapter_config.json"],
    );

    let dir = tmp.path().join("truncated");
    write_raw(&dir, &fixture_config(), &tensors_of(&qv_adapter(&small(), 1)));
    let st = dir.join("adapter_model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() - 10]).unwrap();
    assert_mentions(
        &err_text(read_peft_dir(&dir, "p", &small())),
        &["adapter_model.safetensors", "invalid safetensors"],
    );

    let dir = tmp.path().join("empty");
    write_raw(&dir, &fixture_config(), &[]);
    assert_mentions(&err_text(read_peft_dir(&dir, "p", &small())), &["no LoRA tensors"]);
}

#[test]
fn zero_base_shape_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    write_raw(&dir, &fixture_config(), &tensors_of(&qv_adapter(&small(), 1)));
    let mut base = small();
    base.kv_dim = 0;
    assert_mentions(&err_text(read_peft_dir(&dir, "a", &base)), &["kv_dim"]);
}
