//! Loading small synthetic GGUF files written here (no downloaded model needed), and their errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use lorad_model::testing::tiny::{self, FF, H, HD, HEADS, KV, TOKENS};
use lorad_model::{Arch, LoadOptions, RopeScaling, load_model, read_config};
use sha2::{Digest, Sha256};

fn det(shape: &[usize], seed: f64) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::arange(0f32, n as f32, &Device::Cpu)
        .and_then(|t| t.affine(0.61, seed))
        .and_then(|t| t.cos())
        .and_then(|t| t.reshape(shape))
        .unwrap()
}

/// llama.cpp's `permute` as in convert_hf_to_gguf.py: `reshape(n, 2, hd/2, in).swapaxes(1, 2)`.
fn permute(w: &Tensor, n: usize) -> Tensor {
    let (rows, cols) = w.dims2().unwrap();
    w.reshape((n, 2, rows / n / 2, cols))
        .and_then(|t| t.transpose(1, 2))
        .and_then(|t| t.contiguous())
        .and_then(|t| t.reshape((rows, cols)))
        .unwrap()
}

struct Spec {
    meta: BTreeMap<String, Value>,
    /// HF name -> (GGUF name, HF-layout tensor).
    tensors: BTreeMap<String, (String, Tensor)>,
}

fn spec() -> Spec {
    let meta = tiny::metadata();

    let mut tensors = BTreeMap::new();
    let mut seed = 0.0;
    let mut add = |hf: String, gguf: String, shape: &[usize]| {
        seed += 1.0;
        tensors.insert(hf, (gguf, det(shape, seed)));
    };
    let v = TOKENS.len();
    add("model.embed_tokens.weight".into(), "token_embd.weight".into(), &[v, H]);
    add("model.norm.weight".into(), "output_norm.weight".into(), &[H]);
    for i in 0..2 {
        let (l, b) = (format!("model.layers.{i}"), format!("blk.{i}"));
        for (hf, gguf, shape) in [
            ("input_layernorm.weight", "attn_norm.weight", vec![H]),
            ("post_attention_layernorm.weight", "ffn_norm.weight", vec![H]),
            ("self_attn.q_proj.weight", "attn_q.weight", vec![HEADS * HD, H]),
            ("self_attn.k_proj.weight", "attn_k.weight", vec![KV * HD, H]),
            ("self_attn.v_proj.weight", "attn_v.weight", vec![KV * HD, H]),
            ("self_attn.o_proj.weight", "attn_output.weight", vec![H, HEADS * HD]),
            ("mlp.gate_proj.weight", "ffn_gate.weight", vec![FF, H]),
            ("mlp.up_proj.weight", "ffn_up.weight", vec![FF, H]),
            ("mlp.down_proj.weight", "ffn_down.weight", vec![H, FF]),
        ] {
            add(format!("{l}.{hf}"), format!("{b}.{gguf}"), &shape);
        }
    }
    Spec { meta, tensors }
}

impl Spec {
    /// Writes the GGUF with q/k permuted as llama.cpp's converter does (for llama only: it
    /// leaves Qwen's as they are).
    fn write(&self, path: &Path) {
        let llama = self.meta.get("general.architecture").and_then(|v| v.to_string().ok())
            == Some(&"llama".to_owned());
        let qtensors: Vec<(String, QTensor)> = self
            .tensors
            .iter()
            .map(|(hf, (gguf, t))| {
                let t = if llama && hf.ends_with("q_proj.weight") {
                    permute(t, HEADS)
                } else if llama && hf.ends_with("k_proj.weight") {
                    permute(t, KV)
                } else {
                    t.clone()
                };
                (gguf.clone(), QTensor::quantize(&t, GgmlDType::F32).unwrap())
            })
            .collect();
        let meta: Vec<(&str, &Value)> = self.meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let tensors: Vec<(&str, &QTensor)> =
            qtensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut file = std::fs::File::create(path).unwrap();
        gguf_file::write(&mut file, &meta, &tensors).unwrap();
    }
}

