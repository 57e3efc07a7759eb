//! Structured output on the real model: answers constrained to a JSON Schema, a regular
//! expression or a choice come out valid (judged by serde_json and the regex crate, not by the
//! grammar that produced them), greedy decoding under a constraint picks the model's own top
//! token wherever the constraint allows it, and constrained requests leave the others in their
//! batch untouched.

mod common;

use std::sync::Arc;
use std::time::Instant;

use lorad_engine::{EngineConfig, EngineHandle, FinishReason, GenerateRequest, SamplingParams};
use lorad_grammar::{Constraint, Json};
use lorad_model::ChatMessage;

fn engine() -> Option<EngineHandle> {
    let model = common::load()?;
    Some(EngineHandle::start(model, EngineConfig::default()).unwrap())
}

fn chat(h: &EngineHandle, question: &str) -> Vec<u32> {
    let text = h.info().chat_template.render(&[ChatMessage::new("user", question)], true).unwrap();
    h.tokenizer().encode(&text).unwrap()
}

fn constrained(prompt: Vec<u32>, c: &Constraint, max_tokens: usize) -> GenerateRequest {
    let mut req = GenerateRequest::greedy(prompt, max_tokens);
    req.constraint = Some(Arc::new(c.compile().unwrap()));
    req
}

const CITY: &str = r#"{
  "type": "object",
  "properties": {
    "city": {"type": "string", "maxLength": 24},
    "country": {"type": "string", "maxLength": 24},
    "population_millions": {"type": "number"},
    "is_capital": {"type": "boolean"},
    "landmarks": {"type": "array", "items": {"type": "string", "maxLength": 32}, "maxItems": 3}
  },
  "required": ["city", "country", "is_capital", "landmarks"]
}"#;

/// Checks an answer against [`CITY`] by hand, with serde_json as the parser.
fn check_city(text: &str) {
    let v: serde_json::Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    let o = v.as_object().unwrap_or_else(|| panic!("not an object: {text}"));
    for k in o.keys() {
        assert!(
            ["city", "country", "population_millions", "is_capital", "landmarks"]
                .contains(&k.as_str()),
            "undeclared key {k}: {text}"
        );
    }
    for k in ["city", "country"] {
        let s = o[k].as_str().unwrap_or_else(|| panic!("{k} not a string: {text}"));
        assert!(s.chars().count() <= 24, "{k} too long: {text}");
    }
    assert!(o["is_capital"].is_boolean(), "{text}");
    let marks = o["landmarks"].as_array().unwrap_or_else(|| panic!("landmarks: {text}"));
    assert!(marks.len() <= 3 && marks.iter().all(|m| m.as_str().is_some()), "{text}");
    if let Some(p) = o.get("population_millions") {
        assert!(p.is_number(), "{text}");
    }
}

#[test]
fn json_schema_answers_are_valid_greedy_and_sampled() {
    let Some(h) = engine() else { return };
    let schema = Constraint::JsonSchema(Json::parse(CITY).unwrap());
    let prompt = chat(&h, "Describe Paris as a JSON object.");
    let t = Instant::now();
    let greedy = h.submit(constrained(prompt.clone(), &schema, 120)).unwrap().collect_blocking();
    let greedy = greedy.unwrap();
    eprintln!(
        "greedy JSON answer ({} tokens, {:.2?}): {}",
        greedy.tokens.len(),
        t.elapsed(),
        greedy.text
    );
    assert_eq!(greedy.finish_reason, FinishReason::Stop, "{}", greedy.text);
    check_city(&greedy.text);
    assert!(greedy.text.contains("Paris"), "{}", greedy.text);
    // Sampled answers (several seeds, in one batch) are valid too.
    let streams: Vec<_> = (0..4u64)
        .map(|seed| {
            let mut req = constrained(prompt.clone(), &schema, 160);
            req.sampling = SamplingParams {
                temperature: 1.0,
                top_p: 0.95,
                seed: Some(seed),
                ..SamplingParams::default()
            };
            h.submit(req).unwrap()
        })
        .collect();
    for s in streams {
        let c = s.collect_blocking().unwrap();
        if c.finish_reason == FinishReason::Stop {
            check_city(&c.text);
        } else {
            // Cut by max_tokens: still a prefix the grammar accepts.
            let g = schema.compile().unwrap();
            assert!(g.advance_bytes(&g.start(), c.text.as_bytes()).is_some(), "{}", c.text);
        }
    }
    // OpenAI's json_object mode.
    let obj = h
        .submit(constrained(chat(&h, "List three colours as JSON."), &Constraint::JsonObject, 80))
        .unwrap()
        .collect_blocking()
        .unwrap();
    if obj.finish_reason == FinishReason::Stop {
        let v: serde_json::Value = serde_json::from_str(&obj.text).unwrap();
        assert!(v.is_object(), "{}", obj.text);
    }
}

