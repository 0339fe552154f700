//! The cel-spec conformance suite, run against the reference interpreter.
//!
//! Reads the JSON cases vendored in `tests/cel-conformance/` (or the directory named by
//! `WICKET_CEL_CONFORMANCE_DIR`), runs every case that needs neither protobuf messages nor a
//! type checker, prints `file: passed/total` per file and the summary line
//! `conformance: core P/T, extensions P/T`, and fails when a case fails that is not listed in
//! `tests/conformance-known-failures.tsv`. Listed cases that pass are reported so the list can
//! be pruned.
//!
//! Comparison follows the corpus README: same type and value (`1`, `1u` and `1.0` differ), maps
//! without regard to order, any NaN matches a NaN, and any error satisfies an expected error.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::Value as Json;
use wicket_engine::Value;
use wicket_engine::interp::Env;
use wicket_engine::value::{CelType, Key, MapValue};

const KNOWN_FAILURES: &str = "tests/conformance-known-failures.tsv";

fn corpus_dir() -> PathBuf {
    match std::env::var_os("WICKET_CEL_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cel-conformance"),
    }
}

fn known_failures() -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(KNOWN_FAILURES);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (id, reason) = line.split_once('\t').unwrap_or((line, ""));
            assert!(
                !reason.trim().is_empty(),
                "known failure `{id}` has no reason in {KNOWN_FAILURES}"
            );
            (id.trim().to_owned(), reason.trim().to_owned())
        })
        .collect()
}

/// A typed corpus value as a CEL value.
fn decode(json: &Json) -> Result<Value, String> {
    let Json::Object(obj) = json else {
        return Err(format!("typed value expected, found {json}"));
    };
    let Some((kind, v)) = obj.iter().next() else {
        return Err("empty typed value".to_owned());
    };
    Ok(match kind.as_str() {
        "null" => Value::Null,
        "bool" => Value::Bool(v.as_bool().ok_or("bad bool")?),
        "int64" => Value::Int(v.as_i64().ok_or("bad int64")?),
        "uint64" => Value::Uint(v.as_u64().ok_or("bad uint64")?),
        "double" => Value::Double(match v {
            Json::String(s) => match s.as_str() {
                "NaN" => f64::NAN,
                "Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                other => return Err(format!("bad double {other}")),
            },
            other => other.as_f64().ok_or("bad double")?,
        }),
        "string" => Value::string(v.as_str().ok_or("bad string")?),
        "bytes_b64" => Value::bytes(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().ok_or("bad bytes")?)
                .map_err(|e| e.to_string())?,
        ),
        "list" => Value::list(
            v.as_array()
                .ok_or("bad list")?
                .iter()
                .map(decode)
                .collect::<Result<_, _>>()?,
        ),
        "map" => {
            let mut map = MapValue::new();
            for entry in v.as_array().ok_or("bad map")? {
                let pair = entry.as_array().ok_or("bad map entry")?;
                let [k, v] = pair.as_slice() else {
                    return Err("bad map entry".to_owned());
                };
                let key = Key::from_value(&decode(k)?).ok_or("bad map key")?;
                map.insert(key, decode(v)?).map_err(|e| e.to_string())?;
            }
            Value::map(map)
        }
        "type" => {
            let name = v.as_str().ok_or("bad type")?;
            Value::Type(CelType::from_name(name).unwrap_or_else(|| CelType::Named(name.into())))
        }
        "timestamp" => {
            let (s, n) = seconds_nanos(v)?;
            Value::Timestamp(jiff::Timestamp::new(s, n).map_err(|e| e.to_string())?)
        }
        "duration" => {
            let (s, n) = seconds_nanos(v)?;
            Value::Duration(jiff::SignedDuration::new(s, n))
        }
        other => return Err(format!("unsupported typed value `{other}`")),
    })
}

fn seconds_nanos(v: &Json) -> Result<(i64, i32), String> {
    let s = v.get("seconds").and_then(Json::as_i64).unwrap_or(0);
    let n = v.get("nanos").and_then(Json::as_i64).unwrap_or(0);
    Ok((s, i32::try_from(n).map_err(|e| e.to_string())?))
}

