//! `wicket expr`: the built binary's output and exit code, snapshotted.

use std::process::Command;

/// Runs `wicket expr <args>` and renders exit code, stdout and stderr for a snapshot.
fn expr(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_wicket"))
        .arg("expr")
        .args(args)
        .output()
        .expect("run the wicket binary");
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        output
            .status
            .code()
            .map_or("signal".to_owned(), |c| c.to_string()),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    )
}

#[test]
fn prints_a_value_and_its_type() {
    insta::assert_snapshot!(expr(&["1 + 1"]));
}

#[test]
fn expression_may_start_with_a_minus() {
    insta::assert_snapshot!(expr(&["-2.5 * 2.0"]));
}

#[test]
fn prints_collection_types() {
    insta::assert_snapshot!(expr(&[r#"{"a": [1, 2], "b": []}"#]));
}

#[test]
fn prints_a_type_value() {
    insta::assert_snapshot!(expr(&["type(1u)"]));
}

#[test]
fn parse_error_has_a_caret_under_the_span() {
    insta::assert_snapshot!(expr(&["[1, 2"]));
}

#[test]
fn parse_error_on_a_later_line() {
    insta::assert_snapshot!(expr(&["1 +\n  2 +\n  )"]));
}

#[test]
fn eval_error_points_at_the_failing_sub_expression() {
    insta::assert_snapshot!(expr(&["size('abc') + 10 / (2 - 2) > 1"]));
}

#[test]
fn eval_error_inside_a_macro_body() {
    insta::assert_snapshot!(expr(&[
        "--var",
        r#"headers={"x-id": ["7"], "x-retries": ["3", "x"]}"#,
        "headers.all(name, headers[name].all(v, int(v) >= 0))",
    ]));
}

#[test]
fn undeclared_variable_is_an_eval_error() {
    insta::assert_snapshot!(expr(&["request.path.startsWith('/api')"]));
}

#[test]
fn vars_are_json() {
    insta::assert_snapshot!(expr(&[
        "--var",
        r#"req={"path": "/api/v1", "ports": [80, 443], "ratio": 0.5}"#,
        "--var",
        "n=4",
        "req.path.startsWith('/api') && n in req.ports.map(p, p / 100) ? req.ratio * 2.0 : -1.0",
    ]));
}

#[test]
fn dotted_vars_resolve_through_the_container() {
    insta::assert_snapshot!(expr(&[
        "--container",
        "com.example",
        "--var",
        "com.example.limit=10",
        "limit + 1",
    ]));
}

#[test]
fn malformed_var_is_a_usage_error() {
    insta::assert_snapshot!(expr(&["--var", "x={", "x"]));
}
