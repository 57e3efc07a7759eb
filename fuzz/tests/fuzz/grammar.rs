//! Structured-output constraints as API clients send them (`response_format`,
//! `structured_outputs`, `guided_*`): JSON Schemas, regular expressions and GBNF grammars,
//! mutated. Any client can send one, so compiling must answer or refuse, never crash the
//! daemon. What compiles is then decoded along random paths through its token masks, checking
//! the property constrained sampling relies on: every token the mask allows advances the
//! matcher to a live state whose complete texts `matches` accepts. A dead end (nothing
//! allowed, yet not complete) is reported as a refusal: it can only come from the ambiguity
//! cap, and `grammar/tests` pins the cases that must not reach it.

use lorad_fuzz::{Campaign, JsonMutator, Mutator, Outcome, Rng};
use lorad_grammar::{Constraint, Json, Vocab};

/// Every single byte (so any continuation the grammar has is reachable) and some multi-byte
/// tokens that cross the grammars' structure, as byte-level BPE vocabularies do.
fn vocab() -> Vocab {
    let mut tokens: Vec<Option<Vec<u8>>> = (0..=255u8).map(|b| Some(vec![b])).collect();
    for t in [
        "{\"",
        "\":",
        "\", \"",
        "true",
        "null",
        "ab",
        "é",
        "\u{1F600}",
        "\\u00",
        "123",
        "-0",
        "\n  ",
    ] {
        tokens.push(Some(t.as_bytes().to_vec()));
    }
    tokens.push(None);
    Vocab::new(tokens)
}

/// Compiles `c` and walks a few random token paths through it.
fn exercise(c: &Constraint, vocab: &Vocab, walk_seed: u64) -> Outcome {
    let g = c.compile().map_err(|e| e.to_string())?;
    let mut rng = Rng::new(walk_seed);
    for _ in 0..3 {
        let mut state = g.start();
        let mut text = Vec::new();
        for _ in 0..40 {
            let mask = g.mask(vocab, &state);
            let allowed: Vec<u32> = (0..vocab.len() as u32).filter(|&t| mask.allows(t)).collect();
            if allowed.is_empty() && !state.is_accepting() {
                // Only a constraint ambiguous past `MAX_STACKS` parses may strand the matcher
                // (the engine then ends the answer); counted as a refusal so runs show them.
                return Err(format!(
                    "dead end after {:?} (ambiguity past the stack cap)",
                    String::from_utf8_lossy(&text)
                ));
            }
            if allowed.is_empty() || (state.is_accepting() && rng.one_in(8)) {
                break;
            }
            let t = *rng.pick(&allowed);
            state = g.advance_token(vocab, &state, t).unwrap_or_else(|e| {
                panic!("the mask allows token {t} but advancing refuses it: {e}")
            });
            assert!(!state.is_dead(), "the mask allowed token {t} into a dead state");
            text.extend_from_slice(vocab.token_bytes(t).unwrap_or_default());
        }
        if state.is_accepting() {
            assert!(g.matches(&text), "the walk accepted {text:?} but matches() refuses it");
        }
    }
    Ok(())
}

const SCHEMAS: &[&str] = &[
    r#"{"type":"object","properties":{"name":{"type":"string","minLength":1,"maxLength":8},
        "age":{"type":"integer","minimum":0,"maximum":150},"tags":{"type":"array",
        "items":{"type":"string"},"maxItems":3}},"required":["name"]}"#,
    r##"{"$ref":"#/$defs/node","$defs":{"node":{"type":"object","properties":{
        "v":{"type":"number"},"kids":{"type":"array","items":{"$ref":"#/$defs/node"}}},
        "required":["v"]}}}"##,
    r#"{"anyOf":[{"type":"string","pattern":"^[A-Z]{2}-\\d{3}$"},{"enum":["x",1,null,true]},
        {"const":{"a":[1,2]}},{"type":"string","format":"date-time"}]}"#,
    r#"{"type":"array","items":{"type":"integer","minimum":-5,"maximum":99},
        "minItems":1,"maxItems":3}"#,
    r#"{"type":"object","additionalProperties":{"type":["integer","null"]}}"#,
    r#"{"oneOf":[{"type":"object","properties":{"kind":{"const":"a"}}},{"type":"string",
        "enum":["b","c"]}],"description":"union"}"#,
];