fn write_tmp(spec: &Spec, dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    spec.write(&path);
    path
}

#[test]
fn loads_and_unpermutes() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec();
    let path = write_tmp(&spec, tmp.path(), "tiny-model.gguf");
    let m = load_model(&path, &LoadOptions::default()).unwrap();
    assert_eq!(m.name, "tiny-model");
    assert_eq!(m.base_hash, hex::encode(Sha256::digest(std::fs::read(&path).unwrap())));
    assert_eq!(lorad_model::base_hash(&path).unwrap(), m.base_hash, "hash without loading");
    let c = &m.config;
    assert_eq!(
        (c.arch, c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads),
        (Arch::Llama, 2, H, HEADS, KV)
    );
    assert_eq!(
        (c.head_dim, c.intermediate_size, c.vocab_size, c.max_position_embeddings),
        (HD, FF, TOKENS.len(), 128)
    );
    assert_eq!((c.rms_norm_eps, c.rope_theta), (1e-6, 10000.0));
    assert!(c.tie_word_embeddings);
    assert_eq!(&read_config(&path).unwrap(), c);
    // Exactly the HF tensors, q/k back in HF row order.
    assert_eq!(m.weights.len(), spec.tensors.len());
    for (hf, (_, want)) in &spec.tensors {
        let got = m.weights[hf].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(got, want.flatten_all().unwrap().to_vec1::<f32>().unwrap(), "{hf}");
    }
    // Tokenizer and template come from the metadata.
    assert_eq!(m.tokenizer.encode("hi hi").unwrap(), [5, 7]);
    assert_eq!(m.tokenizer.encode("<|im_start|>hi").unwrap(), [1, 5]);
    assert_eq!(m.tokenizer.eos_token_ids(), [2, 0]);
    let msgs = [lorad_model::ChatMessage::new("user", "x")];
    assert_eq!(m.chat_template.render(&msgs, false).unwrap(), "<user>x");
}

/// A Qwen3 GGUF: `qwen3.*` metadata, per-head norms read as `self_attn.q_norm` / `k_norm`, q/k
/// rows kept as written (llama.cpp does not permute them for Qwen).
#[test]
fn qwen3_reads_head_norms() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = spec();
    spec.meta = std::mem::take(&mut spec.meta)
        .into_iter()
        .map(|(k, v)| (k.replacen("llama.", "qwen3.", 1), v))
        .collect();
    spec.meta.insert("general.architecture".into(), Value::String("qwen3".into()));
    for i in 0..2 {
        for (hf, gguf) in [("q_norm", "attn_q_norm"), ("k_norm", "attn_k_norm")] {
            spec.tensors.insert(
                format!("model.layers.{i}.self_attn.{hf}.weight"),
                (format!("blk.{i}.{gguf}.weight"), det(&[HD], 50.0 + i as f64)),
            );
        }
    }
    let path = write_tmp(&spec, tmp.path(), "tiny-qwen3.gguf");
    let m = load_model(&path, &LoadOptions::default()).unwrap();
    assert_eq!(m.config.arch, Arch::Qwen3);
    assert!(m.config.qk_norm());
    assert_eq!(m.weights.len(), spec.tensors.len());
    for (hf, (_, want)) in &spec.tensors {
        let got = m.weights[hf].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(got, want.flatten_all().unwrap().to_vec1::<f32>().unwrap(), "{hf}");
    }
}

#[test]
fn untied_output_becomes_lm_head() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = spec();
    let head = det(&[TOKENS.len(), H], 99.0);
    spec.tensors.insert("lm_head.weight".into(), ("output.weight".into(), head.clone()));
    let path = write_tmp(&spec, tmp.path(), "untied.gguf");
    let m = load_model(&path, &LoadOptions::default()).unwrap();
    assert!(!m.config.tie_word_embeddings);
    assert_eq!(
        m.weights["lm_head.weight"].to_vec2::<f32>().unwrap(),
        head.to_vec2::<f32>().unwrap()
    );
}

