//! Structured-output grammars: what they accept and refuse, checked against independent
//! judges (the `regex` crate, per-token brute force) where one exists.

use std::sync::Arc;

use lorad_grammar::{Constraint, Grammar, GrammarCache, GrammarError, Json, Vocab};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[path = "support/random_regex.rs"]
mod random_regex;

fn schema(text: &str) -> Grammar {
    Constraint::JsonSchema(Json::parse(text).unwrap()).compile().unwrap()
}

fn schema_err(text: &str) -> GrammarError {
    Constraint::JsonSchema(Json::parse(text).unwrap()).compile().unwrap_err()
}

#[test]
fn json_object_mode_accepts_json_objects_only() {
    let g = Constraint::JsonObject.compile().unwrap();
    for ok in [
        "{}",
        r#"{"a":1}"#,
        "{ \"a\" : [1, 2.5e-3, -0, true, false, null, {\"b\": \"\\u00e9\\n\"}] }",
        "{\n  \"name\": \"Zoë 🚀\",\n  \"n\": {}\n}",
    ] {
        assert!(g.matches(ok.as_bytes()), "should accept {ok}");
    }
    for bad in [
        "",
        "[]",
        "1",
        r#"{"a":1,}"#,
        "{'a':1}",
        "{a:1}",
        r#"{"a":01}"#,
        "{\"a\":\"tab\tinside\"}",
        r#"{"a":tru}"#,
        r#"{"a":1} "#,
    ] {
        assert!(!g.matches(bad.as_bytes()), "should refuse {bad:?}");
    }
    // Whitespace is bounded, so a model cannot pad forever.
    let padded = format!("{{{}}}", " ".repeat(41));
    assert!(!g.matches(padded.as_bytes()));
    assert!(g.matches(format!("{{{}}}", " ".repeat(20)).as_bytes()));
    // Bytes that are not UTF-8 never enter a string.
    assert!(!g.matches(b"{\"a\":\"\xff\"}"));
    assert!(g.matches("{\"a\":\"é\"}".as_bytes()));
}

const PERSON: &str = r#"{
  "title": "Person",
  "type": "object",
  "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 8},
    "age": {"type": "integer", "description": "years"},
    "role": {"enum": ["admin", "user", null]},
    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
    "email": {"type": "string", "format": "email"},
    "score": {"anyOf": [{"type": "number"}, {"type": "null"}]}
  },
  "required": ["name", "age"]
}"#;

#[test]
fn schema_objects_keep_order_required_and_types() {
    let g = schema(PERSON);
    for ok in [
        r#"{"name":"Ann","age":31}"#,
        r#"{"name":"Ann","age":-2,"role":"admin","tags":["a","b"],"email":"a@b.io","score":1.5}"#,
        r#"{"name":"Ann","age":0,"role":null}"#,
        r#"{"name":"Ann","age":7,"score":null}"#,
        "{ \"name\": \"Bo\", \"age\": 3, \"tags\": [] }",
    ] {
        assert!(g.matches(ok.as_bytes()), "should accept {ok}");
    }
    for bad in [
        r#"{"age":31,"name":"Ann"}"#,                     // order
        r#"{"name":"Ann"}"#,                              // required age
        r#"{"name":"","age":1}"#,                         // minLength
        r#"{"name":"Annabella9","age":1}"#,               // maxLength
        r#"{"name":"Ann","age":1.5}"#,                    // integer
        r#"{"name":"Ann","age":1,"role":"root"}"#,        // enum
        r#"{"name":"Ann","age":1,"tags":["a","b","c"]}"#, // maxItems
        r#"{"name":"Ann","age":1,"email":"not-an-email"}"#,
        r#"{"name":"Ann","age":1,"extra":1}"#, // undeclared
        r#"{"name":"Ann","age":1,}"#,
        r#"{,"name":"Ann","age":1}"#,
    ] {
        assert!(!g.matches(bad.as_bytes()), "should refuse {bad}");
    }
}

