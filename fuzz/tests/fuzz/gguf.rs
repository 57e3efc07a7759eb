//! GGUF model files: candle's header reader, then ours: the config, the tokenizer and chat
//! template built from the metadata, and the weights' shapes and dequantization.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use lorad_fuzz::{Campaign, Mutator, Outcome, Rng};
use lorad_model::testing::tiny::{self, FF, H, HD, HEADS, KV, TOKENS};
use lorad_model::{ChatMessage, LoadOptions, load_model, load_text, read_config};

type Meta = BTreeMap<String, Value>;

fn meta() -> Meta {
    tiny::metadata()
}

/// `(name, shape)` of every tensor of the seed model.
fn tensor_shapes() -> Vec<(String, Vec<usize>)> {
    let mut out = vec![
        ("token_embd.weight".to_owned(), vec![TOKENS.len(), H]),
        ("output_norm.weight".to_owned(), vec![H]),
    ];
    for i in 0..2 {
        for (name, shape) in [
            ("attn_norm.weight", vec![H]),
            ("ffn_norm.weight", vec![H]),
            ("attn_q.weight", vec![HEADS * HD, H]),
            ("attn_k.weight", vec![KV * HD, H]),
            ("attn_v.weight", vec![KV * HD, H]),
            ("attn_output.weight", vec![H, HEADS * HD]),
            ("ffn_gate.weight", vec![FF, H]),
            ("ffn_up.weight", vec![FF, H]),
            ("ffn_down.weight", vec![H, FF]),
        ] {
            out.push((format!("blk.{i}.{name}"), shape));
        }
    }
    out
}

fn tensor(shape: &[usize], seed: f64, dtype: GgmlDType) -> Result<QTensor, String> {
    let n: usize = shape.iter().product();
    let t = Tensor::arange(0f32, n as f32, &Device::Cpu)
        .and_then(|t| t.affine(0.61, seed))
        .and_then(|t| t.cos())
        .and_then(|t| t.reshape(shape))
        .map_err(|e| e.to_string())?;
    // Quantized types need whole blocks along the last dimension; norms stay f32.
    let dtype = if shape.len() == 2 { dtype } else { GgmlDType::F32 };
    QTensor::quantize(&t, dtype).map_err(|e| e.to_string())
}

fn write_gguf(meta: &Meta, tensors: &[(String, QTensor)]) -> Result<Vec<u8>, String> {
    let meta: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &meta, &tensors).map_err(|e| e.to_string())?;
    Ok(out.into_inner())
}

fn seed_tensors(dtype: GgmlDType) -> Vec<(String, QTensor)> {
    tensor_shapes()
        .into_iter()
        .enumerate()
        .map(|(i, (name, shape))| (name, tensor(&shape, i as f64, dtype).expect("seed tensor")))
        .collect()
}

/// Loads the GGUF bytes every way the daemon does, and uses what loads.
fn load(path: &Path, bytes: &[u8]) -> Outcome {
    std::fs::write(path, bytes).map_err(|e| format!("writing the input: {e}"))?;
    load_file(path).map_err(|e| e.replace(&path.display().to_string(), "<file>"))
}

fn load_file(path: &Path) -> Outcome {
    let config = read_config(path).map_err(|e| e.to_string());
    let text = load_text(path).map_err(|e| e.to_string());
    if let Ok((tokenizer, template)) = &text {
        let ids = tokenizer.encode("hi <|im_start|>hi\u{0}é").map_err(|e| e.to_string())?;
        tokenizer.decode(&ids, false).map_err(|e| e.to_string())?;
        tokenizer.decode(&[0, 7, u32::MAX], true).ok();
        let _ = template.render(&[ChatMessage::new("user", "hi")], true);
    }
    let opts = LoadOptions { dtype: DType::F32, device: Device::Cpu };
    let model = load_model(path, &opts).map_err(|e| e.to_string())?;
    // What loads must agree with the header-only readers.
    assert_eq!(config.as_ref().ok(), Some(&model.config), "read_config disagrees with load_model");
    assert!(text.is_ok(), "load_text failed on a file load_model accepts: {text:?}");
    Ok(())
}

#[test]
fn gguf_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.gguf");
    let seeds: Vec<Vec<u8>> = [GgmlDType::F32, GgmlDType::Q8_0, GgmlDType::Q4_1]
        .into_iter()
        .map(|dt| write_gguf(&meta(), &seed_tensors(dt)).expect("seed"))
        .collect();
    let campaign = Campaign::new("gguf-bytes", 400);
    let mut m = Mutator::new(campaign.seed(), 1 << 20).with_dictionary([
        &b"GGUF"[..],
        b"llama.",
        b"general.alignment",
        b"tokenizer.ggml.",
        b"\x03\x00\x00\x00",
    ]);
    let report = campaign.run(&seeds, |s| m.mutate(s), |b| load(&path, b));
    assert!(report.rejected > 0, "no mutated GGUF was refused: the target checks nothing");
}

/// Keys the loader reads, with values that are valid for some of them.
const KEYS: &[&str] = &[
    "general.architecture",
    "general.alignment",
    "llama.block_count",
    "llama.context_length",
    "llama.embedding_length",
    "llama.feed_forward_length",
    "llama.attention.head_count",
    "llama.attention.head_count_kv",
    "llama.attention.key_length",
    "llama.attention.sliding_window",
    "llama.rope.dimension_count",
    "llama.rope.freq_base",
    "llama.rope.scaling.type",
    "llama.rope.scaling.factor",
    "llama.rope.scaling.original_context_length",
    "llama.rope.scaling.attn_factor",
    "llama.rope.scaling.yarn_beta_fast",
    "llama.vocab_size",
    "llama.attention.layer_norm_rms_epsilon",
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.scores",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.chat_template",
];