fn load_err(spec: &Spec) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_tmp(spec, tmp.path(), "bad.gguf");
    match load_model(&path, &LoadOptions::default()) {
        Ok(_) => panic!("loading should fail"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("bad.gguf"), "{msg}");
            msg
        }
    }
}

#[test]
fn errors_name_the_culprit() {
    let mut s = spec();
    s.meta.remove("llama.block_count");
    let e = load_err(&s);
    assert!(e.contains("lacks metadata key `llama.block_count`"), "{e}");

    let mut s = spec();
    s.meta.insert("general.architecture".into(), Value::String("gpt2".into()));
    let e = load_err(&s);
    assert!(e.contains("general.architecture `gpt2`"), "{e}");

    let mut s = spec();
    s.meta.insert("llama.attention.head_count".into(), Value::String("nine".into()));
    let e = load_err(&s);
    assert!(e.contains("`llama.attention.head_count`"), "{e}");

    let mut s = spec();
    s.tensors.remove("model.layers.1.mlp.up_proj.weight");
    let e = load_err(&s);
    assert!(e.contains("missing tensor `blk.1.ffn_up.weight`"), "{e}");

    let mut s = spec();
    s.tensors.insert(
        "model.layers.0.self_attn.v_proj.weight".into(),
        ("blk.0.attn_v.weight".into(), det(&[HEADS * HD, H], 5.0)),
    );
    let e = load_err(&s);
    assert!(e.contains("`blk.0.attn_v.weight` has shape [32, 32], expected [16, 32]"), "{e}");

    let mut s = spec();
    s.tensors.insert("rope".into(), ("rope_freqs.weight".into(), det(&[HD], 1.0)));
    let e = load_err(&s);
    assert!(e.contains("`rope_freqs.weight` has shape [8], expected [4]"), "{e}");

    let mut s = spec();
    let zero = Tensor::zeros(HD / 2, DType::F32, &Device::Cpu).unwrap();
    s.tensors.insert("rope".into(), ("rope_freqs.weight".into(), zero));
    let e = load_err(&s);
    assert!(e.contains("`rope_freqs.weight` holding the divisor 0"), "{e}");

    let mut s = spec();
    s.meta.insert("llama.rope.scaling.type".into(), Value::String("longrope".into()));
    let e = load_err(&s);
    assert!(e.contains("LongRoPE without both `rope_factors_short.weight` and"), "{e}");

    let mut s = spec();
    s.meta.insert("llama.rope.scaling.type".into(), Value::String("linear".into()));
    let e = load_err(&s);
    assert!(e.contains("`llama.rope.scaling.factor`: missing"), "{e}");

    let mut s = spec();
    s.meta.insert("tokenizer.ggml.model".into(), Value::String("bert".into()));
    let e = load_err(&s);
    assert!(e.contains("tokenizer.ggml.model `bert`"), "{e}");

    // A SentencePiece vocabulary needs its scores.
    let mut s = spec();
    s.meta.insert("tokenizer.ggml.model".into(), Value::String("llama".into()));
    let e = load_err(&s);
    assert!(e.contains("tokenizer.ggml.scores"), "{e}");
    s.meta.insert("tokenizer.ggml.scores".into(), Value::Array(vec![Value::F32(0.0); 3]));
    let e = load_err(&s);
    assert!(e.contains("`tokenizer.ggml.scores`: 3 entries for 8 tokens"), "{e}");

    let mut s = spec();
    s.meta.insert(
        "tokenizer.ggml.merges".into(),
        Value::Array(vec![Value::String("nospace".into())]),
    );
    let e = load_err(&s);
    assert!(e.contains("tokenizer.ggml.merges") && e.contains("nospace"), "{e}");

    // Corrupt counts fail by name, before anything is sized by them (a block count of 2^32
    // used to allocate a per-layer list of 13 GB and abort), and so does an alignment of 0,
    // which candle's reader divides by.
    let mut s = spec();
    s.meta.insert("llama.block_count".into(), Value::U32(u32::MAX));
    let e = load_err(&s);
    assert!(e.contains("`llama.block_count`: 4294967295 is larger than any model"), "{e}");
    let mut s = spec();
    s.meta.insert("llama.embedding_length".into(), Value::U64(1 << 40));
    let e = load_err(&s);
    assert!(e.contains("hidden_size"), "{e}");
    let mut s = spec();
    s.meta.insert("general.alignment".into(), Value::U32(0));
    let e = load_err(&s);
    assert!(e.contains("malformed GGUF"), "{e}");
}

