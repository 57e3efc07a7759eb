//! Loading the default GGUF model: config, weights, q/k layout, chat template, identity.

mod common;

use std::collections::BTreeSet;

use candle_core::quantized::gguf_file::Content;
use candle_core::{DType, Device, Tensor};
use lorad_model::{
    Arch, ChatMessage, DEFAULT_MODEL_ID, LoadOptions, load_model, read_config, testing,
};

#[test]
fn config_values() {
    let Some(m) = common::model() else { return };
    let c = &m.config;
    assert_eq!(c.arch, Arch::Llama);
    assert_eq!(c.num_layers, 30);
    assert_eq!(c.hidden_size, 576);
    assert_eq!(c.num_heads, 9);
    assert_eq!(c.num_kv_heads, 3);
    assert_eq!(c.head_dim, 64);
    assert_eq!(c.intermediate_size, 1536);
    assert_eq!(c.vocab_size, 49152);
    assert_eq!(c.rope_theta, 100_000.0);
    assert_eq!(c.rms_norm_eps, 1e-5);
    assert_eq!(c.max_position_embeddings, 8192);
    assert!(c.tie_word_embeddings);
    assert!(!c.attention_bias);
    assert!(c.rope_scaling.is_none());
    assert_eq!(c.rope_inv_freq().len(), 32);
    // SmolLM2-135M's published parameter count, and what the loader actually loaded.
    assert_eq!(c.parameter_count(), 134_515_008);
    let loaded: usize = m.weights.values().map(|t| t.elem_count()).sum();
    assert_eq!(c.parameter_count(), loaded as u64);
    // The cheap metadata-only read agrees with the full load.
    let path = testing::test_model_path().unwrap();
    assert_eq!(&read_config(&path).unwrap(), c);
}

#[test]
fn identity() {
    let Some(m) = common::model() else { return };
    assert_eq!(m.name, DEFAULT_MODEL_ID);
    assert_eq!(m.base_hash, "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53");
}

#[test]
fn every_weight_with_its_shape() {
    let Some(m) = common::model() else { return };
    let mut expected = vec![
        ("model.embed_tokens.weight".to_owned(), vec![49152, 576]),
        ("model.norm.weight".to_owned(), vec![576]),
    ];
    for i in 0..30 {
        let l = format!("model.layers.{i}");
        expected.extend([
            (format!("{l}.input_layernorm.weight"), vec![576]),
            (format!("{l}.post_attention_layernorm.weight"), vec![576]),
            (format!("{l}.self_attn.q_proj.weight"), vec![576, 576]),
            (format!("{l}.self_attn.k_proj.weight"), vec![192, 576]),
            (format!("{l}.self_attn.v_proj.weight"), vec![192, 576]),
            (format!("{l}.self_attn.o_proj.weight"), vec![576, 576]),
            (format!("{l}.mlp.gate_proj.weight"), vec![1536, 576]),
            (format!("{l}.mlp.up_proj.weight"), vec![1536, 576]),
            (format!("{l}.mlp.down_proj.weight"), vec![576, 1536]),
        ]);
    }
    let names: BTreeSet<&str> = m.weights.keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, want, "tied model: no lm_head.weight");
    for (name, shape) in &expected {
        let t = &m.weights[name];
        assert_eq!(t.dims(), shape.as_slice(), "{name}");
        assert_eq!(t.dtype(), DType::F32, "{name}");
    }
}

#[test]
fn qk_unpermuted_to_hf_layout() {
    let Some(m) = common::model() else { return };
    let path = testing::test_model_path().unwrap();
    let mut file = std::fs::File::open(&path).unwrap();
    let content = Content::read(&mut file).unwrap();
    let mut raw = |name: &str| -> Tensor {
        content.tensor(&mut file, name, &Device::Cpu).unwrap().dequantize(&Device::Cpu).unwrap()
    };
    for layer in [0, 7, 29] {
        for (part, gguf, heads) in [("q_proj", "attn_q", 9), ("k_proj", "attn_k", 3)] {
            let loaded = m.weights[&format!("model.layers.{layer}.self_attn.{part}.weight")]
                .to_vec2::<f32>()
                .unwrap();
            let gguf = raw(&format!("blk.{layer}.{gguf}.weight")).to_vec2::<f32>().unwrap();
            assert_ne!(loaded, gguf, "layer {layer} {part} was not reordered");
            assert_eq!(
                testing::llama_cpp_permute_rows(&loaded, heads),
                gguf,
                "layer {layer} {part}"
            );
        }
        // Other tensors are taken as they are.
        let v = m.weights[&format!("model.layers.{layer}.self_attn.v_proj.weight")]
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(v, raw(&format!("blk.{layer}.attn_v.weight")).to_vec2::<f32>().unwrap());
    }
    let embed = m.weights["model.embed_tokens.weight"]
        .narrow(0, 1000, 4)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let raw_embed = raw("token_embd.weight").narrow(0, 1000, 4).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(embed, raw_embed);
}

#[test]
fn chat_template_renders_faithfully() {
    let Some(m) = common::model() else { return };
    let t = &m.chat_template;
    let user = [ChatMessage::new("user", "What is the capital of France?")];
    assert_eq!(
        t.render(&user, true).unwrap(),
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    );
    // An explicit system message replaces the default one; no generation prompt when not asked.
    let convo = [
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", "Hi"),
        ChatMessage::new("assistant", "Hello!"),
        ChatMessage::new("user", "Bye"),
    ];
    assert_eq!(
        t.render(&convo, false).unwrap(),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
         <|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
    );
}

#[test]
fn half_precision_load() {
    let Some(m) = common::model() else { return };
    let path = testing::test_model_path().unwrap();
    let opts = LoadOptions { dtype: DType::BF16, device: Device::Cpu };
    let half = load_model(&path, &opts).unwrap();
    assert_eq!(half.weights.len(), m.weights.len());
    assert!(half.weights.values().all(|t| t.dtype() == DType::BF16));
    let a = &half.weights["model.layers.3.self_attn.q_proj.weight"];
    let b = m.weights["model.layers.3.self_attn.q_proj.weight"].to_dtype(DType::BF16).unwrap();
    let diff =
        (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap()).unwrap().abs().unwrap();
    assert_eq!(diff.max_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
    // Integer dtypes are refused with a message naming the option.
    let err =
        load_model(&path, &LoadOptions { dtype: DType::U8, device: Device::Cpu }).unwrap_err();
    assert!(err.to_string().contains("dtype"), "{err}");
}

#[test]
fn not_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_model(dir.path(), &LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("not a model"), "{err}");
    let txt = dir.path().join("x.txt");
    std::fs::write(&txt, "hi").unwrap();
    assert!(load_model(&txt, &LoadOptions::default()).is_err());
    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, b"not a gguf file at all").unwrap();
    let err = read_config(&bad).unwrap_err();
    assert!(err.to_string().contains("bad.gguf"), "{err}");
}
