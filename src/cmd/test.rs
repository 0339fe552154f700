//! `wicket test`: policy unit tests. A YAML file lists requests and what the policy must
//! decide for them; failures are shown as field-by-field differences and exit with status 1.
//!
//! ```yaml
//! tests:
//!   - name: admin needs credentials
//!     request: GET https://api.example.test/admin
//!     headers: { x-api-key: abc }        # optional
//!     client_ip: 203.0.113.7             # optional
//!     response: { status: 502, headers: { server: x } }   # optional upstream response
//!     # What the runtime would supply (all optional):
//!     actions:                           # results of external actions, by type or namespace:
//!       oauth: { identity: { email: ana@example.com } }   # -> actions.ngrok.oauth.*
//!     jwt: { sub: user-1 }               # shorthand: actions.ngrok.jwt_validation.tokens[0].payload
//!     tls:                               # conn.tls.*; `terminate-tls` counts as carried out
//!       client: { subject: { common_name: device-42 } }
//!     variables: { conn.geo.country_code: US }   # any other variable by name
//!     expect:
//!       phase: on_http_request           # optional; default: the phase that ended the request,
//!                                        # else the last phase run
//!       decision: deny                   # continue | deny | respond | redirect | reject |
//!                                        # close-connection | forward | external | error
//!       status: 401
//!       location: https://…              # redirect
//!       body: …                          # respond
//!       headers: { www-authenticate: … } # response headers of the decision
//!       added_headers: { x-path: /admin }  # add-headers effects of that phase
//!       removed_headers: [x-debug]       # remove-headers effects of that phase (a subset)
//!       vars: { tier: gold }             # vars.* at the end of that phase
//! ```
//!
//! Maps are compared as subsets; a `null` value asserts that the key is absent
//! (`added_headers: { x-debug: null }`: the header is not added). A phase that reaches an
//! external action (`oauth`, `openid-connect`, JWKS `jwt-validation`, `verify-webhook`,
//! `http-request`, `terminate-tls`) with a result injected under `actions` is carried out as the
//! runtime would: the result is recorded and the phase resumed. Without one the phase ends
//! there, and the case fails with a message naming the action unless it expects
//! `decision: external`.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use serde_json::{Map, Value as Json};
use wicket_engine::program::json::decision_to_json;
use wicket_engine::program::{Decision, OwnedRequest};
use wicket_policy::yaml::{self, Node, NodeKind, Typed};

use super::eval::{Injections, PhaseRun, load_program, parse_header, run_phases};

/// Arguments of `wicket test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The policy file.
    pub policy: PathBuf,
    /// The test cases (YAML).
    pub cases: PathBuf,
}

fn to_json(node: &Node) -> Json {
    match &node.kind {
        NodeKind::Scalar(s) => match s.typed() {
            Typed::Null => Json::Null,
            Typed::Bool(b) => Json::Bool(b),
            Typed::Int(i) => Json::from(i),
            Typed::Float(f) => serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number),
            Typed::Str(s) => Json::String(s.to_owned()),
        },
        NodeKind::Seq(items) => Json::Array(items.iter().map(to_json).collect()),
        NodeKind::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), to_json(v)))
                .collect(),
        ),
    }
}

fn string_map(v: Option<&Json>, what: &str) -> Result<Vec<(String, String)>> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let Some(m) = v.as_object() else {
        bail!("`{what}` must be a mapping");
    };
    m.iter()
        .map(|(k, v)| {
            let text = match v {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            parse_header(&format!("{k}: {text}"))
        })
        .collect()
}

/// The phase an expectation is about.
fn select<'r>(runs: &'r [PhaseRun], phase: Option<&str>) -> Option<&'r PhaseRun> {
    match phase {
        Some(p) => runs.iter().find(|r| r.phase.as_str() == p),
        None => runs
            .iter()
            .find(|r| r.decision.terminates() && !matches!(r.decision, Decision::Respond { .. } if r.phase.as_str() == "on_http_request"))
            .or_else(|| runs.last()),
    }
}

fn actual(run: &PhaseRun) -> Map<String, Json> {
    let mut out = match decision_to_json(&run.decision) {
        Json::Object(m) => m,
        _ => Map::new(),
    };
    if let Some(Json::Array(headers)) = out.get("headers").cloned() {
        let mut m = Map::new();
        for h in headers {
            if let (Some(n), Some(v)) = (
                h.get(0).and_then(Json::as_str),
                h.get(1).and_then(Json::as_str),
            ) {
                m.insert(n.to_owned(), Json::String(v.to_owned()));
            }
        }
        out.insert("headers".into(), Json::Object(m));
    }
    let mut added = Map::new();
    let mut removed = Vec::new();
    for e in &run.effects {
        match e.get("effect").and_then(Json::as_str) {
            Some("add-header") => {
                if let (Some(n), Some(v)) = (e.get("name").and_then(Json::as_str), e.get("value")) {
                    added.insert(n.to_owned(), v.clone());
                }
            }
            Some("remove-header") => {
                if let Some(n) = e.get("name") {
                    removed.push(n.clone());
                }
            }
            _ => {}
        }
    }
    out.insert("added_headers".into(), Json::Object(added));
    out.insert("removed_headers".into(), Json::Array(removed));
    out.insert("vars".into(), run.vars.clone());
    out
}

