//! `wicket expr`: evaluate one CEL expression and print its value and type, for policy authors
//! trying an expression out.
//!
//! Output on success is `<value> : <type>` on stdout, the value written as a CEL literal
//! (`"a" : string`, `[1, 2] : list(int)`, `{"k": 1u} : map(string, uint)`). On a parse or
//! evaluation error, stderr gets the message and the offending source line with a caret under
//! the span; the exit code is 1. Usage errors (a malformed `--var`) exit with 2, as clap does.
//!
//! The interpreter's errors carry no span, so the command locates the failing sub-expression
//! itself: starting from the root, it descends into a child that evaluates on its own to the
//! very same error, and points at the innermost such node. At a macro (`all`, `exists`, `map`,
//! `filter`, …, `cel.bind`) it replays the iterations with the macro variables bound and
//! descends into the body of the first iteration that fails the same way, so an error inside a
//! macro body points at the failing sub-expression too.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use clap::Args;
use wicket_engine::interp::{Activation, Env};
use wicket_engine::value::{CelType, Key, MapValue};
use wicket_engine::{EvalError, Value};
use wicket_grammar::ast::Macro;
use wicket_grammar::{Expr, ExprKind, Span};

/// Arguments of `wicket expr`.
#[derive(Debug, Args)]
pub struct ExprArgs {
    /// The CEL expression to evaluate (it may start with `-`: `wicket expr -1`).
    #[arg(allow_hyphen_values = true)]
    pub expression: String,
    /// Bind a variable: `name=<json>` (numbers without fraction or exponent become `int`,
    /// other numbers `double`, objects `map`, arrays `list`). Repeatable.
    #[arg(long = "var", value_name = "NAME=JSON", value_parser = parse_var)]
    pub vars: Vec<(String, serde_json::Value)>,
    /// Resolve names in this container (namespace), e.g. `com.example`.
    #[arg(long, value_name = "NS")]
    pub container: Option<String>,
}

/// Runs the command: prints `value : type` and returns `true`, or prints the error with a caret
/// under its span and returns `false`.
pub fn run(args: &ExprArgs) -> bool {
    let vars: BTreeMap<String, Value> = args
        .vars
        .iter()
        .map(|(name, json)| (name.clone(), json_to_value(json)))
        .collect();
    let source = args.expression.as_str();
    let expr = match wicket_grammar::parse(source) {
        Ok(expr) => expr,
        Err(e) => {
            eprint!("{}", render_error(source, e.span, &e.message));
            return false;
        }
    };
    let mut env = Env::new(&vars);
    if let Some(container) = &args.container {
        env = env.with_container(container);
    }
    match env.eval(&expr) {
        Ok(value) => {
            println!("{value} : {}", type_of(&value));
            true
        }
        Err(e) => {
            let (span, error) = failing_node(&vars, args.container.as_deref(), &expr, &e);
            eprint!("{}", render_error(source, span, &error.to_string()));
            false
        }
    }
}

/// Parses one `--var name=json` argument.
fn parse_var(arg: &str) -> Result<(String, serde_json::Value), String> {
    let (name, json) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected `name=json`, found `{arg}`"))?;
    let name = name.trim();
    let valid_segment = |s: &str| {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if !name.split('.').all(valid_segment) {
        return Err(format!(
            "`{name}` is not a variable name (letters, digits and `_`, dot-separated)"
        ));
    }
    let value = serde_json::from_str(json)
        .map_err(|e| format!("the value of `{name}` is not valid JSON: {e}"))?;
    Ok((name.to_owned(), value))
}

/// Maps a JSON value to CEL: integers to `int` (`uint` above `int`'s range), other numbers to
/// `double`, arrays to lists, objects to maps with string keys.
fn json_to_value(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::Uint(u)
            } else {
                Value::Double(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::string(s.as_str()),
        serde_json::Value::Array(items) => Value::list(items.iter().map(json_to_value).collect()),
        serde_json::Value::Object(entries) => {
            let mut map = MapValue::new();
            for (k, v) in entries {
                // JSON object keys are unique after parsing, so `upsert` never replaces.
                map.upsert(Key::String(k.as_str().into()), json_to_value(v));
            }
            Value::map(map)
        }
    }
}

/// The innermost sub-expression that fails on its own like the whole expression (see the
/// module documentation): its span and its error. A child failing with exactly `error` is
/// preferred; otherwise one failing with an error of the same kind (an undeclared `a.b.f` call
/// whose target `a.b` is undeclared).
fn failing_node(
    activation: &dyn Activation,
    container: Option<&str>,
    expr: &Expr,
    error: &EvalError,
) -> (Span, EvalError) {
    let mut node = expr;
    let mut error = error.clone();
    let env = make_env(activation, container);
    'descend: loop {
        let failures: Vec<(&Expr, EvalError)> = children(node)
            .into_iter()
            .filter_map(|child| env.eval(child).err().map(|e| (child, e)))
            .collect();
        if let Some((child, e)) = matching(&failures, &error) {
            node = child;
            error = e.clone();
            continue 'descend;
        }
        return failing_iteration(&env, activation, container, node, &error)
            .unwrap_or((node.span, error));
    }
}

