//! JSON Schema (draft 2020-12) for policy files, generated from the action table so editors
//! can validate and complete policies.

use serde_json::{Map, Value as Json, json};

use crate::model::schema::{ACTIONS, ActionSpec, Field, FieldStatus, Required, Ty, UNBOUNDED};
use crate::phase::Phase;

/// The schema of a policy document.
#[must_use]
pub fn json_schema() -> Json {
    let mut defs = Map::new();
    for phase in Phase::ALL {
        let allowed: Vec<Json> = ACTIONS
            .iter()
            .filter(|a| a.allowed_in(phase))
            .map(|a| json!({ "$ref": format!("#/$defs/action-{}", a.name) }))
            .collect();
        defs.insert(
            format!("rule-{phase}"),
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["actions"],
                "properties": {
                    "name": { "type": "string", "description": "optional label of the rule" },
                    "expressions": {
                        "type": "array",
                        "description": "CEL conditions; the rule runs when all are true",
                        "items": { "type": "string" }
                    },
                    "actions": {
                        "type": "array",
                        "minItems": 1,
                        "items": { "oneOf": allowed }
                    }
                }
            }),
        );
    }
    for a in ACTIONS {
        defs.insert(format!("action-{}", a.name), action(a));
    }
    let mut props = Map::new();
    for phase in Phase::ALL {
        props.insert(
            phase.as_str().to_owned(),
            json!({
                "type": "array",
                "description": format!("rules of the `{phase}` phase, in order"),
                "items": { "$ref": format!("#/$defs/rule-{phase}") }
            }),
        );
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://example.invalid/wicket/policy.schema.json",
        "title": "Wicket traffic policy",
        "description": "A traffic policy document (ngrok Traffic Policy format)",
        "type": "object",
        "additionalProperties": false,
        "properties": props,
        "$defs": defs,
    })
}

fn action(a: &ActionSpec) -> Json {
    let mut config = object(a.fields);
    if let Json::Object(m) = &mut config {
        m.insert(
            "description".into(),
            json!(format!("config of `{}`", a.name)),
        );
    }
    let required_config = a.fields.iter().any(|f| f.required == Required::Yes);
    let mut required = vec![json!("type")];
    if required_config {
        required.push(json!("config"));
    }
    json!({
        "type": "object",
        "description": a.doc,
        "additionalProperties": false,
        "required": required,
        "properties": {
            "type": { "const": a.name },
            "config": config,
        }
    })
}

fn object(fields: &[Field]) -> Json {
    let mut props = Map::new();
    let mut required = Vec::new();
    for f in fields {
        let mut s = ty(&f.ty);
        if let Json::Object(m) = &mut s {
            let mut doc = f.doc.to_owned();
            if let Some(d) = f.default {
                doc.push_str(&format!(" (default: {d})"));
            }
            match f.status {
                FieldStatus::Documented => {}
                FieldStatus::Undocumented => {
                    m.insert("deprecated".into(), json!(true));
                    doc.push_str(" [undocumented]");
                }
                FieldStatus::Legacy { use_instead } => {
                    m.insert("deprecated".into(), json!(true));
                    doc.push_str(&format!(" [legacy: use `{use_instead}`]"));
                }
            }
            m.insert("description".into(), json!(doc));
        }
        if f.required == Required::Yes {
            required.push(json!(f.name));
        }
        props.insert(f.name.to_owned(), s);
    }
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": props,
        "required": required,
    })
}

fn count(m: &mut Map<String, Json>, min_key: &str, max_key: &str, min: usize, max: usize) {
    if min > 0 {
        m.insert(min_key.into(), json!(min));
    }
    if max != UNBOUNDED {
        m.insert(max_key.into(), json!(max));
    }
}

fn ty(t: &Ty) -> Json {
    match t {
        Ty::Bool => json!({ "type": "boolean" }),
        Ty::Int { min, max } => json!({ "type": "integer", "minimum": min, "maximum": max }),
        Ty::Float { min, max } => json!({ "type": "number", "minimum": min, "maximum": max }),
        Ty::Str { max_len } | Ty::Template { max_len } => {
            let mut m = Map::new();
            m.insert("type".into(), json!("string"));
            if let Some(n) = max_len {
                m.insert("maxLength".into(), json!(n));
            }
            if matches!(t, Ty::Template { .. }) {
                m.insert("x-cel".into(), json!("template"));
            }
            Json::Object(m)
        }
        Ty::Expr | Ty::BoolExpr => json!({ "type": "string", "x-cel": "expression" }),
        Ty::Enum(v) => json!({ "enum": v }),
        Ty::OpenEnum(v) => json!({ "type": "string", "examples": v }),
        Ty::IntEnum(v) => json!({ "enum": v }),
        Ty::Duration { .. } => json!({
            "type": "string",
            "pattern": "^([0-9]+(\\.[0-9]*)?(ns|us|µs|ms|s|m|h))+$|^0$",
            "description": "Go duration, e.g. `30s`, `1h30m`"
        }),
        Ty::Url { .. } => json!({ "type": "string", "format": "uri-reference" }),
        Ty::Regex { .. } => json!({ "type": "string", "format": "regex" }),
        Ty::Cidr | Ty::HeaderName => json!({ "type": "string" }),
        Ty::List {
            item,
            min,
            max,
            unique,
        } => {
            let mut m = Map::new();
            m.insert("type".into(), json!("array"));
            m.insert("items".into(), ty(item));
            count(&mut m, "minItems", "maxItems", *min, *max);
            if *unique {
                m.insert("uniqueItems".into(), json!(true));
            }
            Json::Object(m)
        }
        Ty::Map {
            value, min, max, ..
        } => {
            let mut m = Map::new();
            m.insert("type".into(), json!("object"));
            m.insert("additionalProperties".into(), ty(value));
            count(&mut m, "minProperties", "maxProperties", *min, *max);
            Json::Object(m)
        }
        Ty::Object(fields) => object(fields),
        Ty::Either(a, b) => json!({ "oneOf": [ty(a), ty(b)] }),
        Ty::Any => json!({}),
        Ty::SetVars => json!({
            "type": "array",
            "items": { "type": "object", "minProperties": 1, "maxProperties": 1 }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_lists_every_action_and_phase() {
        let s = json_schema();
        assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
        for a in ACTIONS {
            assert!(
                s["$defs"][format!("action-{}", a.name)].is_object(),
                "{}",
                a.name
            );
        }
        assert_eq!(s["properties"].as_object().map(Map::len), Some(4));
        assert_eq!(
            s["$defs"]["action-rate-limit"]["properties"]["config"]["required"],
            json!(["name", "algorithm", "capacity", "rate", "bucket_key"])
        );
    }
}
