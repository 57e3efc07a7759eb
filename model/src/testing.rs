//! Helpers for tests (of this crate and of crates built on it) that need the real default model.

use std::io::Write;
use std::path::PathBuf;

use crate::fetch::default_model_path;
use crate::paths::default_home;

/// The model file tests should use: `$LORAD_TEST_MODEL` (a `.gguf` path), else the default
/// model's path under [`default_home`].
///
/// Returns `None` after printing a loud `SKIPPING` line when the file is absent, so developers
/// without the model still get a green run. Under CI (`CI=true`) a missing model is a failure
/// instead: this function panics, so the model-dependent tests cannot be skipped silently there.
pub fn test_model_path() -> Option<PathBuf> {
    let path = std::env::var_os("LORAD_TEST_MODEL")
        .filter(|p| !p.is_empty())
        .map_or_else(|| default_model_path(&default_home()), PathBuf::from);
    found_or_skip(path, "model", "run `lorad model fetch` (or set LORAD_TEST_MODEL)")
}

/// A SentencePiece reference fixture (`name`, e.g. `mistral-v1.json`) that
/// `scripts/spm-fixtures.sh` writes: under `$LORAD_SPM_FIXTURES`, else `fixtures/spm` under
/// [`default_home`]. Absent: skipped loudly, or a panic under `CI=true`, as
/// [`test_model_path`].
pub fn spm_fixture(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("LORAD_SPM_FIXTURES")
        .filter(|p| !p.is_empty())
        .map_or_else(|| default_home().join("fixtures").join("spm"), PathBuf::from);
    found_or_skip(dir.join(name), "SentencePiece fixture", "run `bash scripts/spm-fixtures.sh`")
}

/// `path` when it is a file; otherwise a loud skip (`None`), or a panic under `CI=true`.
fn found_or_skip(path: PathBuf, what: &str, fix: &str) -> Option<PathBuf> {
    if path.is_file() {
        return Some(path);
    }
    // libtest names each test's thread after the test.
    let current = std::thread::current();
    let test = current.name().unwrap_or("test");
    let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    assert!(!ci, "{test}: {what} not found at {} with CI=true; {fix}", path.display());
    // Written to the stderr handle directly: libtest captures `eprintln!` of passing tests, and a
    // skip must be visible in a plain `cargo test` run.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPING {test}: {what} not found at {}, {fix}",
        path.display()
    );
    None
}

/// llama.cpp's `permute` of q/k weights (convert_hf_to_gguf.py:
/// `w.reshape(n, 2, hd/2, in).swapaxes(1, 2)`), written on rows and independently of the loader's
/// un-permutation, as an oracle: row `h*hd + 2*i + j` of the GGUF tensor is row `h*hd + j*hd/2 + i`
/// of Hugging Face's.
pub fn llama_cpp_permute_rows(rows: &[Vec<f32>], n_heads: usize) -> Vec<Vec<f32>> {
    let hd = rows.len() / n_heads;
    let mut out = vec![Vec::new(); rows.len()];
    for h in 0..n_heads {
        for i in 0..hd / 2 {
            for j in 0..2 {
                out[h * hd + 2 * i + j] = rows[h * hd + j * (hd / 2) + i].clone();
            }
        }
    }
    out
}

/// The device integration tests run on: `LORAD_TEST_DEVICE=cuda` selects GPU 0 (a build with
/// `--features cuda` on a machine with a GPU), anything else or unset the CPU. Tests are written
/// once over this device, so the same assertions run on both.
///
/// # Panics
/// When CUDA is asked for and cannot be opened: a GPU run that silently fell back to the CPU
/// would report CPU results as GPU ones.
pub fn test_device() -> candle_core::Device {
    match std::env::var("LORAD_TEST_DEVICE").as_deref() {
        Ok("cuda") => {
            assert!(
                candle_core::utils::cuda_is_available(),
                "LORAD_TEST_DEVICE=cuda, but this test binary was built without `--features cuda`"
            );
            candle_core::Device::new_cuda(0)
                .unwrap_or_else(|e| panic!("LORAD_TEST_DEVICE=cuda: cannot open GPU 0: {e}"))
        }
        _ => candle_core::Device::Cpu,
    }
}

/// A tiny llama written as GGUF by the loader's tests and fuzz targets: 2 layers, width 32,
/// 4 heads of 8 over 2 KV heads, MLP 64, and an 8-token byte-level vocabulary.
pub mod tiny {
    use std::collections::BTreeMap;

    use candle_core::quantized::gguf_file::Value;

    /// Hidden width.
    pub const H: usize = 32;
    /// Attention heads.
    pub const HEADS: usize = 4;
    /// KV heads.
    pub const KV: usize = 2;
    /// Head width.
    pub const HD: usize = 8;
    /// MLP width.
    pub const FF: usize = 64;
    /// The vocabulary: three control tokens, then text.
    pub const TOKENS: &[&str] =
        &["<|endoftext|>", "<|im_start|>", "<|im_end|>", "h", "i", "hi", "Ġ", "Ġhi"];

    /// Its GGUF metadata, as llama.cpp's converter writes it.
    pub fn metadata() -> BTreeMap<String, Value> {
        let strs =
            |v: &[&str]| Value::Array(v.iter().map(|s| Value::String((*s).into())).collect());
        let u32 = |n: usize| Value::U32(n as u32);
        BTreeMap::from_iter(
            [
                ("general.architecture", Value::String("llama".into())),
                ("llama.block_count", u32(2)),
                ("llama.context_length", u32(128)),
                ("llama.embedding_length", u32(H)),
                ("llama.feed_forward_length", u32(FF)),
                ("llama.attention.head_count", u32(HEADS)),
                ("llama.attention.head_count_kv", u32(KV)),
                ("llama.rope.dimension_count", u32(HD)),
                ("llama.rope.freq_base", Value::F32(10000.0)),
                ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-6)),
                ("tokenizer.ggml.model", Value::String("gpt2".into())),
                ("tokenizer.ggml.pre", Value::String("smollm".into())),
                ("tokenizer.ggml.tokens", strs(TOKENS)),
                (
                    "tokenizer.ggml.token_type",
                    Value::Array([3, 3, 3, 1, 1, 1, 1, 1].map(Value::I32).to_vec()),
                ),
                ("tokenizer.ggml.merges", strs(&["h i", "Ġ hi"])),
                ("tokenizer.ggml.bos_token_id", u32(1)),
                ("tokenizer.ggml.eos_token_id", u32(2)),
                (
                    "tokenizer.chat_template",
                    Value::String(
                        "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}".into(),
                    ),
                ),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        )
    }
}