/// Equality of results as the corpus defines it: same type and value.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Uint(x), Value::Uint(y)) => x == y,
        (Value::Double(x), Value::Double(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bytes(x), Value::Bytes(y)) => x == y,
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(a, b)| same(a, b))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, v)| {
                    y.iter()
                        .find(|(k2, _)| *k2 == k)
                        .is_some_and(|(_, v2)| same(v, v2))
                })
        }
        (Value::Type(x), Value::Type(y)) => x.name() == y.name(),
        (Value::Timestamp(x), Value::Timestamp(y)) => x == y,
        (Value::Duration(x), Value::Duration(y)) => x == y,
        (Value::Optional(x), Value::Optional(y)) => match (x, y) {
            (None, None) => true,
            (Some(x), Some(y)) => same(x, y),
            _ => false,
        },
        (Value::Ip(x), Value::Ip(y)) => x == y,
        (Value::Cidr(x), Value::Cidr(y)) => x == y,
        _ => false,
    }
}

/// Runs one case; `Err` describes the failure.
fn run_case(case: &Json) -> Result<(), String> {
    let expr_text = case["expr"].as_str().ok_or("case without expr")?;
    let container = case["container"].as_str().unwrap_or("");
    let mut bindings = HashMap::new();
    if let Some(obj) = case["bindings"].as_object() {
        for (name, value) in obj {
            bindings.insert(name.clone(), decode(value)?);
        }
    }
    let expected = &case["expected"];
    let expected_error = expected.get("error").and_then(Json::as_bool) == Some(true);
    let expected_value = match expected.get("value") {
        Some(v) => Some(decode(v)?),
        None if expected_error => None,
        None => return Err(format!("unsupported expectation {expected}")),
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let expr = wicket_grammar::parse(expr_text).map_err(|e| format!("parse error: {e}"))?;
        Env::new(&bindings)
            .with_container(container)
            .eval(&expr)
            .map_err(|e| format!("error: {e}"))
    }))
    .map_err(|_| "panicked".to_owned())?;
    match (outcome, expected_value) {
        (Err(_), None) => Ok(()),
        (Ok(got), None) => Err(format!("expected an error, got {got:?}")),
        (Ok(got), Some(want)) if same(&got, &want) => Ok(()),
        (Ok(got), Some(want)) => Err(format!("expected {want:?}, got {got:?}")),
        (Err(e), Some(want)) => Err(format!("expected {want:?}, got {e}")),
    }
}

#[derive(Default)]
struct Tally {
    passed: usize,
    total: usize,
}

#[test]
fn conformance() {
    let dir = corpus_dir();
    let known = known_failures();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read corpus directory {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus files in {}", dir.display());

    let mut report = String::new();
    let mut by_category: BTreeMap<String, Tally> = BTreeMap::new();
    let mut unexpected = Vec::new();
    let mut now_passing = Vec::new();
    let mut seen = BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("corpus file is readable");
        let cases: Vec<Json> = serde_json::from_str(&text).expect("corpus file is JSON");
        let mut tally = Tally::default();
        let mut category = String::new();
        for case in &cases {
            if case["needs_proto"].as_bool() == Some(true)
                || case["check_only"].as_bool() == Some(true)
            {
                continue;
            }
            let id = case["id"].as_str().unwrap_or("?").to_owned();
            case["category"]
                .as_str()
                .unwrap_or("")
                .clone_into(&mut category);
            seen.insert(id.clone());
            tally.total += 1;
            match run_case(case) {
                Ok(()) => {
                    tally.passed += 1;
                    if known.contains_key(&id) {
                        now_passing.push(id);
                    }
                }
                Err(why) => {
                    if !known.contains_key(&id) {
                        unexpected.push(format!(
                            "{id}\n    expr: {}\n    {why}",
                            case["expr"].as_str().unwrap_or("")
                        ));
                    }
                }
            }
        }
        if tally.total == 0 {
            continue;
        }
        let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("?");
        writeln!(report, "{name}: {}/{}", tally.passed, tally.total).expect("write to string");
        let entry = by_category.entry(category).or_default();
        entry.passed += tally.passed;
        entry.total += tally.total;
    }
    let core = by_category.remove("core").unwrap_or_default();
    let ext = by_category.remove("extension").unwrap_or_default();
    writeln!(
        report,
        "conformance: core {}/{}, extensions {}/{}",
        core.passed, core.total, ext.passed, ext.total
    )
    .expect("write to string");
    println!("{report}");

    let stale: Vec<&String> = known.keys().filter(|id| !seen.contains(*id)).collect();
    if !stale.is_empty() {
        println!("known failures that are not runnable cases of the corpus: {stale:?}");
    }
    if !now_passing.is_empty() {
        println!(
            "{} listed known failures now pass; remove them from {KNOWN_FAILURES}:",
            now_passing.len()
        );
        for id in &now_passing {
            println!("  {id}");
        }
    }
    assert!(
        unexpected.is_empty(),
        "{} cases failed that are not in {KNOWN_FAILURES}:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
}
