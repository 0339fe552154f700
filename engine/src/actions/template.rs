//! `${…}` interpolation in action config values.

use std::fmt::Write as _;
use std::sync::Arc;

use wicket_grammar::template::{TemplatePart, parse_template};

use crate::compile::expr::desugar;
use crate::compile::ir::ConfigValue;
use crate::error::EvalError;
use crate::eval::Scratch;
use crate::eval::general::Compiled;
use crate::program::view::RequestView;
use crate::value::{Key, MapValue, Value};

/// A compiled string template.
#[derive(Debug)]
pub(crate) struct Tmpl {
    parts: Vec<Part>,
    /// The text when the template has no interpolation.
    literal: Option<Arc<str>>,
}

#[derive(Debug)]
enum Part {
    Text(String),
    /// An interpolation, its names resolved at compile time.
    Expr(Compiled),
}

impl Tmpl {
    /// Parses a template.
    pub fn parse(src: &str) -> Result<Tmpl, String> {
        let t = parse_template(src).map_err(|e| format!("template `{src}` does not parse: {e}"))?;
        let parts: Vec<Part> = t
            .into_parts()
            .into_iter()
            .map(|p| match p {
                TemplatePart::Text { text, .. } => Part::Text(text),
                TemplatePart::Expr { mut expr, .. } => {
                    desugar(&mut expr);
                    Part::Expr(Compiled::new(expr))
                }
            })
            .collect();
        let literal = if parts.iter().all(|p| matches!(p, Part::Text(_))) {
            let mut s = String::new();
            for p in &parts {
                if let Part::Text(t) = p {
                    s.push_str(t);
                }
            }
            Some(Arc::from(s))
        } else {
            None
        };
        Ok(Tmpl { parts, literal })
    }

    /// The text when there is no interpolation.
    pub fn as_literal(&self) -> Option<&Arc<str>> {
        self.literal.as_ref()
    }

    /// Renders the template to text; `escape` transforms interpolated text.
    pub fn render_with<V: RequestView + ?Sized>(
        &self,
        view: &V,
        st: &Scratch,
        escape: Option<fn(&str) -> String>,
    ) -> Result<Arc<str>, EvalError> {
        if let Some(lit) = &self.literal {
            return Ok(lit.clone());
        }
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Expr(e) => {
                    let v = e.eval(view, st)?;
                    let mut text = String::new();
                    to_text(&v, &mut text);
                    match escape {
                        Some(f) => out.push_str(&f(&text)),
                        None => out.push_str(&text),
                    }
                }
            }
        }
        Ok(Arc::from(out))
    }

    /// Renders the template to text.
    pub fn render<V: RequestView + ?Sized>(
        &self,
        view: &V,
        st: &Scratch,
    ) -> Result<Arc<str>, EvalError> {
        self.render_with(view, st, None)
    }

    /// The template's value: the expression's own value when the template is exactly one
    /// interpolation, otherwise the rendered string.
    pub fn value<V: RequestView + ?Sized>(
        &self,
        view: &V,
        st: &Scratch,
    ) -> Result<Value, EvalError> {
        if let [Part::Expr(e)] = self.parts.as_slice() {
            return e.eval(view, st);
        }
        Ok(Value::String(self.render(view, st)?))
    }
}

/// The text an interpolated value becomes.
pub(crate) fn to_text(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Uint(u) => {
            let _ = write!(out, "{u}");
        }
        Value::Double(d) => {
            let _ = write!(out, "{d}");
        }
        Value::String(s) => out.push_str(s),
        Value::Bytes(b) => out.push_str(&String::from_utf8_lossy(b)),
        Value::Timestamp(t) => {
            let _ = write!(out, "{t}");
        }
        Value::Duration(d) => {
            let _ = write!(out, "{}s", d.as_secs_f64());
        }
        Value::Ip(ip) => {
            let _ = write!(out, "{ip}");
        }
        Value::Cidr(net) => {
            let _ = write!(out, "{net}");
        }
        Value::Type(t) => out.push_str(t.name()),
        Value::Optional(o) => match o {
            Some(inner) => to_text(inner, out),
            None => out.push_str("null"),
        },
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_text(item, out);
            }
            out.push(']');
        }
        Value::Map(_) => json_text(v, out),
    }
}