/// Control tokens are skipped on output; user-defined ones are text (as llama.cpp renders them),
/// and so is a `<tool_call>` marked control, which lorad reads tool calls from.
#[test]
fn user_defined_tokens_and_tool_call_markers_are_text() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = spec();
    let mut tokens: Vec<&str> = TOKENS.to_vec();
    tokens.extend(["<tool_call>", "<think>"]);
    let strs = Value::Array(tokens.iter().map(|s| Value::String((*s).into())).collect());
    spec.meta.insert("tokenizer.ggml.tokens".into(), strs);
    let types = [3, 3, 3, 1, 1, 1, 1, 1, 3, 4].map(Value::I32).to_vec();
    spec.meta.insert("tokenizer.ggml.token_type".into(), Value::Array(types));
    let embed = spec.tensors.get_mut("model.embed_tokens.weight").unwrap();
    embed.1 = det(&[tokens.len(), H], 1.0);
    let path = write_tmp(&spec, tmp.path(), "tiny-markers.gguf");
    let tk = load_model(&path, &LoadOptions::default()).unwrap().tokenizer;
    assert_eq!(tk.encode("hi<tool_call><think>").unwrap(), [5, 8, 9], "whole tokens in input");
    assert_eq!(tk.decode(&[1, 5, 8, 9, 2], true).unwrap(), "hi<tool_call><think>");
    let bytes = tk.text_token_bytes();
    assert_eq!(bytes[1], None, "a control token is out of a grammar's reach");
    assert_eq!(bytes[8].as_deref(), Some(&b"<tool_call>"[..]));
    assert_eq!(bytes[9].as_deref(), Some(&b"<think>"[..]));
}

