//! The tokenizer of a base model, built from GGUF metadata or read from `tokenizer.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value as Json;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::Split;
use tokenizers::{AddedToken, DecoderWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

use crate::decode::IncrementalDecoder;
use crate::error::ModelError;
use crate::gguf::Meta;

/// Names llama.cpp treats as end-of-generation when they are control tokens (its `special_eog_ids`
/// heuristic): instruct models end turns with these even when the GGUF's `eos_token_id` names
/// another token (SmolLM2 declares `<|im_end|>` but also emits `<|endoftext|>`).
const EOG_NAMES: &[&str] = &[
    "<|endoftext|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|end_of_text|>",
];

/// Pre-tokenizer split regexes of the upstream `tokenizer.json` files, for the GGUF
/// `tokenizer.ggml.pre` types that are not plain GPT-2.
/// Added tokens that answers hold as text, which lorad reads tool calls from: kept on decode
/// and producible under a grammar even where a tokenizer marks them special (some Hermes and
/// Qwen tokenizers do, Mistral's always; vLLM keeps special tokens in answers for its Hermes
/// and Mistral parsers for the same reason).
const TEXT_MARKERS: &[&str] = &["<tool_call>", "</tool_call>", "[TOOL_CALLS]", "[ARGS]"];

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A model's tokenizer plus the special-token facts generation needs (BOS, end-of-generation ids).
///
/// Cheap to clone (the vocabulary is shared), and `Send + Sync`.
#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<tokenizers::Tokenizer>,
    eos: Vec<u32>,
    bos: Option<u32>,
    add_bos: bool,
    /// The `bos_token` / `eos_token` strings chat templates see.
    bos_text: Option<String>,
    eos_text: Option<String>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.bos)
            .field("add_bos", &self.add_bos)
            .field("eos", &self.eos)
            .finish_non_exhaustive()
    }
}

pub(crate) fn tk_err(context: impl Into<String>) -> impl FnOnce(tokenizers::Error) -> ModelError {
    let context = context.into();
    move |source| ModelError::Tokenizer { context, source }
}

impl Tokenizer {
    /// Builds the tokenizer described by GGUF metadata (`tokenizer.ggml.*`).
    ///
    /// Byte-level BPE (`tokenizer.ggml.model = gpt2`) and SentencePiece BPE (`llama`: LLaMA 1/2,
    /// Mistral 7B, TinyLlama). candle's own `from_gguf` is deliberately not used: it adds a prefix
    /// space to byte-level vocabularies, so "Once upon" would encode as " Once upon".
    pub fn from_gguf(
        content: &candle_core::quantized::gguf_file::Content,
    ) -> Result<Self, ModelError> {
        Self::from_gguf_meta(Meta { path: Path::new("<GGUF metadata>"), content })
    }

