//! End-to-end tests of the `wicket` binary: `lint` in every format, exit codes, stdin,
//! directories, `schema` and `fmt`.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn wicket(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wicket"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("NO_COLOR")
        .output()
        .unwrap()
}

fn wicket_stdin(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wicket"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// Fixtures of `policy/tests/lint` shown through the binary.
const SHOWCASE: &[&str] = &[
    "E0303-type-error-multiline",
    "E0501-action-after-deny",
    "E0301-misspelt-variable",
    "W0101-unreachable-rule",
];

#[test]
fn lint_every_format() {
    for name in SHOWCASE {
        let path = format!("policy/tests/lint/{name}.yaml");
        for format in ["human", "json", "github", "sarif"] {
            let out = wicket(&["lint", "--format", format, &path]);
            let code = out.status.code().unwrap();
            let expected = if name.starts_with('E') { 1 } else { 0 };
            assert_eq!(code, expected, "{name} {format}");
            insta::assert_snapshot!(format!("{name}.{format}"), stdout(&out));
        }
    }
}

#[test]
fn json_output_has_offsets_and_positions() {
    let out = wicket(&[
        "lint",
        "--format",
        "json",
        "policy/tests/lint/E0301-misspelt-variable.yaml",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let diag = v
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "E0301")
        .unwrap();
    let loc = &diag["location"];
    assert_eq!(loc["line"], 3);
    assert_eq!(loc["column"], 47);
    let start = loc["byte_start"].as_u64().unwrap() as usize;
    let end = loc["byte_end"].as_u64().unwrap() as usize;
    let text = std::fs::read_to_string("policy/tests/lint/E0301-misspelt-variable.yaml").unwrap();
    assert_eq!(&text[start..end], "conn.cleint_ip");
}

#[test]
fn sarif_is_a_minimal_valid_log() {
    let out = wicket(&[
        "lint",
        "--format",
        "sarif",
        "policy/tests/lint/E0501-action-after-deny.yaml",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], "2.1.0");
    let run = &v["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "wicket");
    let result = &run["results"][0];
    assert_eq!(result["ruleId"], "E0501");
    assert_eq!(result["level"], "error");
    assert!(
        run["tool"]["driver"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == "E0501")
    );
    assert_eq!(
        result["locations"][0]["physicalLocation"]["region"]["startLine"],
        8
    );
}

#[test]
fn exit_codes() {
    // Clean.
    assert_eq!(wicket(&["lint", "examples"]).status.code(), Some(0));
    // Warnings only: clean unless --deny-warnings.
    let warn = "policy/tests/lint/W0102-deny-list-only.yaml";
    assert_eq!(wicket(&["lint", warn]).status.code(), Some(0));
    assert_eq!(
        wicket(&["lint", "--deny-warnings", warn]).status.code(),
        Some(1)
    );
    // Errors.
    assert_eq!(
        wicket(&["lint", "policy/tests/lint/E0201-unknown-action.yaml"])
            .status
            .code(),
        Some(1)
    );
    // Cloud mode.
    let partial = "policy/tests/lint/E0502-falls-through.yaml";
    assert_eq!(wicket(&["lint", partial]).status.code(), Some(0));
    assert_eq!(
        wicket(&["lint", "--require-terminal", partial])
            .status
            .code(),
        Some(1)
    );
    // I/O and usage errors.
    let missing = wicket(&["lint", "no/such/file.yaml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read `no/such/file.yaml`"));
    assert_eq!(
        wicket(&["lint", "--format", "xml", "examples"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn stdin_and_directories() {
    let out = wicket_stdin(
        &["lint", "-"],
        "on_http_response:\n  - actions:\n      - type: deny\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("--> <stdin>:3:15"), "{text}");
    assert!(
        text.contains("1 file checked: 1 error, 0 warnings"),
        "{text}"
    );

    let out = wicket(&[
        "lint",
        "--require-terminal",
        "--format",
        "github",
        "policy/tests/lint",
    ]);
    let text = stdout(&out);
    let fixtures = std::fs::read_dir("policy/tests/lint").unwrap().count();
    assert!(fixtures > 40);
    // Every fixture shows up (each has at least one diagnostic).
    for entry in std::fs::read_dir("policy/tests/lint").unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(text.contains(&name), "{name} missing from directory lint");
    }
}

#[test]
fn color_only_when_asked_or_on_a_terminal() {
    let path = "policy/tests/lint/E0201-unknown-action.yaml";
    // Output is a pipe here: `auto` means no colour.
    assert!(!stdout(&wicket(&["lint", path])).contains('\x1b'));
    assert!(stdout(&wicket(&["lint", "--color", "always", path])).contains("\x1b[1;31m"));
}

#[test]
fn examples_lint_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "basic-auth.yaml",
            "circuit-breaker.yaml",
            "device-gateway.yaml",
            "header-hygiene.yaml",
            "ip-allow-list.yaml",
            "jwt-protected-api.yaml",
            "layered",
            "maintenance-page.yaml",
            "mtls-device-api.yaml",
            "oauth-dashboard.yaml",
            "quickstart-policy.yml",
            "rate-limit-per-ip.yaml",
        ]
    );
    for name in names {
        // A directory is one agent config and the policies it names.
        let target = if name == "layered" {
            "examples/layered/agent.yml".to_owned()
        } else {
            format!("examples/{name}")
        };
        let out = wicket(&["lint", "--deny-warnings", &target]);
        assert_eq!(out.status.code(), Some(0), "{name}:\n{}", stdout(&out));
        assert!(stdout(&out).ends_with("1 file checked: 0 errors, 0 warnings\n"));
    }
}

#[test]
fn schema_is_json_schema() {
    let out = wicket(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert!(v["$defs"]["action-deny"].is_object());
    assert_eq!(
        v["$defs"]["action-rate-limit"]["properties"]["config"]["properties"]["capacity"]["maximum"],
        2_000_000_000
    );
}

#[test]
fn fmt_migrates_checks_and_protects_comments() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = dir.path().join("legacy.yml");
    std::fs::write(&legacy, "inbound:\n  - actions:\n    - type: deny\noutbound:\n  - actions:\n    - type: custom-response\n      config: {content: bye}\n").unwrap();
    let path = legacy.to_str().unwrap();
    // Not formatted yet.
    assert_eq!(
        wicket(&["fmt", "--check", "--migrate", path]).status.code(),
        Some(1)
    );
    assert_eq!(wicket(&["fmt", "--migrate", path]).status.code(), Some(0));
    let text = std::fs::read_to_string(&legacy).unwrap();
    assert_eq!(
        text,
        "on_http_request:\n  - actions:\n      - type: deny\non_http_response:\n  - actions:\n      - type: custom-response\n        config:\n          body: bye\n"
    );
    assert_eq!(wicket(&["fmt", "--check", path]).status.code(), Some(0));
    assert_eq!(
        wicket(&["lint", "--deny-warnings", path]).status.code(),
        Some(0)
    );

    // A file with comments is not overwritten without --force.
    let commented = dir.path().join("commented.yml");
    let original = "# keep me\non_http_request:\n- actions:\n  - type: deny\n";
    std::fs::write(&commented, original).unwrap();
    let out = wicket(&["fmt", commented.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has comments"));
    assert_eq!(std::fs::read_to_string(&commented).unwrap(), original);
    assert_eq!(
        wicket(&["fmt", "--force", commented.to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
    assert!(!std::fs::read_to_string(&commented).unwrap().contains('#'));

    // stdin → stdout.
    let out = wicket_stdin(
        &["fmt", "-"],
        "on_http_request: [{actions: [{type: deny}]}]\n",
    );
    assert_eq!(
        stdout(&out),
        "on_http_request:\n  - actions:\n      - type: deny\n"
    );
}
