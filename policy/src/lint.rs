//! The linter's entry point: load a file, recognise what it is (policy document, agent config,
//! legacy format), validate it, run the rule lints, and return every diagnostic.

use std::path::{Path, PathBuf};

use crate::codes;
use crate::diagnostic::{Diagnostic, FileId, Severity, Span};
use crate::lints;
pub use crate::lints::LintOptions;
use crate::model::{CheckedPolicy, validate_policy};
use crate::phase::Phase;
use crate::source::SourceMap;
use crate::yaml::{self, Node};

/// What the linter found in one input file (and the policy files it references).
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Every policy found (one for a policy file; one per endpoint for an agent config).
    pub policies: Vec<CheckedPolicy>,
    /// Every problem, sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    /// Number of errors.
    #[must_use]
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// Number of warnings.
    #[must_use]
    pub fn warnings(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .count()
    }
}

/// Lints file `id` of `map`. Policy files named by an agent config's
/// `traffic_policy_file` are read from disk relative to the config's directory and added to
/// `map`.
pub fn lint(map: &mut SourceMap, id: FileId, opts: LintOptions) -> Report {
    let mut report = Report::default();
    lint_into(map, id, opts, &mut report, 0);
    report
        .diagnostics
        .sort_by_key(|d| (d.primary.file, d.primary.span.start, d.primary.span.end));
    report
}

fn lint_into(map: &mut SourceMap, id: FileId, opts: LintOptions, report: &mut Report, depth: u32) {
    let Some(file) = map.get(id) else { return };
    let text = file.text.clone();
    let name = file.name.clone();
    let root = match yaml::parse(&text) {
        Ok(Some(root)) => root,
        Ok(None) => {
            report.diagnostics.push(Diagnostic::new(
                codes::EMPTY_POLICY,
                id,
                Span::new(0, 0),
                "the file is empty",
            ));
            return;
        }
        Err(e) => {
            report.diagnostics.push(
                Diagnostic::new(
                    codes::YAML_SYNTAX,
                    id,
                    e.span,
                    format!("invalid YAML: {}", e.message),
                )
                .with_help(yaml_help(&text, e.span)),
            );
            return;
        }
    };
    if is_agent_config(&root) {
        agent_config(map, id, &name, &text, &root, opts, report, depth);
    } else {
        policy(id, &text, &root, None, opts, report);
    }
}

fn yaml_help(text: &str, at: Span) -> String {
    let line_start = text[..(at.start as usize).min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    if line.trim_start().starts_with("- '!")
        || line.contains(": !")
        || line.trim_start().starts_with("- !")
    {
        "a value starting with `!` is a YAML tag: quote the whole expression".into()
    } else {
        "check the indentation and quoting around this point".into()
    }
}

fn policy(
    id: FileId,
    text: &str,
    root: &Node,
    endpoint: Option<&str>,
    opts: LintOptions,
    report: &mut Report,
) {
    let p = validate_policy(id, text, root, endpoint, &mut report.diagnostics);
    lints::run(&p, opts, &mut report.diagnostics);
    report.policies.push(p);
}

/// An agent config (`ngrok.yml`) has `version` / `agent` / `endpoints` / `tunnels` and no phase.
fn is_agent_config(root: &Node) -> bool {
    let Some(entries) = root.as_map() else {
        return false;
    };
    let keys: Vec<&str> = entries.iter().filter_map(|(k, _)| k.as_str()).collect();
    let has_phase = keys
        .iter()
        .any(|k| Phase::from_key(k).is_some() || *k == "inbound" || *k == "outbound");
    !has_phase
        && keys
            .iter()
            .any(|k| matches!(*k, "version" | "agent" | "endpoints" | "tunnels"))
}

const ENDPOINT_KEYS: &[&str] = &[
    "name",
    "url",
    "upstream",
    "traffic_policy",
    "traffic_policy_file",
    "bindings",
    "description",
    "metadata",
    "pooling_enabled",
    "agent_tls_termination",
];

#[allow(clippy::too_many_arguments)]
fn agent_config(
    map: &mut SourceMap,
    id: FileId,
    name: &str,
    text: &str,
    root: &Node,
    opts: LintOptions,
    report: &mut Report,
    depth: u32,
) {
    let base: PathBuf = Path::new(name)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let warn = |report: &mut Report, span: Span, msg: String| {
        report
            .diagnostics
            .push(Diagnostic::new(codes::AGENT_CONFIG, id, span, msg));
    };
    if let Some(v) = root.get("version") {
        if !matches!(v.as_str(), Some("3" | "2")) {
            warn(
                report,
                v.span,
                format!(
                    "agent config `version` should be `3`, found `{}`",
                    v.as_str().unwrap_or("?")
                ),
            );
        }
    }
    if let Some(endpoints) = root.get("endpoints") {
        let Some(items) = endpoints.as_seq() else {
            warn(report, endpoints.span, "`endpoints` must be a list".into());
            return;
        };
        for ep in items {
            let Some(entries) = ep.as_map() else {
                warn(report, ep.span, "an endpoint must be a map".into());
                continue;
            };
            let ep_name = ep.get("name").and_then(Node::as_str).map(str::to_owned);
            for required in ["name", "upstream"] {
                if ep.get(required).is_none() {
                    warn(report, ep.span, format!("endpoint is missing `{required}`"));
                }
            }
            for (k, _) in entries {
                if let Some(key) = k.as_str()
                    && !ENDPOINT_KEYS.contains(&key)
                {
                    warn(report, k.span, format!("unknown endpoint key `{key}`"));
                }
            }
            if let Some(tp) = ep.get("traffic_policy") {
                policy(id, text, tp, ep_name.as_deref(), opts, report);
            }
            if let Some(file) = ep.get("traffic_policy_file") {
                policy_file(map, id, &base, file, opts, report, depth);
            }
        }
    }
    if let Some(tunnels) = root.get("tunnels").and_then(Node::as_map) {
        for (tname, tunnel) in tunnels {
            for key in ["traffic_policy", "policy"] {
                if let Some(tp) = tunnel.get(key) {
                    policy(id, text, tp, tname.as_str(), opts, report);
                }
            }
        }
    }
}

fn policy_file(
    map: &mut SourceMap,
    id: FileId,
    base: &Path,
    node: &Node,
    opts: LintOptions,
    report: &mut Report,
    depth: u32,
) {
    let Some(rel) = node.as_str() else { return };
    if depth > 0 {
        return;
    }
    let path = base.join(rel);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let sub = map.add(path.display().to_string(), text);
            lint_into(map, sub, opts, report, depth + 1);
        }
        Err(e) => report.diagnostics.push(Diagnostic::new(
            codes::IO_ERROR,
            id,
            node.span,
            format!("cannot read `{}`: {e}", path.display()),
        )),
    }
}
