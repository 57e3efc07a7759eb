//! Bad input lines: every problem reported with its line number, none silently dropped.

mod common;

use std::fs;

use common::{side, text_side};
use lorad_datanet::{
    BuildOptions, Datanet, DatanetError, RecordProblem, SHOWN_PROBLEMS, build, parse_records,
};

/// One good line, then one line per kind of problem, with good lines and a blank line between.
fn bad_input() -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = vec![
        br#"{"id": "a", "contributor": "alice", "text": "First good record."}"#.to_vec(), // 1
        br#"{"id": "b", "text": "No contributor."}"#.to_vec(), // 2
        br#"{"id": "c", "contributor": "bob", "messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}"#.to_vec(), // 3
        br#"{"id": "d", "contributor": "bob", "text": "  \n\t "}"#.to_vec(), // 4
        b"   ".to_vec(), // 5: blank, skipped
        br#"{"id": "a", "contributor": "carol", "text": "Same id as line 1."}"#.to_vec(), // 6
    ];
    // 7: invalid UTF-8 inside an otherwise fine record.
    let mut bad_utf8 = br#"{"id": "e", "contributor": "carol", "text": "bad "#.to_vec();
    bad_utf8.extend_from_slice(b"\xff\xfe");
    bad_utf8.extend_from_slice(br#" bytes"}"#);
    lines.push(bad_utf8);
    lines.extend([
        br#"{"id": "f", "contributor": "carol", "text": "unterminated"#.to_vec(), // 8
        br#"{"id": "g", "contributor": "dave", "text": "t", "messages": [{"role": "assistant", "content": "x"}]}"#.to_vec(), // 9
        br#"{"id": "h", "contributor": "dave", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "q2"}]}"#.to_vec(), // 10
        br#"{"id": 12, "contributor": "dave", "text": "Last good record."}"#.to_vec(), // 11
    ]);
    let mut out = lines.join(&b'\n');
    out.push(b'\n');
    out
}

const BAD_LINES: [u64; 7] = [2, 4, 6, 7, 8, 9, 10];

fn lines_of(problems: &[RecordProblem]) -> Vec<u64> {
    problems.iter().map(|p| p.line).collect()
}

#[test]
fn parse_reports_each_bad_line() {
    let (records, problems) = parse_records(&bad_input());
    assert_eq!(lines_of(&problems), BAD_LINES, "{problems:#?}");
    assert_eq!(records.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [1, 3, 11]);
    let reason = |line: u64| &problems.iter().find(|p| p.line == line).unwrap().reason;
    assert!(reason(2).contains("contributor"), "{}", reason(2));
    assert!(reason(4).contains("empty"), "{}", reason(4));
    assert!(reason(6).contains("duplicate") && reason(6).contains("line 1"), "{}", reason(6));
    assert!(reason(7).contains("UTF-8"), "{}", reason(7));
    assert!(reason(8).contains("invalid JSON"), "{}", reason(8));
    assert!(reason(9).contains("both"), "{}", reason(9));
    assert!(reason(10).contains("assistant"), "{}", reason(10));
    // Ids are attached where they could be read.
    assert_eq!(problems[0].id.as_deref(), Some("b"));
    assert_eq!(problems[3].id, None);
}

