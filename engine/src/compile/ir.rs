//! The compiler's input: rules as CEL sources plus action configs as plain data.
//!
//! It mirrors the policy crate's checked model (`wicket_policy::model::CheckedPolicy`) so that
//! adapting a loaded document is a field-by-field conversion; tests, benchmarks and the CLI can
//! also build it directly or from JSON ([`PolicyIr::from_json`]).

use std::time::Duration;

use wicket_policy::Phase;

/// A whole policy: the rules of each phase.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyIr {
    /// Rules per phase, in document order (phases may be absent).
    pub phases: Vec<(Phase, Vec<RuleIr>)>,
}

/// One rule.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleIr {
    /// The rule's `name`, if any.
    pub name: Option<String>,
    /// CEL sources, all of which must be true (empty: the rule always matches).
    pub expressions: Vec<String>,
    /// The actions, in order.
    pub actions: Vec<ActionIr>,
}

/// One action: its type and config.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionIr {
    /// The action type (`deny`, `add-headers`, …).
    pub kind: String,
    /// The config (a [`ConfigValue::Map`], or [`ConfigValue::Null`] when omitted).
    pub config: ConfigValue,
}

/// A config value. Strings in CEL-capable fields are parsed as `${…}` templates by the compiler;
/// [`ConfigValue::Template`] and [`ConfigValue::Expr`] carry the loader's classification.
#[derive(Clone, Debug, PartialEq)]
pub enum ConfigValue {
    /// `null` or absent.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A number.
    Float(f64),
    /// A string.
    Str(String),
    /// A string that may contain `${…}` interpolations.
    Template(String),
    /// A whole CEL expression.
    Expr(String),
    /// A duration.
    Duration(Duration),
    /// A list.
    List(Vec<ConfigValue>),
    /// A map, in document order.
    Map(Vec<(String, ConfigValue)>),
}

/// Why a JSON document is not a policy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid policy document: {0}")]
pub struct IrError(pub String);

impl ConfigValue {
    /// The entry `key` of a map.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&ConfigValue> {
        match self {
            ConfigValue::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The text of a string-like value.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            ConfigValue::Str(s) | ConfigValue::Template(s) | ConfigValue::Expr(s) => Some(s),
            _ => None,
        }
    }

    /// A value from JSON (strings stay [`ConfigValue::Str`]).
    #[must_use]
    pub fn from_json(value: &serde_json::Value) -> ConfigValue {
        match value {
            serde_json::Value::Null => ConfigValue::Null,
            serde_json::Value::Bool(b) => ConfigValue::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => ConfigValue::Int(i),
                None => ConfigValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => ConfigValue::Str(s.clone()),
            serde_json::Value::Array(items) => {
                ConfigValue::List(items.iter().map(ConfigValue::from_json).collect())
            }
            serde_json::Value::Object(map) => ConfigValue::Map(
                map.iter()
                    .map(|(k, v)| (k.clone(), ConfigValue::from_json(v)))
                    .collect(),
            ),
        }
    }
}

impl PolicyIr {
    /// A policy from its JSON form (`{"on_http_request": [{"expressions": [...], "actions":
    /// [{"type": ..., "config": {...}}]}]}`).
    ///
    /// # Errors
    /// When the document does not have that shape.
    pub fn from_json(doc: &serde_json::Value) -> Result<PolicyIr, IrError> {
        let err = |m: String| IrError(m);
        let top = doc
            .as_object()
            .ok_or_else(|| err("the document must be a mapping of phases".into()))?;
        let mut phases = Vec::new();
        for (key, rules) in top {
            let phase =
                Phase::from_key(key).ok_or_else(|| err(format!("unknown phase `{key}`")))?;
            let list = rules
                .as_array()
                .ok_or_else(|| err(format!("`{key}` must be a list of rules")))?;
            let mut out = Vec::with_capacity(list.len());
            for rule in list {
                out.push(RuleIr::from_json(rule)?);
            }
            phases.push((phase, out));
        }
        Ok(PolicyIr { phases })
    }

    /// The rules of `phase` (empty when the phase is absent).
    #[must_use]
    pub fn rules(&self, phase: Phase) -> &[RuleIr] {
        self.phases
            .iter()
            .find(|(p, _)| *p == phase)
            .map_or(&[], |(_, r)| r.as_slice())
    }
}

impl RuleIr {
    fn from_json(rule: &serde_json::Value) -> Result<RuleIr, IrError> {
        let err = |m: &str| IrError(m.to_owned());
        let obj = rule
            .as_object()
            .ok_or_else(|| err("a rule must be a mapping"))?;
        let name = match obj.get("name") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(err("a rule `name` must be a string")),
        };
        let mut expressions = Vec::new();
        if let Some(exprs) = obj.get("expressions") {
            for e in exprs
                .as_array()
                .ok_or_else(|| err("`expressions` must be a list"))?
            {
                expressions.push(
                    e.as_str()
                        .ok_or_else(|| err("each expression must be a string"))?
                        .to_owned(),
                );
            }
        }
        let mut actions = Vec::new();
        for a in obj
            .get("actions")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| err("a rule needs a list of `actions`"))?
        {
            let kind = a
                .get("type")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| err("an action needs a `type`"))?;
            let config = a
                .get("config")
                .map_or(ConfigValue::Null, ConfigValue::from_json);
            actions.push(ActionIr {
                kind: kind.to_owned(),
                config,
            });
        }
        Ok(RuleIr {
            name,
            expressions,
            actions,
        })
    }
}