    pub(crate) fn from_gguf_meta(m: Meta<'_>) -> Result<Self, ModelError> {
        let model = m.str("tokenizer.ggml.model")?;
        let tokens = m.strings("tokenizer.ggml.tokens")?;
        let types = match m.get("tokenizer.ggml.token_type") {
            Some(_) => m.i32s("tokenizer.ggml.token_type")?,
            None => vec![1; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(m.bad(
                "tokenizer.ggml.token_type",
                format!("{} entries for {} tokens", types.len(), tokens.len()),
            ));
        }
        let mut tk = match model {
            "gpt2" => byte_level_bpe(m, &tokens)?,
            "llama" => crate::spm::tokenizer(m, &tokens, &types)?,
            other => {
                return Err(ModelError::Unsupported {
                    path: m.path.to_owned(),
                    what: format!(
                        "tokenizer.ggml.model `{other}` (supported: gpt2 (byte-level BPE), llama \
                         (SentencePiece BPE))"
                    ),
                });
            }
        };
        mark_added(&mut tk, &tokens, &types, m.path)?;

        let id_key = |k: &str| m.opt_u32(k);
        let mut eos = Vec::new();
        for key in [
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.eot_token_id",
            "tokenizer.ggml.eom_token_id",
        ] {
            eos.extend(id_key(key)?);
        }
        for (id, (tok, ty)) in (0u32..).zip(tokens.iter().zip(&types)) {
            if *ty == 3 && EOG_NAMES.contains(tok) {
                eos.push(id);
            }
        }
        let bos = id_key("tokenizer.ggml.bos_token_id")?;
        // llama.cpp's defaults: SentencePiece vocabularies start with BOS, byte-level ones not.
        let add_bos = m.opt_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(model == "llama");
        Ok(Self::assemble(tk, eos, bos, add_bos))
    }

    /// Reads `tokenizer.json` from a Hugging Face model directory, with the BOS/EOS facts from
    /// `tokenizer_config.json`, `generation_config.json` and `config.json` when present.
    pub fn from_hf_dir(dir: &Path) -> Result<Self, ModelError> {
        let file = dir.join("tokenizer.json");
        let spm = dir.join("tokenizer.model");
        let tk = if file.is_file() {
            read_tokenizer_json(&file)?
        } else if spm.is_file() {
            // Older LLaMA 2 / Mistral repositories: SentencePiece only.
            crate::spm::from_model_file(&spm)?
        } else {
            return Err(ModelError::Io {
                action: "reading",
                path: file,
                source: std::io::ErrorKind::NotFound.into(),
            });
        };
        let tk_config = read_json_opt(&dir.join("tokenizer_config.json"))?;
        let gen_config = read_json_opt(&dir.join("generation_config.json"))?;
        let model_config = read_json_opt(&dir.join("config.json"))?;
        let token_text = |name: &str| -> Option<String> {
            let v = tk_config.as_ref()?.get(name)?;
            let s = v.as_str().or_else(|| v.get("content")?.as_str())?;
            Some(s.to_owned())
        };
        let ids_field = |cfg: &Option<Json>, name: &str| -> Vec<u32> {
            match cfg.as_ref().and_then(|c| c.get(name)) {
                Some(Json::Number(n)) => {
                    n.as_u64().and_then(|n| u32::try_from(n).ok()).into_iter().collect()
                }
                Some(Json::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let eos_text = token_text("eos_token");
        let bos_text = token_text("bos_token");
        // The declared EOS first, then what `generate()` stops on (generation_config.json), then
        // config.json's.
        let mut eos: Vec<u32> =
            eos_text.as_deref().and_then(|t| tk.token_to_id(t)).into_iter().collect();
        eos.extend(ids_field(&gen_config, "eos_token_id"));
        eos.extend(ids_field(&model_config, "eos_token_id"));
        if eos.is_empty() {
            eos.extend(EOG_NAMES.iter().filter_map(|n| tk.token_to_id(n)));
        }
        // What the tokenizer.json post-processor prepends when asked to add special tokens: the
        // BOS of most LLaMA-style tokenizers, even without a tokenizer_config.json. Best effort:
        // lorad never runs the post-processor itself, so one that fails is simply ignored.
        let probe = |add: bool| tk.encode("a", add).ok().map(|e| e.get_ids().to_vec());
        let post_bos = match (probe(true), probe(false)) {
            (Some(with), Some(without))
                if with.len() > without.len() && with.first() != without.first() =>
            {
                with.first().copied()
            }
            _ => None,
        };
        let bos = bos_text
            .as_deref()
            .and_then(|t| tk.token_to_id(t))
            .or_else(|| ids_field(&gen_config, "bos_token_id").first().copied())
            .or_else(|| ids_field(&model_config, "bos_token_id").first().copied())
            .or(post_bos);
        let add_bos =
            match tk_config.as_ref().and_then(|c| c.get("add_bos_token")).and_then(Json::as_bool) {
                Some(b) => b,
                None => post_bos.is_some() && post_bos == bos,
            };
        let mut out = Self::assemble(tk, eos, bos, add_bos);
        out.bos_text = bos_text.or_else(|| bos.and_then(|id| out.id_to_token(id)));
        out.eos_text = eos_text.or_else(|| out.eos.first().and_then(|&id| out.id_to_token(id)));
        Ok(out)
    }

    fn assemble(tk: tokenizers::Tokenizer, eos: Vec<u32>, bos: Option<u32>, add_bos: bool) -> Self {
        let mut unique = Vec::with_capacity(eos.len());
        for id in eos {
            if !unique.contains(&id) {
                unique.push(id);
            }
        }
        let mut out =
            Self { inner: Arc::new(tk), eos: unique, bos, add_bos, bos_text: None, eos_text: None };
        out.bos_text = bos.and_then(|id| out.id_to_token(id));
        out.eos_text = out.eos.first().and_then(|&id| out.id_to_token(id));
        out
    }

    /// Token ids of `text`. Special tokens written in the text (e.g. `<|im_start|>`) become their
    /// ids. BOS is prepended only if the model asks for it and the text does not already start
    /// with it (chat templates often write it themselves).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        // The post-processor is bypassed (`false`): BOS handling is done here, uniformly for both
        // formats, and nothing else it might add (EOS, say) belongs in a generation prompt.
        let enc = self.inner.encode(text, false).map_err(tk_err("encode"))?;
        let mut ids = enc.get_ids().to_vec();
        if let Some(bos) = self.bos
            && self.add_bos
            && ids.first() != Some(&bos)
        {
            ids.insert(0, bos);
        }
        Ok(ids)
    }

    /// The text of `ids`; special tokens are left out when `skip_special`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, ModelError> {
        self.inner.decode(ids, skip_special).map_err(tk_err("decode"))
    }

    /// Number of token ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of token `t` (a vocabulary entry such as `"Ġthe"` or a special token).
    pub fn token_to_id(&self, t: &str) -> Option<u32> {
        self.inner.token_to_id(t)
    }

    /// The token string of `id`, if it exists.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The bytes token `id` stands for, exactly (OpenAI's logprobs `bytes`): a byte-level BPE
    /// token can hold part of a UTF-8 character, which its text alone cannot show. Special
    /// tokens give their text. `None` for an id outside the vocabulary.
    pub fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        let piece = self.inner.id_to_token(id)?;
        if self.inner.get_added_tokens_decoder().contains_key(&id) {
            return Some(piece.into_bytes());
        }
        Some(self.piece_bytes(piece))
    }

    /// The bytes of every token id in order, `None` for special (control) tokens: what
    /// structured output masks over (no constraint may produce a control token).
    ///
    /// Added tokens that are not special are text: their content, which decoding keeps. Models
    /// are trained to write them whole (Qwen 2.5's and Hermes' `<tool_call>`), so a grammar
    /// that reaches `<tool_call>` must let the model emit that one token rather than force it to
    /// spell the tag out of pieces it never learnt to use there.
    pub fn text_token_bytes(&self) -> Vec<Option<Vec<u8>>> {
        let added = self.inner.get_added_tokens_decoder();
        (0..self.vocab_size() as u32)
            .map(|id| match added.get(&id) {
                Some(token) if token.special => None,
                Some(token) => Some(token.content.clone().into_bytes()),
                None => self.inner.id_to_token(id).map(|piece| self.piece_bytes(piece)),
            })
            .collect()
    }

    /// The bytes a vocabulary piece (not an added token) stands for.
    fn piece_bytes(&self, piece: String) -> Vec<u8> {
        if matches!(self.inner.get_decoder(), Some(DecoderWrapper::ByteLevel(_)))
            && let Some(bytes) = piece.chars().map(byte_level_byte).collect::<Option<Vec<u8>>>()
        {
            return bytes;
        }
        // SentencePiece-style vocabularies: `<0xNN>` byte-fallback pieces, `▁` for a space.
        if let Some(hex) = piece.strip_prefix("<0x").and_then(|p| p.strip_suffix('>'))
            && let Ok(byte) = u8::from_str_radix(hex, 16)
            && hex.len() == 2
        {
            return vec![byte];
        }
        piece.replace('\u{2581}', " ").into_bytes()
    }

    /// Ids that end generation: the declared EOS first, then other end-of-turn tokens.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos
    }

