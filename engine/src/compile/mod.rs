//! The policy compiler: a policy ([`ir::PolicyIr`]) to an immutable [`Program`].
//!
//! Per rule: parse and desugar the expressions, compile their conjunction into a condition
//! node ([`expr::compile_bool`]), compile the actions. Per phase: pick for each rule a guard
//! conjunct on an input no action can change during the phase and index the rules by it.

pub mod expr;
pub mod from_policy;
pub mod ir;

use std::collections::HashMap;
use std::sync::Arc;

use wicket_policy::Phase;

use crate::actions::breaker::{CircuitBreakerStore, MemoryCircuitBreakers};
use crate::actions::ratelimit::{MemoryRateLimits, RateLimitStore};
use crate::actions::{self, Shared};
use crate::eval::{CmpOp, IntField, IpField, Node, StrField, StrOp};
use crate::program::{
    FieldIndex, Index, IpRangeIndex, PhaseProgram, PortIndex, Program, RangeList, Rule,
};
use ir::{PolicyIr, RuleIr};

/// Why a policy does not compile.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rule `{rule}`: {message}")]
pub struct CompileError {
    /// The rule (`name`, or `phase[index]`).
    pub rule: String,
    /// What is wrong.
    pub message: String,
}

/// Compilation options.
#[derive(Debug, Default)]
pub struct Options {
    /// Rate-limit state; an in-memory store when `None`.
    pub rate_limits: Option<Arc<dyn RateLimitStore>>,
    /// Circuit-breaker state; an in-memory store when `None`. Breakers are keyed by rule label
    /// and action position, so share a store only between versions of one endpoint's policy.
    pub circuit_breakers: Option<Arc<dyn CircuitBreakerStore>>,
    /// Build no rule index (every rule is a candidate): for comparisons and tests.
    pub no_index: bool,
}

/// Compiles a policy with default options.
///
/// # Errors
/// The first rule that does not compile: an expression that does not parse, an invalid or
/// unsupported action.
pub fn compile(policy: &PolicyIr) -> Result<Program, CompileError> {
    compile_with(policy, Options::default())
}

fn label(phase: Phase, index: usize, rule: &RuleIr) -> Arc<str> {
    match &rule.name {
        Some(n) if !n.is_empty() => Arc::from(n.as_str()),
        _ => Arc::from(format!("{}[{index}]", phase.as_str())),
    }
}

/// Compiles a policy.
///
/// # Errors
/// As [`compile`].
pub fn compile_with(policy: &PolicyIr, options: Options) -> Result<Program, CompileError> {
    let mut phases: [PhaseProgram; 4] = Default::default();
    for (slot, phase) in phases.iter_mut().zip(Phase::ALL) {
        let rules = policy.rules(phase);
        let mut compiled = Vec::with_capacity(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            compiled.push(compile_rule(phase, i, rule)?);
        }
        let index = if options.no_index {
            Index::default()
        } else {
            build_index(&mut compiled)
        };
        *slot = PhaseProgram {
            rules: compiled,
            index,
        };
    }
    let rate_limits = options
        .rate_limits
        .unwrap_or_else(|| Arc::new(MemoryRateLimits::default()));
    let breaker_list = actions::number_breakers(
        phases
            .iter_mut()
            .flat_map(|p| p.rules.iter_mut())
            .map(|r| (&r.label, &mut r.actions)),
    );
    let breakers = options
        .circuit_breakers
        .unwrap_or_else(|| Arc::new(MemoryCircuitBreakers::default()));
    Ok(Program {
        phases,
        shared: Arc::new(Shared {
            rate_limits,
            breakers,
            breaker_list,
        }),
    })
}

fn compile_rule(phase: Phase, index: usize, rule: &RuleIr) -> Result<Rule, CompileError> {
    let label = label(phase, index, rule);
    let err = |message: String| CompileError {
        rule: label.to_string(),
        message,
    };
    let mut exprs = Vec::with_capacity(rule.expressions.len());
    for (i, src) in rule.expressions.iter().enumerate() {
        let mut e = wicket_grammar::parse(src).map_err(|e| {
            err(format!(
                "expression {} `{}` does not parse: {e}",
                i + 1,
                abbreviate(src)
            ))
        })?;
        expr::desugar(&mut e);
        exprs.push(e);
    }
    let mut nodes: Vec<Node> = Vec::new();
    for e in &exprs {
        match expr::compile_bool(e) {
            Node::And(parts) => nodes.extend(parts),
            n => nodes.push(n),
        }
    }
    nodes.sort_by_key(Node::cost);
    let cond = match nodes.len() {
        0 => Node::Const(true),
        1 => nodes.pop().unwrap_or(Node::Const(true)),
        _ => Node::And(nodes),
    };
    if rule.actions.is_empty() {
        return Err(err("a rule needs at least one action".into()));
    }
    let mut compiled = Vec::with_capacity(rule.actions.len());
    for a in &rule.actions {
        compiled.push(
            actions::compile(&a.kind, &a.config, phase)
                .map_err(|m| err(format!("action `{}`: {m}", a.kind)))?,
        );
    }
    Ok(Rule {
        label,
        cond,
        exprs,
        sources: rule.expressions.clone(),
        actions: compiled,
        guard: None,
    })
}