/// A value as shown to people: strings quoted, lists and maps as JSON.
pub(crate) fn display(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::List(_) => to_text(v, &mut out),
        _ => json_text(v, &mut out),
    }
    out
}

fn json_text(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            let _ = write!(out, "{}", serde_json::Value::String(s.to_string()));
        }
        Value::Map(m) => {
            out.push('{');
            for (i, (k, val)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let mut key = String::new();
                to_text(&k.to_value(), &mut key);
                let _ = write!(out, "{}:", serde_json::Value::String(key));
                json_text(val, out);
            }
            out.push('}');
        }
        other => to_text(other, out),
    }
}

/// A config value whose strings are templates (`set-vars` values, `log` metadata).
#[derive(Debug)]
pub(crate) enum ValueTmpl {
    Const(Value),
    Tmpl(Tmpl),
    List(Vec<ValueTmpl>),
    Map(Vec<(String, ValueTmpl)>),
}

impl ValueTmpl {
    pub fn compile(v: &ConfigValue) -> Result<ValueTmpl, String> {
        Ok(match v {
            ConfigValue::Null => ValueTmpl::Const(Value::Null),
            ConfigValue::Bool(b) => ValueTmpl::Const(Value::Bool(*b)),
            ConfigValue::Int(i) => ValueTmpl::Const(Value::Int(*i)),
            ConfigValue::Float(f) => ValueTmpl::Const(Value::Double(*f)),
            ConfigValue::Str(s) | ConfigValue::Template(s) | ConfigValue::Expr(s) => {
                let t = Tmpl::parse(s)?;
                match t.as_literal() {
                    Some(lit) => ValueTmpl::Const(Value::String(lit.clone())),
                    None => ValueTmpl::Tmpl(t),
                }
            }
            ConfigValue::Duration(d) => ValueTmpl::Const(Value::Duration(
                jiff::SignedDuration::try_from(*d).map_err(|e| e.to_string())?,
            )),
            ConfigValue::List(items) => ValueTmpl::List(
                items
                    .iter()
                    .map(ValueTmpl::compile)
                    .collect::<Result<_, _>>()?,
            ),
            ConfigValue::Map(entries) => ValueTmpl::Map(
                entries
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), ValueTmpl::compile(v)?)))
                    .collect::<Result<_, String>>()?,
            ),
        })
    }

    pub fn eval<V: RequestView + ?Sized>(
        &self,
        view: &V,
        st: &Scratch,
    ) -> Result<Value, EvalError> {
        Ok(match self {
            ValueTmpl::Const(v) => v.clone(),
            ValueTmpl::Tmpl(t) => t.value(view, st)?,
            ValueTmpl::List(items) => Value::list(
                items
                    .iter()
                    .map(|i| i.eval(view, st))
                    .collect::<Result<_, _>>()?,
            ),
            ValueTmpl::Map(entries) => {
                let mut map = MapValue::new();
                for (k, v) in entries {
                    map.upsert(Key::String(Arc::from(k.as_str())), v.eval(view, st)?);
                }
                Value::map(map)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::view::OwnedRequest;

    #[test]
    fn interpolations_are_compiled_with_their_names_resolved() {
        let t = Tmpl::parse(
            "p=${req.url.path} n=${size(req.headers)} b=${cel.block([1], cel.index(0) + 1)}",
        )
        .unwrap();
        let kinds: Vec<&str> = t
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::Expr(Compiled::Resolved(_)) => Some("resolved"),
                Part::Expr(Compiled::Interp(_)) => Some("interp"),
                Part::Text(_) => None,
            })
            .collect();
        assert_eq!(kinds, ["resolved", "resolved", "interp"]);
        let req = OwnedRequest::parse("GET https://a.test/x/y").unwrap();
        let st = Scratch::new();
        // (The parsed request carries its `Host` header.)
        assert_eq!(&*t.render(&req, &st).unwrap(), "p=/x/y n=1 b=2");
        // A template that is exactly one interpolation keeps the value's type.
        let one = Tmpl::parse("${1 + 2}").unwrap();
        assert!(matches!(one.value(&req, &st).unwrap(), Value::Int(3)));
    }
}
