//! The checker against the cel-spec conformance corpus vendored by the engine
//! (`engine/tests/cel-conformance`): every case that evaluates to a value, needs no protobuf
//! messages, declares no variables and is not marked `disable_check` must type-check without
//! errors. This guards the operator and function tables against false errors.

use std::path::Path;

use wicket_policy::Phase;
use wicket_policy::Severity;
use wicket_policy::check::{CheckContext, Expected, check_source};

/// Cases the checker rejects on purpose, with the reason.
const EXPECTED_REJECTIONS: &[(&str, &str)] = &[];

#[test]
fn conformance_values_check_without_errors() {
    let dir = std::env::var("WICKET_CEL_CONFORMANCE_DIR").map_or_else(
        |_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/cel-conformance"),
        Into::into,
    );
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!("skipped: no conformance corpus at {}", dir.display());
        return;
    };
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    let ctx = CheckContext::new(Phase::HttpRequest);
    let (mut checked, mut failures) = (0usize, Vec::new());
    // Cases whose evaluation fails with "no such overload": how many the checker catches.
    let (mut overload_cases, mut overload_flagged) = (0usize, 0usize);
    for path in paths {
        let text = std::fs::read_to_string(&path).expect("readable corpus file");
        let cases: Vec<serde_json::Value> = serde_json::from_str(&text).expect("corpus JSON");
        for case in cases {
            let flag = |k: &str| {
                case.get(k)
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false)
            };
            let empty = |k: &str| {
                case.get(k).is_none_or(|v| {
                    v.as_array().is_some_and(Vec::is_empty) || v.as_str().is_some_and(str::is_empty)
                })
            };
            let expects_value = case.get("expected").and_then(|e| e.get("value")).is_some();
            if flag("needs_proto") || !empty("type_env") || !empty("container") {
                continue;
            }
            let overload_error = case
                .get("expected")
                .map(ToString::to_string)
                .is_some_and(|e| e.contains("overload"));
            if overload_error {
                if let Some(expr) = case.get("expr").and_then(serde_json::Value::as_str) {
                    overload_cases += 1;
                    let flagged = check_source(expr, &ctx, Expected::Any)
                        .issues
                        .iter()
                        .any(|i| i.severity == Severity::Error);
                    overload_flagged += usize::from(flagged);
                }
            }
            if flag("disable_check") || !expects_value {
                continue;
            }
            let (Some(id), Some(expr)) = (
                case.get("id").and_then(serde_json::Value::as_str),
                case.get("expr").and_then(serde_json::Value::as_str),
            ) else {
                continue;
            };
            checked += 1;
            let errors: Vec<String> = check_source(expr, &ctx, Expected::Any)
                .issues
                .into_iter()
                .filter(|i| i.severity == Severity::Error)
                .map(|i| format!("{} {}", i.code, i.message))
                .collect();
            if !errors.is_empty() && !EXPECTED_REJECTIONS.iter().any(|(c, _)| *c == id) {
                failures.push(format!("{id}: `{expr}`: {}", errors.join("; ")));
            }
        }
    }
    println!(
        "conformance (checker): {checked} cases, {} false errors; {overload_flagged}/{overload_cases} run-time overload errors caught at check time",
        failures.len()
    );
    for f in &failures {
        println!("  {f}");
    }
    assert!(failures.is_empty(), "{} false errors", failures.len());
}

/// Type deduction: cases with an expected `deduced_type` (no declarations, no protobuf).
#[test]
fn conformance_deduced_types() {
    let dir = std::env::var("WICKET_CEL_CONFORMANCE_DIR").map_or_else(
        |_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/cel-conformance"),
        Into::into,
    );
    let Ok(text) = std::fs::read_to_string(dir.join("type_deduction.json")) else {
        println!("skipped: no conformance corpus at {}", dir.display());
        return;
    };
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).expect("corpus JSON");
    let ctx = CheckContext::new(Phase::HttpRequest);
    let (mut total, mut mismatches) = (0usize, Vec::new());
    for case in &cases {
        let deduced = case
            .get("expected")
            .and_then(|e| e.get("deduced_type"))
            .and_then(serde_json::Value::as_str);
        let declares = case
            .get("type_env")
            .and_then(serde_json::Value::as_array)
            .is_some_and(|a| !a.is_empty());
        let (Some(deduced), Some(expr), false) = (
            deduced,
            case.get("expr").and_then(serde_json::Value::as_str),
            declares || case.get("needs_proto").and_then(serde_json::Value::as_bool) == Some(true),
        ) else {
            continue;
        };
        total += 1;
        let ty = check_source(expr, &ctx, Expected::Any).ty.to_string();
        let ours = if ty == "null" {
            "null_type".to_owned()
        } else {
            ty
        };
        if ours != deduced {
            mismatches.push(format!("`{expr}`: expected {deduced}, got {ours}"));
        }
    }
    println!(
        "conformance (types): {}/{total} deduced types match",
        total - mismatches.len()
    );
    for m in &mismatches {
        println!("  {m}");
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}