fn make_env<'a>(activation: &'a dyn Activation, container: Option<&str>) -> Env<'a> {
    let env = Env::new(activation);
    match container {
        Some(container) => env.with_container(container),
        None => env,
    }
}

/// The failure in `failures` that is `error`, or else one of the same kind.
fn matching<'f, 'e>(
    failures: &'f [(&'e Expr, EvalError)],
    error: &EvalError,
) -> Option<&'f (&'e Expr, EvalError)> {
    failures.iter().find(|(_, e)| e == error).or_else(|| {
        failures
            .iter()
            .find(|(_, e)| std::mem::discriminant(e) == std::mem::discriminant(error))
    })
}

/// At most this many iterations of a macro are replayed to find the one that fails.
const MAX_REPLAYED_ITERATIONS: usize = 10_000;

/// When `node` is a comprehension macro (or `cel.bind`), replays its iterations with the macro
/// variables bound, and locates the error inside the filter or body of the first iteration
/// that fails like `error`.
fn failing_iteration(
    env: &Env<'_>,
    activation: &dyn Activation,
    container: Option<&str>,
    node: &Expr,
    error: &EvalError,
) -> Option<(Span, EvalError)> {
    let ExprKind::Macro(m) = &node.kind else {
        return None;
    };
    let (comp, filter) = match &**m {
        Macro::All(c) | Macro::Exists(c) | Macro::ExistsOne(c) | Macro::Filter(c) => (c, None),
        Macro::Map { comp, filter }
        | Macro::TransformList { comp, filter }
        | Macro::TransformMap { comp, filter }
        | Macro::TransformMapEntry { comp, filter } => (comp, filter.as_ref()),
        Macro::Bind { var, init, body } => {
            let value = env.eval(init).ok()?;
            let scope = Scope {
                outer: activation,
                bound: vec![(var.name.clone(), value)],
            };
            return failing_in(&scope, container, &[body], error);
        }
        _ => return None,
    };
    let iterations: Vec<Vec<(String, Value)>> = match env.eval(&comp.range).ok()? {
        Value::List(items) => items
            .iter()
            .enumerate()
            .take(MAX_REPLAYED_ITERATIONS)
            .map(|(i, item)| match &comp.var2 {
                None => vec![(comp.var.name.clone(), item.clone())],
                Some(var2) => vec![
                    (
                        comp.var.name.clone(),
                        Value::Int(i64::try_from(i).unwrap_or(i64::MAX)),
                    ),
                    (var2.name.clone(), item.clone()),
                ],
            })
            .collect(),
        Value::Map(map) => map
            .iter()
            .take(MAX_REPLAYED_ITERATIONS)
            .map(|(key, value)| match &comp.var2 {
                None => vec![(comp.var.name.clone(), key.to_value())],
                Some(var2) => vec![
                    (comp.var.name.clone(), key.to_value()),
                    (var2.name.clone(), value.clone()),
                ],
            })
            .collect(),
        _ => return None,
    };
    let parts: Vec<&Expr> = filter.into_iter().chain([&comp.body]).collect();
    iterations.into_iter().find_map(|bound| {
        let scope = Scope {
            outer: activation,
            bound,
        };
        failing_in(&scope, container, &parts, error)
    })
}

/// Locates `error` in the first of `parts` that fails like it under `scope`.
fn failing_in(
    scope: &Scope<'_>,
    container: Option<&str>,
    parts: &[&Expr],
    error: &EvalError,
) -> Option<(Span, EvalError)> {
    let env = make_env(scope, container);
    let failures: Vec<(&Expr, EvalError)> = parts
        .iter()
        .filter_map(|part| env.eval(part).err().map(|e| (*part, e)))
        .collect();
    let (part, e) = matching(&failures, error)?;
    Some(failing_node(scope, container, part, e))
}

/// The variables of an enclosing scope plus macro variables bound for one iteration.
struct Scope<'a> {
    outer: &'a dyn Activation,
    bound: Vec<(String, Value)>,
}

