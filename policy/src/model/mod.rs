//! The typed document model: phases, rules and actions, validated against the action table
//! ([`schema`]) and lowered to a checked IR ([`CheckedPolicy`]) that the compiler consumes.

pub mod duration;
pub mod schema;

mod cel;
mod validate;

use std::time::Duration;

use wicket_grammar::Expr;

pub use validate::{legacy_phase as legacy_phase_of, validate_policy};

use crate::diagnostic::{FileId, Span};
use crate::phase::Phase;
use schema::{ActionSpec, Terminates};

/// Identifies a rule in a [`CheckedPolicy`] (index into [`CheckedPolicy::origins`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub u32);

/// Where a rule came from, for error reports and traces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleOrigin {
    /// The file.
    pub file: FileId,
    /// The rule's mapping in the file.
    pub span: Span,
    /// The rule's `name`, if any.
    pub name: Option<String>,
    /// Its phase.
    pub phase: Phase,
    /// Its position in the phase (0-based).
    pub index: usize,
    /// The agent-config endpoint it belongs to, if any.
    pub endpoint: Option<String>,
}

/// A CEL source text (an expression, a template or a whole-CEL field) and its place in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct CelSource {
    /// The decoded text.
    pub source: String,
    /// The YAML scalar's span (quotes included).
    pub span: Span,
    /// The parsed expression, for conditions and whole-CEL fields that parse (`None` for
    /// templates, which the compiler parses with `wicket_grammar::template`).
    pub expr: Option<Expr>,
}

impl CelSource {
    /// Whether this is a condition that is always true (`true`, `1 == 1`, `x || true`).
    #[must_use]
    pub fn always_true(&self) -> bool {
        self.expr
            .as_ref()
            .and_then(crate::check::fold_constant)
            .unwrap_or(false)
    }
}

/// A config value, typed by the field table.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A number.
    Float(f64),
    /// A literal string (enums, names, regexes without interpolation, CIDRs, URLs).
    Str(String),
    /// A string that may contain `${…}` interpolations.
    Template(CelSource),
    /// A whole CEL expression.
    Expr(CelSource),
    /// A duration.
    Duration(Duration),
    /// A list.
    List(Vec<Value>),
    /// A map in document order.
    Map(Vec<Entry>),
}

/// A map entry of a [`Value::Map`].
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The key's span in the file.
    pub key_span: Span,
    /// The value.
    pub value: Value,
}

impl Value {
    /// The entry called `key` of a map.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
            _ => None,
        }
    }

    /// The text of a string-like value.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Template(c) | Value::Expr(c) => Some(&c.source),
            _ => None,
        }
    }
}

/// One action of a rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Action {
    /// The action type.
    pub spec: &'static ActionSpec,
    /// The validated config (a [`Value::Map`]; fields absent from the document are absent here,
    /// their defaults are in the table).
    pub config: Value,
    /// The action mapping's span.
    pub span: Span,
    /// The `type` value's span.
    pub type_span: Span,
}

impl Action {
    /// Whether the action always ends the phase, given its config: `deny`,
    /// `custom-response`, `close-connection`, and `forward-internal` / `ai-gateway` without
    /// `on_error: continue`.
    #[must_use]
    pub fn always_terminates(&self) -> bool {
        match self.spec.terminates {
            Terminates::Always => true,
            Terminates::UnlessOnErrorContinue => {
                self.config.get("on_error").and_then(Value::as_str) != Some("continue")
            }
            Terminates::Conditionally | Terminates::Never => false,
        }
    }
}

/// One rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Its id (index into [`CheckedPolicy::origins`]).
    pub id: RuleId,
    /// Its phase.
    pub phase: Phase,
    /// Its `name`.
    pub name: Option<String>,
    /// Its conditions (all must hold).
    pub expressions: Vec<CelSource>,
    /// Its actions, in order.
    pub actions: Vec<Action>,
    /// The rule mapping's span.
    pub span: Span,
}

impl Rule {
    /// Whether the rule matches every request: no expressions, or only constant-true ones.
    #[must_use]
    pub fn always_matches(&self) -> bool {
        self.expressions.iter().all(CelSource::always_true)
    }

    /// The first action that always terminates, if any.
    #[must_use]
    pub fn terminating_action(&self) -> Option<&Action> {
        self.actions.iter().find(|a| a.always_terminates())
    }
}

/// A validated policy document: rules per phase plus the origin of every rule.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CheckedPolicy {
    /// The file it came from.
    pub file: FileId,
    /// Rules of each phase, indexed like [`Phase::ALL`].
    pub phases: [Vec<Rule>; 4],
    /// Origin of every rule, indexed by [`RuleId`].
    pub origins: Vec<RuleOrigin>,
    /// The span of the document (or the agent-config `traffic_policy` value).
    pub span: Span,
    /// Whether any phase was present in the document.
    pub declared: [bool; 4],
}

impl CheckedPolicy {
    /// Rules of `phase`.
    #[must_use]
    pub fn rules(&self, phase: Phase) -> &[Rule] {
        &self.phases[phase_index(phase)]
    }

    /// Every rule of every phase, in phase order.
    pub fn all_rules(&self) -> impl Iterator<Item = &Rule> {
        self.phases.iter().flatten()
    }

    /// The origin of rule `id`.
    #[must_use]
    pub fn origin(&self, id: RuleId) -> Option<&RuleOrigin> {
        self.origins.get(id.0 as usize)
    }
}

/// Index of `phase` in [`Phase::ALL`].
#[must_use]
pub fn phase_index(phase: Phase) -> usize {
    match phase {
        Phase::TcpConnect => 0,
        Phase::HttpRequest => 1,
        Phase::HttpResponse => 2,
        Phase::EventStreamMessage => 3,
    }
}
