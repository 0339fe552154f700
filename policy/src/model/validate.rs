//! Validation of a policy document tree against the document model and the action table.
//! Every problem becomes a [`Diagnostic`]; validation never stops at the first one.

use super::cel::{self, CelKind, CelResult, Scope};
use super::duration::parse_duration;
use super::schema::{self, ActionSpec, ActionStatus, Field, FieldStatus, Required, Ty};
use super::{
    Action, CelSource, CheckedPolicy, Entry, Rule, RuleId, RuleOrigin, Value, phase_index,
};
use crate::codes::{self, Code};
use crate::diagnostic::{Diagnostic, FileId, Label, Span};
use crate::env::Type;
use crate::phase::Phase;
use crate::suggest::did_you_mean;
use crate::yaml::{Node, NodeKind, Scalar, Typed};

/// Validates the policy document `root` (a phase map) of `file` (whose text is `text`) and
/// returns the checked policy; problems are appended to `diags`.
#[must_use]
pub fn validate_policy(
    file: FileId,
    text: &str,
    root: &Node,
    endpoint: Option<&str>,
    diags: &mut Vec<Diagnostic>,
) -> CheckedPolicy {
    let mut v = Validator {
        file,
        text,
        diags,
        policy: CheckedPolicy {
            file,
            span: root.span,
            ..CheckedPolicy::default()
        },
        endpoint,
        scope: Scope::new(Phase::HttpRequest),
    };
    v.document(root);
    v.policy
}

struct Validator<'a> {
    file: FileId,
    text: &'a str,
    diags: &'a mut Vec<Diagnostic>,
    policy: CheckedPolicy,
    endpoint: Option<&'a str>,
    /// What earlier actions of the current phase made available to CEL.
    scope: Scope,
}

const RULE_KEYS: &[&str] = &["name", "expressions", "actions"];
const LEGACY_PHASES: &[&str] = &["inbound", "outbound"];

