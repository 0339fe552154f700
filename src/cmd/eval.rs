//! `wicket eval`: run a policy against one request (and its response) and print the decision
//! and effects of each phase.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use serde_json::json;
use wicket_engine::compile::compile;
use wicket_engine::compile::ir::PolicyIr;
use wicket_engine::program::json::{
    decision_to_json, effect_to_json, trace_to_json, value_to_json,
};
use wicket_engine::program::view::WithVariables;
use wicket_engine::program::{Decision, OwnedRequest, Program, RuleResult, RuleTrace, Scratch};
use wicket_policy::Phase;
use wicket_policy::lint::{LintOptions, lint};
use wicket_policy::render::{Format, render};
use wicket_policy::source::SourceMap;

/// Arguments of `wicket eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The policy file (YAML or JSON).
    pub policy: PathBuf,
    /// The request: `METHOD URL`, e.g. `GET https://api.example.test/v1/x?y=1`.
    #[arg(long)]
    pub request: String,
    /// A request header `name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// The client address (`conn.client_ip`).
    #[arg(long)]
    pub client_ip: Option<IpAddr>,
    /// The upstream response status for `on_http_response` (default 200).
    #[arg(long)]
    pub response_status: Option<u16>,
    /// An upstream response header `name: value` (repeatable).
    #[arg(short = 'R', long = "response-header")]
    pub response_headers: Vec<String>,
    /// Show, for each rule, whether it matched, each expression's value and index skips.
    #[arg(long)]
    pub explain: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = EvalFormat::Human)]
    pub format: EvalFormat,
}

/// Output formats of `wicket eval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EvalFormat {
    /// Text.
    Human,
    /// One JSON document.
    Json,
}

/// Loads, checks and compiles a policy file; diagnostics are printed and make it fail.
pub fn load_program(path: &Path) -> Result<Program> {
    let (name, text) = super::read_input(path)?;
    let mut map = SourceMap::new();
    let id = map.add(name.clone(), text);
    let report = lint(&mut map, id, LintOptions::default());
    if report.errors() > 0 {
        eprint!(
            "{}",
            render(&map, &report.diagnostics, Format::Human, false)
        );
        bail!("`{name}` has {} error(s)", report.errors());
    }
    let Some(policy) = report.policies.first() else {
        bail!("`{name}` holds no policy");
    };
    compile(&PolicyIr::from(policy)).with_context(|| format!("cannot compile `{name}`"))
}

/// Parses `name: value`.
pub fn parse_header(text: &str) -> Result<(String, String)> {
    let Some((name, value)) = text.split_once(':') else {
        bail!("invalid header `{text}`: expected `name: value`");
    };
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("invalid header name in `{text}`");
    }
    Ok((name.to_ascii_lowercase(), value.trim().to_owned()))
}

/// What the runtime would supply to a policy, given by a test case so that the rules after an
/// external action (or reading connection data the CLI cannot see) are testable offline.
#[derive(Debug, Default)]
pub struct Injections {
    /// The result variables (`actions.ngrok.<namespace>`) of external actions, by action type
    /// (`oauth`, `openid-connect`, `jwt-validation`, …) or result namespace (`oidc`).
    pub actions: Vec<(String, serde_json::Value)>,
    /// `conn.tls.*` as a tree (`client.subject.common_name`); with it, `terminate-tls` counts as
    /// carried out.
    pub tls: Option<serde_json::Value>,
    /// Other variables by dotted name (`conn.geo.country_code`).
    pub variables: Vec<(String, serde_json::Value)>,
}

impl Injections {
    /// The injected result of external action `kind`: `Some(None)` when it is carried out
    /// without result variables, `None` when the case supplies nothing for it.
    fn result(&self, kind: &str) -> Option<Option<&serde_json::Value>> {
        let ns = wicket_policy::env::result_namespace(kind);
        if let Some((_, v)) = self
            .actions
            .iter()
            .find(|(k, _)| k == kind || Some(k.as_str()) == ns)
        {
            return Some(Some(v));
        }
        (kind == "terminate-tls" && self.tls.is_some()).then_some(None)
    }
}

impl Injections {
    /// The injected connection data as variables by full name: every node of the TLS tree
    /// (`conn.tls`, `conn.tls.client`, `conn.tls.client.subject`, …), then the other variables
    /// (which win over a TLS node of the same name).
    fn as_variables(&self) -> HashMap<String, wicket_engine::Value> {
        fn walk(
            prefix: &str,
            node: &serde_json::Value,
            out: &mut HashMap<String, wicket_engine::Value>,
        ) {
            out.insert(prefix.to_owned(), wicket_engine::Value::from_json(node));
            if let serde_json::Value::Object(map) = node {
                for (k, v) in map {
                    walk(&format!("{prefix}.{k}"), v, out);
                }
            }
        }
        let mut out = HashMap::new();
        if let Some(tls) = &self.tls {
            walk("conn.tls", tls, &mut out);
        }
        for (name, v) in &self.variables {
            out.insert(name.clone(), wicket_engine::Value::from_json(v));
        }
        out
    }
}

/// One phase's result.
#[derive(Debug)]
pub struct PhaseRun {
    /// The phase.
    pub phase: Phase,
    /// Its decision.
    pub decision: Decision,
    /// Its effects as JSON.
    pub effects: Vec<serde_json::Value>,
    /// The `vars.*` at the end of the phase.
    pub vars: serde_json::Value,
    /// The per-rule trace (up to the first external action).
    pub trace: Vec<RuleTrace>,
    /// The external actions carried out with injected results, in order.
    pub injected: Vec<String>,
}

