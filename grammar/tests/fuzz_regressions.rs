//! Inputs found by the fuzz targets (and hostile inputs written by hand), replayed through
//! the same invariant checks the fuzz targets use.
//!
//! Crash inputs are stored as files under `fuzz/regressions/<target>/` (raw bytes, as
//! libFuzzer writes them); small ones may also be listed inline below.

use std::path::Path;

use wicket_grammar::fuzz::{check_parse_expr, check_parse_template};

/// Hand-written inputs for `parse_expr`.
const EXPR_CASES: &[&str] = &[
    "",
    " ",
    "// only a comment",
    "-9223372036854775808",
    "--9223372036854775808",
    "-(9223372036854775808)",
    "-1.foo()",
    "!-1",
    "!-x",
    "-!x",
    "1.e5",
    ".5.e5",
    "a.`b-c`.`in`",
    "a.`",
    "a.``",
    "'\\",
    "\"\\u",
    "b'\\xF",
    "'''",
    "r'''\n",
    "{?",
    "[?",
    "a.?",
    "a[?",
    "x.all(",
    "has(a.?b)",
    "cel.block([?a], b)",
    "[1].exists(cel.iterVar(0, -1), true)",
    "[1].exists(cel.iterVar(0, 0), cel.iterVar(0, 0) > 0)",
    "a.b.c{",
    "a.b(){}",
    "1{}",
    "\u{feff}a",
    "é",
    "a ? b : c ? d : e",
    "!=",
    "a in in",
    "a.in",
    "${a}",
];

/// Hand-written inputs for `parse_template`.
const TEMPLATE_CASES: &[&str] = &[
    "",
    "$",
    "$$",
    "$${",
    "$$${x}",
    "${",
    "${}",
    "${'}'}",
    "${'\\",
    "${`",
    "${a // }",
    "${ {'a': '}'}['a'] }",
    "é${é}",
    "${1}${2}",
    "}{",
];

#[test]
fn hand_written_expression_inputs() {
    for case in EXPR_CASES {
        check_parse_expr(case.as_bytes());
    }
}

#[test]
fn hand_written_template_inputs() {
    for case in TEMPLATE_CASES {
        check_parse_template(case.as_bytes());
    }
}

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut n = 0;
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_file() {
            let data = std::fs::read(&path).expect("read a regression input");
            check(&data);
            n += 1;
        }
    }
    n
}

#[test]
fn stored_expression_crashes() {
    let n = replay("parse_expr", check_parse_expr);
    assert!(
        n >= 2,
        "expected stored inputs under fuzz/regressions/parse_expr"
    );
}

#[test]
fn stored_template_crashes() {
    let n = replay("parse_template", check_parse_template);
    assert!(
        n >= 1,
        "expected stored inputs under fuzz/regressions/parse_template"
    );
}