impl Validator<'_> {
    fn push(&mut self, code: Code, span: Span, message: impl Into<String>) -> &mut Diagnostic {
        self.diags
            .push(Diagnostic::new(code, self.file, span, message));
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }

    fn help(
        &mut self,
        code: Code,
        span: Span,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.push(code, span, message).help = Some(help.into());
    }

    fn duplicate_keys(&mut self, entries: &[(Node, Node)]) {
        for (i, (k, _)) in entries.iter().enumerate() {
            let Some(name) = k.as_str() else { continue };
            if let Some((first, _)) = entries[..i].iter().find(|(p, _)| p.as_str() == Some(name)) {
                let d = Diagnostic::new(
                    codes::DUPLICATE_KEY,
                    self.file,
                    k.span,
                    format!("duplicate key `{name}`"),
                )
                .with_label(self.file, first.span, "first defined here");
                self.diags.push(d);
            }
        }
    }

    fn document(&mut self, root: &Node) {
        let Some(entries) = root.as_map() else {
            if root.as_str() == Some("")
                || matches!(root.as_scalar().map(|s| s.typed()), Some(Typed::Null))
            {
                self.push(codes::EMPTY_POLICY, root.span, "the policy is empty");
                return;
            }
            self.help(
                codes::NOT_A_MAPPING,
                root.span,
                format!(
                    "a policy must be a map of phases, found a {}",
                    root.kind_name()
                ),
                "start with a phase key such as `on_http_request:`",
            );
            return;
        };
        self.duplicate_keys(entries);
        let has_new = entries
            .iter()
            .any(|(k, _)| k.as_str().and_then(Phase::from_key).is_some());
        let mut any_rule = false;
        for (key, value) in entries {
            let Some(name) = key.as_str() else {
                self.push(
                    codes::UNKNOWN_PHASE,
                    key.span,
                    "a phase key must be a string",
                );
                continue;
            };
            let phase = if let Some(p) = Phase::from_key(name) {
                p
            } else if LEGACY_PHASES.contains(&name) {
                let phase = legacy_phase(name, value);
                if has_new {
                    self.help(
                        codes::MIXED_LEGACY_PHASES,
                        key.span,
                        format!("legacy phase `{name}` mixed with current phase names"),
                        format!("rename `{name}` to `{phase}`"),
                    );
                } else {
                    self.help(
                        codes::LEGACY_PHASES,
                        key.span,
                        format!("`{name}` is the legacy name of `{phase}`"),
                        "run `wicket fmt --migrate` to rewrite the policy with current phase names",
                    );
                }
                phase
            } else {
                let names = Phase::ALL.map(Phase::as_str);
                let msg = format!("unknown phase `{name}`");
                let help = match did_you_mean(name, names) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("phases are {}", names.map(|n| format!("`{n}`")).join(", ")),
                };
                self.help(codes::UNKNOWN_PHASE, key.span, msg, help);
                continue;
            };
            self.policy.declared[phase_index(phase)] = true;
            any_rule |= self.phase(phase, value);
        }
        if !any_rule && !entries.is_empty() && !self.diags.iter().any(Diagnostic::is_error) {
            self.push(codes::EMPTY_POLICY, root.span, "the policy has no rules");
        }
    }

    /// Returns whether the phase holds at least one rule.
    fn phase(&mut self, phase: Phase, node: &Node) -> bool {
        self.scope = Scope::new(phase);
        let rules = match &node.kind {
            NodeKind::Seq(rules) => rules,
            NodeKind::Scalar(s) if matches!(s.typed(), Typed::Null) => return false,
            NodeKind::Map(_) => {
                self.help(
                    codes::PHASE_NOT_LIST,
                    node.span,
                    format!("`{phase}` must be a list of rules, found a map"),
                    "start each rule with `- ` (e.g. `- actions:`)",
                );
                return false;
            }
            NodeKind::Scalar(_) => {
                self.push(
                    codes::PHASE_NOT_LIST,
                    node.span,
                    format!(
                        "`{phase}` must be a list of rules, found a {}",
                        node.kind_name()
                    ),
                );
                return false;
            }
        };
        for (index, rule) in rules.iter().enumerate() {
            self.rule(phase, index, rule);
        }
        !rules.is_empty()
    }

    fn rule(&mut self, phase: Phase, index: usize, node: &Node) {
        let Some(entries) = node.as_map() else {
            self.push(
                codes::RULE_NOT_MAPPING,
                node.span,
                format!(
                    "a rule must be a map with `actions`, found a {}",
                    node.kind_name()
                ),
            );
            return;
        };
        self.duplicate_keys(entries);
        if node.get("type").is_some() && node.get("actions").is_none() {
            self.help(
                codes::ACTION_NOT_IN_RULE,
                node.span,
                "an action is written directly under the phase, outside a rule",
                "wrap it in a rule: `- actions:` followed by the action indented as a list item",
            );
            return;
        }
        let mut name = None;
        let mut expressions = Vec::new();
        let mut actions = Vec::new();
        let mut has_actions = false;
        // Conditions first: what they prove present guards the actions' lookups.
        if let Some(value) = node.get("expressions") {
            self.expressions(value, &mut expressions);
        }
        self.scope.present_keys = expressions
            .iter()
            .filter_map(|e| e.expr.as_ref())
            .flat_map(crate::check::presence_facts)
            .collect();
        for (key, value) in entries {
            match key.as_str() {
                Some("name") => match value.as_scalar() {
                    Some(s) if !matches!(s.typed(), Typed::Null) => name = Some(s.value.clone()),
                    Some(_) => {}
                    None => {
                        self.push(
                            codes::WRONG_RULE_SHAPE,
                            value.span,
                            "`name` must be a string",
                        );
                    }
                },
                Some("expressions") => {}
                Some("actions") => {
                    has_actions = true;
                    self.actions(phase, key.span, value, &mut actions);
                }
                Some(other) => {
                    let msg = format!("unknown rule key `{other}`");
                    let help = did_you_mean(other, RULE_KEYS.iter().copied()).map_or_else(
                        || {
                            if schema::action(other).is_some()
                                || other == "type"
                                || other == "config"
                            {
                                "action keys belong under `actions:` as a list item".to_owned()
                            } else {
                                "a rule has `name`, `expressions` and `actions`".to_owned()
                            }
                        },
                        |s| format!("did you mean `{s}`?"),
                    );
                    self.help(codes::UNKNOWN_RULE_KEY, key.span, msg, help);
                }
                None => {
                    self.push(
                        codes::UNKNOWN_RULE_KEY,
                        key.span,
                        "a rule key must be a string",
                    );
                }
            }
        }
        if !has_actions {
            self.help(
                codes::RULE_WITHOUT_ACTIONS,
                node.span,
                "rule has no `actions`",
                "a rule must define at least one action",
            );
        }
        self.scope.present_keys.clear();
        let id = RuleId(u32::try_from(self.policy.origins.len()).unwrap_or(u32::MAX));
        self.policy.origins.push(RuleOrigin {
            file: self.file,
            span: node.span,
            name: name.clone(),
            phase,
            index,
            endpoint: self.endpoint.map(str::to_owned),
        });
        self.policy.phases[phase_index(phase)].push(Rule {
            id,
            phase,
            name,
            expressions,
            actions,
            span: node.span,
        });
    }

    fn expressions(&mut self, node: &Node, out: &mut Vec<CelSource>) {
        let items: Vec<&Node> = match &node.kind {
            NodeKind::Seq(items) => items.iter().collect(),
            NodeKind::Scalar(s) if matches!(s.typed(), Typed::Null) => Vec::new(),
            NodeKind::Scalar(_) => {
                self.help(
                    codes::WRONG_RULE_SHAPE,
                    node.span,
                    "`expressions` must be a list of strings",
                    "write it as a list: `expressions: [\"…\"]` or `- …` on the next line",
                );
                vec![node]
            }
            NodeKind::Map(_) => {
                self.push(
                    codes::WRONG_RULE_SHAPE,
                    node.span,
                    "`expressions` must be a list of strings, found a map",
                );
                return;
            }
        };
        // The rule's conditions are one conjunction: each is guarded by the others.
        let facts: Vec<Vec<(String, String)>> = items
            .iter()
            .map(|item| {
                item.as_str()
                    .and_then(|s| wicket_grammar::parse(s).ok())
                    .map(|e| crate::check::presence_facts(&e))
                    .unwrap_or_default()
            })
            .collect();
        for (i, item) in items.iter().enumerate() {
            self.scope.present_keys = facts
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .flat_map(|(_, f)| f.iter().cloned())
                .collect();
            match item.as_scalar() {
                Some(s) if matches!(s.typed(), Typed::Str(_) | Typed::Bool(_)) => {
                    let r = self.cel(CelKind::Condition, item);
                    out.push(CelSource {
                        source: s.value.clone(),
                        span: item.span,
                        expr: r.expr,
                    });
                }
                Some(s)
                    if s.tag
                        .as_deref()
                        .is_some_and(|t| !t.starts_with("!!") && !t.starts_with("tag:")) =>
                {
                    self.help(
                        codes::WRONG_RULE_SHAPE,
                        item.span,
                        "an expression starting with `!` must be quoted",
                        "YAML reads a leading `!` as a tag: write `- \"!…\"`",
                    );
                }
                _ => {
                    let found = item.kind_name();
                    let mut help = "quote the expression".to_owned();
                    if found == "map" {
                        help = "a `:` followed by a space makes YAML read a map: quote the whole expression".into();
                    }
                    self.help(
                        codes::WRONG_RULE_SHAPE,
                        item.span,
                        format!("an expression must be a string, found a {found}"),
                        help,
                    );
                }
            }
        }
    }

    /// Runs the CEL checker on the string scalar `node` and maps its issues into the file.
    fn cel(&mut self, kind: CelKind, node: &Node) -> CelResult {
        let src = node.as_str().unwrap_or_default();
        let mut result = cel::check(kind, src, &self.scope);
        for issue in std::mem::take(&mut result.issues) {
            let span = node.map_span(self.text, issue.span);
            let labels = issue
                .labels
                .iter()
                .map(|(s, m)| Label {
                    file: self.file,
                    span: node.map_span(self.text, *s),
                    message: Some(m.clone()),
                })
                .collect();
            self.diags.push(Diagnostic {
                code: issue.code,
                ngrok_code: issue.ngrok_code,
                severity: issue.severity,
                message: issue.message,
                primary: Label {
                    file: self.file,
                    span,
                    message: None,
                },
                labels,
                help: issue.help,
            });
        }
        result
    }

    fn actions(&mut self, phase: Phase, key_span: Span, node: &Node, out: &mut Vec<Action>) {
        let items = match &node.kind {
            NodeKind::Seq(items) => items,
            NodeKind::Map(_) => {
                self.help(
                    codes::WRONG_RULE_SHAPE,
                    node.span,
                    "`actions` must be a list, found a map",
                    "start each action with `- type: …`",
                );
                return;
            }
            NodeKind::Scalar(_) => {
                self.push(
                    codes::WRONG_RULE_SHAPE,
                    if node.span.is_empty() {
                        key_span
                    } else {
                        node.span
                    },
                    format!(
                        "`actions` must be a list of actions, found a {}",
                        node.kind_name()
                    ),
                );
                return;
            }
        };
        if items.is_empty() {
            self.help(
                codes::RULE_WITHOUT_ACTIONS,
                node.span,
                "rule has an empty `actions` list",
                "a rule must define at least one action",
            );
        }
        for item in items {
            if let Some(action) = self.action(phase, item) {
                out.push(action);
            }
        }
    }

    fn action(&mut self, phase: Phase, node: &Node) -> Option<Action> {
        let Some(entries) = node.as_map() else {
            self.push(
                codes::WRONG_RULE_SHAPE,
                node.span,
                format!(
                    "an action must be a map with `type`, found a {}",
                    node.kind_name()
                ),
            );
            return None;
        };
        self.duplicate_keys(entries);
        let Some(type_node) = node.get("type") else {
            self.help(
                codes::MISSING_FIELD,
                node.span,
                "action has no `type`",
                "add `type: <action>`",
            );
            return None;
        };
        let Some(type_name) = type_node.as_str() else {
            self.push(codes::WRONG_TYPE, type_node.span, "`type` must be a string");
            return None;
        };
        let Some(spec) = schema::action(type_name) else {
            let known = schema::ACTIONS.iter().map(|a| a.name);
            let help = match (type_name, did_you_mean(type_name, known)) {
                ("oidc", _) => "did you mean `openid-connect`?".to_owned(),
                ("webhook-validation", _) => "did you mean `verify-webhook`?".to_owned(),
                ("jwt", _) => "did you mean `jwt-validation`?".to_owned(),
                (_, Some(s)) => format!("did you mean `{s}`?"),
                (_, None) => "see `wicket schema` for the action types".to_owned(),
            };
            self.help(
                codes::UNKNOWN_ACTION,
                type_node.span,
                format!("unknown action type `{type_name}`"),
                help,
            );
            return None;
        };
        match spec.status {
            ActionStatus::Legacy => self.help(
                codes::LEGACY_ACTION,
                type_node.span,
                format!("`{type_name}` is a legacy action that moved out of Traffic Policy"),
                "use the hosted AI gateway instead",
            ),
            ActionStatus::Preview => {
                self.push(
                    codes::PREVIEW_ACTION,
                    type_node.span,
                    format!("`{type_name}` is a preview action"),
                );
            }
            ActionStatus::Ga => {}
        }
        if super::schema::EDGE_UNSUPPORTED.contains(&type_name) {
            self.help(
                codes::EDGE_UNSUPPORTED,
                type_node.span,
                format!(
                    "`{type_name}` is not supported by the Wicket edge: an endpoint whose policy uses it is refused at bind time"
                ),
                "remove the action, or run this policy where it is supported",
            );
        }
        if !spec.allowed_in(phase) {
            let phases: Vec<String> = spec.phases.iter().map(|p| format!("`{p}`")).collect();
            self.diags.push(
                Diagnostic::new(
                    codes::ACTION_NOT_ALLOWED,
                    self.file,
                    type_node.span,
                    format!("`{type_name}` cannot run in `{phase}`"),
                )
                .with_help(format!("`{type_name}` is allowed in {}", phases.join(", "))),
            );
        }
        let mut config = Value::Map(Vec::new());
        for (key, value) in entries {
            match key.as_str() {
                Some("type") => {}
                Some("config") => {
                    config = self.config(spec, value);
                }
                Some(other) => {
                    let msg = format!("unknown key `{other}` in a `{type_name}` action");
                    let help = if spec.field(other).is_some() {
                        format!("`{other}` is a config field: move it under `config:`")
                    } else {
                        "an action has `type` and `config`".to_owned()
                    };
                    self.help(codes::UNKNOWN_ACTION_KEY, key.span, msg, help);
                }
                None => {
                    self.push(
                        codes::UNKNOWN_ACTION_KEY,
                        key.span,
                        "an action key must be a string",
                    );
                }
            }
        }
        if node.get("config").is_none() {
            self.missing_required(spec.fields, &[], type_node.span, type_name);
        }
        if let Some(ns) = spec.result_ns {
            self.scope.actions_run.insert(ns.to_owned());
        }
        Some(Action {
            spec,
            config,
            span: node.span,
            type_span: type_node.span,
        })
    }

    fn config(&mut self, spec: &'static ActionSpec, node: &Node) -> Value {
        if matches!(node.as_scalar().map(|s| s.typed()), Some(Typed::Null)) {
            self.missing_required(spec.fields, &[], node.span, spec.name);
            return Value::Map(Vec::new());
        }
        let ctx = Ctx { spec };
        let value = self.object(&ctx, spec.fields, node, spec.name);
        if let Value::Map(entries) = &value {
            self.action_rules(&ctx, entries, node);
        }
        value
    }

    /// Cross-field rules of particular actions.
    fn action_rules(&mut self, ctx: &Ctx, entries: &[Entry], node: &Node) {
        let has = |k: &str| entries.iter().any(|e| e.key == k);
        match ctx.spec.name {
            "restrict-ips" if !has("allow") && !has("deny") && !has("ip_policies") => {
                self.help(
                    codes::CO_REQUIRED,
                    node.span,
                    "`restrict-ips` needs `allow`, `deny` or `ip_policies`",
                    "add `allow:` with the CIDRs to let in",
                );
            }
            "terminate-tls" if has("server_private_key") != has("server_certificate") => {
                let (has_k, missing) = if has("server_private_key") {
                    ("server_private_key", "server_certificate")
                } else {
                    ("server_certificate", "server_private_key")
                };
                self.push(
                    codes::CO_REQUIRED,
                    node.span,
                    format!("`{has_k}` needs `{missing}`"),
                );
            }
            "basic-auth" => {
                if let Some(realm) = node.get("realm")
                    && let Some(text) = realm.as_str()
                    && !text.is_ascii()
                {
                    self.push(codes::BAD_VALUE, realm.span, "`realm` must be ASCII");
                }
                if let Some(Value::List(creds)) = entries
                    .iter()
                    .find(|e| e.key == "credentials")
                    .map(|e| &e.value)
                {
                    let nodes = node
                        .get("credentials")
                        .and_then(Node::as_seq)
                        .unwrap_or(&[]);
                    for (cred, n) in creds.iter().zip(nodes) {
                        if let Some(text) = cred.as_str() {
                            self.credential(text, n);
                        }
                    }
                }
            }
            "custom-response" => {
                let status = entries
                    .iter()
                    .find(|e| e.key == "status_code")
                    .map(|e| &e.value);
                if let Some(Value::Int(code)) = status
                    && (*code < 200 || *code == 204 || *code == 304)
                    && has("body")
                {
                    let span = node.get("body").map_or(node.span, |n| n.span);
                    self.help(
                        codes::BAD_VALUE,
                        span,
                        format!("status {code} cannot have a body"),
                        "remove `body` or use a status that allows one (ERR_NGROK_3604 at run time)",
                    );
                }
            }
            "forward-internal" => {
                if let Some(url_node) = node.get("url")
                    && let Some(text) = url_node.as_str()
                    && !cel::has_interpolation(text)
                    && !is_placeholder(text)
                    && let Ok(url) = url::Url::parse(text)
                    && !url.host_str().is_some_and(|h| h.ends_with(".internal"))
                {
                    self.help(
                        codes::BAD_VALUE,
                        url_node.span,
                        format!("`{text}` is not an internal endpoint"),
                        "forward-internal targets an internal endpoint: `scheme://name.internal[:port]`",
                    );
                }
            }
            "oauth" if has("scopes") && !has("client_id") => {
                self.help(
                    codes::CO_REQUIRED,
                    node.get("scopes").map_or(node.span, |n| n.span),
                    "`scopes` needs a custom OAuth app (`client_id` and `client_secret`)",
                    "ngrok-managed apps use fixed scopes",
                );
            }
            _ => {}
        }
        if ctx.spec.name == "terminate-tls" {
            let version = |k: &str| {
                entries
                    .iter()
                    .find(|e| e.key == k)
                    .and_then(|e| e.value.as_str())
            };
            if let (Some(min), Some(max)) = (version("min_version"), version("max_version"))
                && min > max
            {
                self.push(
                    codes::BAD_VALUE,
                    node.get("min_version").map_or(node.span, |n| n.span),
                    format!("`min_version` {min} is above `max_version` {max}"),
                );
            }
        }
        if (has("client_id") != has("client_secret")) && ctx.spec.identity_provider {
            let missing = if has("client_id") {
                "client_secret"
            } else {
                "client_id"
            };
            self.push(
                codes::CO_REQUIRED,
                node.span,
                format!("a custom OAuth app needs both `client_id` and `client_secret` (`{missing}` is missing)"),
            );
        }
    }

    fn placeholder(&mut self, text: &str, node: &Node) {
        self.push(
            codes::PLACEHOLDER,
            node.span,
            format!("`{text}` looks like a placeholder"),
        )
        .help = Some("replace it with a real value before deploying".into());
    }

    fn credential(&mut self, text: &str, node: &Node) {
        if cel::has_interpolation(text) {
            return;
        }
        if is_placeholder(text) {
            self.placeholder(text, node);
            return;
        }
        let Some((_, password)) = text.split_once(':') else {
            self.help(
                codes::BAD_VALUE,
                node.span,
                "a credential must be `user:password`",
                "separate the user name and the password with `:`",
            );
            return;
        };
        let n = password.chars().count();
        if !(8..=128).contains(&n) {
            self.push(
                codes::OUT_OF_RANGE,
                node.span,
                format!("password is {n} characters; it must have 8 to 128"),
            );
        }
    }

    fn missing_required(&mut self, fields: &[Field], present: &[&str], span: Span, what: &str) {
        for field in fields {
            if field.required != Required::Yes || present.contains(&field.name) {
                continue;
            }
            // `redirect.location` stands in for `to` in a doc example.
            if what == "redirect" && field.name == "to" && present.contains(&"location") {
                continue;
            }
            self.push(
                codes::MISSING_FIELD,
                span,
                format!("`{what}` is missing required field `{}`", field.name),
            )
            .help = Some(format!("add `{}: …` ({})", field.name, field.doc));
        }
    }

    fn object(&mut self, ctx: &Ctx, fields: &'static [Field], node: &Node, what: &str) -> Value {
        let Some(entries) = node.as_map() else {
            self.push(
                codes::WRONG_TYPE,
                node.span,
                format!("`{what}` must be a map, found a {}", node.kind_name()),
            );
            return Value::Null;
        };
        self.duplicate_keys(entries);
        let mut out = Vec::new();
        let mut present = Vec::new();
        for (key, value) in entries {
            let Some(name) = key.as_str() else {
                self.push(
                    codes::UNKNOWN_FIELD,
                    key.span,
                    "a field name must be a string",
                );
                continue;
            };
            let Some(field) = fields.iter().find(|f| f.name == name) else {
                let msg = format!("unknown field `{name}` in `{what}`");
                let help = match did_you_mean(name, fields.iter().map(|f| f.name)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if fields.is_empty() => format!("`{what}` takes no config"),
                    None => format!(
                        "fields are {}",
                        fields
                            .iter()
                            .filter(|f| f.status == FieldStatus::Documented)
                            .map(|f| format!("`{}`", f.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                self.help(codes::UNKNOWN_FIELD, key.span, msg, help);
                continue;
            };
            match field.status {
                FieldStatus::Documented => {}
                FieldStatus::Undocumented => {
                    self.push(
                        codes::UNDOCUMENTED_FIELD,
                        key.span,
                        format!("`{name}` is not a documented field of `{what}`"),
                    );
                }
                FieldStatus::Legacy { use_instead } => {
                    self.help(
                        codes::LEGACY_FIELD,
                        key.span,
                        format!("`{name}` is the legacy name of `{use_instead}`"),
                        format!("rename it to `{use_instead}`"),
                    );
                }
            }
            present.push(name);
            let path = format!("{what}.{name}");
            let v = self.value(ctx, &field.ty, value, &path);
            out.push(Entry {
                key: name.to_owned(),
                key_span: key.span,
                value: v,
            });
        }
        self.missing_required(fields, &present, node.span, what);
        Value::Map(out)
    }

    fn wrong_type(&mut self, node: &Node, path: &str, expected: &str) -> Value {
        self.push(
            codes::WRONG_TYPE,
            node.span,
            format!("`{path}` must be {expected}, found a {}", node.kind_name()),
        );
        Value::Null
    }

    fn string<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n str> {
        match &node.kind {
            NodeKind::Scalar(s) => match s.typed() {
                Typed::Null => {
                    self.push(
                        codes::WRONG_TYPE,
                        node.span,
                        format!("`{path}` must be a string, found null"),
                    );
                    None
                }
                _ => Some(s.value.as_str()),
            },
            _ => {
                self.wrong_type(node, path, "a string");
                None
            }
        }
    }

    #[allow(clippy::too_many_lines)]
    fn value(&mut self, ctx: &Ctx, ty: &'static Ty, node: &Node, path: &str) -> Value {
        match ty {
            Ty::Bool => match node.as_scalar().map(|s| s.typed()) {
                Some(Typed::Bool(b)) => Value::Bool(b),
                _ => self.wrong_type(node, path, "`true` or `false`"),
            },
            Ty::Int { min, max } => match node.as_scalar().map(|s| s.typed()) {
                Some(Typed::Int(i)) => {
                    if i < *min || i > *max {
                        self.push(
                            codes::OUT_OF_RANGE,
                            node.span,
                            format!("`{path}` is {i}; it must be between {min} and {max}"),
                        );
                    }
                    Value::Int(i)
                }
                _ => self.wrong_type(node, path, "an integer"),
            },
            Ty::IntEnum(allowed) => match node.as_scalar().map(|s| s.typed()) {
                Some(Typed::Int(i)) => {
                    if !allowed.contains(&i) {
                        let list: Vec<String> = allowed.iter().map(ToString::to_string).collect();
                        self.push(
                            codes::BAD_ENUM,
                            node.span,
                            format!("`{path}` is {i}; it must be one of {}", list.join(", ")),
                        );
                    }
                    Value::Int(i)
                }
                _ => self.wrong_type(node, path, "an integer"),
            },
            Ty::Float { min, max } => {
                let n = match node.as_scalar().map(|s| s.typed()) {
                    Some(Typed::Float(x)) => x,
                    #[allow(clippy::cast_precision_loss)]
                    Some(Typed::Int(i)) => i as f64,
                    _ => return self.wrong_type(node, path, "a number"),
                };
                if !(n >= *min && n <= *max) {
                    self.push(
                        codes::OUT_OF_RANGE,
                        node.span,
                        format!("`{path}` is {n}; it must be between {min} and {max}"),
                    );
                }
                Value::Float(n)
            }
            Ty::Str { max_len } | Ty::Template { max_len } => {
                let Some(s) = self.string(node, path) else {
                    return Value::Null;
                };
                if let Some(max) = max_len {
                    let n = s.chars().count();
                    if n > *max {
                        self.push(
                            codes::OUT_OF_RANGE,
                            node.span,
                            format!("`{path}` has {n} characters; at most {max} are allowed"),
                        );
                    }
                }
                if matches!(ty, Ty::Template { .. }) {
                    self.cel(CelKind::Template, node);
                    Value::Template(CelSource {
                        source: s.to_owned(),
                        span: node.span,
                        expr: None,
                    })
                } else {
                    Value::Str(s.to_owned())
                }
            }
            Ty::Expr | Ty::BoolExpr => {
                let Some(s) = self.string(node, path) else {
                    return Value::Null;
                };
                let kind = if matches!(ty, Ty::BoolExpr) {
                    CelKind::RetryCondition
                } else {
                    CelKind::AnyField
                };
                self.cel(kind, node);
                Value::Expr(CelSource {
                    source: s.to_owned(),
                    span: node.span,
                    expr: None,
                })
            }
            Ty::Enum(allowed) | Ty::OpenEnum(allowed) => {
                let Some(s) = self.string(node, path) else {
                    return Value::Null;
                };
                if !allowed.contains(&s) {
                    let closed = matches!(ty, Ty::Enum(_));
                    let code = if closed {
                        codes::BAD_ENUM
                    } else {
                        codes::UNKNOWN_ENUM_VALUE
                    };
                    let msg = if closed {
                        format!(
                            "`{path}` must be one of {}, found `{s}`",
                            quoted_list(allowed)
                        )
                    } else {
                        format!("`{s}` is not a documented value of `{path}`")
                    };
                    let help = did_you_mean(s, allowed.iter().copied())
                        .map(|c| format!("did you mean `{c}`?"));
                    let d = self.push(code, node.span, msg);
                    d.help = help;
                }
                Value::Str(s.to_owned())
            }
            Ty::Duration {
                min_s,
                max_s,
                multiple_of_s,
            } => {
                let Some(s) = self.string(node, path) else {
                    return Value::Null;
                };
                match parse_duration(s) {
                    Ok(d) => {
                        let secs = d.as_secs_f64();
                        #[allow(clippy::cast_precision_loss)]
                        let (lo, hi) = (*min_s as f64, *max_s as f64);
                        if secs < lo || secs > hi {
                            let range = if *max_s == u64::MAX {
                                format!("at least {}", human_secs(*min_s))
                            } else {
                                format!("between {} and {}", human_secs(*min_s), human_secs(*max_s))
                            };
                            self.push(
                                codes::OUT_OF_RANGE,
                                node.span,
                                format!("`{path}` is `{s}`; it must be {range}"),
                            );
                        } else if *multiple_of_s > 0
                            && (d.subsec_nanos() != 0 || d.as_secs() % multiple_of_s != 0)
                        {
                            self.push(
                                codes::OUT_OF_RANGE,
                                node.span,
                                format!(
                                    "`{path}` is `{s}`; it must be a multiple of {multiple_of_s}s"
                                ),
                            );
                        }
                        Value::Duration(d)
                    }
                    Err(e) => {
                        self.help(
                            codes::BAD_DURATION,
                            node.span,
                            format!("`{path}`: {e}"),
                            "write a Go duration such as `30s`, `5m` or `1h30m`",
                        );
                        Value::Null
                    }
                }
            }
            Ty::Url { template } => {
                let Some(s) = self.string(node, path) else {
                    return Value::Null;
                };
                if *template && cel::has_interpolation(s) {
                    self.cel(CelKind::Template, node);
                    return Value::Template(CelSource {
                        source: s.to_owned(),
                        span: node.span,
                        expr: None,
                    });
                }
                if is_placeholder(s) {
                    self.placeholder(s, node);
                } else if let Err(e) = url::Url::parse(s) {
                    self.help(
                        codes::BAD_URL,
                        node.span,
                        format!("`{path}` is not a valid URL: {e}"),
                        "write an absolute URL such as `https://example.internal`",
                    );
                }
                if *template {
                    Value::Template(CelSource {
                        source: s.to_owned(),
                        span: node.span,
                        expr: None,
                    })
                } else {
                    Value::Str(s.to_owned())
                }
            }
            Ty::Regex { template } => {
                let Some(s) = self.string(node, path) else {
                    return Value::Null;
                };
                if *template && cel::has_interpolation(s) {
                    self.cel(CelKind::Template, node);
                    return Value::Template(CelSource {
                        source: s.to_owned(),
                        span: node.span,
                        expr: None,
                    });
                }
                if let Err(e) = regex::Regex::new(s) {
                    let detail = e.to_string();
                    let last = detail.lines().last().unwrap_or("").trim().to_owned();
                    self.push(
                        codes::BAD_REGEX,
                        node.span,
                        format!("`{path}` does not compile as a regular expression: {last}"),
                    );
                }
                if *template {
                    Value::Template(CelSource {
                        source: s.to_owned(),
                        span: node.span,
                        expr: None,
                    })
                } else {
                    Value::Str(s.to_owned())
                }
            }
            Ty::Cidr => {
                let Some(s) = self.string(node, path) else {
                    return Value::Null;
                };
                if cel::has_interpolation(s) {
                    self.cel(CelKind::Template, node);
                    return Value::Template(CelSource {
                        source: s.to_owned(),
                        span: node.span,
                        expr: None,
                    });
                }
                let ok = s.parse::<ipnet::IpNet>().is_ok() || s.parse::<std::net::IpAddr>().is_ok();
                if !ok && is_placeholder(s) {
                    self.placeholder(s, node);
                } else if !ok {
                    self.help(
                        codes::BAD_CIDR,
                        node.span,
                        format!("`{s}` is not an IP address or CIDR"),
                        "write e.g. `192.0.2.0/24` or `2001:db8::/32`",
                    );
                }
                Value::Str(s.to_owned())
            }
            Ty::HeaderName => {
                let Some(s) = self.string(node, path) else {
                    return Value::Null;
                };
                self.header_name(s, node, path);
                Value::Str(s.to_owned())
            }
            Ty::List {
                item,
                min,
                max,
                unique,
            } => {
                let Some(items) = node.as_seq() else {
                    // The docs show a single PEM block where the reference says "list of PEM".
                    if path.ends_with(".mutual_tls_certificate_authorities")
                        && matches!(node.as_scalar().map(Scalar::typed), Some(Typed::Str(_)))
                    {
                        self.help(
                            codes::SINGLE_VALUE_LIST,
                            node.span,
                            format!("`{path}` should be a list; the single value is read as a one-element list"),
                            "write it as a list item: `- |` followed by the PEM block",
                        );
                        return Value::List(vec![self.value(ctx, item, node, path)]);
                    }
                    return self.wrong_type(node, path, "a list");
                };
                self.count(items.len(), *min, *max, node.span, path, "entries");
                let mut out = Vec::with_capacity(items.len());
                for (i, it) in items.iter().enumerate() {
                    if *unique
                        && let Some(v) = it.as_str()
                        && items[..i].iter().any(|p| p.as_str() == Some(v))
                    {
                        self.push(
                            codes::DUPLICATE_VALUE,
                            it.span,
                            format!("`{v}` appears twice in `{path}`"),
                        );
                    }
                    out.push(self.value(ctx, item, it, &format!("{path}[{i}]")));
                }
                Value::List(out)
            }
            Ty::Map {
                key,
                value,
                min,
                max,
            } => {
                let Some(entries) = node.as_map() else {
                    return self.wrong_type(node, path, "a map");
                };
                self.duplicate_keys(entries);
                self.count(entries.len(), *min, *max, node.span, path, "entries");
                let mut out = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    let Some(name) = k.as_str() else {
                        self.wrong_type(k, path, "a string key");
                        continue;
                    };
                    if matches!(key, Ty::HeaderName) {
                        self.header_name(name, k, path);
                        if let Some(val) = v.as_str()
                            && val.len() > 8192
                        {
                            self.push(
                                codes::HEADER_SIZE,
                                v.span,
                                format!("header `{name}` value is {} bytes; proxies commonly refuse over 8192", val.len()),
                            );
                        }
                    }
                    let sub = format!("{path}.{name}");
                    let val = self.value(ctx, value, v, &sub);
                    out.push(Entry {
                        key: name.to_owned(),
                        key_span: k.span,
                        value: val,
                    });
                }
                Value::Map(out)
            }
            Ty::Object(fields) => self.object(ctx, fields, node, path),
            Ty::Either(a, b) => {
                let a_is_list = matches!(a, Ty::List { .. });
                let pick = if node.as_seq().is_some() == a_is_list {
                    a
                } else {
                    b
                };
                self.value(ctx, pick, node, path)
            }
            Ty::Any => self.any(node),
            Ty::SetVars => self.set_vars(node, path),
        }
    }

    fn count(&mut self, n: usize, min: usize, max: usize, span: Span, path: &str, what: &str) {
        if n < min || n > max {
            let range = if max == schema::UNBOUNDED {
                format!("at least {min}")
            } else if min == 0 {
                format!("at most {max}")
            } else {
                format!("{min} to {max}")
            };
            self.push(
                codes::OUT_OF_RANGE,
                span,
                format!("`{path}` has {n} {what}; {range} allowed"),
            );
        }
    }

    fn header_name(&mut self, name: &str, node: &Node, path: &str) {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid {
            self.push(
                codes::BAD_HEADER,
                node.span,
                format!("`{name}` is not a valid header name in `{path}`"),
            );
            return;
        }
        let lower = name.to_ascii_lowercase();
        if lower == "user-agent"
            && (path.starts_with("add-headers") || path.starts_with("remove-headers"))
        {
            self.push(
                codes::BAD_HEADER,
                node.span,
                "the `user-agent` header cannot be added or removed",
            );
        } else if lower == "ngrok-skip-browser-warning" && path.starts_with("add-headers") {
            self.help(
                codes::BAD_HEADER,
                node.span,
                "`ngrok-skip-browser-warning` cannot be added by a policy",
                "the interstitial bypass must come from the client",
            );
        }
        if name.len() > 256 {
            self.push(
                codes::HEADER_SIZE,
                node.span,
                format!("header name is {} bytes long", name.len()),
            );
        }
    }

    fn any(&mut self, node: &Node) -> Value {
        match &node.kind {
            NodeKind::Scalar(s) => match s.typed() {
                Typed::Null => Value::Null,
                Typed::Bool(b) => Value::Bool(b),
                Typed::Int(i) => Value::Int(i),
                Typed::Float(x) => Value::Float(x),
                Typed::Str(text) => {
                    if cel::has_interpolation(text) {
                        self.cel(CelKind::Template, node);
                    }
                    Value::Template(CelSource {
                        source: text.to_owned(),
                        span: node.span,
                        expr: None,
                    })
                }
            },
            NodeKind::Seq(items) => Value::List(items.iter().map(|i| self.any(i)).collect()),
            NodeKind::Map(entries) => {
                self.duplicate_keys(entries);
                Value::Map(
                    entries
                        .iter()
                        .map(|(k, v)| Entry {
                            key: k.as_str().unwrap_or_default().to_owned(),
                            key_span: k.span,
                            value: self.any(v),
                        })
                        .collect(),
                )
            }
        }
    }

    fn set_vars(&mut self, node: &Node, path: &str) -> Value {
        let Some(items) = node.as_seq() else {
            self.help(
                codes::BAD_SET_VARS,
                node.span,
                format!(
                    "`{path}` must be a list of single-key maps, found a {}",
                    node.kind_name()
                ),
                "write each variable as a list item: `- name: value`",
            );
            return Value::Null;
        };
        let mut out = Vec::new();
        for item in items {
            match item.as_map() {
                Some([(k, v)]) => {
                    let Some(name) = k.as_str() else {
                        self.wrong_type(k, path, "a variable name");
                        continue;
                    };
                    let valid = name
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !valid {
                        self.help(
                            codes::BAD_SET_VARS,
                            k.span,
                            format!("`{name}` is not a valid variable name"),
                            "use letters, digits and `_`, starting with a letter",
                        );
                    }
                    let (value, ty) = match v.as_scalar().map(Scalar::typed) {
                        Some(Typed::Str(text)) if cel::has_interpolation(text) => {
                            let r = self.cel(CelKind::Template, v);
                            let source = CelSource {
                                source: text.to_owned(),
                                span: v.span,
                                expr: None,
                            };
                            (Value::Template(source), r.ty)
                        }
                        _ => {
                            let value = self.any(v);
                            let ty = literal_type(&value);
                            (value, ty)
                        }
                    };
                    self.scope.vars.insert(name.to_owned(), ty);
                    out.push(Value::Map(vec![Entry {
                        key: name.to_owned(),
                        key_span: k.span,
                        value,
                    }]));
                }
                _ => {
                    self.help(
                        codes::BAD_SET_VARS,
                        item.span,
                        "each `set-vars` entry must be a map with exactly one key",
                        "write each variable as its own list item: `- name: value`",
                    );
                }
            }
        }
        Value::List(out)
    }
}

struct Ctx {
    spec: &'static ActionSpec,
}

/// The phase a legacy key maps to: `outbound` → `on_http_response`; `inbound` →
/// `on_tcp_connect` when an action in it only runs there, else `on_http_request`.
#[must_use]
pub fn legacy_phase(name: &str, value: &Node) -> Phase {
    if name == "outbound" {
        return Phase::HttpResponse;
    }
    let tcp_only = value.as_seq().is_some_and(|rules| {
        rules.iter().any(|r| {
            r.get("actions").and_then(Node::as_seq).is_some_and(|acts| {
                acts.iter().any(|a| {
                    a.get("type")
                        .and_then(Node::as_str)
                        .and_then(schema::action)
                        .is_some_and(|s| {
                            !s.allowed_in(Phase::HttpRequest) && s.allowed_in(Phase::TcpConnect)
                        })
                })
            })
        })
    });
    if tcp_only {
        Phase::TcpConnect
    } else {
        Phase::HttpRequest
    }
}

/// Whether `s` looks like a documentation placeholder: `<your-host>`, `$YOUR_IP`,
/// `YOUR_ISSUER_URL`, `{your …}`, `... snip ...`, or prose (several words).
pub(crate) fn is_placeholder(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let angle = s.find('<').is_some_and(|i| s[i..].contains('>'));
    let env_var = s.match_indices('$').any(|(i, _)| {
        s[i + 1..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || *c == '_')
            .count()
            >= 2
    });
    angle
        || env_var
        || lower.contains("your_")
        || lower.contains("your-")
        || lower.contains("{your")
        || s.contains("...")
        || s.split_whitespace().count() > 2
}

/// The CEL type of a literal YAML value (`dyn` where it varies).
fn literal_type(v: &Value) -> Type {
    let elem = |items: &mut dyn Iterator<Item = &Value>| {
        let mut tys = items.map(literal_type);
        let first = tys.next().unwrap_or(Type::Dyn);
        if tys.all(|t| t == first) {
            first
        } else {
            Type::Dyn
        }
    };
    match v {
        Value::Null => Type::Null,
        Value::Bool(_) => Type::Bool,
        Value::Int(_) => Type::Int,
        Value::Float(_) => Type::Double,
        Value::Str(_) | Value::Template(_) => Type::String,
        Value::List(items) => Type::List(Box::new(elem(&mut items.iter()))),
        Value::Map(entries) => Type::Map(
            Box::new(Type::String),
            Box::new(elem(&mut entries.iter().map(|e| &e.value))),
        ),
        Value::Expr(_) | Value::Duration(_) => Type::Dyn,
    }
}

fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn human_secs(s: u64) -> String {
    match s {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