/// Whether `actual` holds everything `expected` states (maps: a subset, a `null` entry meaning
/// "absent"; other values: equal, numbers and strings compared by their text).
fn holds(expected: &Json, actual: &Json) -> bool {
    match (expected, actual) {
        (Json::Object(e), Json::Object(a)) => e.iter().all(|(k, v)| match (v, a.get(k)) {
            (Json::Null, got) => got.is_none_or(Json::is_null),
            (v, got) => got.is_some_and(|av| holds(v, av)),
        }),
        (Json::String(e), other) if !other.is_string() => e.as_str() == other.to_string().as_str(),
        (e, Json::String(a)) if !e.is_string() => e.to_string().as_str() == a.as_str(),
        (e, a) => e == a,
    }
}

/// Whether every header named in `want` (a list, or one name) is among the removed ones.
fn removed_subset(want: &Json, got: &Json) -> bool {
    let got: Vec<String> = got
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Json::as_str)
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default();
    let has = |w: &Json| {
        w.as_str()
            .is_some_and(|w| got.contains(&w.to_ascii_lowercase()))
    };
    match want {
        Json::Array(items) => items.iter().all(has),
        one => has(one),
    }
}

/// The case's injections (`actions`, `jwt`, `tls`, `variables`); `tls.sni` and `tls.version`
/// become the request's `conn.tls.sni` and `conn.tls.version`.
fn injections(case: &Json, request: &mut OwnedRequest) -> Result<Injections> {
    let mut inj = Injections::default();
    if let Some(actions) = case.get("actions") {
        let Some(m) = actions.as_object() else {
            bail!("`actions` must map action types to their result variables");
        };
        inj.actions = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    }
    if let Some(claims) = case.get("jwt") {
        if !claims.is_object() {
            bail!("`jwt` must be a mapping of claims");
        }
        inj.actions.push((
            "jwt-validation".into(),
            serde_json::json!({"tokens": [{"header": {}, "payload": claims, "verified": true}]}),
        ));
    }
    if let Some(tls) = case.get("tls") {
        if !tls.is_object() {
            bail!("`tls` must be a mapping (`client: {{ subject: {{ common_name: … }} }}`)");
        }
        if let Some(sni) = tls.get("sni").and_then(Json::as_str) {
            request.sni = Some(sni.to_owned());
        }
        if let Some(version) = tls.get("version").and_then(Json::as_str) {
            request.tls_version = Some(version.to_owned());
        }
        inj.tls = Some(tls.clone());
    }
    if let Some(vars) = case.get("variables") {
        let Some(m) = vars.as_object() else {
            bail!("`variables` must map variable names to values");
        };
        inj.variables = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    }
    Ok(inj)
}

/// Runs one case; `Ok(None)` when it passes, otherwise the failure report.
fn run_case(program: &wicket_engine::Program, case: &Json) -> Result<Option<String>> {
    let line = case
        .get("request")
        .and_then(Json::as_str)
        .context("each test needs `request: METHOD URL`")?;
    let mut request = OwnedRequest::parse(line)?;
    for (n, v) in string_map(case.get("headers"), "headers")? {
        if n == "host" {
            request.headers.retain(|(name, _)| name != "host");
            request.host.clone_from(&v);
        }
        request.headers.push((n, v));
    }
    if let Some(ip) = case.get("client_ip").and_then(Json::as_str) {
        request.client_ip = Some(
            ip.parse()
                .with_context(|| format!("invalid `client_ip` `{ip}`"))?,
        );
    }
    let response = case.get("response");
    let status = response
        .and_then(|r| r.get("status"))
        .and_then(Json::as_u64)
        .map(u16::try_from)
        .transpose()
        .context("invalid response `status`")?;
    let response_headers = string_map(response.and_then(|r| r.get("headers")), "response.headers")?;
    let injections = injections(case, &mut request)?;
    let runs = run_phases(program, &request, status, &response_headers, &injections);
    let expect = case
        .get("expect")
        .and_then(Json::as_object)
        .context("each test needs an `expect` mapping")?;
    let phase = expect.get("phase").and_then(Json::as_str);
    let Some(run) = select(&runs, phase) else {
        return Ok(Some(format!(
            "    the phase `{}` did not run\n",
            phase.unwrap_or("?")
        )));
    };
    let actual = actual(run);
    let mut diff = String::new();
    if let Decision::External { kind, .. } = &run.decision {
        if expect.get("decision").and_then(Json::as_str) != Some("external") {
            let _ = writeln!(
                diff,
                "    {} reached the external action `{kind}`, which needs the runtime: inject its \
                 result with `actions: {{ {kind}: {{…}} }}`{} or expect `decision: external`",
                run.phase,
                if kind.as_ref() == "terminate-tls" {
                    " (or `tls: {…}`)"
                } else {
                    ""
                }
            );
        }
    }
    for (key, want) in expect {
        if key == "phase" {
            continue;
        }
        let got = actual.get(key).cloned().unwrap_or(Json::Null);
        let ok = if key == "removed_headers" {
            removed_subset(want, &got)
        } else {
            holds(want, &got)
        };
        if !ok {
            let _ = writeln!(
                diff,
                "    {key}:\n      expected: {want}\n      actual:   {got}"
            );
        }
    }
    if diff.is_empty() {
        return Ok(None);
    }
    let _ = writeln!(diff, "    (phase {}: {})", run.phase, Json::Object(actual));
    Ok(Some(diff))
}

