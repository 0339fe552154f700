//! JSON forms of outcomes, for the CLI (`wicket eval --format json`, `wicket test`) and logs.

use serde_json::{Map, Value as Json, json};

use super::{Decision, Effect, HeaderList, RuleResult, RuleTrace};
use crate::value::Value;

/// A CEL value as JSON (timestamps and durations as text, bytes as lossy UTF-8).
#[must_use]
pub fn value_to_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => json!(i),
        Value::Uint(u) => json!(u),
        Value::Double(d) => json!(d),
        Value::String(s) => Json::String(s.to_string()),
        Value::Bytes(b) => Json::String(String::from_utf8_lossy(b).into_owned()),
        Value::List(items) => Json::Array(items.iter().map(value_to_json).collect()),
        Value::Map(m) => {
            let mut out = Map::new();
            for (k, v) in m.iter() {
                let key = match k.to_value() {
                    Value::String(s) => s.to_string(),
                    other => crate::actions::template::display(&other),
                };
                out.insert(key, value_to_json(v));
            }
            Json::Object(out)
        }
        Value::Optional(Some(inner)) => value_to_json(inner),
        Value::Optional(None) => Json::Null,
        other => Json::String(
            crate::actions::template::display(other)
                .trim_matches('"')
                .to_owned(),
        ),
    }
}

fn headers(h: &HeaderList) -> Json {
    Json::Array(h.iter().map(|(n, v)| json!([&**n, &**v])).collect())
}

/// A decision as JSON: `{"decision": "deny", "status": 403, …}`.
#[must_use]
pub fn decision_to_json(d: &Decision) -> Json {
    match d {
        Decision::Continue => json!({"decision": "continue"}),
        Decision::Deny { status } => json!({"decision": "deny", "status": status}),
        Decision::Respond {
            status,
            headers: h,
            body,
        } => {
            json!({"decision": "respond", "status": status, "headers": headers(h), "body": &**body})
        }
        Decision::Redirect {
            status,
            location,
            headers: h,
        } => {
            json!({"decision": "redirect", "status": status, "location": &**location, "headers": headers(h)})
        }
        Decision::Reject {
            status,
            headers: h,
            code,
        } => {
            json!({"decision": "reject", "status": status, "headers": headers(h), "code": code})
        }
        Decision::CloseConnection => json!({"decision": "close-connection"}),
        Decision::Forward { url, .. } => json!({"decision": "forward", "url": &**url}),
        Decision::External { kind, .. } => json!({"decision": "external", "action": &**kind}),
        Decision::Error { rule, message } => {
            json!({"decision": "error", "status": 500, "rule": &**rule, "message": message})
        }
    }
}

/// An effect as JSON.
#[must_use]
pub fn effect_to_json(e: &Effect) -> Json {
    match e {
        Effect::AddHeader { name, value } => {
            json!({"effect": "add-header", "name": &**name, "value": &**value})
        }
        Effect::RemoveHeader { name } => json!({"effect": "remove-header", "name": &**name}),
        Effect::RewriteUrl { url } => json!({"effect": "rewrite-url", "url": &**url}),
        Effect::Log { metadata } => json!({"effect": "log", "metadata": value_to_json(metadata)}),
        Effect::CompressResponse { algorithms } => json!({
            "effect": "compress-response",
            "algorithms": algorithms.iter().map(|a| &**a).collect::<Vec<_>>(),
        }),
    }
}

/// A rule trace as JSON.
#[must_use]
pub fn trace_to_json(t: &RuleTrace) -> Json {
    let (result, detail) = match &t.result {
        RuleResult::SkippedByIndex(field) => ("skipped-by-index", Some((*field).to_owned())),
        RuleResult::NotMatched => ("not-matched", None),
        RuleResult::Matched => ("matched", None),
        RuleResult::Error(e) => ("error", Some(e.clone())),
        RuleResult::NotReached => ("not-reached", None),
    };
    json!({
        "rule": &*t.rule,
        "result": result,
        "detail": detail,
        "expressions": t.expressions.iter().map(|(src, v)| match v {
            Ok(v) => json!({"expression": src, "value": v}),
            Err(e) => json!({"expression": src, "error": e}),
        }).collect::<Vec<_>>(),
    })
}