/// The start of a long source text, for messages.
fn abbreviate(src: &str) -> String {
    const MAX: usize = 80;
    match src.char_indices().nth(MAX) {
        Some((pos, _)) => format!("{}…", &src[..pos]),
        None => src.to_owned(),
    }
}

/// A rule's guard: a conjunct whose falsity the index can decide from one input.
enum Guard<'n> {
    Exact(StrField, Vec<&'n str>),
    Prefix(&'n str),
    Port(IntField, i64),
    /// The client address in a constant range table.
    ClientIp(&'n crate::eval::iptable::IpTable),
}

fn guard_of<'n>(node: &'n Node, url_mutable: bool) -> Option<Guard<'n>> {
    let indexable = |f: StrField| {
        matches!(
            f,
            StrField::Method
                | StrField::Host
                | StrField::UrlHost
                | StrField::Path
                | StrField::Sni
                | StrField::ClientIp
        ) && !(url_mutable && f.is_url())
    };
    let score = |g: &Guard<'_>| match g {
        Guard::Exact(StrField::Host | StrField::UrlHost | StrField::Sni, _) => 0,
        Guard::Exact(StrField::Path, _) => 1,
        Guard::Prefix(p) if p.len() > 1 => 2,
        Guard::Exact(StrField::ClientIp, _) => 2,
        Guard::Exact(_, _) | Guard::Port(..) | Guard::ClientIp(_) => 3,
        Guard::Prefix(_) => 4,
    };
    let one = |n: &'n Node| -> Option<Guard<'n>> {
        match n {
            Node::Str {
                field,
                op: StrOp::Eq,
                arg,
            } if indexable(*field) => Some(Guard::Exact(*field, vec![&**arg])),
            Node::Str {
                field: StrField::Path,
                op: StrOp::Prefix,
                arg,
            } if !url_mutable => Some(Guard::Prefix(arg)),
            Node::StrIn { field, set } if indexable(*field) && set.len() <= 64 => {
                Some(Guard::Exact(*field, set.iter().map(|s| &**s).collect()))
            }
            Node::Int {
                field: field @ (IntField::UrlPort | IntField::ServerPort),
                op: CmpOp::Eq,
                arg,
            } if !(url_mutable && *field == IntField::UrlPort) => Some(Guard::Port(*field, *arg)),
            Node::Ip {
                field: IpField::Client,
                table,
            } => Some(Guard::ClientIp(table)),
            _ => None,
        }
    };
    match node {
        Node::And(parts) => parts.iter().filter_map(one).min_by_key(score),
        n => one(n),
    }
}

