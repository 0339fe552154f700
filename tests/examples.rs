//! Every policy in `examples/` ships with a cases file (`tests/examples/NAME.cases.yml`) and
//! passes `wicket test`; a wrong expectation makes `wicket test` fail with a readable diff.
//!
//! The cases live outside `examples/`: `wicket lint examples` lints every YAML file under it as
//! a policy.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/examples")
}

/// The example policies (`examples/*.yaml`, `examples/*.yml`, and those one directory down such
/// as `examples/layered/api.yaml`; `agent.yml` files are agent configs), sorted.
fn policies() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            for sub in std::fs::read_dir(&path).unwrap() {
                out.push(sub.unwrap().path());
            }
        } else {
            out.push(path);
        }
    }
    out.retain(|p| {
        p.extension().is_some_and(|x| x == "yaml" || x == "yml")
            && p.file_name().is_some_and(|n| n != "agent.yml")
    });
    out.sort();
    out
}

/// The cases file of a policy: `examples/NAME.yaml` -> `tests/examples/NAME.cases.yml`,
/// `examples/DIR/NAME.yaml` -> `tests/examples/DIR/NAME.cases.yml`.
fn cases_of(policy: &Path) -> PathBuf {
    let stem = policy.file_stem().unwrap().to_str().unwrap();
    let rel_dir = policy
        .parent()
        .unwrap()
        .strip_prefix(examples_dir())
        .unwrap();
    cases_dir().join(rel_dir).join(format!("{stem}.cases.yml"))
}

fn wicket_test(policy: &Path, cases: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wicket"))
        .arg("test")
        .arg(policy)
        .arg(cases)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn every_example_has_a_cases_file() {
    let policies = policies();
    assert!(policies.len() >= 9, "examples/ lost policies: {policies:?}");
    let missing: Vec<_> = policies
        .iter()
        .filter(|p| !cases_of(p).is_file())
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "examples without a cases file: {missing:?}"
    );
}

#[test]
fn every_cases_file_has_a_policy() {
    let policies = policies();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(cases_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            files.push(path);
        }
    }
    let orphans: Vec<_> = files
        .into_iter()
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with(".cases.yml")))
        .filter(|p| !policies.iter().any(|policy| cases_of(policy) == *p))
        .collect();
    assert!(
        orphans.is_empty(),
        "cases files without a policy: {orphans:?}"
    );
}

#[test]
fn every_example_passes_its_cases() {
    let mut failures = String::new();
    for policy in policies() {
        let cases = cases_of(&policy);
        if !cases.is_file() {
            continue; // reported by `every_example_has_a_cases_file`
        }
        let out = wicket_test(&policy, &cases);
        let report = text(&out);
        if out.status.code() != Some(0) || !report.contains(" passed, 0 failed") {
            failures.push_str(&format!("--- {}\n{report}\n", policy.display()));
        }
    }
    assert!(failures.is_empty(), "example cases failed:\n{failures}");
}

#[test]
fn a_wrong_expectation_fails_with_a_diff() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("wrong.cases.yml");
    std::fs::write(
        &cases,
        "tests:\n  \
           - name: right\n    \
             request: GET https://staging.example.com/\n    \
             expect: { decision: reject, status: 401 }\n  \
           - name: wrong status\n    \
             request: GET https://staging.example.com/\n    \
             expect: { decision: reject, status: 403 }\n",
    )
    .unwrap();
    let out = wicket_test(&examples_dir().join("basic-auth.yaml"), &cases);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("ok    right"), "{report}");
    assert!(report.contains("FAIL  wrong status"), "{report}");
    assert!(
        report.contains("    status:\n      expected: 403\n      actual:   401"),
        "{report}"
    );
    assert!(report.contains("1 passed, 1 failed"), "{report}");
}