impl Activation for Scope<'_> {
    fn resolve(&self, name: &str) -> Option<Value> {
        match self.bound.iter().find(|(n, _)| n == name) {
            Some((_, value)) => Some(value.clone()),
            None => self.outer.resolve(name),
        }
    }
}

/// The direct sub-expressions of `expr`, in source order. A qualified name (`a.b.c`) has none:
/// it may name one variable, and its prefixes alone mean something else.
fn children(expr: &Expr) -> Vec<&Expr> {
    if is_qualified_name(expr) {
        return Vec::new();
    }
    match &expr.kind {
        ExprKind::Literal(_) | ExprKind::Ident { .. } => Vec::new(),
        ExprKind::Select { operand, .. } | ExprKind::Unary { operand, .. } => vec![operand],
        ExprKind::Index { operand, index, .. } => vec![operand, index],
        ExprKind::Call { target, args, .. } => target.iter().map(|t| &**t).chain(args).collect(),
        ExprKind::Binary { lhs, rhs, .. } => vec![lhs, rhs],
        ExprKind::Ternary {
            cond,
            then,
            otherwise,
        } => vec![cond, then, otherwise],
        ExprKind::List(elements) => elements.iter().map(|e| &e.value).collect(),
        ExprKind::Map(entries) => entries.iter().flat_map(|e| [&e.key, &e.value]).collect(),
        ExprKind::Struct { fields, .. } => fields.iter().map(|f| &f.value).collect(),
        ExprKind::Macro(m) => macro_children(m),
    }
}

fn is_qualified_name(expr: &Expr) -> bool {
    match &expr.kind {
        ExprKind::Ident { .. } => true,
        ExprKind::Select {
            operand,
            optional: false,
            ..
        } => is_qualified_name(operand),
        _ => false,
    }
}

fn macro_children(m: &Macro) -> Vec<&Expr> {
    match m {
        Macro::Has { select } => children(select),
        Macro::All(c)
        | Macro::Exists(c)
        | Macro::ExistsOne(c)
        | Macro::Filter(c)
        | Macro::SortBy(c) => vec![&c.range, &c.body],
        Macro::Map { comp: c, filter }
        | Macro::TransformList { comp: c, filter }
        | Macro::TransformMap { comp: c, filter }
        | Macro::TransformMapEntry { comp: c, filter } => {
            let mut out = vec![&c.range];
            out.extend(filter);
            out.push(&c.body);
            out
        }
        Macro::Bind { init, body, .. } => vec![init, body],
        Macro::OptMap { target, body, .. } | Macro::OptFlatMap { target, body, .. } => {
            vec![target, body]
        }
        Macro::Block { bindings, result } => bindings.iter().chain([result]).collect(),
    }
}

/// `error: <message>` and the source line of `span` with carets under it.
fn render_error(source: &str, span: Span, message: &str) -> String {
    let start = (span.start as usize).min(source.len());
    let end = (span.end as usize).clamp(start, source.len());
    let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = source[start..]
        .find('\n')
        .map_or(source.len(), |i| start + i);
    let line_no = source[..start].matches('\n').count() + 1;
    let line = &source[line_start..line_end];
    let column = source[line_start..start].chars().count();
    let width = source[start..end.min(line_end)].chars().count().max(1);
    let gutter = " ".repeat(line_no.to_string().len());
    let mut out = format!("error: {message}\n");
    let _ = writeln!(out, "{gutter} |");
    let _ = writeln!(out, "{line_no} | {line}");
    let _ = writeln!(
        out,
        "{gutter} | {}{}",
        " ".repeat(column),
        "^".repeat(width)
    );
    out
}

/// The value's CEL type, with element types for lists, maps and optionals when all elements
/// agree (`list(int)`), `dyn` otherwise (`list(dyn)` for `[]` or `[1, "a"]`).
fn type_of(value: &Value) -> String {
    match value {
        Value::List(items) => format!("list({})", common_type(items.iter())),
        Value::Map(map) => {
            let keys: Vec<Value> = map.iter().map(|(k, _)| k.to_value()).collect();
            format!(
                "map({}, {})",
                common_type(keys.iter()),
                common_type(map.iter().map(|(_, v)| v))
            )
        }
        Value::Optional(inner) => format!(
            "optional_type({})",
            inner.as_deref().map_or_else(|| "dyn".to_owned(), type_of)
        ),
        Value::Type(_) => CelType::Type.name().to_owned(),
        other => other.cel_type().name().to_owned(),
    }
}

