//! Parses every expression of the cel-spec conformance corpus.
//!
//! Reads the directory named by `WICKET_CEL_CONFORMANCE_DIR`, else the engine's vendored copy
//! (`engine/tests/cel-conformance/`), else the shared corpus next to the repository. Every
//! case must parse (the corpus has no case expecting a parse error at this commit; macro
//! argument errors would be listed in `EXPECTED_PARSE_ERRORS`), and every parsed expression
//! must survive `parse(print(e))`.

use std::path::{Path, PathBuf};

use wicket_grammar::{parse, print};

/// Cases (by id) whose expected outcome is a parse error.
const EXPECTED_PARSE_ERRORS: &[&str] = &[];

fn corpus_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("WICKET_CEL_CONFORMANCE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        manifest.join("../engine/tests/cel-conformance"),
        manifest.join("../../shared/corpus/cel-conformance"),
        manifest.join("../../../shared/corpus/cel-conformance"),
    ]
    .into_iter()
    .find(|d| d.join("parse.json").is_file())
}

#[test]
fn every_conformance_expression_parses_and_round_trips() {
    let Some(dir) = corpus_dir() else {
        eprintln!("conformance corpus not found; set WICKET_CEL_CONFORMANCE_DIR to run this test");
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let (mut total, mut failures) = (0, Vec::new());
    for file in &files {
        let cases: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        for case in cases.as_array().unwrap() {
            let id = case["id"].as_str().unwrap();
            let expr = case["expr"].as_str().unwrap();
            total += 1;
            let expect_error = EXPECTED_PARSE_ERRORS.contains(&id);
            match parse(expr) {
                Ok(e) if !expect_error => {
                    let printed = print(&e);
                    match parse(&printed) {
                        Ok(again) if again.eq_ignoring_spans(&e) => {}
                        Ok(_) => failures.push(format!("{id}: round trip differs: {printed}")),
                        Err(err) => failures.push(format!("{id}: printed `{printed}`: {err}")),
                    }
                }
                Ok(_) => failures.push(format!("{id}: expected a parse error: {expr}")),
                Err(err) if !expect_error => {
                    failures.push(format!("{id}: {err} at {:?}: {expr}", err.span));
                }
                Err(_) => {}
            }
        }
    }
    eprintln!(
        "conformance parse: {} of {total} expressions parsed as expected",
        total - failures.len()
    );
    assert!(
        total > 1000,
        "only {total} cases found in {}",
        dir.display()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