#[test]
fn grammar_json_schema() {
    let vocab = vocab();
    let seeds: Vec<serde_json::Value> =
        SCHEMAS.iter().map(|s| serde_json::from_str(s).expect("seed schema")).collect();
    let campaign = Campaign::new("grammar-schema", 400);
    let mut m = JsonMutator::new(
        campaign.seed(),
        [
            "type",
            "properties",
            "required",
            "items",
            "prefixItems",
            "$ref",
            "$defs",
            "definitions",
            "anyOf",
            "oneOf",
            "allOf",
            "enum",
            "const",
            "minimum",
            "maximum",
            "exclusiveMinimum",
            "exclusiveMaximum",
            "multipleOf",
            "minLength",
            "maxLength",
            "pattern",
            "format",
            "minItems",
            "maxItems",
            "additionalProperties",
            "minProperties",
            "maxProperties",
            "string",
            "integer",
            "number",
            "object",
            "array",
            "boolean",
            "null",
            "#/$defs/node",
            "#",
        ],
    );
    let mut walk = 0u64;
    let report = campaign.run(
        &seeds,
        |s| m.mutate(s),
        |v| {
            walk += 1;
            // As the API receives it: text, parsed with serde's depth limit.
            let json = Json::parse(&v.to_string()).map_err(|e| e.to_string())?;
            exercise(&Constraint::JsonSchema(json), &vocab, walk)
        },
    );
    assert!(report.rejected > 0 && report.accepted > 0, "{report:?}");
}

const REGEXES: &[&str] = &[
    r"[a-z]+@[a-z]+\.com",
    r"\d{3}-\d{4}",
    r"(foo|bar)*baz",
    r"[^\n]{0,20}",
    r"\p{L}+ \w*",
    r"a{2,5}b?(?:c|d)+",
    r"(?i)hello|(yes|no)",
    r"^\s*[A-F0-9]{2,4}$",
];

const GBNF: &[&str] = &[
    "root ::= \"yes\" | \"no\"",
    "root ::= item (\",\" ws item)*\nitem ::= [a-z]+ | \"(\" root \")\"\nws ::= \" \"?",
    "root ::= num (op num)*\nop ::= [-+*/]\nnum ::= [0-9]{1,4} (\".\" [0-9]+)?",
    "root ::= obj\nobj ::= \"{\" (pair (\",\" pair)*)? \"}\"\npair ::= str \":\" (str | obj)\nstr ::= \"\\\"\" [^\"\\\\]* \"\\\"\"",
    "# comment\nroot ::= [^\\x00-\\x1f]{1,3} x*\nx ::= \"\\u00e9\" | [\\U0001F600-\\U0001F64F]",
];

fn text_campaign(name: &str, seeds: &[&str], make: fn(String) -> Constraint) {
    let vocab = vocab();
    let seeds: Vec<String> = seeds.iter().map(|s| (*s).to_owned()).collect();
    let campaign = Campaign::new(name, 500);
    let mut m = Mutator::new(campaign.seed(), 16 * 1024).with_dictionary([
        "(", ")", "(?:", "[", "]", "[^", "{0,", "}", "*", "+", "?", "|", "\\", "\\p{", "\\d",
        "::=", " ::= ", "root", "\"", "\n", "{1000}", "{2,}", "\\x", "\\u", ".*", "^", "$",
    ]);
    let mut walk = 0u64;
    let report = campaign.run(
        &seeds,
        |s| String::from_utf8_lossy(&m.mutate(s.as_bytes())).into_owned(),
        |text| {
            walk += 1;
            exercise(&make(text.clone()), &vocab, walk)
        },
    );
    assert!(report.rejected > 0 && report.accepted > 0, "{report:?}");
}

