//! Rule-level lints over a validated policy: unreachable actions and rules, deny-only IP
//! restrictions, several identity providers, unused `set-vars` variables, `ai-gateway` count,
//! and (cloud endpoints) a request phase that can fall through.

use crate::codes;
use crate::diagnostic::{Diagnostic, Span};
use crate::model::{CheckedPolicy, Rule, Value};
use crate::phase::Phase;

/// Options of the rule lints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LintOptions {
    /// Cloud-endpoint mode: `on_http_request` must always end in a terminating action.
    pub require_terminal: bool,
}

/// Runs every rule lint over `policy`, appending to `diags`.
pub fn run(policy: &CheckedPolicy, opts: LintOptions, diags: &mut Vec<Diagnostic>) {
    for phase in Phase::ALL {
        let rules = policy.rules(phase);
        unreachable_actions(policy, rules, diags);
        unreachable_rules(policy, rules, diags);
        unused_vars(policy, rules, diags);
    }
    deny_only(policy, diags);
    identity_providers(policy, diags);
    ai_gateways(policy, diags);
    if opts.require_terminal {
        falls_through(policy, diags);
    }
}

fn unreachable_actions(policy: &CheckedPolicy, rules: &[Rule], diags: &mut Vec<Diagnostic>) {
    for rule in rules {
        let Some(pos) = rule.actions.iter().position(|a| a.always_terminates()) else {
            continue;
        };
        let term = &rule.actions[pos];
        if let Some(next) = rule.actions.get(pos + 1) {
            diags.push(
                Diagnostic::new(
                    codes::UNREACHABLE_ACTION,
                    policy.file,
                    next.type_span,
                    format!(
                        "`{}` can never run: `{}` before it ends the phase",
                        next.spec.name, term.spec.name
                    ),
                )
                .with_label(policy.file, term.type_span, "this action always terminates")
                .with_help(term_help(term.spec.name)),
            );
        }
    }
}

fn term_help(name: &str) -> String {
    if name == "forward-internal" {
        "move the action before `forward-internal`, or set `on_error: continue` if it should run when forwarding fails".into()
    } else {
        format!("move the action before `{name}` or into another rule")
    }
}

fn unreachable_rules(policy: &CheckedPolicy, rules: &[Rule], diags: &mut Vec<Diagnostic>) {
    let Some(pos) = rules
        .iter()
        .position(|r| r.always_matches() && r.terminating_action().is_some())
    else {
        return;
    };
    let blocker = &rules[pos];
    for later in &rules[pos + 1..] {
        let what = later
            .name
            .as_deref()
            .map_or_else(|| "this rule".to_owned(), |n| format!("rule `{n}`"));
        let term = blocker.terminating_action().map_or("", |a| a.spec.name);
        diags.push(
            Diagnostic::new(
                codes::UNREACHABLE_RULE,
                policy.file,
                head(later),
                format!("{what} is never reached: an earlier rule always ends the phase"),
            )
            .with_label(
                policy.file,
                head(blocker),
                format!("matches every request and ends in `{term}`"),
            )
            .with_help("add `expressions` to the earlier rule or move this rule before it"),
        );
    }
}

/// A short span for a rule: its first line.
fn head(rule: &Rule) -> Span {
    rule.actions
        .first()
        .map(|a| a.type_span)
        .or_else(|| rule.expressions.first().map(|e| e.span))
        .unwrap_or(Span::new(rule.span.start, rule.span.start))
}

fn deny_only(policy: &CheckedPolicy, diags: &mut Vec<Diagnostic>) {
    for action in policy.all_rules().flat_map(|r| &r.actions) {
        if action.spec.name != "restrict-ips" {
            continue;
        }
        let c = &action.config;
        if c.get("deny").is_some() && c.get("allow").is_none() && c.get("ip_policies").is_none() {
            diags.push(
                Diagnostic::new(
                    codes::DENY_LIST_ONLY,
                    policy.file,
                    action.type_span,
                    "`restrict-ips` has a deny list but no allow list",
                )
                .with_help("ngrok refuses a deny list alone; allow everything else explicitly: `allow: ['0.0.0.0/0', '::/0']`"),
            );
        }
    }
}

fn identity_providers(policy: &CheckedPolicy, diags: &mut Vec<Diagnostic>) {
    let idps: Vec<_> = policy
        .all_rules()
        .flat_map(|r| &r.actions)
        .filter(|a| a.spec.identity_provider)
        .collect();
    if let [first, rest @ ..] = idps.as_slice() {
        for other in rest {
            diags.push(
                Diagnostic::new(
                    codes::MULTIPLE_IDENTITY_PROVIDERS,
                    policy.file,
                    other.type_span,
                    format!("a second identity-provider action (`{}`) in the same policy", other.spec.name),
                )
                .with_label(policy.file, first.type_span, format!("first one (`{}`)", first.spec.name))
                .with_help("ngrok allows one identity-provider action (oauth, openid-connect, saml) per endpoint"),
            );
        }
    }
}

