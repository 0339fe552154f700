//! Golden tests: every fixture `tests/lint/<code>-<name>.yaml` must produce a diagnostic with
//! its code, and its diagnostics are snapshotted in every output format.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use wicket_policy::lint::{LintOptions, lint};
use wicket_policy::render::{Format, render};
use wicket_policy::source::SourceMap;

fn fixtures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("tests/lint")
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    names
}

#[test]
fn every_fixture_yields_its_code_in_every_format() {
    let names = fixtures();
    assert!(names.len() >= 45, "fixtures: {}", names.len());
    for name in names {
        let code = name.split('-').next().unwrap().to_owned();
        let path = format!("tests/lint/{name}");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut map = SourceMap::new();
        let id = map.add(path.clone(), text);
        let opts = LintOptions {
            require_terminal: code == "E0502",
        };
        let report = lint(&mut map, id, opts);
        assert!(
            report.diagnostics.iter().any(|d| d.code == code),
            "{name}: expected {code}, got {:?}",
            report
                .diagnostics
                .iter()
                .map(|d| (d.code, &d.message))
                .collect::<Vec<_>>()
        );
        let stem = Path::new(&name)
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        for (format, suffix) in [
            (Format::Human, "human"),
            (Format::Json, "json"),
            (Format::Github, "github"),
            (Format::Sarif, "sarif"),
        ] {
            let out = render(&map, &report.diagnostics, format, false);
            insta::assert_snapshot!(format!("{stem}.{suffix}"), out);
        }
    }
}

#[test]
fn color_is_only_added_when_asked() {
    let mut map = SourceMap::new();
    let id = map.add(
        "p.yaml",
        "on_http_response:\n  - actions:\n      - type: deny\n",
    );
    let report = lint(&mut map, id, LintOptions::default());
    let plain = render(&map, &report.diagnostics, Format::Human, false);
    let colored = render(&map, &report.diagnostics, Format::Human, true);
    assert!(!plain.contains('\x1b'));
    assert!(colored.contains("\x1b[1;31merror[E0202]"));
}

#[test]
fn problems_are_all_collected() {
    let mut map = SourceMap::new();
    let text = "on_http_request:\n  - actions:\n      - type: oidc\n      - type: deny\n        config: {status: 1}\non_http_responses: []\n";
    let id = map.add("p.yaml", text);
    let report = lint(&mut map, id, LintOptions::default());
    let codes: Vec<&str> = report.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(codes, ["E0201", "E0204", "E0101"]);
}

#[test]
fn jwt_validation_accepts_wickets_key_and_token_extensions() {
    let mut map = SourceMap::new();
    let text = "on_http_request:\n  - actions:\n      - type: jwt-validation\n        config:\n          issuer: {allow_list: [{value: https://login.example.test}]}\n          http:\n            tokens:\n              - {type: jwt, method: cookie, name: session}\n              - {type: jwt, method: query, name: access_token}\n          jws:\n            allowed_algorithms: [ES256]\n            keys: {sources: {static: [{kid: k1, pem: x}], jwks: {keys: []}}}\n          skew: 30s\n";
    let id = map.add("p.yaml", text);
    let report = lint(&mut map, id, LintOptions::default());
    assert!(report.diagnostics.is_empty(), "{:?}", report.diagnostics);
    // A token place that is neither ngrok's nor Wicket's is still refused.
    let id = map.add("q.yaml", text.replace("method: query", "method: path"));
    let report = lint(&mut map, id, LintOptions::default());
    assert_eq!(report.errors(), 1, "{:?}", report.diagnostics);
}

#[test]
fn generated_action_reference_is_up_to_date() {
    let generated = wicket_policy::docs::actions_markdown();
    let checked_in = std::fs::read_to_string("../docs/policy-actions.md").unwrap_or_default();
    assert!(
        checked_in == generated,
        "docs/policy-actions.md is stale: regenerate it with `wicket schema --markdown > docs/policy-actions.md`"
    );
}

#[test]
fn agent_config_lints_inline_and_referenced_policies() {
    let dir = std::env::temp_dir().join(format!("wicket-agent-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("api.yml"),
        "on_http_request:\n  - actions:\n      - type: deny\n      - type: log\n        config:\n          metadata: {a: b}\n",
    )
    .unwrap();
    let config = "version: 3\nagent:\n  authtoken: x\nendpoints:\n  - name: web\n    upstream: {url: 8080}\n    traffic_policy:\n      on_http_response:\n        - actions:\n            - type: deny\n  - name: api\n    upstream: {url: 8081}\n    traffic_policy_file: api.yml\n";
    let path = dir.join("ngrok.yml");
    std::fs::write(&path, config).unwrap();
    let mut map = SourceMap::new();
    let id = map.add(path.display().to_string(), config);
    let report = lint(&mut map, id, LintOptions::default());
    let found: Vec<(String, &str)> = report
        .diagnostics
        .iter()
        .map(|d| (map.get(d.primary.file).unwrap().name.clone(), d.code))
        .collect();
    assert_eq!(
        found,
        [
            (path.display().to_string(), "E0202"),
            (dir.join("api.yml").display().to_string(), "E0501"),
        ]
    );
    assert_eq!(report.policies.len(), 2);
    assert_eq!(
        report.policies[0].origins[0].endpoint.as_deref(),
        Some("web")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn legacy_inbound_maps_to_the_tcp_phase_for_tcp_only_actions() {
    let mut map = SourceMap::new();
    let id = map.add(
        "p.yaml",
        "inbound:\n  - actions:\n      - type: terminate-tls\n",
    );
    let report = lint(&mut map, id, LintOptions::default());
    let codes: Vec<&str> = report.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(codes, ["W0001"]);
    assert!(report.diagnostics[0].message.contains("on_tcp_connect"));
}