#[test]
fn regex_and_choice_answers_match() {
    let Some(h) = engine() else { return };
    let pattern = r"\(\d{3}\) \d{3}-\d{4}";
    let phone = h
        .submit(constrained(
            chat(&h, "Write a US phone number."),
            &Constraint::Regex(pattern.into()),
            30,
        ))
        .unwrap()
        .collect_blocking()
        .unwrap();
    let re = regex::Regex::new(&format!("^(?:{pattern})$")).unwrap();
    assert!(re.is_match(&phone.text), "{:?}", phone.text);
    assert_eq!(phone.finish_reason, FinishReason::Stop);
    let choice = Constraint::Choice(vec!["Paris".into(), "London".into(), "Berlin".into()]);
    let c = h
        .submit(constrained(chat(&h, "What is the capital of France?"), &choice, 10))
        .unwrap()
        .collect_blocking()
        .unwrap();
    // Greedy over tokens, not over whole choices: the model's top allowed first token
    // decides (here its "L" of "La capitale" leads to "London"), as in every token-level
    // constrained decoder.
    assert!(["Paris", "London", "Berlin"].contains(&c.text.as_str()), "{:?}", c.text);
    assert_eq!(c.finish_reason, FinishReason::Stop);
}

/// Constrained to exactly its own unconstrained greedy answer, greedy decoding reproduces it
/// token for token (the mask never hides the model's top token where the grammar allows it),
/// and ends as soon as the answer is complete; an unconstrained neighbour in the same batch
/// answers as it does alone.
#[test]
fn masks_keep_allowed_argmax_and_leave_neighbours_alone() {
    let Some(h) = engine() else { return };
    let prompt = chat(&h, "Name a fruit.");
    let free = h.submit(GenerateRequest::greedy(prompt.clone(), 12)).unwrap().collect_blocking();
    let free = free.unwrap();
    let other = h.tokenizer().encode("The history of Rome begins").unwrap();
    let alone = h.submit(GenerateRequest::greedy(other.clone(), 16)).unwrap().collect_blocking();
    let alone = alone.unwrap();
    let own = Constraint::Choice(vec![free.text.clone()]);
    let a = h.submit(constrained(prompt, &own, 40)).unwrap();
    let b = h.submit(GenerateRequest::greedy(other, 16)).unwrap();
    let a = a.collect_blocking().unwrap();
    let b = b.collect_blocking().unwrap();
    let free_tokens: Vec<u32> = free
        .tokens
        .iter()
        .copied()
        .filter(|t| !h.tokenizer().eos_token_ids().contains(t))
        .collect();
    assert_eq!(a.text, free.text);
    assert_eq!(a.tokens, free_tokens);
    assert_eq!(a.finish_reason, FinishReason::Stop);
    assert_eq!((b.text, b.tokens), (alone.text, alone.tokens));
}

/// The first mask of a state walks the real 49,152-token vocabulary; repeats hit the cache.
#[test]
fn masks_on_the_real_vocabulary() {
    let Some(h) = engine() else { return };
    let vocab = h.grammar_vocab();
    let g = Constraint::JsonSchema(Json::parse(CITY).unwrap()).compile().unwrap();
    let start = g.start();
    let t = Instant::now();
    let m = g.mask(vocab, &start);
    let first = t.elapsed();
    // Only tokens that are a prefix of `{`-then-whitespace-or-`"city"` fit at the start.
    assert!(m.count() > 0 && m.count() < 200, "{}", m.count());
    let open = h.tokenizer().encode("{").unwrap();
    assert!(m.allows(open[0]));
    let inside = g.advance_bytes(&start, br#"{"city":"Pa"#).unwrap();
    let t = Instant::now();
    let m = g.mask(vocab, &inside);
    let string_first = t.elapsed();
    let t = Instant::now();
    let again = g.mask(vocab, &inside);
    let cached = t.elapsed();
    assert_eq!(m, again);
    // Inside a string almost every text token fits.
    assert!(m.count() > vocab.len() / 2, "{}", m.count());
    for (text, ok) in [("ris", true), ("\"", true), ("\",", true), ("\n", false)] {
        let id = h.tokenizer().encode(text).unwrap();
        assert_eq!(id.len(), 1, "{text:?} is one token");
        assert_eq!(m.allows(id[0]), ok, "{text:?}");
    }
    for eos in h.tokenizer().eos_token_ids() {
        assert!(!m.allows(*eos));
    }
    eprintln!("mask: start {first:.2?}, in a string {string_first:.2?}, cached {cached:.2?}");
}

/// A constraint that needs a byte no token of the vocabulary has (SmolLM2 has no token for
/// 0x04) ends the answer where it gets stuck, counted as a dead end; an answer the constraint
/// completes is not one.
#[test]
fn dead_ends_are_counted_not_hidden() {
    let Some(h) = engine() else { return };
    let dead = || h.stats().grammar_dead_ends.load(std::sync::atomic::Ordering::Relaxed);
    let choice = Constraint::Choice(vec!["yes".into(), "no".into()]);
    let ok = h.submit(constrained(chat(&h, "Is water wet?"), &choice, 5)).unwrap();
    let ok = ok.collect_blocking().unwrap();
    assert!(["yes", "no"].contains(&ok.text.as_str()), "{:?}", ok.text);
    assert_eq!(dead(), 0);
    let stuck = Constraint::Regex(r"ab\x04c".into());
    let out = h.submit(constrained(chat(&h, "Say ab."), &stuck, 8)).unwrap();
    let out = out.collect_blocking().unwrap();
    assert_eq!((out.text.as_str(), out.finish_reason), ("ab", FinishReason::Stop));
    assert_eq!(dead(), 1);
}
