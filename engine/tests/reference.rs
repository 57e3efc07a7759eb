//! Base-model logits agree with an independent implementation: candle-transformers'
//! `quantized_llama`, which reads the GGUF itself (its own tensor naming, interleaved RoPE on the
//! permuted q/k, its own attention) with every tensor dequantized to f32. The test owns no copy
//! of expected numbers; both sides are computed here.

mod common;

use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use lorad_engine::Llama;

#[test]
fn base_logits_match_candle_quantized_llama_dequantized() {
    let Some(path) = lorad_model::testing::test_model_path() else { return };
    // This binary runs only this test, so setting the variable cannot race another thread.
    // SAFETY: single-threaded at this point of the test binary (one test), before candle reads it.
    unsafe { std::env::set_var("CANDLE_DEQUANTIZE_ALL", "1") };
    let model = common::load().unwrap();
    let ours = Llama::new(&model.config, &model.weights).unwrap();
    let prompts = [
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
        "Once upon a time, there was a little",
        "fn main() { println!(\"{}\", 12345 * 678); } // 🦀",
    ];
    for p in prompts {
        let ids = common::encode(&model, p);
        // A fresh model per prompt: quantized_llama keeps its own KV cache inside.
        let mut file = std::fs::File::open(&path).unwrap();
        let content = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
        let mut theirs = ModelWeights::from_gguf(content, &mut file, &Device::Cpu).unwrap();
        let input = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let want: Vec<f32> =
            theirs.forward(&input, 0).unwrap().squeeze(0).unwrap().to_vec1().unwrap();
        let got = common::prefill_logits(&ours, &ids, None);
        let diff = common::max_diff(&got, &want);
        eprintln!("{p:?}: max|lorad - quantized_llama| = {diff:.2e}");
        assert!(diff <= 1e-3, "{p:?}: max diff {diff}");
        assert_eq!(lorad_engine::argmax(&got), lorad_engine::argmax(&want));
    }
}