#[test]
fn grammar_regex() {
    text_campaign("grammar-regex", REGEXES, Constraint::Regex);
}

#[test]
fn grammar_gbnf() {
    text_campaign("grammar-gbnf", GBNF, Constraint::Grammar);
}

/// Inputs built to exhaust the stack or the compiler's work, at the sizes the API admits.
#[test]
fn grammar_adversarial_depth_and_size() {
    let vocab = vocab();
    let cases: Vec<(&str, Constraint)> = vec![
        ("gbnf parens", Constraint::Grammar(format!("root ::= {}\"a\"{}", "(".repeat(30_000), ")".repeat(30_000)))),
        ("gbnf rule chain", Constraint::Grammar(
            (0..3000).map(|i| format!("r{i} ::= r{} \"x\"\n", i + 1)).collect::<String>().replace("r0 ::=", "root ::=") + "r3000 ::= \"y\"",
        )),
        ("gbnf left recursion", Constraint::Grammar("root ::= root \"a\" | \"b\"".into())),
        ("gbnf unproductive branch", Constraint::Grammar("root ::= \"a\" x | \"b\"\nx ::= x \"c\"".into())),
        ("regex groups", Constraint::Regex(format!("{}a{}", "(".repeat(7000), ")".repeat(7000)))),
        ("regex counted", Constraint::Regex("((a{0,1000}){0,1000}){0,1000}".into())),
        ("schema ref chain", {
            let defs: Vec<String> = (0..2000)
                .map(|i| format!("\"d{i}\":{{\"type\":\"array\",\"items\":{{\"$ref\":\"#/$defs/d{}\"}}}}", i + 1))
                .collect();
            let text = format!("{{\"$ref\":\"#/$defs/d0\",\"$defs\":{{{},\"d2000\":{{\"type\":\"integer\"}}}}}}", defs.join(","));
            Constraint::JsonSchema(Json::parse(&text).expect("ref chain"))
        }),
        ("schema self ref", Constraint::JsonSchema(Json::parse(r##"{"$ref":"#"}"##).expect("json"))),
        ("schema ref cycle", Constraint::JsonSchema(Json::parse(
            r##"{"$ref":"#/$defs/a","$defs":{"a":{"$ref":"#/$defs/b"},"b":{"$ref":"#/$defs/a"}}}"##,
        ).expect("json"))),
        ("schema wide enum", Constraint::JsonSchema(Json::parse(&format!(
            "{{\"enum\":[{}]}}", (0..20_000).map(|i| format!("\"v{i}\"")).collect::<Vec<_>>().join(","),
        )).expect("json"))),
        ("schema huge bounds", Constraint::JsonSchema(Json::parse(
            r#"{"type":"string","minLength":1000000000,"maxLength":2000000000}"#,
        ).expect("json"))),
        ("schema huge items", Constraint::JsonSchema(Json::parse(
            r#"{"type":"array","minItems":100000000,"items":{"type":"integer"}}"#,
        ).expect("json"))),
        ("choice many", Constraint::Choice((0..50_000).map(|i| format!("option {i}")).collect())),
    ];
    // Nesting past the limits is refused by name; the rest may compile or be refused, but
    // must do either without overflowing the stack (which would abort this process).
    let named = [("gbnf parens", "nested more than"), ("schema ref chain", "nested more than")];
    for (what, c) in cases {
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| exercise(&c, &vocab, 1)));
        match outcome {
            Ok(Ok(())) => eprintln!("{what}: compiles"),
            Ok(Err(e)) => eprintln!("{what}: refused: {}", e.chars().take(120).collect::<String>()),
            Err(_) => panic!("{what}: panicked"),
        }
        if let Some((_, words)) = named.iter().find(|(w, _)| *w == what) {
            let e = c.compile().err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(words), "{what}: want a refusal naming the nesting, got {e:?}");
        }
    }
}