fn interesting_value(rng: &mut Rng) -> Value {
    let s = |x: &str| Value::String(x.to_owned());
    match rng.below(24) {
        0 => Value::U32(0),
        1 => Value::U32(1),
        2 => Value::U32(u32::MAX),
        3 => Value::U64(u64::MAX),
        4 => Value::U64(1 << 40),
        5 => Value::I32(-1),
        6 => Value::F32(f32::NAN),
        7 => Value::F32(f32::INFINITY),
        8 => Value::F32(0.0),
        9 => Value::F64(-1.0),
        10 => s(""),
        11 => s(rng
            .pick::<&str>(&["llama", "qwen2", "qwen3", "phi3", "gpt2", "yarn", "linear", "none"])),
        12 => s(rng.pick::<&str>(&[
            "{{ messages[9].content }}",
            "{% for m in messages %}{{ m.content|upper }}{% endfor %}",
            "{{ raise_exception('no') }}",
            "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
            "{{ bos_token ~ eos_token ~ tools|tojson }}",
            "{% if",
        ])),
        13 => Value::Array(Vec::new()),
        14 => Value::Array(vec![Value::U32(3); rng.below(20)]),
        15 => Value::Array(vec![s("h i j"); 1 + rng.below(4)]),
        16 => Value::Array(vec![s(""), s("Ġ"), s("<|im_end|>"), s("\u{0}")]),
        17 => Value::Array(vec![Value::I32(rng.below(8) as i32 - 2); TOKENS.len()]),
        18 => Value::Array(vec![Value::F32(f32::NAN); TOKENS.len()]),
        19 => Value::Bool(rng.one_in(2)),
        20 => Value::U32(rng.below(300) as u32),
        21 => Value::U32(H as u32 * rng.below(4) as u32),
        22 => Value::F32(rng.below(100) as f32 / 7.0),
        _ => Value::U64(rng.next_u64()),
    }
}

/// A mutation of the metadata or the tensor directory: the file is written properly, so the
/// input reaches the config, tokenizer and weight checks rather than the header reader.
fn mutate_model(
    rng: &mut Rng,
    meta: &mut Meta,
    tensors: &mut Vec<(String, Vec<usize>, GgmlDType)>,
) {
    match rng.below(8) {
        0..=2 => {
            let key = (*rng.pick(KEYS)).to_owned();
            meta.insert(key, interesting_value(rng));
        }
        3 => {
            let key = rng.pick(KEYS);
            meta.remove(*key);
        }
        4 if !tensors.is_empty() => {
            let i = rng.below(tensors.len());
            tensors.remove(i);
        }
        5 if !tensors.is_empty() => {
            let i = rng.below(tensors.len());
            let shape = &mut tensors[i].1;
            let d = rng.below(shape.len());
            shape[d] = *rng.pick(&[0, 1, 2, 32, 64, 96, shape[d] * 2]);
            if rng.one_in(4) {
                shape.push(32);
            }
        }
        6 if !tensors.is_empty() => {
            let i = rng.below(tensors.len());
            tensors[i].2 = *rng.pick(&[GgmlDType::F16, GgmlDType::BF16, GgmlDType::Q4_0]);
        }
        _ => {
            let name = format!("blk.{}.{}", rng.below(4), rng.pick(&["attn_q.weight", "x"]));
            tensors.push((name, vec![32, 32], GgmlDType::F32));
        }
    }
}

#[test]
fn gguf_metadata_and_tensors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.gguf");
    let base: Vec<(String, Vec<usize>, GgmlDType)> =
        tensor_shapes().into_iter().map(|(n, s)| (n, s, GgmlDType::F32)).collect();
    let campaign = Campaign::new("gguf-metadata", 300);
    let mut rng = Rng::new(campaign.seed());
    // The input is the mutation seed; the file is built from it inside the target, so a failure
    // reproduces from LORAD_FUZZ_SEED alone.
    let seeds = vec![0u64.to_le_bytes().to_vec()];
    let report = campaign.run(
        &seeds,
        |_| rng.next_u64().to_le_bytes().to_vec(),
        |input| {
            let mut meta = meta();
            let mut tensors = base.clone();
            let mut local = Rng::new(u64::from_le_bytes(input[..8].try_into().unwrap_or([0; 8])));
            if input != &seeds[0] {
                for _ in 0..1 + local.below(3) {
                    mutate_model(&mut local, &mut meta, &mut tensors);
                }
            }
            let qtensors = tensors
                .iter()
                .enumerate()
                .map(|(i, (name, shape, dt))| Ok((name.clone(), tensor(shape, i as f64, *dt)?)))
                .collect::<Result<Vec<_>, String>>();
            // A shape the quantizer refuses is not an input the loader can ever see.
            let Ok(qtensors) = qtensors else { return Ok(()) };
            let bytes = write_gguf(&meta, &qtensors)?;
            load(&path, &bytes)
        },
    );
    assert!(report.rejected > 0 && report.accepted > 0, "{report:?}");
}