/// Runs `wicket test`; `Ok(false)` when a case fails.
pub fn run(args: &TestArgs) -> Result<bool> {
    let program = load_program(&args.policy)?;
    let (name, text) = super::read_input(&args.cases)?;
    let root = yaml::parse(&text)
        .map_err(|e| anyhow::anyhow!("`{name}` is not valid YAML: {}", e.message))?
        .with_context(|| format!("`{name}` is empty"))?;
    let doc = to_json(&root);
    let cases = doc
        .get("tests")
        .and_then(Json::as_array)
        .with_context(|| format!("`{name}` needs a `tests` list"))?;
    let mut failed = 0;
    for (i, case) in cases.iter().enumerate() {
        let label = case
            .get("name")
            .and_then(Json::as_str)
            .map_or_else(|| format!("test {}", i + 1), str::to_owned);
        match run_case(&program, case).with_context(|| format!("in `{label}`"))? {
            None => println!("ok    {label}"),
            Some(diff) => {
                failed += 1;
                println!("FAIL  {label}\n{diff}");
            }
        }
    }
    println!(
        "\n{} passed, {failed} failed ({})",
        cases.len() - failed,
        args.policy.display()
    );
    Ok(failed == 0)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wicket_engine::compile::compile;
    use wicket_engine::compile::ir::PolicyIr;

    use super::*;

    #[test]
    fn expectations_are_subsets() {
        assert!(holds(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(holds(&json!({"s": "401"}), &json!({"s": 401})));
        assert!(!holds(&json!({"a": 2}), &json!({"a": 1})));
        assert!(!holds(&json!({"c": 1}), &json!({"a": 1})));
        // `null` asserts absence.
        assert!(holds(&json!({"x": null}), &json!({"a": 1})));
        assert!(!holds(&json!({"a": null}), &json!({"a": 1})));
    }

    #[test]
    fn removed_headers_are_a_case_insensitive_subset() {
        let got = json!(["x-debug", "server"]);
        assert!(removed_subset(&json!(["X-Debug"]), &got));
        assert!(removed_subset(&json!("server"), &got));
        assert!(!removed_subset(&json!(["x-debug", "x-other"]), &got));
    }

    #[test]
    fn injected_results_resume_the_phase() {
        let doc = json!({"on_http_request": [
            {"actions": [{"type": "oauth", "config": {"provider": "google"}}]},
            {"expressions": ["actions.ngrok.oauth.identity.email == 'a@b.c'"],
             "actions": [{"type": "deny", "config": {"status_code": 418}}]}
        ]});
        let program = compile(&PolicyIr::from_json(&doc).unwrap()).unwrap();
        let case = json!({"request": "GET https://a.test/",
            "actions": {"oauth": {"identity": {"email": "a@b.c"}}},
            "expect": {"phase": "on_http_request", "decision": "deny", "status": 418}});
        assert_eq!(run_case(&program, &case).unwrap(), None);
        let bare = json!({"request": "GET https://a.test/", "expect": {"status": 418}});
        let diff = run_case(&program, &bare).unwrap().unwrap();
        assert!(diff.contains("external action `oauth`"), "{diff}");
    }

    #[test]
    fn cases_pass_and_fail_with_a_diff() {
        let doc = json!({"on_http_request": [
            {"expressions": ["req.url.path == '/x'"], "actions": [{"type": "deny", "config": {"status_code": 404}}]}
        ]});
        let program = compile(&PolicyIr::from_json(&doc).unwrap()).unwrap();
        let pass = json!({"request": "GET https://a.test/x", "expect": {"decision": "deny", "status": 404}});
        assert_eq!(run_case(&program, &pass).unwrap(), None);
        let fail = json!({"request": "GET https://a.test/y", "expect": {"decision": "deny"}});
        let diff = run_case(&program, &fail).unwrap().unwrap();
        assert!(diff.contains("expected: \"deny\""), "{diff}");
        assert!(diff.contains("actual:   \"continue\""), "{diff}");
    }
}