    /// The beginning-of-sequence token, if the model has one.
    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos
    }

    /// The BOS token's text (the `bos_token` chat-template variable).
    pub fn bos_token(&self) -> Option<String> {
        self.bos_text.clone()
    }

    /// The declared EOS token's text (the `eos_token` chat-template variable).
    pub fn eos_token(&self) -> Option<String> {
        self.eos_text.clone()
    }

    /// A streaming decoder for generated ids. It owns a handle on the shared vocabulary (no
    /// borrow), so it can live in per-request state across tasks.
    pub fn incremental_decoder(&self) -> IncrementalDecoder {
        IncrementalDecoder::new(Arc::clone(&self.inner))
    }

    /// Writes the tokenizer as a Hugging Face `tokenizer.json` (e.g. to export a GGUF tokenizer).
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        self.inner.save(path, false).map_err(tk_err(path.display().to_string()))
    }
}

/// Makes the vocabulary's control (3) and unknown (2) pieces special added tokens and its
/// user-defined (4) ones text added tokens (types in llama.cpp's and SentencePiece's
/// numbering): all match as whole strings in input text; special ones are skippable on output,
/// user-defined ones are text, as llama.cpp renders them (Qwen's `<tool_call>`), and so are the
/// [`TEXT_MARKERS`] whatever their type.
pub(crate) fn mark_added(
    tk: &mut tokenizers::Tokenizer,
    tokens: &[&str],
    types: &[i32],
    path: &Path,
) -> Result<(), ModelError> {
    let (mut specials, mut texts) = (Vec::new(), Vec::new());
    for (s, &t) in tokens.iter().zip(types) {
        match t {
            2 | 3 if !TEXT_MARKERS.contains(s) => {
                specials.push(AddedToken::from(s.to_string(), true))
            }
            3 | 4 => texts.push(AddedToken::from(s.to_string(), false)),
            _ => {}
        }
    }
    tk.add_special_tokens(specials)
        .map_err(tk_err(format!("{}: control tokens", path.display())))?;
    tk.add_tokens(texts).map_err(tk_err(format!("{}: user-defined tokens", path.display())))?;
    Ok(())
}