/// Runs the phases a request goes through: `on_tcp_connect`, `on_http_request`, and
/// `on_http_response` unless the request phase ended it (a `custom-response` still runs it).
/// An external action with an injected result is carried out as the runtime would: the result
/// is recorded and the phase resumed; without one, the phase ends on it.
pub fn run_phases(
    program: &Program,
    request: &OwnedRequest,
    response_status: Option<u16>,
    response_headers: &[(String, String)],
    injections: &Injections,
) -> Vec<PhaseRun> {
    let mut runs = Vec::new();
    let mut scratch = Scratch::new();
    let vars = injections.as_variables();
    let mut one = |phase, req: &OwnedRequest| {
        let view = WithVariables {
            req: req.clone(),
            vars: vars.clone(),
        };
        let (out, trace) = program.explain(phase, &view, &mut scratch);
        let mut decision = out.decision.clone();
        let mut injected = Vec::new();
        while let Decision::External { kind, resume, .. } = &decision {
            let Some(result) = injections.result(kind) else {
                break;
            };
            if let (Some(ns), Some(value)) = (wicket_policy::env::result_namespace(kind), result) {
                scratch.set_action_result(ns, wicket_engine::Value::from_json(value));
            }
            injected.push(kind.to_string());
            let at = *resume;
            decision = program.resume(at, &view, &mut scratch).decision.clone();
        }
        PhaseRun {
            phase,
            decision,
            effects: scratch.effects().iter().map(effect_to_json).collect(),
            vars: value_to_json(&wicket_engine::Value::map(scratch.vars().clone())),
            trace,
            injected,
        }
    };
    let tcp = one(Phase::TcpConnect, request);
    let tcp_ends = tcp.decision.terminates();
    runs.push(tcp);
    if tcp_ends {
        return runs;
    }
    let req = one(Phase::HttpRequest, request);
    let mut response = request.clone();
    match &req.decision {
        Decision::Continue => {
            response.response_status = Some(response_status.unwrap_or(200));
            response.response_headers = response_headers.to_vec();
        }
        Decision::Respond {
            status, headers, ..
        } => {
            response.response_status = Some(*status);
            response.response_headers = headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
        }
        _ => {
            runs.push(req);
            return runs;
        }
    }
    runs.push(req);
    runs.push(one(Phase::HttpResponse, &response));
    runs
}

fn describe(d: &Decision) -> String {
    match d {
        Decision::Continue => "continue".into(),
        Decision::Deny { status } => format!("deny {status}"),
        Decision::Respond { status, body, .. } => {
            format!("respond {status} ({} bytes)", body.len())
        }
        Decision::Redirect {
            status, location, ..
        } => format!("redirect {status} to {location}"),
        Decision::Reject { status, code, .. } => match code {
            Some(c) => format!("reject {status} ({c})"),
            None => format!("reject {status}"),
        },
        Decision::CloseConnection => "close connection".into(),
        Decision::Forward { url, .. } => format!("forward to {url}"),
        Decision::External { kind, .. } => {
            format!("external action `{kind}` (performed by the runtime)")
        }
        Decision::Error { rule, message } => format!("error in rule `{rule}`: {message}"),
    }
}

fn human(runs: &[PhaseRun], explain: bool) -> String {
    let mut out = String::new();
    for run in runs {
        let _ = writeln!(out, "{}: {}", run.phase, describe(&run.decision));
        if !run.injected.is_empty() {
            let _ = writeln!(
                out,
                "  carried out with injected results: {}",
                run.injected.join(", ")
            );
        }
        for e in &run.effects {
            let _ = writeln!(out, "  effect: {e}");
        }
        if run.vars.as_object().is_some_and(|m| !m.is_empty()) {
            let _ = writeln!(out, "  vars: {}", run.vars);
        }
        if explain {
            for t in &run.trace {
                let status = match &t.result {
                    RuleResult::SkippedByIndex(f) => format!("skipped by the {f} index"),
                    RuleResult::NotMatched => "not matched".into(),
                    RuleResult::Matched => "matched".into(),
                    RuleResult::Error(e) => format!("error: {e}"),
                    RuleResult::NotReached => "not reached".into(),
                };
                let _ = writeln!(out, "  rule `{}`: {status}", t.rule);
                for (src, v) in &t.expressions {
                    match v {
                        Ok(v) => {
                            let _ = writeln!(out, "    {src}  =>  {v}");
                        }
                        Err(e) => {
                            let _ = writeln!(out, "    {src}  =>  error: {e}");
                        }
                    }
                }
            }
        }
    }
    out
}

/// Runs `wicket eval`.
pub fn run(args: &EvalArgs) -> Result<bool> {
    let program = load_program(&args.policy)?;
    let mut request = OwnedRequest::parse(&args.request)?;
    for h in &args.headers {
        let (n, v) = parse_header(h)?;
        if n == "host" {
            request.headers.retain(|(name, _)| name != "host");
            request.host.clone_from(&v);
        }
        request.headers.push((n, v));
    }
    request.client_ip = args.client_ip;
    let response_headers = args
        .response_headers
        .iter()
        .map(|h| parse_header(h))
        .collect::<Result<Vec<_>>>()?;
    let runs = run_phases(
        &program,
        &request,
        args.response_status,
        &response_headers,
        &Injections::default(),
    );
    match args.format {
        EvalFormat::Human => print!("{}", human(&runs, args.explain)),
        EvalFormat::Json => {
            let phases: Vec<_> = runs
                .iter()
                .map(|r| {
                    let mut v = json!({
                        "phase": r.phase.as_str(),
                        "decision": decision_to_json(&r.decision),
                        "effects": r.effects,
                        "vars": r.vars,
                    });
                    if args.explain {
                        v["rules"] = r.trace.iter().map(trace_to_json).collect();
                    }
                    v
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({ "phases": phases }))?
            );
        }
    }
    Ok(true)
}
