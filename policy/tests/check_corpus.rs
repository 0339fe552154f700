//! Every CEL expression, `${…}` template, `bucket_key` and `retry_condition` in the corpus
//! policies that `index.tsv` marks `valid` or `valid-with-warnings` must check without errors
//! in its phase. The corpus is not redistributed: the test reads the directory named by
//! `WICKET_POLICY_CORPUS` and is skipped (with a message) without it.

use std::path::Path;

use saphyr::{LoadableYamlNode, Yaml};
use wicket_policy::Phase;
use wicket_policy::Severity;
use wicket_policy::check::{CheckContext, Expected, check_source, check_template};
use wicket_policy::env::RETRY_CONDITION_VARIABLES;

/// Files whose `index.tsv` verdict we do not share: they contain a real CEL error.
const DISAGREEMENTS: &[(&str, &str)] = &[
    (
        "082-event-logging--custom-response-log.yaml",
        "`res.status_code < '200'` compares an int with a string: a CEL type error (spec §2.1)",
    ),
    (
        "149-gallery-manipulateheaders--add-headers.yaml",
        "`${.ngrok.geo.country_code}` names no variable of spec §4 (`conn.geo.country_code` exists)",
    ),
    (
        "207-gateway-ephemeral-workloads--deny-forward-internal.yaml",
        "`!conn.client_ip in [...]` parses as `(!conn.client_ip) in [...]`: `!` on a string",
    ),
    (
        "289-guides-linode-gslb-edges--set-vars-forward-internal.yaml",
        "`${.ngrok.geo.country_code}` names no variable of spec §4 (`conn.geo.country_code` exists)",
    ),
];

#[derive(Default)]
struct Tally {
    expressions: usize,
    templates: usize,
    failures: Vec<String>,
    warnings: Vec<String>,
}

fn walk_config(node: &Yaml<'_>, key: &str, phase: Phase, file: &str, t: &mut Tally) {
    match node {
        Yaml::Sequence(items) => {
            for item in items {
                walk_config(item, key, phase, file, t);
            }
        }
        Yaml::Mapping(map) => {
            for (k, v) in map {
                walk_config(v, k.as_str().unwrap_or(key), phase, file, t);
            }
        }
        _ => {
            let Some(s) = node.as_str() else { return };
            let mut ctx = CheckContext::new(phase);
            let issues = match key {
                "bucket_key" | "bucket_keys" => {
                    t.expressions += 1;
                    check_source(s, &ctx, Expected::Any).issues
                }
                "retry_condition" => {
                    t.expressions += 1;
                    ctx.extra_variables = RETRY_CONDITION_VARIABLES;
                    check_source(s, &ctx, Expected::Bool).issues
                }
                _ if s.contains("${") => {
                    t.templates += 1;
                    check_template(s, &ctx)
                }
                _ => return,
            };
            record(&issues, s, file, phase, t);
        }
    }
}

fn record(issues: &[wicket_policy::ExprIssue], src: &str, file: &str, phase: Phase, t: &mut Tally) {
    for i in issues {
        let line = format!(
            "{file} [{phase}] `{src}`: {} {} (at `{}`)",
            i.code,
            i.message,
            src.get(i.span.range()).unwrap_or("")
        );
        if i.severity == Severity::Error {
            t.failures.push(line);
        } else {
            t.warnings.push(line);
        }
    }
}

fn check_file(path: &Path, file: &str, t: &mut Tally) {
    let Ok(text) = std::fs::read_to_string(path) else {
        t.failures.push(format!("{file}: unreadable"));
        return;
    };
    let Ok(docs) = Yaml::load_from_str(&text) else {
        t.failures.push(format!("{file}: YAML does not load"));
        return;
    };
    for doc in &docs {
        let Some(map) = doc.as_mapping() else {
            continue;
        };
        for (k, rules) in map {
            let Some(phase) = k.as_str().and_then(Phase::from_key) else {
                continue;
            };
            for rule in rules.as_vec().map(Vec::as_slice).unwrap_or_default() {
                if let Some(exprs) = rule.as_mapping_get("expressions").and_then(Yaml::as_vec) {
                    for e in exprs {
                        let Some(src) = e.as_str() else { continue };
                        t.expressions += 1;
                        let issues =
                            check_source(src, &CheckContext::new(phase), Expected::Bool).issues;
                        record(&issues, src, file, phase, t);
                    }
                }
                if let Some(actions) = rule.as_mapping_get("actions").and_then(Yaml::as_vec) {
                    for a in actions {
                        if let Some(config) = a.as_mapping_get("config") {
                            walk_config(config, "", phase, file, t);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn corpus_expressions_check_without_errors() {
    let Ok(dir) = std::env::var("WICKET_POLICY_CORPUS") else {
        println!("skipped: set WICKET_POLICY_CORPUS to the corpus `policies` directory");
        return;
    };
    let dir = Path::new(&dir);
    let index = std::fs::read_to_string(dir.join("index.tsv")).expect("index.tsv");
    let mut t = Tally::default();
    let mut files = 0;
    for line in index.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (Some(file), Some(status)) = (cols.first(), cols.get(7)) else {
            continue;
        };
        if *status != "valid" && *status != "valid-with-warnings" {
            continue;
        }
        files += 1;
        check_file(&dir.join(file), file, &mut t);
    }
    println!(
        "corpus: {files} files, {} expressions, {} templates, {} errors, {} warnings",
        t.expressions,
        t.templates,
        t.failures.len(),
        t.warnings.len()
    );
    for f in &t.failures {
        println!("  error: {f}");
    }
    for w in &t.warnings {
        println!("  warning: {w}");
    }
    let unexpected: Vec<&String> = t
        .failures
        .iter()
        .filter(|f| !DISAGREEMENTS.iter().any(|(file, _)| f.starts_with(file)))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{} false errors: {unexpected:#?}",
        unexpected.len()
    );
    for (file, reason) in DISAGREEMENTS {
        assert!(
            t.failures.iter().any(|f| f.starts_with(file)),
            "{file} is listed as a disagreement ({reason}) but checks clean"
        );
    }
}

/// The same files through the whole linter, where conditions are checked with the scope the
/// document gives them (`vars.*` types from earlier `set-vars`, earlier actions): no CEL
/// error (`E03xx`) outside the listed disagreements.
#[test]
fn corpus_expressions_check_without_errors_in_document_scope() {
    let Ok(dir) = std::env::var("WICKET_POLICY_CORPUS") else {
        println!("skipped: set WICKET_POLICY_CORPUS to the corpus `policies` directory");
        return;
    };
    let dir = Path::new(&dir);
    let index = std::fs::read_to_string(dir.join("index.tsv")).expect("index.tsv");
    let mut failures = Vec::new();
    for line in index.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (Some(file), Some(status)) = (cols.first(), cols.get(7)) else {
            continue;
        };
        if (*status != "valid" && *status != "valid-with-warnings")
            || DISAGREEMENTS.iter().any(|(f, _)| f == file)
        {
            continue;
        }
        let text = std::fs::read_to_string(dir.join(file)).expect("corpus file");
        let mut map = wicket_policy::source::SourceMap::new();
        let id = map.add(*file, text);
        let report =
            wicket_policy::lint::lint(&mut map, id, wicket_policy::lint::LintOptions::default());
        for d in &report.diagnostics {
            if d.code.starts_with("E03") {
                failures.push(format!("{file}: {} {}", d.code, d.message));
            }
        }
    }
    for f in &failures {
        println!("  {f}");
    }
    assert!(
        failures.is_empty(),
        "{} CEL errors in valid files",
        failures.len()
    );
}