fn build_index(rules: &mut [Rule]) -> Index {
    let mut index = Index::default();
    let mut exact: HashMap<StrField, FieldIndex> = HashMap::new();
    let mut prefix = FieldIndex::default();
    let mut ports: HashMap<IntField, PortIndex> = HashMap::new();
    let mut ip_v4: Vec<(u32, u32, u32)> = Vec::new();
    let mut ip_v6: Vec<(u128, u128, u32)> = Vec::new();
    let mut ip_all: Vec<u32> = Vec::new();
    let mut url_mutable = false;
    let mut guards: Vec<Option<&'static str>> = Vec::with_capacity(rules.len());
    for (i, rule) in rules.iter().enumerate() {
        let id = u32::try_from(i).unwrap_or(u32::MAX);
        let guard = guard_of(&rule.cond, url_mutable);
        guards.push(match &guard {
            Some(Guard::Exact(field, _)) => Some(field.name()),
            Some(Guard::Prefix(_)) => Some("req.url.path (prefix)"),
            Some(Guard::Port(IntField::UrlPort, _)) => Some("req.url.port"),
            Some(Guard::Port(..)) => Some("conn.server_port"),
            Some(Guard::ClientIp(_)) => Some("conn.client_ip (ranges)"),
            None => None,
        });
        match guard {
            Some(Guard::Exact(field, values)) => {
                let fi = exact.entry(field).or_default();
                for v in values {
                    fi.map.entry(Box::from(v)).or_default().push(id);
                }
                fi.all.push(id);
            }
            Some(Guard::Prefix(p)) => {
                prefix.map.entry(Box::from(p)).or_default().push(id);
                prefix.all.push(id);
            }
            Some(Guard::Port(field, port)) => {
                let pi = ports.entry(field).or_default();
                pi.map.entry(port).or_default().push(id);
                pi.all.push(id);
            }
            Some(Guard::ClientIp(table)) => {
                ip_v4.extend(table.v4_ranges().iter().map(|&(a, b)| (a, b, id)));
                ip_v6.extend(table.v6_ranges().iter().map(|&(a, b)| (a, b, id)));
                ip_all.push(id);
            }
            None => index.always.push(id),
        }
        if rule.actions.iter().any(actions::Action::rewrites_url) {
            url_mutable = true;
        }
    }
    // Index only when it saves work: with few guarded rules a linear walk is as fast.
    let guarded = rules.len() - index.always.len();
    if guarded < 8 {
        return Index::default();
    }
    for (rule, guard) in rules.iter_mut().zip(guards) {
        rule.guard = guard;
    }
    let mut exact: Vec<(StrField, FieldIndex)> = exact.into_iter().collect();
    exact.sort_by_key(|(f, _)| *f as u8);
    index.exact = exact;
    let mut ports: Vec<(IntField, PortIndex)> = ports.into_iter().collect();
    ports.sort_by_key(|(f, _)| *f as u8);
    index.ports = ports;
    if !ip_all.is_empty() {
        index.client_ip = Some(IpRangeIndex {
            v4: RangeList::new(ip_v4),
            v6: RangeList::new(ip_v6),
            all: ip_all,
        });
    }
    if !prefix.all.is_empty() {
        let mut lens: Vec<usize> = prefix.map.keys().map(|k| k.len()).collect();
        lens.sort_unstable();
        lens.dedup();
        index.prefix = Some((lens, prefix));
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::{Decision, OwnedRequest, Scratch};

    fn policy(json: &str) -> Program {
        let doc: serde_json::Value = serde_json::from_str(json).unwrap();
        compile(&PolicyIr::from_json(&doc).unwrap()).unwrap()
    }

    #[test]
    fn denies_by_method_and_path() {
        let p = policy(
            r#"{"on_http_request": [
                {"expressions": ["req.method == 'POST'", "req.url.path.startsWith('/admin')"],
                 "actions": [{"type": "deny", "config": {"status_code": 401}}]}]}"#,
        );
        let mut s = Scratch::new();
        let r = OwnedRequest::parse("POST https://a.test/admin/x").unwrap();
        assert_eq!(
            p.eval(Phase::HttpRequest, &r, &mut s).decision,
            Decision::Deny { status: 401 }
        );
        let r = OwnedRequest::parse("GET https://a.test/admin/x").unwrap();
        assert_eq!(
            p.eval(Phase::HttpRequest, &r, &mut s).decision,
            Decision::Continue
        );
    }

    #[test]
    fn ports_are_indexed() {
        let rules: Vec<String> = (0..20)
            .map(|i| {
                format!(
                    r#"{{"expressions": ["req.url.port == {}"], "actions": [{{"type": "deny", "config": {{"status_code": {}}}}}]}}"#,
                    8000 + i,
                    400 + i
                )
            })
            .collect();
        let p = policy(&format!(r#"{{"on_http_request": [{}]}}"#, rules.join(",")));
        let mut s = Scratch::new();
        let r = OwnedRequest::parse("GET https://a.test:8007/").unwrap();
        let (out, trace) = p.explain(Phase::HttpRequest, &r, &mut s);
        assert_eq!(out.decision, Decision::Deny { status: 407 });
        assert_eq!(
            trace[0].result,
            crate::program::RuleResult::SkippedByIndex("req.url.port")
        );
        let r = OwnedRequest::parse("GET https://a.test/").unwrap();
        assert_eq!(
            p.eval(Phase::HttpRequest, &r, &mut s).decision,
            Decision::Continue
        );
    }

    #[test]
    fn client_ip_ranges_are_indexed() {
        // Nested and overlapping ranges, IPv6, an invalid CIDR (never matches), equality guards.
        let rules = [
            "inCidrRange(conn.client_ip, '10.0.0.0/8')",
            "inCidrRanges(conn.client_ip, ['10.1.0.0/16', '2001:db8::/32'])",
            "inCidrRange(conn.client_ip, 'not-a-cidr')",
            "inCidrRanges(conn.client_ip, ['0.0.0.0/0'])",
            "inCidrRange(conn.client_ip, '192.168.0.0/16')",
            "conn.client_ip == '10.1.2.3'",
            "conn.client_ip in ['2001:db8::1', '203.0.113.7']",
            "inCidrRange(conn.client_ip, '2001:db8:1::/48')",
            "inCidrRange(conn.client_ip, '172.16.0.0/12')",
        ];
        let json: Vec<String> = rules
            .iter()
            .enumerate()
            .map(|(i, e)| {
                format!(
                    r#"{{"expressions": ["{e}"], "actions": [{{"type": "add-headers", "config": {{"headers": {{"x-{i}": "1"}}}}}}]}}"#
                )
            })
            .collect();
        let p = policy(&format!(r#"{{"on_http_request": [{}]}}"#, json.join(",")));
        assert!(p.phases[1].index.client_ip.is_some());
        let mut s = Scratch::new();
        for (ip, want) in [
            ("10.1.2.3", vec![0, 1, 3, 5]),
            ("10.200.0.1", vec![0, 3]),
            ("::ffff:10.1.0.9", vec![0, 1, 3]),
            ("2001:db8:1::5", vec![1, 7]),
            ("2001:db8::1", vec![1, 6]),
            ("203.0.113.7", vec![3, 6]),
            ("2001:db9::1", vec![]),
        ] {
            let r = OwnedRequest::parse("GET https://a.test/")
                .unwrap()
                .with_client_ip(ip.parse().unwrap());
            let (out, trace) = p.explain(Phase::HttpRequest, &r, &mut s);
            assert_eq!(out.decision, Decision::Continue);
            let matched: Vec<usize> = trace
                .iter()
                .enumerate()
                .filter(|(_, t)| t.result == crate::program::RuleResult::Matched)
                .map(|(i, _)| i)
                .collect();
            assert_eq!(matched, want, "{ip}");
            let skipped = trace
                .iter()
                .filter(|t| matches!(t.result, crate::program::RuleResult::SkippedByIndex(_)))
                .count();
            assert_eq!(skipped, rules.len() - want.len(), "{ip}");
        }
    }

    #[test]
    fn runtime_errors_fail_closed() {
        let p = policy(
            r#"{"on_http_request": [
                {"name": "needs header", "expressions": ["req.headers['x-missing'][0] == 'a'"],
                 "actions": [{"type": "deny"}]}]}"#,
        );
        let mut s = Scratch::new();
        let r = OwnedRequest::parse("GET https://a.test/").unwrap();
        let out = p.eval(Phase::HttpRequest, &r, &mut s);
        assert!(
            matches!(&out.decision, Decision::Error { rule, .. } if &**rule == "needs header"),
            "{out:?}"
        );
    }

    #[test]
    fn index_keeps_document_order() {
        let mut rules = Vec::new();
        for i in 0..100 {
            rules.push(format!(
                r#"{{"expressions": ["req.host == 'h{i}.test'", "req.url.path.startsWith('/p')"],
                    "actions": [{{"type": "set-vars", "config": {{"vars": [{{"hit": "{i}"}}]}}}}]}}"#
            ));
        }
        rules.push(r#"{"expressions": ["vars.hit == '42'"], "actions": [{"type": "deny", "config": {"status_code": 418}}]}"#.to_owned());
        let p = policy(&format!(r#"{{"on_http_request": [{}]}}"#, rules.join(",")));
        assert!(!p.phases[1].index.is_trivial());
        let mut s = Scratch::new();
        let r = OwnedRequest::parse("GET https://h42.test/p/x").unwrap();
        assert_eq!(
            p.eval(Phase::HttpRequest, &r, &mut s).decision,
            Decision::Deny { status: 418 }
        );
        let r = OwnedRequest::parse("GET https://h43.test/p/x").unwrap();
        assert_eq!(
            p.eval(Phase::HttpRequest, &r, &mut s).decision,
            Decision::Continue
        );
        // No rule set `vars.hit`: reading it is an error, and the phase fails closed.
        let r = OwnedRequest::parse("GET https://other.test/p/x").unwrap();
        let out = p.eval(Phase::HttpRequest, &r, &mut s);
        assert!(matches!(out.decision, Decision::Error { .. }), "{out:?}");

        let r = OwnedRequest::parse("GET https://h42.test/p/x").unwrap();
        let (out, trace) = p.explain(Phase::HttpRequest, &r, &mut s);
        assert_eq!(out.decision, Decision::Deny { status: 418 });
        assert_eq!(trace.len(), 101);
        assert_eq!(
            trace[0].result,
            crate::program::RuleResult::SkippedByIndex("req.host")
        );
        assert_eq!(trace[42].result, crate::program::RuleResult::Matched);
        assert_eq!(trace[42].expressions[0].1, Ok("true".to_owned()));
        assert_eq!(trace[100].result, crate::program::RuleResult::Matched);
    }
}