/// llama.cpp's converter stores LLaMA 3.1 scaling as one divisor per frequency
/// (`rope_freqs.weight`): 1 for short wavelengths, `factor` for long ones, and
/// `1 / ((1 - smooth) / factor + smooth)` between. The frequencies lorad derives from them must
/// be the ones it derives from the Hugging Face parameters.
#[test]
fn llama3_rope_freqs_match_the_hugging_face_scaling() {
    let (factor, low, high, old_ctx) = (8.0f64, 1.0f64, 4.0f64, 2048.0f64);
    let divisors: Vec<f32> = (0..HD / 2)
        .map(|i| {
            let freq = 1.0 / 10000f64.powf(2.0 * i as f64 / HD as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            if wavelen < old_ctx / high {
                1.0
            } else if wavelen > old_ctx / low {
                factor as f32
            } else {
                let smooth = (old_ctx / wavelen - low) / (high - low);
                (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
            }
        })
        .collect();
    // The tiny head spans all three regimes.
    assert!(divisors.contains(&1.0) && divisors.contains(&8.0));
    assert!(divisors.iter().any(|d| *d > 1.0 && *d < 8.0));
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec();
    let t = Tensor::new(divisors.as_slice(), &Device::Cpu).unwrap();
    s.tensors.insert("rope".into(), ("rope_freqs.weight".into(), t));
    let path = write_tmp(&s, tmp.path(), "llama31.gguf");
    let c = read_config(&path).unwrap();
    assert!(matches!(c.rope_scaling, Some(RopeScaling::Factors { .. })), "{c:?}");
    assert_eq!(c.max_position_embeddings, 128);
    let mut hf = c.clone();
    hf.rope_scaling = Some(RopeScaling::Llama3 {
        factor,
        low_freq_factor: low,
        high_freq_factor: high,
        original_max_position_embeddings: old_ctx as usize,
    });
    for (i, (g, h)) in c.rope_inv_freq().iter().zip(hf.rope_inv_freq()).enumerate() {
        assert!((g - h).abs() <= h * 2e-7, "frequency {i}: {g} from GGUF, {h} from HF");
    }
    // The whole model loads with it (the tensor is not mistaken for a weight).
    let m = load_model(&path, &LoadOptions::default()).unwrap();
    assert_eq!(m.config, c);
}

#[test]
fn yarn_linear_and_sliding_window_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec();
    s.meta.insert("llama.rope.scaling.type".into(), Value::String("yarn".into()));
    s.meta.insert("llama.rope.scaling.factor".into(), Value::F32(4.0));
    s.meta.insert("llama.rope.scaling.original_context_length".into(), Value::U32(64));
    let c = read_config(&write_tmp(&s, tmp.path(), "yarn.gguf")).unwrap();
    let Some(RopeScaling::Yarn {
        factor, original_max_position_embeddings, attention_factor, ..
    }) = c.rope_scaling
    else {
        panic!("{c:?}")
    };
    assert_eq!((factor, original_max_position_embeddings), (4.0, 64));
    // ggml's temperature: 1 + 0.1 ln(factor), times `rope.scaling.attn_factor` (absent: 1).
    assert!((attention_factor - (1.0 + 0.1 * 4f64.ln())).abs() < 1e-12);
    assert_eq!(c.max_position_embeddings, 256, "64 pre-trained positions × 4");

    s.meta.insert("llama.rope.scaling.type".into(), Value::String("linear".into()));
    let c = read_config(&write_tmp(&s, tmp.path(), "linear.gguf")).unwrap();
    assert_eq!(c.rope_scaling, Some(RopeScaling::Linear { factor: 4.0 }));
    assert_eq!(c.max_position_embeddings, 512);

    let mut s = spec();
    s.meta.insert("llama.rope.dimension_count".into(), Value::U32(HD as u32 / 2));
    let c = read_config(&write_tmp(&s, tmp.path(), "partial.gguf")).unwrap();
    assert_eq!((c.rotary_dim(), c.rope_inv_freq().len()), (HD / 2, HD / 4), "partial rotary");

    let mut s = spec();
    s.meta.insert("llama.attention.sliding_window".into(), Value::U32(32));
    let c = read_config(&write_tmp(&s, tmp.path(), "window.gguf")).unwrap();
    assert_eq!(c.max_position_embeddings, 128, "the whole context is served");
    assert!((0..c.num_layers).all(|l| c.attention_window(l) == Some(32)), "{c:?}");
}

/// Phi-3 GGUF: llama.cpp's fused `attn_qkv` and `ffn_up` (gate then up), not permuted; the
/// loader hands out the seven projections as row ranges of them. LongRoPE factors are refused.
#[test]
fn phi3_splits_fused_projections() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = spec();
    spec.meta = std::mem::take(&mut spec.meta)
        .into_iter()
        .map(|(k, v)| (k.replacen("llama.", "phi3.", 1), v))
        .collect();
    spec.meta.insert("general.architecture".into(), Value::String("phi3".into()));
    let mut want = Vec::new();
    for i in 0..2 {
        let (l, b) = (format!("model.layers.{i}"), format!("blk.{i}"));
        let take = |spec: &mut Spec, hf: &str| spec.tensors.remove(&format!("{l}.{hf}")).unwrap().1;
        let (q, k, v) = (
            take(&mut spec, "self_attn.q_proj.weight"),
            take(&mut spec, "self_attn.k_proj.weight"),
            take(&mut spec, "self_attn.v_proj.weight"),
        );
        let (gate, up) =
            (take(&mut spec, "mlp.gate_proj.weight"), take(&mut spec, "mlp.up_proj.weight"));
        let qkv = Tensor::cat(&[&q, &k, &v], 0).unwrap();
        let gate_up = Tensor::cat(&[&gate, &up], 0).unwrap();
        spec.tensors.insert(
            format!("{l}.self_attn.qkv_proj.weight"),
            (format!("{b}.attn_qkv.weight"), qkv),
        );
        spec.tensors.insert(
            format!("{l}.mlp.gate_up_proj.weight"),
            (format!("{b}.ffn_up.weight"), gate_up),
        );
        for (name, t) in [
            ("self_attn.q_proj", q),
            ("self_attn.k_proj", k),
            ("self_attn.v_proj", v),
            ("mlp.gate_proj", gate),
            ("mlp.up_proj", up),
        ] {
            want.push((format!("{l}.{name}.weight"), t));
        }
    }
    let path = write_tmp(&spec, tmp.path(), "tiny-phi3.gguf");
    let m = load_model(&path, &LoadOptions::default()).unwrap();
    assert_eq!(m.config.arch, Arch::Phi3);
    assert!(!m.weights.keys().any(|k| k.contains("qkv_proj") || k.contains("gate_up_proj")));
    for (name, t) in want {
        let got = m.weights[&name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(got, t.flatten_all().unwrap().to_vec1::<f32>().unwrap(), "{name}");
    }
    assert_eq!(
        m.config.parameter_count(),
        m.weights.values().map(|t| t.elem_count() as u64).sum::<u64>()
    );

    // LongRoPE (Phi-3 mini 128k, Phi-3.5 mini): both factor sets, as llama.cpp's converter
    // writes them, or neither.
    let long = det(&[HD / 2], 1.0).abs().unwrap().affine(1.0, 1.0).unwrap();
    spec.tensors.insert("rope_l".into(), ("rope_factors_long.weight".into(), long.clone()));
    let e = load_err(&spec);
    assert!(e.contains("rope_factors_short.weight") && e.contains("LongRoPE"), "{e}");
    let short = Tensor::ones(HD / 2, DType::F32, &Device::Cpu).unwrap();
    spec.tensors.insert("rope_s".into(), ("rope_factors_short.weight".into(), short));
    spec.meta.insert("phi3.rope.scaling.original_context_length".into(), Value::U32(32));
    let path = write_tmp(&spec, tmp.path(), "longrope-phi3.gguf");
    let c = read_config(&path).unwrap();
    let Some(RopeScaling::LongRope {
        short_factor,
        long_factor,
        original_max_position_embeddings,
        attention_factor,
    }) = &c.rope_scaling
    else {
        panic!("{c:?}")
    };
    assert_eq!(short_factor, &vec![1.0; HD / 2]);
    assert_eq!(long_factor, &long.to_vec1::<f32>().unwrap());
    assert_eq!((*original_max_position_embeddings, c.max_position_embeddings), (32, 128));
    // transformers' default for a context stretched 4 times over 32: sqrt(1 + ln 4 / ln 32).
    assert!((attention_factor - 1.4f64.sqrt()).abs() < 1e-12, "{attention_factor}");
    spec.meta.insert("phi3.rope.scaling.attn_factor".into(), Value::F32(1.25));
    let c = read_config(&write_tmp(&spec, tmp.path(), "longrope-attn.gguf")).unwrap();
    assert_eq!(c.rope_attention_factor(), 1.25);
    // The factor tensors are not mistaken for weights.
    assert!(load_model(&path, &LoadOptions::default()).is_ok());
}
