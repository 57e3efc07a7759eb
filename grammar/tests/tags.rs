//! Tagged sections in free text: the free text is judged against a brute-force substring
//! search, the sections against their schemas, and token masks against per-token checks.

use lorad_grammar::tags::hermes_calls;
use lorad_grammar::{AfterTag, Constraint, Grammar, GrammarError, Json, Tag, TagSpec, Vocab};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const WEATHER: &str = r#"{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}"#;

fn tag(name: &str, schema: &str) -> Tag {
    Tag {
        begin: format!("<tool_call>\n{{\"name\": \"{name}\", \"arguments\": "),
        schema: Json::parse(schema).unwrap(),
        end: "}\n</tool_call>".into(),
    }
}

fn tools(after: AfterTag, required: bool) -> Grammar {
    let spec = TagSpec {
        tags: vec![tag("get_weather", WEATHER), tag("now", r#"{"type":"object"}"#)],
        triggers: vec!["<tool_call>".into()],
        after,
        required,
        at_start: false,
    };
    // The Hermes helper builds the same spec.
    if let AfterTag::Tags { max } = spec.after {
        let list = [
            ("get_weather".to_owned(), Json::parse(WEATHER).unwrap()),
            ("now".to_owned(), Json::parse(r#"{"type":"object"}"#).unwrap()),
        ];
        if max.is_none() || max == Some(1) {
            assert_eq!(hermes_calls(&list, required, max.is_none()), spec);
        }
    }
    Constraint::Tags(spec).compile().unwrap()
}

fn call(name: &str, args: &str) -> String {
    format!("<tool_call>\n{{\"name\": \"{name}\", \"arguments\": {args}}}\n</tool_call>")
}

#[test]
fn tool_calls_after_free_text() {
    let g = tools(AfterTag::Tags { max: None }, false);
    let weather = call("get_weather", r#"{"city": "Oslo"}"#);
    let now = call("now", "{}");
    for ok in [
        String::new(),
        "Hello! 2 < 3 and <tool is not a call. <tool_cal".into(),
        "Zoë 🚀\n".into(),
        weather.clone(),
        format!("Let me check.\n{weather}"),
        format!("{weather}\n{now}\n"),
        format!("x{weather}{now}"),
    ] {
        assert!(g.matches(ok.as_bytes()), "should accept {ok:?}");
    }
    for bad in [
        "<tool_call>".to_owned(),
        "<tool_call>{}".into(),
        call("get_weather", "{}"),
        call("get_weather", r#"{"city": "Oslo", "extra": 1}"#),
        call("delete_everything", "{}"),
        format!("{weather} and some text after"),
        format!("{weather}\n<tool_call>\n"),
    ] {
        assert!(!g.matches(bad.as_bytes()), "should refuse {bad:?}");
    }
    // Mid-call, the answer cannot end; between calls it can.
    let s = g.advance_bytes(&g.start(), &weather.as_bytes()[..20]).unwrap();
    assert!(!s.is_accepting() && s.can_continue());
    let s = g.advance_bytes(&g.start(), weather.as_bytes()).unwrap();
    assert!(s.is_accepting() && s.can_continue());
}

#[test]
fn at_most_and_at_least() {
    let one = tools(AfterTag::Tags { max: Some(1) }, false);
    let weather = call("get_weather", r#"{"city":"Oslo"}"#);
    let now = call("now", "{}");
    assert!(one.matches(format!("ok {weather}\n").as_bytes()));
    assert!(!one.matches(format!("{weather}\n{now}").as_bytes()));
    let two = tools(AfterTag::Tags { max: Some(2) }, false);
    assert!(two.matches(format!("{weather}\n{now}").as_bytes()));
    assert!(!two.matches(format!("{weather}{now}{now}").as_bytes()));

    let required = tools(AfterTag::Tags { max: None }, true);
    assert!(required.matches(weather.as_bytes()));
    assert!(required.matches(format!("{weather} {now}").as_bytes()));
    for bad in [String::new(), "text".into(), format!("text {weather}")] {
        assert!(!required.matches(bad.as_bytes()), "should refuse {bad:?}");
    }
    // Nothing but a call can start the answer.
    let s = required.advance_bytes(&required.start(), b"<").unwrap();
    assert!(!s.is_accepting());
    assert!(required.advance_bytes(&required.start(), b"I").is_none());
}

#[test]
fn text_resumes_after_a_section_in_text_mode() {
    let g = Constraint::Tags(TagSpec {
        tags: vec![Tag {
            begin: "<function=add>".into(),
            schema: Json::parse(r#"{"type":"object","properties":{"a":{"type":"integer"}}}"#)
                .unwrap(),
            end: "</function>".into(),
        }],
        triggers: vec!["<function=".into()],
        after: AfterTag::Text,
        required: false,
        at_start: false,
    })
    .compile()
    .unwrap();
    assert!(g.matches(br#"a <function=add>{"a": 1}</function> b <function=add>{}</function>"#));
    assert!(!g.matches(br#"<function=sub>{}</function>"#));
    assert!(!g.matches(br#"<function=add>{"a": "x"}</function>"#));
    assert!(g.matches(b"<function"));
}

/// With only free text possible before a trigger, the grammar accepts a text exactly when no
/// trigger occurs in it: checked on random texts over the triggers' own letters, with
/// triggers that overlap themselves and each other.
#[test]
fn free_text_is_exactly_the_texts_without_a_trigger() {
    let triggers = ["aab", "ab", "bba", "abab"];
    let g = Constraint::Tags(TagSpec {
        tags: triggers
            .iter()
            .map(|t| Tag { begin: (*t).into(), schema: Json::Bool(true), end: "!".into() })
            .collect(),
        triggers: triggers.iter().map(|t| (*t).into()).collect(),
        after: AfterTag::Text,
        required: false,
        at_start: false,
    })
    .compile()
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (mut with, mut without) = (0, 0);
    for _ in 0..4000 {
        let n = rng.random_range(0..10);
        let text: String = (0..n).map(|_| ['a', 'b', 'c'][rng.random_range(0..3)]).collect();
        let has_trigger = triggers.iter().any(|t| text.contains(t));
        assert_eq!(g.matches(text.as_bytes()), !has_trigger, "{text:?}");
        if has_trigger {
            with += 1;
        } else {
            without += 1;
        }
    }
    assert!(with > 500 && without > 500, "{with} {without}");
    // Right after a trigger, only a section's JSON can follow.
    assert!(g.matches(b"cab1!"));
    assert!(g.matches(b"cab\"x\"!cc"));
    assert!(!g.matches(b"cabc"));
}

#[test]
fn bad_specs_name_the_field() {
    let spec = |tags: Vec<Tag>, triggers: &[&str]| TagSpec {
        tags,
        triggers: triggers.iter().map(|t| (*t).into()).collect(),
        after: AfterTag::Text,
        required: false,
        at_start: false,
    };
    let at = |s: TagSpec| match Constraint::Tags(s).compile().unwrap_err() {
        GrammarError::Invalid { at, .. } | GrammarError::Unsupported { at, .. } => at,
        other => panic!("unexpected {other}"),
    };
    assert_eq!(at(spec(vec![], &["<"])), "structures");
    assert_eq!(at(spec(vec![tag("f", "{}")], &[])), "triggers");
    assert_eq!(at(spec(vec![tag("f", "{}")], &["<tool_call>", ""])), "triggers[1]");
    assert_eq!(at(spec(vec![tag("f", "{}")], &["<function"])), "structures[0].begin");
    assert_eq!(
        at(spec(
            vec![tag("f", "{}"), tag("g", r#"{"properties":{"x":{"not":{}}}}"#)],
            &["<tool_call>"]
        )),
        "structures[1].schema/properties/x"
    );
    // A trigger that no structure's begin starts with could never be written.
    assert_eq!(at(spec(vec![tag("f", "{}")], &["<tool_call>", "[TOOL"])), "triggers[1]");
}

/// The trie walk's masks equal judging each token alone, along random walks that call tools.
#[test]
fn token_masks_equal_brute_force() {
    let pieces: &[&str] = &[
        "<",
        "tool",
        "_call",
        ">",
        "<tool_call>",
        "\n",
        "{",
        "}",
        "\"",
        ":",
        " ",
        ",",
        "name",
        "\"name\": \"",
        "get_weather",
        "now",
        "\", \"arguments\": ",
        "city",
        "Oslo",
        "</",
        "t",
        "ool_call>",
        "Hi",
        "!",
        "é",
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut vocab_bytes: Vec<Option<Vec<u8>>> =
        pieces.iter().map(|p| Some(p.as_bytes().to_vec())).collect();
    for _ in 0..200 {
        let t: String = (0..rng.random_range(1..4))
            .map(|_| pieces[rng.random_range(0..pieces.len())])
            .collect();
        vocab_bytes.push(Some(t.into_bytes()));
    }
    vocab_bytes.push(None);
    let vocab = Vocab::new(vocab_bytes.clone());
    let g = tools(AfterTag::Tags { max: Some(2) }, false);
    let mut calls = 0;
    for _ in 0..40 {
        let (mut state, mut text) = (g.start(), Vec::new());
        for _ in 0..40 {
            let mask = g.mask(&vocab, &state);
            let allowed: Vec<u32> = (0..vocab_bytes.len() as u32)
                .filter(|&id| {
                    let ok = vocab_bytes[id as usize]
                        .as_ref()
                        .is_some_and(|b| g.advance_bytes(&state, b).is_some());
                    assert_eq!(mask.allows(id), ok, "token {id}");
                    ok
                })
                .collect();
            if allowed.is_empty() {
                break;
            }
            // Lean towards the tokens of a call, so walks get into calls.
            let t = if rng.random_bool(0.5) && allowed.len() > 1 {
                *allowed
                    .iter()
                    .max_by_key(|&&id| vocab.token_bytes(id).map_or(0, |b| b.len()))
                    .unwrap_or(&allowed[0])
            } else {
                allowed[rng.random_range(0..allowed.len())]
            };
            state = g.advance_token(&vocab, &state, t).unwrap();
            text.extend_from_slice(vocab.token_bytes(t).unwrap());
        }
        calls += String::from_utf8_lossy(&text).matches("<tool_call>").count();
    }
    assert!(calls > 0, "no walk got into a call");
}

/// Llama 3's JSON calls: the whole answer is one call, or it is text; the trigger later in
/// the text is plain text.
#[test]
fn llama3_calls_open_only_at_the_start() {
    let tools = [
        ("get_weather".to_owned(), Json::parse(WEATHER).unwrap()),
        ("now".to_owned(), Json::parse(r#"{"type":"object"}"#).unwrap()),
    ];
    let g =
        Constraint::Tags(lorad_grammar::tags::llama3_json_calls(&tools, false)).compile().unwrap();
    let call = r#"{"name": "get_weather", "parameters": {"city": "Oslo"}}"#;
    for ok in [
        call,
        r#"{"name": "now", "parameters": {}}"#,
        "It is sunny.",
        r#"Here: {"name": "anything", "parameters": 1} is just text"#,
        r#"{"nope": 1}"#,
        "",
    ] {
        assert!(g.matches(ok.as_bytes()), "should accept {ok:?}");
    }
    for bad in [
        r#"{"name": "rm", "parameters": {}}"#,
        r#"{"name": "get_weather", "parameters": {}}"#,
        &format!("{call} and text"),
        &format!("{call}{call}"),
    ] {
        assert!(!g.matches(bad.as_bytes()), "should refuse {bad:?}");
    }
    // Random texts that do not start with the trigger are all plain text.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let letters = ['{', '"', 'n', 'a', 'm', 'e', ':', ' ', 'x'];
    for _ in 0..2000 {
        let text: String = (0..rng.random_range(0..14))
            .map(|_| letters[rng.random_range(0..letters.len())])
            .collect();
        if !text.starts_with(lorad_grammar::tags::LLAMA3_OPEN) {
            assert!(g.matches(text.as_bytes()), "{text:?}");
        }
    }
    let required =
        Constraint::Tags(lorad_grammar::tags::llama3_json_calls(&tools, true)).compile().unwrap();
    assert!(required.matches(call.as_bytes()) && !required.matches(b"It is sunny."));
}

/// Mistral's calls: one list after optional text, items separated by commas.
#[test]
fn mistral_calls_are_one_list() {
    let tools = [
        ("get_weather".to_owned(), Json::parse(WEATHER).unwrap()),
        ("now".to_owned(), Json::parse(r#"{"type":"object"}"#).unwrap()),
    ];
    let compile = |required, parallel| {
        Constraint::Tags(lorad_grammar::tags::mistral_calls(&tools, required, parallel))
            .compile()
            .unwrap()
    };
    let weather = r#"{"name": "get_weather", "arguments": {"city": "Oslo"}}"#;
    let now = r#"{"name": "now", "arguments": {}}"#;
    let auto = compile(false, true);
    for good in [
        "It is sunny.".to_owned(),
        format!("[TOOL_CALLS] [{weather}]"),
        format!("Let me look. [TOOL_CALLS] [{weather}, {now}]\n"),
        format!("[TOOL_CALLS] [{now},{weather}, {now}]"),
    ] {
        assert!(auto.matches(good.as_bytes()), "should accept {good:?}");
    }
    for bad in [
        format!("[TOOL_CALLS] [{weather}"),
        format!("[TOOL_CALLS] [{weather}] [TOOL_CALLS] [{now}]"),
        format!("[TOOL_CALLS] [{weather}] and more"),
        r#"[TOOL_CALLS] [{"name": "rm", "arguments": {}}]"#.to_owned(),
        r#"[TOOL_CALLS] [{"name": "get_weather", "arguments": {}}]"#.to_owned(),
        "[TOOL_CALLS] []".to_owned(),
    ] {
        assert!(!auto.matches(bad.as_bytes()), "should refuse {bad:?}");
    }
    let one = compile(false, false);
    assert!(one.matches(format!("[TOOL_CALLS] [{now}]").as_bytes()));
    assert!(!one.matches(format!("[TOOL_CALLS] [{now}, {now}]").as_bytes()));
    let required = compile(true, true);
    assert!(required.matches(format!("[TOOL_CALLS] [{now}, {weather}]").as_bytes()));
    assert!(!required.matches(b"It is sunny.") && !required.matches(b""));
    assert!(required.advance_bytes(&required.start(), b"I").is_none());
    // Every begin must start with the list's prefix.
    let mut spec = lorad_grammar::tags::mistral_calls(&tools, false, true);
    spec.tags[1].begin = "[TOOL_CALLS] {\"name\": \"now\", \"arguments\": ".into();
    let err = Constraint::Tags(spec).compile().unwrap_err().to_string();
    assert!(err.contains("structures[1].begin"), "{err}");
}

/// Mistral's newer calls: `[TOOL_CALLS]name[ARGS]{...}`, one after another after optional text.
#[test]
fn mistral_args_calls_follow_one_another() {
    let tools = [
        ("get_weather".to_owned(), Json::parse(WEATHER).unwrap()),
        ("now".to_owned(), Json::parse(r#"{"type":"object"}"#).unwrap()),
    ];
    let compile = |required, parallel| {
        Constraint::Tags(lorad_grammar::tags::mistral_args_calls(&tools, required, parallel))
            .compile()
            .unwrap()
    };
    let weather = r#"[TOOL_CALLS]get_weather[ARGS]{"city": "Oslo"}"#;
    let now = "[TOOL_CALLS]now[ARGS]{}";
    let auto = compile(false, true);
    for good in [
        "It is sunny.".to_owned(),
        weather.to_owned(),
        format!("Let me look.{weather}{now}\n"),
        format!("{now}\n{weather}"),
    ] {
        assert!(auto.matches(good.as_bytes()), "should accept {good:?}");
    }
    for bad in [
        r#"[TOOL_CALLS]get_weather[ARGS]{"city": "Oslo""#.to_owned(),
        format!("{weather} and more"),
        "[TOOL_CALLS]rm[ARGS]{}".to_owned(),
        "[TOOL_CALLS]get_weather[ARGS]{}".to_owned(),
        "[TOOL_CALLS]now{}".to_owned(),
        "[TOOL_CALLS] now[ARGS]{}".to_owned(),
    ] {
        assert!(!auto.matches(bad.as_bytes()), "should refuse {bad:?}");
    }
    let one = compile(false, false);
    assert!(one.matches(now.as_bytes()));
    assert!(!one.matches(format!("{now}{now}").as_bytes()));
    let required = compile(true, true);
    assert!(required.matches(format!("{now}{weather}").as_bytes()));
    assert!(!required.matches(b"It is sunny.") && !required.matches(b""));
    assert!(required.advance_bytes(&required.start(), b"I").is_none());
}

/// Calls of many tools share their opening (`<tool_call>\n{"name": "`) and are followed as one
/// parse through it and through a shared name prefix, then by each tool's own arguments: the
/// matcher's parses stay a handful with 2,000 tools (one per tool before, refused past 1,024).
#[test]
fn thousands_of_tools_are_followed_as_one_parse() {
    let tags: Vec<Tag> = (0..2000)
        .map(|i| match i % 2 {
            0 => tag(&format!("tool_{i}"), WEATHER),
            _ => tag(&format!("tool_{i}"), r#"{"type":"object","properties":{"n":{"type":"integer"}},"required":["n"],"additionalProperties":false}"#),
        })
        .collect();
    for after in [AfterTag::Tags { max: None }, AfterTag::Text] {
        let spec = TagSpec {
            tags: tags.clone(),
            triggers: vec!["<tool_call>".into()],
            after,
            required: true,
            at_start: false,
        };
        let g = Constraint::Tags(spec).compile().unwrap();
        let weather = call("tool_1234", r#"{"city": "Oslo"}"#);
        let count = call("tool_1235", r#"{"n": 7}"#);
        assert!(g.matches(weather.as_bytes()) && g.matches(count.as_bytes()));
        // Each tool's own arguments, and only known names.
        assert!(!g.matches(call("tool_1234", r#"{"n": 7}"#).as_bytes()));
        assert!(!g.matches(call("tool_1235", r#"{"city": "Oslo"}"#).as_bytes()));
        assert!(!g.matches(call("tool_2000", r#"{"n": 7}"#).as_bytes()));
        let mut s = g.start();
        let mut most = 0;
        for &b in weather.as_bytes() {
            s = g.advance(&s, b);
            most = most.max(s.parses());
        }
        assert!(most <= 16, "{most} parses at once");
    }
}
