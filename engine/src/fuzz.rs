//! Invariant checks shared by the fuzz targets (`fuzz/`) and their regression tests
//! (`engine/tests/fuzz_regressions.rs`). Not part of the stable API.
//!
//! Each function panics when an invariant is violated: that is what a fuzzer detects.

use wicket_policy::Phase;
use wicket_policy::lint::{LintOptions, lint};
use wicket_policy::source::SourceMap;

use crate::Decision;
use crate::compile::compile;
use crate::compile::ir::PolicyIr;
use crate::program::{Outcome, OwnedRequest, Scratch};

/// Checks loading a policy file end to end on arbitrary text, as `wicket lint` and the edge do:
/// linting and compiling never panic; every diagnostic points inside the file on character
/// boundaries; when the policy compiles (and reads neither random numbers nor the clock), the
/// compiled program and the same policy read linearly
/// by the reference interpreter (`Program::eval_reference`) give the same decision, effects
/// and variables on a few fixed requests in every phase.
///
/// # Panics
///
/// When one of those invariants does not hold.
pub fn check_policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut map = SourceMap::new();
    let id = map.add("fuzz.yml", text);
    let report = lint(&mut map, id, LintOptions::default());
    for d in &report.diagnostics {
        for label in std::iter::once(&d.primary).chain(&d.labels) {
            if label.file != id {
                continue;
            }
            let (start, end) = (label.span.start as usize, label.span.end as usize);
            assert!(
                start <= end && end <= text.len(),
                "{}: span {start}..{end} outside the file ({} bytes)",
                d.code,
                text.len()
            );
            assert!(
                text.is_char_boundary(start) && text.is_char_boundary(end),
                "{}: span {start}..{end} splits a character",
                d.code
            );
        }
    }
    if report.errors() > 0 {
        return;
    }
    let Some(policy) = report.policies.first() else {
        return;
    };
    // A policy can lint without errors and still be refused by the engine: documentation
    // placeholders and actions the edge does not carry out lint as warnings (W0009, W0011), and
    // some limits are the edge's, not the format's. Refusing is fine; panicking is not.
    let ir = PolicyIr::from(policy);
    let Ok(program) = compile(&ir) else {
        return;
    };
    // A second program for the reference reading: stateful actions (rate limits, circuit
    // breakers) keep their state in the program, and each side must see the same history.
    let Ok(twin) = compile(&ir) else {
        panic!("the same policy compiled once and then not");
    };
    // Random numbers and the clock differ between two evaluations by design.
    if text.contains("rand") || text.contains("time.now") || text.contains("conn.ts") {
        return;
    }
    for line in [
        "GET https://app.example.test/",
        "POST http://api.example.test:8080/v1/users?id=7&x=%20y",
        "DELETE https://admin.example.test/admin/x",
    ] {
        let Ok(req) = OwnedRequest::parse(line) else {
            continue;
        };
        let mut req = req
            .with_header("authorization", "Basic dXNlcjpwYXNz")
            .with_header("cookie", "session=abc; theme=dark")
            .with_client_ip(
                "203.0.113.7"
                    .parse()
                    .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
            );
        for phase in [Phase::TcpConnect, Phase::HttpRequest, Phase::HttpResponse] {
            if phase == Phase::HttpResponse {
                req.response_status = Some(503);
                req.response_headers = vec![("content-type".into(), "text/html".into())];
            }
            let mut s1 = Scratch::new();
            let compiled = summary(&program.eval(phase, &req, &mut s1));
            let vars1 = format!("{:?}", s1.vars());
            let mut s2 = Scratch::new();
            let reference = summary(&twin.eval_reference(phase, &req, &mut s2));
            let vars2 = format!("{:?}", s2.vars());
            assert_eq!(
                (compiled, vars1),
                (reference, vars2),
                "compiled and reference disagree on `{line}` in {phase:?}"
            );
        }
    }
}

/// The comparable form of an outcome: errors compare by rule (which of several errors of one
/// rule is reported may differ, as conjuncts are reordered by cost).
fn summary(out: &Outcome<'_>) -> String {
    let decision = match &out.decision {
        Decision::Error { rule, .. } => format!("Error({rule})"),
        d => format!("{d:?}"),
    };
    format!("{decision} | {:?}", out.effects)
}
