//! Bad input never panics: arbitrary text and mutated fixtures go through the whole linter
//! and every renderer.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use wicket_policy::lint::{LintOptions, lint};
use wicket_policy::render::{Format, render};
use wicket_policy::source::SourceMap;

fn run(text: &str) {
    let mut map = SourceMap::new();
    let id = map.add("fuzz.yaml", text);
    let report = lint(
        &mut map,
        id,
        LintOptions {
            require_terminal: true,
        },
    );
    for format in [Format::Human, Format::Json, Format::Github, Format::Sarif] {
        let _ = render(&map, &report.diagnostics, format, true);
    }
    let _ = wicket_policy::format::format(text, true);
}

fn fixtures() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir("tests/lint")
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    // The example policies, and those one directory down (`examples/layered/`).
    for entry in std::fs::read_dir("../examples").unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            for sub in std::fs::read_dir(&path).unwrap() {
                out.push(std::fs::read_to_string(sub.unwrap().path()).unwrap());
            }
        } else {
            out.push(std::fs::read_to_string(path).unwrap());
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text(text in "\\PC{0,200}") {
        run(&text);
    }

    #[test]
    fn yaml_ish_text(text in "[a-z_:\\-\\[\\]{}'\"|>!&*#\\$ \n\t.=()é0-9]{0,300}") {
        run(&text);
    }

    #[test]
    fn mutated_fixtures(which in 0usize..64, at in 0usize..4096, len in 0usize..16, insert in "[\\PC\n]{0,8}") {
        let all = fixtures();
        let base = &all[which % all.len()];
        let mut cut = at % (base.len() + 1);
        while !base.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut end = (cut + len).min(base.len());
        while !base.is_char_boundary(end) {
            end -= 1;
        }
        let mutated = format!("{}{}{}", &base[..cut], insert, &base[end.max(cut)..]);
        run(&mutated);
    }
}

#[test]
fn alias_bombs_are_bounded() {
    let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..12 {
        let prev = if i == 0 {
            "a".to_owned()
        } else {
            format!("l{}", i - 1)
        };
        text.push_str(&format!("l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
    }
    let mut map = SourceMap::new();
    let id = map.add("bomb.yaml", text);
    let report = lint(&mut map, id, LintOptions::default());
    assert_eq!(report.diagnostics[0].code, "E0001");
    assert!(report.diagnostics[0].message.contains("too large"));
}

#[test]
fn deep_nesting_does_not_overflow() {
    let text = format!("on_http_request: {}{}", "[".repeat(5000), "]".repeat(5000));
    run(&text);
    let mut block = String::from("on_http_request:\n");
    for i in 0..3000 {
        block.push_str(&" ".repeat(2 * i + 2));
        block.push_str("- a:\n");
    }
    run(&block);
    let mut map = SourceMap::new();
    let id = map.add("deep.yaml", block);
    let report = lint(&mut map, id, LintOptions::default());
    assert_eq!(report.diagnostics[0].code, "E0001");
    assert!(
        report.diagnostics[0]
            .message
            .contains("nesting deeper than 128")
    );
}
