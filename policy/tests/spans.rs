//! A CEL problem inside each YAML scalar style maps back to the right line and column.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use wicket_policy::lint::{LintOptions, lint};
use wicket_policy::render::{Format, render};
use wicket_policy::source::{LineCol, SourceMap};

/// Lints `text`, expects exactly one `E0301` (unknown variable) and returns its start,
/// its end and the caret line of the human rendering.
fn locate(text: &str) -> (LineCol, LineCol, String) {
    let mut map = SourceMap::new();
    let id = map.add("p.yaml", text);
    let report = lint(&mut map, id, LintOptions::default());
    let diags: Vec<_> = report
        .diagnostics
        .iter()
        .filter(|d| d.code == "E0301")
        .collect();
    assert_eq!(diags.len(), 1, "{:?}", report.diagnostics);
    let d = diags[0];
    let file = map.get(id).unwrap();
    let human = render(&map, std::slice::from_ref(d), Format::Human, false);
    let caret = human.lines().find(|l| l.contains('^')).unwrap().to_owned();
    (
        file.line_col(d.primary.span.start),
        file.line_col(d.primary.span.end),
        caret,
    )
}

fn rule(expr_yaml: &str) -> String {
    format!("on_http_request:\n  - expressions:\n{expr_yaml}    actions:\n      - type: deny\n")
}

fn at(line: u32, col: u32) -> LineCol {
    LineCol { line, col }
}

#[test]
fn plain_scalar() {
    let (s, e, caret) = locate(&rule("      - conn.cleint_ip == '192.0.2.1'\n"));
    assert_eq!((s, e), (at(3, 9), at(3, 23)));
    assert_eq!(caret, "  |         ^^^^^^^^^^^^^^");
}

#[test]
fn plain_scalar_after_multibyte_text() {
    let (s, _, caret) = locate(&rule(
        "      - req.url.path == '/é/ü' && conn.cleint_ip == 'x'\n",
    ));
    // Columns count characters: `é` and `ü` are one column each.
    assert_eq!(s, at(3, 35));
    assert_eq!(
        caret,
        "  |                                   ^^^^^^^^^^^^^^"
    );
}

#[test]
fn single_quoted_with_doubled_quotes() {
    let (s, e, _) = locate(&rule(
        "      - 'req.method == ''GET'' && conn.cleint_ip == ''x'''\n",
    ));
    assert_eq!((s, e), (at(3, 35), at(3, 49)));
}

#[test]
fn double_quoted_with_escapes() {
    let (s, e, caret) = locate(&rule(
        "      - \"req.headers[\\\"x-a\\\"][0] == '\\u00e9' && conn.cleint_ip == 'x'\"\n",
    ));
    assert_eq!((s, e), (at(3, 49), at(3, 63)));
    assert_eq!(
        caret,
        "  |                                                 ^^^^^^^^^^^^^^"
    );
}

#[test]
fn literal_block() {
    let text = rule("      - |\n        req.method == 'GET' &&\n          conn.cleint_ip == 'x'\n");
    let (s, e, caret) = locate(&text);
    assert_eq!((s, e), (at(5, 11), at(5, 25)));
    assert_eq!(caret, "  |           ^^^^^^^^^^^^^^");
}

#[test]
fn folded_block() {
    let text = rule("      - >-\n        req.method == 'GET' &&\n        conn.cleint_ip == 'x'\n");
    let (s, e, _) = locate(&text);
    assert_eq!((s, e), (at(5, 9), at(5, 23)));
}

#[test]
fn multi_line_plain_scalar() {
    let text = rule("      - req.method == 'GET' &&\n        conn.cleint_ip == 'x'\n");
    let (s, _, _) = locate(&text);
    assert_eq!(s, at(4, 9));
}

#[test]
fn flow_sequence() {
    let text = "on_http_request:\n  - expressions: [\"req.method == 'GET'\", 'conn.cleint_ip == ''x''']\n    actions:\n      - type: deny\n";
    let (s, e, _) = locate(text);
    assert_eq!((s, e), (at(2, 43), at(2, 57)));
}

#[test]
fn template_in_a_header_value() {
    let text = "on_http_request:\n  - actions:\n      - type: add-headers\n        config:\n          headers:\n            x-ip: \"ip=${conn.cleint_ip}\"\n";
    let (s, e, _) = locate(text);
    assert_eq!((s, e), (at(6, 25), at(6, 39)));
}

#[test]
fn json_document() {
    let text = "{\"on_http_request\": [{\"expressions\": [\"conn.cleint_ip == 'x'\"], \"actions\": [{\"type\": \"deny\"}]}]}";
    let (s, _, _) = locate(text);
    assert_eq!(s, at(1, 40));
}