#[test]
fn schema_refs_recursion_and_formats() {
    let tree = schema(
        r##"{"$ref": "#/$defs/node", "$defs": {"node": {"type": "object",
            "properties": {"v": {"type": "integer"},
                           "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
            "required": ["v"]}}}"##,
    );
    assert!(tree.matches(br#"{"v":1,"kids":[{"v":2},{"v":3,"kids":[{"v":4,"kids":[]}]}]}"#));
    assert!(!tree.matches(br#"{"v":1,"kids":[{"kids":[]}]}"#));
    let dates =
        schema(r#"{"type":"array","minItems":1,"items":{"type":"string","format":"date-time"}}"#);
    assert!(dates.matches(br#"["2026-12-04T22:04:27Z","1999-01-31T00:00:00.5+05:30"]"#));
    assert!(!dates.matches(br#"[]"#));
    assert!(!dates.matches(br#"["2026-13-04T22:04:27Z"]"#));
    let nullable = schema(r#"{"type":["integer","null"]}"#);
    assert!(nullable.matches(b"null") && nullable.matches(b"-12") && !nullable.matches(b"1.0"));
    let map = schema(r#"{"type":"object","additionalProperties":{"type":"boolean"}}"#);
    assert!(map.matches(br#"{"x":true,"y":false}"#) && !map.matches(br#"{"x":1}"#));
    let pattern = schema(r#"{"type":"string","pattern":"^[A-Z]{2}-\\d{3}$"}"#);
    assert!(pattern.matches(br#""AB-123""#) && !pattern.matches(br#""AB-12""#));
    let any = schema("{}");
    assert!(any.matches(b"[1,{\"a\":null}]") && any.matches(b"\"s\""));
}

#[test]
fn unsupported_and_invalid_schemas_name_the_place() {
    let e = schema_err(r#"{"type":"object","properties":{"age":{"type":"number","minimum":0}}}"#);
    assert!(
        matches!(&e, GrammarError::Unsupported { keyword, at } if keyword.starts_with("minimum") && at == "#/properties/age"),
        "{e}"
    );
    assert!(e.to_string().contains("minimum") && e.to_string().contains("#/properties/age"));
    let e = schema_err(r#"{"type":"integer","minimum":5,"exclusiveMaximum":5}"#);
    assert!(e.to_string().contains("no integer"), "{e}");
    let e = schema_err(r#"{"multipleOf":2}"#);
    assert!(
        matches!(&e, GrammarError::Unsupported { keyword, .. } if keyword == "multipleOf"),
        "{e}"
    );
    let e = schema_err(r#"{"type":"object","properties":{"a":{}},"required":["b"]}"#);
    assert!(e.to_string().contains("\"b\""), "{e}");
    let e = schema_err(r#"{"$ref":"https://example.invalid/s.json"}"#);
    assert!(matches!(e, GrammarError::Unsupported { .. }), "{e}");
    let e = schema_err(r##"{"$ref":"#/$defs/missing"}"##);
    assert!(e.to_string().contains("#/$defs/missing"), "{e}");
    let e = schema_err(r#"{"type":"strng"}"#);
    assert!(e.to_string().contains("strng"), "{e}");
    let e = schema_err(r#"{"type":"string","format":"hostname"}"#);
    assert!(e.to_string().contains("hostname"), "{e}");
    let e = schema_err(r#"{"allOf":[{"type":"string"},{"maxLength":3}]}"#);
    assert!(matches!(e, GrammarError::Unsupported { .. }), "{e}");
    // A pattern that needs a character a JSON string only holds escaped matches nothing.
    let e = schema_err(r#"{"type":"string","pattern":"\""}"#);
    assert!(matches!(e, GrammarError::Empty { .. }), "{e}");
    assert!(matches!(
        Constraint::Regex(r"\bword\b".into()).compile().unwrap_err(),
        GrammarError::Regex { .. }
    ));
    assert!(matches!(
        Constraint::Regex("(unclosed".into()).compile().unwrap_err(),
        GrammarError::Regex { .. }
    ));
    assert!(Constraint::Choice(Vec::new()).compile().is_err());
    // Repetition counts are bounded.
    assert!(matches!(
        Constraint::Regex("(a|b){1000000}".into()).compile().unwrap_err(),
        GrammarError::TooLarge { .. }
    ));
}

/// Random strings judged by the grammar and by the regex crate agree.
#[test]
fn regex_grammars_agree_with_the_regex_crate() {
    // Each pattern with a text it matches, so agreement is not only on refusals.
    let patterns = [
        (r"[a-c]+", "abca"),
        (r"(ab|a)*c?", "aabac"),
        (r"\d{2,4}-x", "199-x"),
        (r"(a*)*b", "aaab"),
        (r"(?i)Yes|no", "yES"),
        (r"[^a]é{1,2}", "béé"),
        (r"(a|b|)*", "abba"),
        (r"\w+", "aé_9ω"),
        (r".{3}", "a🚀b"),
        (r"[α-ω]{2}z", "αωz"),
    ];
    let alphabet =
        ["a", "b", "c", "x", "-", "1", "9", "é", "Y", "e", "S", "N", "o", "α", "ω", "z", "_", " "];
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for (p, example) in patterns {
        let g = Constraint::Regex(p.into()).compile().unwrap();
        let re = regex::Regex::new(&format!("^(?:{p})$")).unwrap();
        assert!(re.is_match(example) && g.matches(example.as_bytes()), "{p} on {example}");
        for _ in 0..3000 {
            let len = rng.random_range(0..7);
            let s: String =
                (0..len).map(|_| alphabet[rng.random_range(0..alphabet.len())]).collect();
            assert_eq!(g.matches(s.as_bytes()), re.is_match(&s), "pattern {p}, text {s:?}");
        }
    }
}

/// Overlapping alternatives inside repetitions reach the same parse by many paths (`.`, `\D`
/// and a literal all take the same byte); the matcher keeps each parse once, so texts like
/// these stay well under the ambiguity cap. Counting paths, each was refused (found by the
/// random comparison below with other seeds).
#[test]
fn parses_reached_many_ways_count_once() {
    let cases = [
        (r"(?:(?:.+|\s|\D|\D|\-){2,3}){2}?", "é-K🚀b "),
        (r"(?:(?:.|\d|[^🚀K\--b]|(?i:é)|(?:é))*){2,4}?", "1éééé"),
        (r"(?:(?:🚀K\ )(?:\ k)K|[b\ -é]?|🚀|ω|🚀{0,2}|(?i:[^Éaé])|\w|.|1){2,4}", "🚀K  kK🚀K  kK"),
        (r"(?:ω🚀1|.|(?:\w*){1,3}){1,3}", "ω🚀1 "),
    ];
    for (p, text) in cases {
        assert!(random_regex::full_match_oracle(p).is_match(text));
        let g = Constraint::Regex(p.into()).compile().unwrap();
        assert!(g.matches(text.as_bytes()), "{p} refused {text:?}");
    }
}

/// Random patterns (classes, Unicode, case folding, counted and lazy repetition, nesting):
/// the grammar accepts exactly the texts the regex crate matches, texts drawn to match
/// included.
#[test]
fn random_regex_grammars_agree_with_the_regex_crate() {
    let mut rng = ChaCha8Rng::seed_from_u64(20261206);
    let (mut refused, mut matched) = (0, 0);
    for case in 0..1500 {
        let re = random_regex::random_re(&mut rng, 5, false);
        let p = re.render();
        let oracle = random_regex::full_match_oracle(&p);
        let g = match Constraint::Regex(p.clone()).compile() {
            Ok(g) => g,
            Err(GrammarError::TooLarge { .. }) => {
                refused += 1;
                continue;
            }
            Err(e) => panic!("case {case}: {p:?} refused: {e}"),
        };
        let mut texts: Vec<String> = (0..16).map(|_| re.sample(&mut rng)).collect();
        texts.extend((0..8).map(|_| {
            let n = rng.random_range(0..6);
            let alphabet = random_regex::ALPHABET;
            (0..n).map(|_| alphabet[rng.random_range(0..alphabet.len())]).collect::<String>()
        }));
        for t in &texts {
            let want = oracle.is_match(t);
            assert_eq!(g.matches(t.as_bytes()), want, "case {case}: pattern {p:?} on {t:?}");
            matched += usize::from(want);
        }
    }
    assert!(refused < 15, "{refused} of 1500 patterns refused as too large");
    assert!(matched > 12_000, "only {matched} matching texts: the sampler misses too often");
}

/// Token masks of random patterns equal judging each token alone, along random walks, over a
/// vocabulary of every byte, characters split inside their UTF-8 encoding and runs of
/// several characters: the trie walk's shared successors and the matcher's merging of
/// converging parses must never allow a token that fails or refuse one that fits.
#[test]
fn random_regex_masks_equal_brute_force() {
    let mut rng = ChaCha8Rng::seed_from_u64(20261207);
    let alphabet = random_regex::ALPHABET;
    let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    for c in alphabet {
        let bytes = c.to_string().into_bytes();
        for cut in 1..bytes.len() {
            tokens.push(bytes[..cut].to_vec());
            tokens.push(bytes[cut..].to_vec());
        }
    }
    for _ in 0..200 {
        let n = rng.random_range(2..5);
        let run: String = (0..n).map(|_| alphabet[rng.random_range(0..alphabet.len())]).collect();
        tokens.push(run.into_bytes());
    }
    tokens.sort();
    tokens.dedup();
    let vocab = Vocab::new(tokens.iter().cloned().map(Some));
    let mut steps = 0;
    for case in 0..120 {
        let re = random_regex::random_re(&mut rng, 4, false);
        let p = re.render();
        let Ok(g) = Constraint::Regex(p.clone()).compile() else { continue };
        let mut state = g.start();
        for _ in 0..8 {
            let mask = g.mask(&vocab, &state);
            let allowed: Vec<u32> = (0..tokens.len() as u32)
                .filter(|&id| {
                    let ok = g.advance_bytes(&state, &tokens[id as usize]).is_some();
                    assert_eq!(
                        mask.allows(id),
                        ok,
                        "case {case}: {p:?}, token {:?}",
                        tokens[id as usize]
                    );
                    ok
                })
                .collect();
            if allowed.is_empty() {
                break;
            }
            steps += 1;
            let t = allowed[rng.random_range(0..allowed.len())];
            state = g.advance_token(&vocab, &state, t).unwrap();
        }
    }
    assert!(steps > 400, "only {steps} steps walked");
}

/// Random patterns written as GBNF (groups hoisted into rules at random) accept exactly what
/// the regex crate matches: the GBNF parser's literals, classes, escapes, groups, rule
/// references and counted repetitions, judged independently.
#[test]
fn random_gbnf_grammars_agree_with_the_regex_crate() {
    let mut rng = ChaCha8Rng::seed_from_u64(20261208);
    let mut matched = 0;
    for case in 0..800 {
        let re = random_regex::random_re(&mut rng, 4, true);
        let mut rules = Vec::new();
        let root = re.gbnf(&mut rng, &mut rules);
        let src = format!("root ::= {root}\n{}", rules.join("\n"));
        let p = re.render();
        let oracle = random_regex::full_match_oracle(&p);
        let g = Constraint::Grammar(src.clone())
            .compile()
            .unwrap_or_else(|e| panic!("case {case}: {src:?} refused: {e}"));
        for _ in 0..20 {
            let t = re.sample(&mut rng);
            let want = oracle.is_match(&t);
            assert_eq!(
                g.matches(t.as_bytes()),
                want,
                "case {case}: {src:?} (regex {p:?}) on {t:?}"
            );
            matched += usize::from(want);
        }
    }
    assert!(matched > 8000, "only {matched} matching texts");
}

#[test]
fn choices_match_exactly_one_option() {
    let g =
        Constraint::Choice(vec!["yes".into(), "no".into(), "not sure".into()]).compile().unwrap();
    assert!(g.matches(b"yes") && g.matches(b"not sure"));
    assert!(!g.matches(b"ye") && !g.matches(b"yes ") && !g.matches(b"maybe"));
    let s = g.advance_bytes(&g.start(), b"no").unwrap();
    // "no" is complete and could still become "not sure".
    assert!(s.is_accepting() && s.can_continue());
}

/// Thousands of options (vLLM's choice, a schema's enum of every country or product id)
/// compile to a trie: each option is accepted and nothing else, and the matcher follows at
/// most one parse per byte that may come next, plus one where an option may end (6 here, over
/// five letters). As a plain alternation, 5,000 options were refused as too ambiguous.
#[test]
fn thousands_of_choices_are_one_parse_at_a_time() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let random_word = |rng: &mut ChaCha8Rng| -> String {
        (0..rng.random_range(0..10)).map(|_| b"abcde"[rng.random_range(0..5)] as char).collect()
    };
    let words: Vec<String> = (0..5000).map(|_| random_word(&mut rng)).collect();
    let known: std::collections::HashSet<&str> = words.iter().map(String::as_str).collect();
    assert!(known.contains("") && known.len() > 2000, "empty, prefixes and duplicates included");
    let g = Constraint::Choice(words.clone()).compile().unwrap();
    for w in words.iter().take(500) {
        assert!(g.matches(w.as_bytes()), "{w:?}");
        let mut s = g.start();
        for &b in w.as_bytes() {
            assert!(s.parses() <= 6, "{w:?}: {} parses", s.parses());
            s = g.advance(&s, b);
        }
    }
    let mut refused = 0;
    for _ in 0..2000 {
        let w = format!("{}{}", random_word(&mut rng), random_word(&mut rng));
        assert_eq!(g.matches(w.as_bytes()), known.contains(w.as_str()), "{w:?}");
        refused += usize::from(!known.contains(w.as_str()));
    }
    assert!(refused > 100, "the judge must see refusals");
    assert!(!g.matches(b"abcdeabcdea"), "longer than any option");
    // The same through a JSON Schema enum (JSON text of each value) next to other types.
    let values: Vec<String> = words.iter().take(3000).map(|w| format!("\"{w}x\"")).collect();
    let g = schema(&format!(r#"{{"enum": [{}, 17, null]}}"#, values.join(",")));
    assert!(g.matches(format!("\"{}x\"", words[42]).as_bytes()));
    assert!(g.matches(b"17") && g.matches(b"null") && !g.matches(b"\"zz\""));
}

/// A vocabulary of short byte strings, some splitting UTF-8 characters.
fn random_vocab(rng: &mut ChaCha8Rng) -> Vec<Option<Vec<u8>>> {
    let pieces: &[&[u8]] = &[
        b"{",
        b"}",
        b"\"",
        b":",
        b",",
        b" ",
        b"\n",
        b"[",
        b"]",
        b"a",
        b"n",
        b"na",
        b"name",
        b"\"name",
        b"\":",
        b"1",
        b"12",
        b"-",
        b".",
        b"e",
        b"true",
        b"tr",
        b"ue",
        b"null",
        b"\\",
        b"\\u",
        b"00",
        b"e9",
        "é".as_bytes(),
        &"é".as_bytes()[..1],
        &"é".as_bytes()[1..],
        "🚀".as_bytes(),
        &"🚀".as_bytes()[..2],
        &"🚀".as_bytes()[2..],
        b"\xff",
        b"\t",
        b"age",
        b"\"age\":",
    ];
    let mut v: Vec<Option<Vec<u8>>> = pieces.iter().map(|p| Some(p.to_vec())).collect();
    for _ in 0..300 {
        let n = rng.random_range(1..4);
        let mut t = Vec::new();
        for _ in 0..n {
            t.extend_from_slice(pieces[rng.random_range(0..pieces.len())]);
        }
        v.push(Some(t));
    }
    v.push(None); // a special token: never allowed
    v
}

/// The trie walk's mask equals judging each token alone, along random constrained walks.
#[test]
fn token_masks_equal_brute_force() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let vocab_bytes = random_vocab(&mut rng);
    let vocab = Vocab::new(vocab_bytes.clone());
    for g in [schema(PERSON), Constraint::JsonObject.compile().unwrap()] {
        for _ in 0..20 {
            let mut state = g.start();
            let mut text = Vec::new();
            for _ in 0..30 {
                let mask = g.mask(&vocab, &state);
                let mut allowed = Vec::new();
                for (id, bytes) in vocab_bytes.iter().enumerate() {
                    let ok = bytes.as_ref().is_some_and(|b| g.advance_bytes(&state, b).is_some());
                    assert_eq!(mask.allows(id as u32), ok, "token {id} {bytes:?}");
                    if ok {
                        allowed.push(id as u32);
                    }
                }
                assert_eq!(mask.count(), allowed.len());
                if allowed.is_empty() {
                    // Complete, or the toy vocabulary cannot spell what must come next (a
                    // key it has no letters for): either way the walk ends here.
                    assert!(
                        state.is_accepting() || state.can_continue(),
                        "dead after {:?}",
                        String::from_utf8_lossy(&text)
                    );
                    break;
                }
                let t = allowed[rng.random_range(0..allowed.len())];
                state = g.advance_token(&vocab, &state, t).unwrap();
                text.extend_from_slice(vocab.token_bytes(t).unwrap());
            }
        }
        let (hits, misses) = g.mask_cache_stats();
        assert!(hits > 0 && misses > 0, "hits {hits} misses {misses}");
    }
    let g = Constraint::JsonObject.compile().unwrap();
    assert!(matches!(
        g.advance_token(&vocab, &g.start(), vocab_bytes.len() as u32 - 1),
        Err(GrammarError::UnknownToken(_))
    ));
    assert!(matches!(g.advance_token(&vocab, &g.start(), 1), Err(GrammarError::Rejected(1))));
}

#[test]
fn the_cache_compiles_a_constraint_once() {
    let cache = GrammarCache::new(2);
    let a = Constraint::JsonSchema(Json::parse(PERSON).unwrap());
    let g1 = cache.get(&a).unwrap();
    let g2 = cache.get(&Constraint::JsonSchema(Json::parse(PERSON).unwrap())).unwrap();
    assert!(Arc::ptr_eq(&g1, &g2));
    cache.get(&Constraint::Regex("x".into())).unwrap();
    cache.get(&a).unwrap(); // most recent: the regex is the oldest now
    cache.get(&Constraint::Choice(vec!["y".into()])).unwrap();
    assert_eq!(cache.len(), 2);
    assert!(Arc::ptr_eq(&g1, &cache.get(&a).unwrap()));
    assert!(cache.get(&Constraint::Regex("(".into())).is_err());
    assert_eq!(cache.len(), 2);
}

/// A schema of many optional properties keeps one parse per candidate next property: masks
/// stay exact past 128 stacks (the per-byte path); a pathologically ambiguous pattern is cut
/// off at `MAX_STACKS` parses instead of costing seconds per token.
#[test]
fn wide_and_ambiguous_grammars_stay_bounded() {
    let props: Vec<String> =
        (0..150).map(|i| format!("\"p{i}\": {{\"type\": \"integer\"}}")).collect();
    let wide = schema(&format!("{{\"type\":\"object\",\"properties\":{{{}}}}}", props.join(",")));
    assert!(wide.matches(br#"{"p0":1,"p75":2,"p149":3}"#));
    assert!(!wide.matches(br#"{"p75":2,"p0":1}"#));
    let after = wide.advance_bytes(&wide.start(), br#"{"p0":1"#).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let vocab_bytes = random_vocab(&mut rng);
    let vocab = Vocab::new(vocab_bytes.clone());
    let mask = wide.mask(&vocab, &after);
    for (id, bytes) in vocab_bytes.iter().enumerate() {
        let ok = bytes.as_ref().is_some_and(|b| wide.advance_bytes(&after, b).is_some());
        assert_eq!(mask.allows(id as u32), ok, "{bytes:?}");
    }
    let ambiguous = Constraint::Regex(".{0,1500}.{0,1500}".into()).compile().unwrap();
    // Each split of the text between the two repetitions is a parse (times the ways `.`
    // can start a character), so the limit comes well before 1,500 characters.
    assert!(ambiguous.matches("x".repeat(100).as_bytes()));
    let t = std::time::Instant::now();
    assert!(!ambiguous.matches("x".repeat(lorad_grammar::grammar::MAX_STACKS + 1).as_bytes()));
    assert!(t.elapsed().as_secs() < 30);
}

/// Empty matches nested a hundred thousand deep neither overflow the thread's stack nor cost
/// unbounded work: the constraint is refused as too ambiguous.
#[test]
fn deeply_nested_empty_matches_are_refused_not_crashed() {
    let e = Constraint::Regex("(a?){0,100000}b".into()).compile().unwrap_err();
    assert!(e.to_string().contains("too ambiguous"), "{e}");
    let nested = format!("{}a{}", "(?:".repeat(100), ")?".repeat(100));
    let g = Constraint::Regex(nested).compile().unwrap();
    assert!(g.matches(b"a") && g.matches(b""));
}

/// Integer bounds, checked against plain comparison for every integer in a window and for
/// non-canonical spellings.
#[test]
fn integer_bounds_match_exactly_the_integers_in_range() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let bound = |rng: &mut ChaCha8Rng| -> Option<i64> {
        match rng.random_range(0..4) {
            0 => None,
            1 => Some(rng.random_range(-9..10)),
            _ => Some(rng.random_range(-1500..1500)),
        }
    };
    for round in 0..60 {
        let (mut lo, mut hi) = (bound(&mut rng), bound(&mut rng));
        if let (Some(l), Some(h)) = (lo, hi)
            && l > h
        {
            (lo, hi) = (Some(h), Some(l));
        }
        // Alternate the inclusive and exclusive spellings of the same bounds.
        let mut keys = vec![r#""type":"integer""#.to_string()];
        match (lo, round % 2) {
            (Some(l), 0) => keys.push(format!(r#""minimum":{l}"#)),
            (Some(l), _) => keys.push(format!(r#""exclusiveMinimum":{}"#, l - 1)),
            (None, _) => {}
        }
        match (hi, round % 3) {
            (Some(h), 0) => keys.push(format!(r#""exclusiveMaximum":{}"#, h as f64 + 0.5)),
            (Some(h), _) => keys.push(format!(r#""maximum":{h}"#)),
            (None, _) => {}
        }
        let text = format!("{{{}}}", keys.join(","));
        let g = schema(&text);
        for n in -2100i64..2100 {
            let inside = lo.is_none_or(|l| n >= l) && hi.is_none_or(|h| n <= h);
            assert_eq!(g.matches(n.to_string().as_bytes()), inside, "{text}: {n}");
        }
        for n in [123_456_789i64, -987_654_321] {
            let inside = lo.is_none_or(|l| n >= l) && hi.is_none_or(|h| n <= h);
            assert_eq!(g.matches(n.to_string().as_bytes()), inside, "{text}: {n}");
        }
        for bad in ["007", "-0", "+3", "1.0", "", "-"] {
            // Unbounded integers are JSON's own grammar, which allows `-0`.
            let json_ok = bad == "-0" && lo.is_none() && hi.is_none();
            assert_eq!(g.matches(bad.as_bytes()), json_ok, "{text}: {bad}");
        }
    }
    let draft4 = schema(r#"{"type":"integer","minimum":0,"exclusiveMinimum":true,"maximum":3}"#);
    assert!(
        !draft4.matches(b"0")
            && draft4.matches(b"1")
            && draft4.matches(b"3")
            && !draft4.matches(b"4")
    );
    let fractional = schema(r#"{"type":"integer","minimum":-2.5,"maximum":2.5}"#);
    assert!(
        fractional.matches(b"-2")
            && fractional.matches(b"2")
            && !fractional.matches(b"-3")
            && !fractional.matches(b"3")
    );
    // Bounds do not apply to strings.
    let either = schema(r#"{"type":["integer","string"],"minimum":10}"#);
    assert!(either.matches(b"10") && !either.matches(b"9") && either.matches(br#""9""#));
}

/// GBNF in llama.cpp's format: a JSON grammar in the layout of its `json.gbnf` (rules over
/// several lines, groups spanning lines, comments, classes with escapes), judged by serde_json.
#[test]
fn gbnf_grammars_compile_and_match() {
    let json = r#"
# JSON, the way llama.cpp's grammars/json.gbnf lays it out
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws

object ::=
  "{" ws (
            string ":" ws value
    ("," ws string ":" ws value)*
  )? "}" ws

array  ::=
  "[" ws (
            value
    ("," ws value)*
  )? "]" ws

string ::=
  "\"" (
    [^"\\\x7F\x00-\x1F] |
    "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}) # escapes
  )* "\"" ws

number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws

ws ::= | " " | "\n" [ \t]{0,20}
"#;
    let g = Constraint::Grammar(json.into()).compile().unwrap();
    for ok in [r#"{"a": [1, 2.5, true, null, "é\u00e9"], "b": {}}"#, "{}", "{\"k\":\"v\"} "] {
        assert!(g.matches(ok.as_bytes()), "{ok}");
        assert!(serde_json::from_str::<serde_json::Value>(ok).is_ok());
    }
    for bad in [r#"{"a": 01}"#, "[]", r#"{"a" 1}"#, "{\"a\":\"\x01\"}"] {
        assert!(!g.matches(bad.as_bytes()), "{bad}");
    }
    // Alternatives continued on the next lines, repetition counts, `.` and `+`.
    let g = Constraint::Grammar(
        "root ::= greeting \" \" name\n  | \"bye\"\ngreeting ::= (\"hi\" | \"hello\"){1,2}\nname ::= [A-Z] [a-z]+ .?\n".into(),
    )
    .compile()
    .unwrap();
    for (text, ok) in [
        ("hi Ann", true),
        ("hihello Bob!", true),
        ("hello Zoë", true),
        ("bye", true),
        ("hihihi Ann", false),
        ("hi ann", false),
        ("hi A", false),
    ] {
        assert_eq!(g.matches(text.as_bytes()), ok, "{text}");
    }
    for (src, words) in [
        ("root ::= foo", "`foo` is used but never defined"),
        ("start ::= \"a\"", "no `root`"),
        ("root ::= \"a\"\nroot ::= \"b\"", "defined twice"),
        ("root ::= [z-a]", "backwards"),
        ("root ::= \"open", "unterminated"),
        ("root = \"a\"", "::="),
        ("root ::= (\"a\"", "`)`"),
    ] {
        let e = Constraint::Grammar(src.into()).compile().unwrap_err().to_string();
        assert!(e.contains(words), "{src}: {e}");
        assert!(e.contains("grammar line"), "{src}: {e}");
    }
}

/// Cached masks are counted process-wide and given back when their grammar is dropped.
#[test]
fn cached_mask_bytes_are_accounted_and_released() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let vocab = Vocab::new(random_vocab(&mut rng));
    let g = Constraint::JsonObject.compile().unwrap();
    let mut state = g.start();
    for b in br#"{"a":"#.iter() {
        g.mask(&vocab, &state);
        state = g.advance(&state, *b);
    }
    let (_, misses) = g.mask_cache_stats();
    let per_mask = vocab.len().div_ceil(64) * 8;
    // Other tests run in parallel: this grammar's share is at least what it computed.
    assert!(lorad_grammar::cached_mask_bytes() >= misses as usize * per_mask);
    assert!(lorad_grammar::cached_mask_bytes() <= lorad_grammar::MAX_CACHED_MASK_BYTES);
    drop(g);
}

/// Nested repetitions of a large Unicode class (`(?:\p{L}+)*`: each letter can continue the
/// inner or the outer loop) stay followable: every leading byte the mask allows has a
/// continuation, and letters of every UTF-8 length match. Laid out as one alternative per
/// byte sequence, `\p{L}` expanded into more than `MAX_STACKS` stacks after each letter, so
/// the matcher died after the first one.
#[test]
fn nested_repetitions_of_unicode_classes_stay_followable() {
    let vocab = Vocab::new((0..=255u8).map(|b| Some(vec![b])));
    for re in [r"(?:\p{L}+)*", r"\p{L}+*", r"(?:\p{L}\p{L}?)*", r"(?:\w+ )*\w+"] {
        let g = Constraint::Regex(re.into()).compile().unwrap();
        for word in ["a", "é", "ab", "añb", "日本語", "𝔘x"] {
            assert!(g.matches(word.as_bytes()), "{re} should match {word}");
        }
        let start = g.start();
        let mask = g.mask(&vocab, &start);
        for lead in (0..=255u8).filter(|&b| mask.allows(u32::from(b))) {
            let s = g.advance(&start, lead);
            let next = g.mask(&vocab, &s);
            assert!(s.is_accepting() || next.count() > 0, "{re}: dead end after byte {lead:#x}");
        }
    }
}