#[test]
fn build_fails_listing_every_bad_line() {
    let Some(t) = text_side() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("bad.jsonl");
    fs::write(&input, bad_input()).unwrap();
    let err = build(&input, "bad", tmp.path(), &side(t), &BuildOptions::default()).unwrap_err();
    let DatanetError::BadRecords { path, problems } = &err else {
        panic!("expected BadRecords, got {err:?}");
    };
    assert_eq!(path, &input);
    assert_eq!(lines_of(problems), BAD_LINES);
    let msg = err.to_string();
    for line in BAD_LINES {
        assert!(msg.contains(&format!("line {line}")), "{msg}");
    }
    assert!(msg.contains("7 invalid"), "{msg}");
    // Nothing was published, nothing left behind.
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn skip_invalid_builds_the_good_records() {
    let Some(t) = text_side() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("bad.jsonl");
    fs::write(&input, bad_input()).unwrap();
    let opts = BuildOptions { skip_invalid: true, ..Default::default() };
    let report = build(&input, "partial", tmp.path(), &side(t), &opts).unwrap();
    assert_eq!(report.records, 3);
    assert_eq!(lines_of(&report.skipped), BAD_LINES);
    let d = Datanet::open(&report.dir).unwrap();
    assert_eq!(d.records().iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["a", "c", "12"]);
    assert_eq!(d.records().iter().map(|r| r.line).collect::<Vec<_>>(), [1, 3, 11]);
    assert_eq!(d.manifest().skipped, report.skipped);
    let on_disk: serde_json::Value =
        serde_json::from_slice(&fs::read(report.dir.join("datanet.json")).unwrap()).unwrap();
    let skipped_lines: Vec<u64> = on_disk["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["line"].as_u64().unwrap())
        .collect();
    assert_eq!(skipped_lines, BAD_LINES);
    assert_eq!(on_disk["skipped"][0]["id"], "b");
    d.verify().unwrap();
}

#[test]
fn nothing_valid_is_an_error_even_when_skipping() {
    let Some(t) = text_side() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("none.jsonl");
    fs::write(&input, "\n{\"id\": 1}\nnot json\n\n").unwrap();
    let opts = BuildOptions { skip_invalid: true, ..Default::default() };
    let err = build(&input, "none", tmp.path(), &side(t), &opts).unwrap_err();
    assert!(matches!(err, DatanetError::NoRecords { skipped: 2, .. }), "{err}");
    let empty = tmp.path().join("empty.jsonl");
    fs::write(&empty, "").unwrap();
    let err = build(&empty, "none", tmp.path(), &side(t), &opts).unwrap_err();
    assert!(matches!(err, DatanetError::NoRecords { skipped: 0, .. }), "{err}");
}

#[test]
fn bad_records_message_is_capped() {
    let problems: Vec<_> = (1..=25).map(|l| RecordProblem::new(l, None, "broken")).collect();
    let msg = DatanetError::BadRecords { path: "in.jsonl".into(), problems }.to_string();
    assert!(msg.contains(&format!("line {SHOWN_PROBLEMS}:")), "{msg}");
    assert!(!msg.contains(&format!("line {}:", SHOWN_PROBLEMS + 1)), "{msg}");
    assert!(msg.contains("and 5 more"), "{msg}");
    assert!(msg.starts_with("in.jsonl: 25 invalid"), "{msg}");
}

#[test]
fn invalid_names_are_refused() {
    for bad in ["", ".hidden", "..", "a/b", "a b", "ünï", &"x".repeat(65), "tab\t"] {
        match lorad_datanet::validate_name(bad) {
            Err(DatanetError::InvalidName { name, reason }) => {
                assert_eq!(name, bad);
                assert!(reason.contains("1 to 64 characters"), "{reason}");
            }
            other => panic!("{bad:?}: expected InvalidName, got {other:?}"),
        }
    }
    for good in ["a", "A.b_c-1", "0", &"x".repeat(64), "v1.2"] {
        lorad_datanet::validate_name(good).unwrap();
    }
    let err = Datanet::open_named(std::path::Path::new("/nonexistent"), "../etc").unwrap_err();
    assert!(matches!(err, DatanetError::InvalidName { .. }), "{err}");
}

#[test]
fn build_refuses_invalid_names() {
    let Some(t) = text_side() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    common::write_jsonl(&input, &common::generated_records(1, 1));
    let err = build(&input, ".tmp-x", tmp.path(), &side(t), &BuildOptions::default()).unwrap_err();
    assert!(matches!(err, DatanetError::InvalidName { .. }), "{err}");
}
