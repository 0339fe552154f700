//! Agreement with the shared policy corpus (`$WICKET_POLICY_CORPUS`, driven by its
//! `index.tsv`): `valid` and `valid-with-warnings` files lint without errors, `invalid` files
//! yield an error of the kind their `issues` column names, legacy-format files get a legacy
//! warning, fragments get an error. Files where we disagree with the index on purpose are listed, with a
//! reason, in `tests/corpus-disagreements.tsv`; the list must match exactly.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use wicket_policy::lint::{LintOptions, Report, lint};
use wicket_policy::source::SourceMap;

/// Our codes for each kind of the index's `issues` column.
fn our_codes(kind: &str) -> &'static [&'static str] {
    match kind {
        "E_YAML_PARSE" => &["E0001"],
        "E_PHASE_NOT_LIST" => &["E0102"],
        "E_ACTION_NOT_WRAPPED_IN_RULE" => &["E0104"],
        "E_RULE_UNKNOWN_KEY" => &["E0105"],
        "E_ACTION_UNKNOWN_KEY" => &["E0203"],
        "E_CONFIG_NOT_MAPPING" => &["E0205"],
        "E_RULE_WITHOUT_ACTIONS" => &["E0106"],
        "E_UNKNOWN_ACTION" => &["E0201"],
        "E_ACTION_NOT_ALLOWED_IN_PHASE" => &["E0202"],
        "E_UNREACHABLE_AFTER_TERMINATING" => &["E0501"],
        "E_SETVARS_VARS_NOT_LIST_OF_SINGLE_KEY_MAPS" => &["E0213"],
        "E_RATE_OUT_OF_RANGE" | "E_TOO_MANY_HEADERS" => &["E0207"],
        "E_CEL_SYNTAX" => &["E0300", "E0307"],
        _ => &[],
    }
}

struct Row {
    file: String,
    status: String,
    issues: String,
}

fn verdict(row: &Row, report: &Report) -> Result<(), String> {
    let errors: Vec<&str> = report
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.code)
        .collect();
    match row.status.as_str() {
        "valid" | "valid-with-warnings" if errors.is_empty() => Ok(()),
        "valid" | "valid-with-warnings" => Err(format!("errors {errors:?}")),
        "invalid" => {
            let expected: Vec<&str> = row
                .issues
                .split(';')
                .filter(|i| i.starts_with("E_"))
                .flat_map(|i| {
                    our_codes(i.split([':', '(']).next().unwrap_or_default())
                        .iter()
                        .copied()
                })
                .collect();
            if errors.iter().any(|e| expected.contains(e)) {
                Ok(())
            } else {
                Err(format!(
                    "expected one of {expected:?}, got errors {errors:?}"
                ))
            }
        }
        // Legacy files are graded on recognising the format (their 2024 variable spellings,
        // e.g. `conn.ClientIP`, are errors today).
        "legacy-format" => {
            if report
                .diagnostics
                .iter()
                .any(|d| matches!(d.code, "W0001" | "W0002"))
            {
                Ok(())
            } else {
                Err(format!("expected a legacy warning, got errors {errors:?}"))
            }
        }
        "fragment" if !errors.is_empty() => Ok(()),
        other => Err(format!("status `{other}`: errors {errors:?}")),
    }
}

#[test]
fn corpus_agreement() {
    let Some(dir) = std::env::var_os("WICKET_POLICY_CORPUS") else {
        println!("corpus test skipped: WICKET_POLICY_CORPUS is not set");
        return;
    };
    let dir = Path::new(&dir);
    let index = std::fs::read_to_string(dir.join("index.tsv")).expect("index.tsv");
    let mut lines = index.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (c_file, c_status, c_issues) = (col("file"), col("status"), col("issues"));
    let rows: Vec<Row> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Row {
                file: f[c_file].to_owned(),
                status: f[c_status].to_owned(),
                issues: f.get(c_issues).copied().unwrap_or("").to_owned(),
            }
        })
        .collect();
    assert!(rows.len() > 250, "rows: {}", rows.len());

    let listed: BTreeMap<String, String> =
        std::fs::read_to_string("tests/corpus-disagreements.tsv")
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let (file, reason) = l.split_once('\t').unwrap();
                assert!(reason.trim().len() > 10, "{file}: give a reason");
                (file.to_owned(), reason.to_owned())
            })
            .collect();

    let mut disagreements = BTreeMap::new();
    for row in &rows {
        let text = std::fs::read_to_string(dir.join(&row.file)).unwrap();
        let mut map = SourceMap::new();
        let id = map.add(row.file.clone(), text);
        let report = lint(&mut map, id, LintOptions::default());
        if let Err(why) = verdict(row, &report) {
            disagreements.insert(row.file.clone(), why);
        }
    }
    let agreed = rows.len() - disagreements.len();
    #[allow(clippy::cast_precision_loss)]
    let pct = agreed as f64 * 100.0 / rows.len() as f64;
    println!("corpus agreement: {agreed}/{} = {pct:.1}%", rows.len());
    for (file, why) in &disagreements {
        println!("  disagree {file}: {why}");
    }
    let unlisted: Vec<_> = disagreements
        .keys()
        .filter(|f| !listed.contains_key(*f))
        .collect();
    let stale: Vec<_> = listed
        .keys()
        .filter(|f| !disagreements.contains_key(*f))
        .collect();
    assert!(
        unlisted.is_empty(),
        "disagreements missing from corpus-disagreements.tsv: {unlisted:?}"
    );
    assert!(
        stale.is_empty(),
        "listed disagreements that now agree: {stale:?}"
    );
}