fn ai_gateways(policy: &CheckedPolicy, diags: &mut Vec<Diagnostic>) {
    let gws: Vec<_> = policy
        .all_rules()
        .flat_map(|r| &r.actions)
        .filter(|a| a.spec.name == "ai-gateway")
        .collect();
    for extra in gws.iter().skip(1) {
        diags.push(Diagnostic::new(
            codes::MULTIPLE_AI_GATEWAYS,
            policy.file,
            extra.type_span,
            "more than one `ai-gateway` action in the policy",
        ));
    }
}

/// Every variable a text reads as `vars.NAME` or `vars['NAME']` / `vars["NAME"]`.
fn reads(text: &str, name: &str) -> bool {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(i) = text[from..].find("vars") {
        let at = from + i;
        from = at + 4;
        if at > 0
            && (bytes[at - 1].is_ascii_alphanumeric()
                || bytes[at - 1] == b'_'
                || bytes[at - 1] == b'.')
        {
            continue;
        }
        let rest = &text[at + 4..];
        let rest = rest.trim_start();
        let found = if let Some(r) = rest.strip_prefix('.') {
            let r = r.trim_start();
            r.strip_prefix(name)
                .is_some_and(|t| !t.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_'))
        } else if let Some(r) = rest.strip_prefix('[') {
            let r = r.trim_start();
            let quoted = |q: char| {
                r.strip_prefix(q)
                    .and_then(|t| t.strip_prefix(name))
                    .is_some_and(|t| t.starts_with(q))
            };
            quoted('\'') || quoted('"') || !r.starts_with(['\'', '"'])
        } else {
            // `vars` passed whole (e.g. to a function): assume every variable is read.
            !rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        };
        if found {
            return true;
        }
    }
    false
}

fn texts(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Template(c) | Value::Expr(c) => out.push(c.source.clone()),
        Value::List(items) => items.iter().for_each(|v| texts(v, out)),
        Value::Map(entries) => entries.iter().for_each(|e| texts(&e.value, out)),
        _ => {}
    }
}

fn unused_vars(policy: &CheckedPolicy, rules: &[Rule], diags: &mut Vec<Diagnostic>) {
    // Every CEL text of the phase, with its position (rule, action) to know what comes later.
    let mut sources: Vec<((usize, usize), String)> = Vec::new();
    for (ri, rule) in rules.iter().enumerate() {
        for e in &rule.expressions {
            sources.push(((ri, 0), e.source.clone()));
        }
        for (ai, action) in rule.actions.iter().enumerate() {
            let mut t = Vec::new();
            texts(&action.config, &mut t);
            sources.extend(t.into_iter().map(|s| ((ri, ai + 1), s)));
        }
    }
    for (ri, rule) in rules.iter().enumerate() {
        for (ai, action) in rule.actions.iter().enumerate() {
            if action.spec.name != "set-vars" {
                continue;
            }
            let Some(Value::List(vars)) = action.config.get("vars") else {
                continue;
            };
            for (vi, var) in vars.iter().enumerate() {
                let Value::Map(entries) = var else { continue };
                let Some(entry) = entries.first() else {
                    continue;
                };
                // Read later in the phase, or by a later entry of the same set-vars list.
                let later = sources
                    .iter()
                    .filter(|((r, a), _)| (*r, *a) > (ri, ai + 1))
                    .any(|(_, s)| reads(s, &entry.key));
                let mut same = Vec::new();
                for v in &vars[vi + 1..] {
                    texts(v, &mut same);
                }
                if later || same.iter().any(|s| reads(s, &entry.key)) {
                    continue;
                }
                diags.push(
                    Diagnostic::new(
                        codes::UNUSED_VARIABLE,
                        policy.file,
                        entry.key_span,
                        format!(
                            "variable `{}` is set but never read as `vars.{}` later in `{}`",
                            entry.key, entry.key, rule.phase
                        ),
                    )
                    .with_help(
                        "variables are visible only to later rules and actions of the same phase",
                    ),
                );
            }
        }
    }
}

fn falls_through(policy: &CheckedPolicy, diags: &mut Vec<Diagnostic>) {
    let rules = policy.rules(Phase::HttpRequest);
    if rules
        .iter()
        .any(|r| r.always_matches() && r.terminating_action().is_some())
    {
        return;
    }
    let (span, msg) = match rules.last() {
        Some(last) => (
            head(last),
            "`on_http_request` can end without a terminating action",
        ),
        None => (
            Span::new(policy.span.start, policy.span.start),
            "the policy has no `on_http_request` rule that terminates the request",
        ),
    };
    diags.push(
        Diagnostic::new(codes::FALLS_THROUGH, policy.file, span, msg).with_help(
            "cloud endpoints have no upstream: end `on_http_request` with a rule without expressions whose actions end in `forward-internal`, `custom-response`, `deny` or `close-connection`",
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::reads;

    #[test]
    fn variable_reads() {
        assert!(reads("vars.user == 'x'", "user"));
        assert!(reads("vars['user']", "user"));
        assert!(!reads("vars.username", "user"));
        assert!(!reads("myvars.user", "user"));
        assert!(reads("${vars.user}", "user"));
    }
}