/// Byte-level BPE (`tokenizer.ggml.model = gpt2`) with the pre-tokenizer `tokenizer.ggml.pre`
/// names.
fn byte_level_bpe(m: Meta<'_>, tokens: &[&str]) -> Result<tokenizers::Tokenizer, ModelError> {
    let merges = m
        .strings("tokenizer.ggml.merges")?
        .into_iter()
        .enumerate()
        .map(|(i, s)| match s.split_once(' ') {
            Some((a, b)) => Ok((a.to_owned(), b.to_owned())),
            None => Err(m.bad("tokenizer.ggml.merges", format!("entry {i} `{s}` has no space"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let vocab: Vocab = (0u32..).zip(tokens).map(|(i, t)| ((*t).to_owned(), i)).collect();

    let pre = m.opt_str("tokenizer.ggml.pre")?.unwrap_or("default");
    let byte_level = |regex: bool| PreTokenizerWrapper::from(ByteLevel::new(false, true, regex));
    let split = |re: &str| {
        Split::new(
            tokenizers::pre_tokenizers::split::SplitPattern::Regex(re.into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map(PreTokenizerWrapper::from)
        .map_err(tk_err(format!("{}: split regex", m.path.display())))
    };
    // llama.cpp's pre-tokenizer types, expressed as Hugging Face pre-tokenizers.
    let (pre_tokenizers, ignore_merges) = match pre {
        // `\p{N}` then the GPT-2 regex; no prefix space (that is SmolLM's whole point here).
        "smollm" => (vec![Digits::new(true).into(), byte_level(true)], false),
        "default" | "gpt2" | "gpt-2" => (vec![byte_level(true)], false),
        "llama-bpe" | "llama3" => (vec![split(LLAMA3_SPLIT)?, byte_level(false)], true),
        "qwen2" => (vec![split(QWEN2_SPLIT)?, byte_level(false)], false),
        other => {
            return Err(ModelError::Unsupported {
                path: m.path.to_owned(),
                what: format!(
                    "tokenizer.ggml.pre `{other}` (supported: smollm, default, gpt2, llama-bpe, qwen2)"
                ),
            });
        }
    };
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(tk_err(format!("{}: BPE vocabulary", m.path.display())))?;
    let mut tk = tokenizers::Tokenizer::new(bpe);
    tk.with_pre_tokenizer(Some(Sequence::new(pre_tokenizers)));
    tk.with_decoder(Some(ByteLevel::default()));
    tk.with_post_processor(Some(ByteLevel::new(true, false, true)));
    Ok(tk)
}

/// `tokenizer.json`, with the [`TEXT_MARKERS`] among its added tokens made text.
fn read_tokenizer_json(file: &Path) -> Result<tokenizers::Tokenizer, ModelError> {
    let name = file.display().to_string();
    let bytes = std::fs::read(file).map_err(ModelError::io("reading", file))?;
    let mut json: Json = serde_json::from_slice(&bytes)
        .map_err(|source| ModelError::Json { path: file.to_owned(), source })?;
    if let Some(added) = json.get_mut("added_tokens").and_then(Json::as_array_mut) {
        for token in added {
            let is_marker = token
                .get("content")
                .and_then(Json::as_str)
                .is_some_and(|c| TEXT_MARKERS.contains(&c));
            if is_marker && let Some(special) = token.get_mut("special") {
                *special = Json::Bool(false);
            }
        }
    }
    json.to_string().parse::<tokenizers::Tokenizer>().map_err(tk_err(name))
}

/// The byte a character of a byte-level BPE piece stands for: GPT-2's table keeps the printable
/// bytes (`!`..=`~`, `¡`..=`¬`, `®`..=`ÿ`) as themselves and maps the other 68, in order, to
/// U+0100 onwards.
fn byte_level_byte(c: char) -> Option<u8> {
    let kept = |b: u32| matches!(b, 0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff);
    let u = u32::from(c);
    if u < 256 {
        return kept(u).then_some(u as u8);
    }
    let n = usize::try_from(u - 256).ok()?;
    (0u32..256).filter(|&b| !kept(b)).nth(n).map(|b| b as u8)
}

/// Parses the JSON file at `path`, or `None` if it does not exist.
pub(crate) fn read_json_opt(path: &Path) -> Result<Option<Json>, ModelError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| ModelError::Json { path: PathBuf::from(path), source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ModelError::io("reading", path)(e)),
    }
}