fn common_type<'v>(mut values: impl Iterator<Item = &'v Value>) -> String {
    let Some(first) = values.next() else {
        return "dyn".to_owned();
    };
    let first = type_of(first);
    if values.all(|v| type_of(v) == first) {
        first
    } else {
        "dyn".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(source: &str) -> Result<Value, EvalError> {
        let vars: BTreeMap<String, Value> = BTreeMap::new();
        Env::new(&vars).eval(&wicket_grammar::parse(source).unwrap())
    }

    fn shown(source: &str) -> String {
        let v = eval(source).unwrap();
        format!("{v} : {}", type_of(&v))
    }

    #[test]
    fn values_print_as_cel_with_their_types() {
        assert_eq!(shown("1 + 1"), "2 : int");
        assert_eq!(shown("[1, 2]"), "[1, 2] : list(int)");
        assert_eq!(shown("[]"), "[] : list(dyn)");
        assert_eq!(shown("[1, 'a']"), "[1, \"a\"] : list(dyn)");
        assert_eq!(shown("{'a': 1u}"), "{\"a\": 1u} : map(string, uint)");
        assert_eq!(shown("b'\\x00a'"), "b\"\\x00a\" : bytes");
        assert_eq!(shown("2.0 / 4.0"), "0.5 : double");
        assert_eq!(shown("null"), "null : null_type");
        assert_eq!(shown("type(1)"), "int : type");
        assert_eq!(
            shown("duration('1.5s')"),
            "duration(\"1.5s\") : google.protobuf.Duration"
        );
        assert_eq!(
            shown("duration('-3s')"),
            "duration(\"-3s\") : google.protobuf.Duration"
        );
        assert_eq!(
            shown("timestamp('2024-01-02T03:04:05Z')"),
            "timestamp(\"2024-01-02T03:04:05Z\") : google.protobuf.Timestamp"
        );
        assert_eq!(
            shown("optional.of([1])"),
            "optional.of([1]) : optional_type(list(int))"
        );
    }

    #[test]
    fn json_maps_to_cel() {
        let json: serde_json::Value = serde_json::from_str(
            r#"{"i": -1, "u": 18446744073709551615, "d": 1.5, "l": [true, null]}"#,
        )
        .unwrap();
        let v = json_to_value(&json);
        assert_eq!(
            v.to_string(),
            r#"{"i": -1, "u": 18446744073709551615u, "d": 1.5, "l": [true, null]}"#
        );
    }

    #[test]
    fn var_arguments_are_validated() {
        assert!(parse_var("a.b=1").is_ok());
        assert!(parse_var("x=").unwrap_err().contains("not valid JSON"));
        assert!(
            parse_var("1x=1")
                .unwrap_err()
                .contains("not a variable name")
        );
        assert!(parse_var("x").unwrap_err().contains("name=json"));
    }

    #[test]
    fn errors_point_at_the_failing_sub_expression() {
        let vars: BTreeMap<String, Value> = BTreeMap::new();
        let env = Env::new(&vars);
        let span_of = |source: &str| {
            let expr = wicket_grammar::parse(source).unwrap();
            let error = env.eval(&expr).unwrap_err();
            let (span, error) = failing_node(&vars, None, &expr, &error);
            (source[span.range()].to_owned(), error.to_string())
        };
        let at = |span: &str, error: &str| (span.to_owned(), error.to_owned());
        assert_eq!(span_of("1 + 2 / 0 > 3"), at("2 / 0", "division by zero"));
        assert_eq!(
            span_of("[1, 2][5] == 1"),
            at("[1, 2][5]", "index out of range: 5")
        );
        assert_eq!(
            span_of("size(x) + 1"),
            at("x", "undeclared reference to `x`")
        );
        assert_eq!(
            span_of("a.b.startsWith('c')"),
            at("a.b", "undeclared reference to `a.b`")
        );
        assert_eq!(
            span_of("[1, 0].map(x, 1 / x)"),
            at("1 / x", "division by zero")
        );
        assert_eq!(
            span_of("{'a': 1}.all(k, v, v > 0 && k - 1 > 0)"),
            at("k - 1", "no matching overload for `_-_`")
        );
        assert_eq!(
            span_of("[1, 2].exists(x, x == 3 || [x][x] == 0)"),
            at("[x][x]", "index out of range: 1")
        );
        assert_eq!(
            span_of("cel.bind(z, 0, [1].filter(y, y / z > 0))"),
            at("y / z", "division by zero")
        );
    }

    #[test]
    fn carets_underline_the_span_on_its_line() {
        assert_eq!(
            render_error("1 +\n  foo(2)", Span::new(6, 9), "boom"),
            "error: boom\n  |\n2 |   foo(2)\n  |   ^^^\n"
        );
        assert_eq!(
            render_error("(1", Span::new(2, 2), "expected `)`"),
            "error: expected `)`\n  |\n1 | (1\n  |   ^\n"
        );
    }
}
