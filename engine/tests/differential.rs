//! Differential check: the reference interpreter against the `cel` crate (0.15) on generated
//! expressions inside the subset both implement.
//!
//! The generator builds CEL source text by type (int, uint, double, string, bool, bytes,
//! `list(int)`, `map(string, int)`, duration, timestamp): literals, the bound variables,
//! arithmetic, comparisons, logic, ternaries, list and map literals, `in`, indexing, `size`,
//! `startsWith`, `endsWith`, `contains`, `matches`, the time getters, the macros `all`,
//! `exists`, `exists_one`, `map`, `filter` and `has`, and the conversions. Each argument position is, now and then, filled with an expression of
//! another type, so ill-typed expressions (and their errors) are covered too.
//!
//! Both implementations parse and evaluate the same text with the same variables; the outcomes
//! must agree: both errors (error messages are not compared), or the same value with the same
//! types (`1` is not `1u`, `NaN` is `NaN`). Where the `cel` crate departs from cel-spec, the
//! generator avoids the shape or [`known_divergence`] excuses it; each such case is written up,
//! with the spec's text and an example, in `differential-divergences.md` beside this file.

use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::strategy::Union;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use wicket_engine::Value;
use wicket_engine::interp::Env;
use wicket_engine::value::{Key, MapValue};
use wicket_grammar::{BinaryOp, Expr, ExprKind, Macro, UnaryOp};

/// The static types the generator builds expressions for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    Int,
    Uint,
    Double,
    Str,
    Bool,
    Bytes,
    List,
    Map,
    Duration,
    Timestamp,
}

const TYPES: [Ty; 10] = [
    Ty::Int,
    Ty::Uint,
    Ty::Double,
    Ty::Str,
    Ty::Bool,
    Ty::Bytes,
    Ty::List,
    Ty::Map,
    Ty::Duration,
    Ty::Timestamp,
];

type Src = BoxedStrategy<String>;

/// Generated expressions of one nesting level, by type.
#[derive(Clone)]
struct Level {
    by_type: Vec<Src>,
    any: Src,
}

impl Level {
    fn of(&self, ty: Ty) -> Src {
        self.by_type[ty as usize].clone()
    }

    /// An argument of type `ty`, or now and then of any type (an ill-typed argument).
    fn arg(&self, ty: Ty) -> Src {
        prop_oneof![12 => self.of(ty), 1 => self.any.clone()].boxed()
    }
}

fn pick(items: &[&'static str]) -> Src {
    proptest::sample::select(items.to_vec())
        .prop_map(str::to_owned)
        .boxed()
}

/// The leaves of each type: literals and variables (`x`, `u`, `d`, `s`, `b`, `by`, `l`, `m`;
/// `x` and `s` are also the macro variables, so macros shadow them).
fn leaves(ty: Ty) -> Src {
    match ty {
        Ty::Int => pick(&[
            "0",
            "1",
            "-1",
            "2",
            "7",
            "42",
            "x",
            "x",
            "x",
            "9223372036854775807",
            "-9223372036854775808",
            "0x10",
        ]),
        Ty::Uint => pick(&["0u", "1u", "5u", "u", "u", "18446744073709551615u", "0x1Fu"]),
        Ty::Double => pick(&[
            "0.0",
            "1.5",
            "-2.25",
            "1e10",
            "0.1",
            "d",
            "d",
            "3.0",
            "1e308",
            "-0.0",
            "9223372036854775807.0",
            "-9223372036854775808.0",
            "18446744073709551615.0",
            "-1.0",
        ]),
        Ty::Str => pick(&[
            "''",
            "'abc'",
            "'hello'",
            "'h\\u00e9llo'",
            "\"a.b\"",
            "'12'",
            "'-7'",
            "'2.5'",
            "'true'",
            "s",
            "s",
            "r'\\d'",
            "'0x10'",
            "'1e3'",
            "' 1'",
            "'+1'",
            "'-0'",
            "'9223372036854775808'",
            "'1.0'",
            "'\\u00e9'",
        ]),
        Ty::Bool => pick(&["true", "false", "b", "b"]),
        Ty::Bytes => pick(&["b''", "b'abc'", "b'\\xff\\x00'", "by", "by"]),
        Ty::List => pick(&["[]", "[1, 2, 3]", "l", "l"]),
        Ty::Map => pick(&["{}", "{'a': 1, 'b': 2}", "m", "m"]),
        Ty::Duration => pick(&[
            "duration('1s')",
            "duration('-1.5s')",
            "duration('1h30m')",
            "duration('0s')",
            "duration('100ms')",
            "duration('315576000000s')",
            "duration('2562047h')",
        ]),
        Ty::Timestamp => pick(&[
            "timestamp('2024-01-01T00:00:00Z')",
            "timestamp('1970-01-01T00:00:00Z')",
            "timestamp('7000-12-31T23:59:59Z')",
            "timestamp('0001-01-01T00:00:00Z')",
            "timestamp('2024-02-29T12:30:00.5+02:00')",
        ]),
    }
}

/// `-a` or `!a`; an operand that starts with the operator is parenthesized, as the `cel` crate
/// drops pairs of unary operators while parsing (divergence 1 in `differential-divergences.md`).
fn unary(op: &'static str, a: Src) -> Src {
    a.prop_map(move |a| {
        if a.starts_with(op) {
            format!("{op}({a})")
        } else {
            format!("{op}{a}")
        }
    })
    .boxed()
}

fn binary(a: Src, op: &'static str, b: Src) -> Src {
    (a, b)
        .prop_map(move |(a, b)| format!("({a} {op} {b})"))
        .boxed()
}

fn call(name: &'static str, a: Src) -> Src {
    a.prop_map(move |a| format!("{name}({a})")).boxed()
}

fn method(a: Src, name: &'static str, b: Src) -> Src {
    (a, b)
        .prop_map(move |(a, b)| format!("{a}.{name}({b})"))
        .boxed()
}

fn ternary(c: Src, a: Src, b: Src) -> Src {
    (c, a, b)
        .prop_map(|(c, a, b)| format!("({c} ? {a} : {b})"))
        .boxed()
}

/// `range.name(var, body)`: over an int list with `x`, over a map's (string) keys with `s`.
fn comprehension(range: Src, name: &'static str, var: &'static str, body: Src) -> Src {
    (range, body)
        .prop_map(move |(r, e)| format!("{r}.{name}({var}, {e})"))
        .boxed()
}

fn arith(level: &Level, ty: Ty) -> Vec<Src> {
    let a = || level.arg(ty);
    let mut out = vec![
        binary(a(), "+", a()),
        binary(a(), "-", a()),
        binary(a(), "*", a()),
        binary(a(), "/", a()),
    ];
    if ty != Ty::Double {
        out.push(binary(a(), "%", a()));
    }
    out
}

/// Expressions of type `ty` one level deeper than `level`.
fn compound(level: &Level, ty: Ty) -> Src {
    let a = |t| level.arg(t);
    let c = || level.arg(Ty::Bool);
    let mut alts: Vec<Src> = vec![ternary(c(), a(ty), a(ty))];
    match ty {
        Ty::Int => {
            alts.extend(arith(level, ty));
            alts.push(unary("-", a(Ty::Int)));
            alts.push(call("size", a(Ty::Str)));
            alts.push(call("size", a(Ty::Bytes)));
            alts.push(call("size", a(Ty::List)));
            alts.push(call("size", a(Ty::Map)));
            alts.push(a(Ty::List).prop_map(|l| format!("{l}.size()")).boxed());
            alts.push(call("int", a(Ty::Uint)));
            alts.push(call("int", a(Ty::Double)));
            alts.push(call("int", a(Ty::Str)));
            alts.push(call("int", a(Ty::Int)));
            alts.push(call("int", a(Ty::Timestamp)));
            for name in ["getHours", "getMinutes", "getSeconds", "getMilliseconds"] {
                alts.push(
                    a(Ty::Duration)
                        .prop_map(move |e| format!("{e}.{name}()"))
                        .boxed(),
                );
            }
            for name in [
                "getFullYear",
                "getMonth",
                "getDate",
                "getDayOfMonth",
                "getDayOfWeek",
                "getDayOfYear",
                "getHours",
                "getMinutes",
                "getSeconds",
                "getMilliseconds",
            ] {
                alts.push(
                    a(Ty::Timestamp)
                        .prop_map(move |e| format!("{e}.{name}()"))
                        .boxed(),
                );
                alts.push(method(
                    a(Ty::Timestamp),
                    name,
                    pick(&[
                        "'UTC'",
                        "'America/New_York'",
                        "'+05:30'",
                        "'-08:00'",
                        "'Mars/Olympus'",
                    ]),
                ));
            }
            alts.push(
                (a(Ty::List), a(Ty::Int))
                    .prop_map(|(l, i)| format!("{l}[{i}]"))
                    .boxed(),
            );
            alts.push(
                (a(Ty::Map), a(Ty::Str))
                    .prop_map(|(m, k)| format!("{m}[{k}]"))
                    .boxed(),
            );
            alts.push(a(Ty::Map).prop_map(|m| format!("{m}.a")).boxed());
            // Heterogeneous keys: int, uint and double look-ups find numerically equal keys.
            alts.push(
                level
                    .any
                    .clone()
                    .prop_map(|k| format!("{{1: 10, 2u: 20, 'a': 30, true: 40}}[{k}]"))
                    .boxed(),
            );
        }
        Ty::Uint => {
            alts.extend(arith(level, ty));
            alts.push(call("uint", a(Ty::Int)));
            alts.push(call("uint", a(Ty::Double)));
            alts.push(call("uint", a(Ty::Str)));
        }
        Ty::Double => {
            alts.extend(arith(level, ty));
            alts.push(unary("-", a(Ty::Double)));
            alts.push(call("double", a(Ty::Int)));
            alts.push(call("double", a(Ty::Uint)));
            alts.push(call("double", a(Ty::Str)));
        }
        Ty::Str => {
            alts.push(binary(a(Ty::Str), "+", a(Ty::Str)));
            alts.push(call("string", a(Ty::Int)));
            alts.push(call("string", a(Ty::Uint)));
            alts.push(call("string", a(Ty::Bool)));
            alts.push(call("string", a(Ty::Str)));
            alts.push(call("string", a(Ty::Bytes)));
            alts.push(call("string", a(Ty::Duration)));
            alts.push(call("string", a(Ty::Timestamp)));
        }
        Ty::Bool => {
            for t in [
                Ty::Int,
                Ty::Uint,
                Ty::Str,
                Ty::Bool,
                Ty::Bytes,
                Ty::Duration,
                Ty::Timestamp,
            ] {
                for op in ["==", "!=", "<", "<=", ">", ">="] {
                    alts.push(binary(a(t), op, a(t)));
                }
            }
            for op in ["==", "!=", "<", ">="] {
                alts.push(binary(a(Ty::Double), op, a(Ty::Double)));
                alts.push(binary(a(Ty::Int), op, a(Ty::Uint)));
                alts.push(binary(a(Ty::Double), op, a(Ty::Int)));
                alts.push(binary(a(Ty::Uint), op, a(Ty::Double)));
            }
            for t in [Ty::List, Ty::Map] {
                alts.push(binary(a(t), "==", a(t)));
                alts.push(binary(a(t), "!=", a(t)));
            }
            alts.push(binary(level.any.clone(), "==", pick(&["null"])));
            alts.push(binary(pick(&["null"]), "!=", level.any.clone()));
            alts.push(binary(c(), "&&", c()));
            alts.push(binary(c(), "||", c()));
            alts.push(binary(c(), "&&", c()));
            alts.push(binary(c(), "||", c()));
            alts.push(unary("!", c()));
            alts.push(binary(a(Ty::Int), "in", a(Ty::List)));
            alts.push(binary(a(Ty::Str), "in", a(Ty::Map)));
            alts.push(binary(
                level.any.clone(),
                "in",
                pick(&["[1, 2u, 3.0, 'a']"]),
            ));
            alts.push(binary(
                level.any.clone(),
                "in",
                pick(&["{1: 10, 2u: 20, 'a': 30, true: 40}"]),
            ));
            for name in ["startsWith", "endsWith", "contains"] {
                alts.push(method(a(Ty::Str), name, a(Ty::Str)));
            }
            alts.push(method(
                a(Ty::Str),
                "matches",
                pick(&["'h.*o'", "'^a'", "'[0-9]+'", "'l{2}'", "''", "'('"]),
            ));
            alts.push(call("bool", pick(&["'true'", "'false'", "'yes'", "s"])));
            for name in ["all", "exists", "exists_one"] {
                alts.push(comprehension(a(Ty::List), name, "x", c()));
                alts.push(comprehension(a(Ty::Map), name, "s", c()));
            }
            alts.push(a(Ty::Map).prop_map(|m| format!("has({m}.a)")).boxed());
        }
        Ty::Bytes => {
            alts.push(binary(a(Ty::Bytes), "+", a(Ty::Bytes)));
            alts.push(call("bytes", a(Ty::Str)));
            alts.push(call("bytes", a(Ty::Bytes)));
        }
        Ty::List => {
            alts.push(binary(a(Ty::List), "+", a(Ty::List)));
            alts.push(
                (a(Ty::Int), a(Ty::Int))
                    .prop_map(|(p, q)| format!("[{p}, {q}]"))
                    .boxed(),
            );
            alts.push(
                (a(Ty::List), a(Ty::List))
                    .prop_map(|(p, q)| format!("[{p}, {q}]"))
                    .boxed(),
            );
            alts.push(comprehension(a(Ty::List), "map", "x", a(Ty::Int)));
            alts.push(comprehension(a(Ty::List), "filter", "x", c()));
            alts.push(comprehension(a(Ty::Map), "map", "s", a(Ty::Int)));
            alts.push(
                (a(Ty::List), c(), a(Ty::Int))
                    .prop_map(|(l, f, e)| format!("{l}.map(x, {f}, {e})"))
                    .boxed(),
            );
        }
        Ty::Duration => {
            alts.push(binary(a(Ty::Duration), "+", a(Ty::Duration)));
            alts.push(binary(a(Ty::Duration), "-", a(Ty::Duration)));
            alts.push(binary(a(Ty::Timestamp), "-", a(Ty::Timestamp)));
            alts.push(call(
                "duration",
                pick(&["'1m'", "'-2h'", "'1.000000001s'", "'1'", "'1d'", "''"]),
            ));
        }
        Ty::Timestamp => {
            alts.push(binary(a(Ty::Timestamp), "+", a(Ty::Duration)));
            alts.push(binary(a(Ty::Duration), "+", a(Ty::Timestamp)));
            alts.push(binary(a(Ty::Timestamp), "-", a(Ty::Duration)));
            alts.push(call(
                "timestamp",
                pick(&[
                    "'2024-06-30T23:59:59.999999999Z'",
                    "'2024-01-01T00:00:00'",
                    "'2024-01-01'",
                    "'2024-01-01T00:00:00-08:00'",
                ]),
            ));
        }
        Ty::Map => {
            alts.push(
                (a(Ty::Str), a(Ty::Int), a(Ty::Str), a(Ty::Int))
                    .prop_map(|(k1, v1, k2, v2)| format!("{{{k1}: {v1}, {k2}: {v2}}}"))
                    .boxed(),
            );
            alts.push(
                (a(Ty::Int), a(Ty::Int))
                    .prop_map(|(k, v)| format!("{{{k}: {v}}}"))
                    .boxed(),
            );
        }
    }
    Union::new(alts).boxed()
}

/// Expressions nested up to `depth` levels.
fn expressions(depth: usize) -> Src {
    let mut level = Level {
        by_type: TYPES.iter().map(|&t| leaves(t)).collect(),
        any: Union::new(TYPES.iter().map(|&t| leaves(t))).boxed(),
    };
    for _ in 0..depth {
        let by_type: Vec<Src> = TYPES
            .iter()
            .map(|&t| prop_oneof![1 => level.of(t), 3 => compound(&level, t)].boxed())
            .collect();
        let any = Union::new(by_type.clone()).boxed();
        level = Level { by_type, any };
    }
    level.any
}

/// The values of the variables, shared by both implementations.
#[derive(Clone, Debug)]
struct Vars {
    x: i64,
    u: u64,
    d: f64,
    s: &'static str,
    b: bool,
    by: &'static [u8],
    l: Vec<i64>,
    m: Vec<(&'static str, i64)>,
}

fn vars() -> impl Strategy<Value = Vars> {
    (
        proptest::sample::select(vec![-5_i64, 0, 3, i64::MAX]),
        proptest::sample::select(vec![0_u64, 7, u64::MAX]),
        proptest::sample::select(vec![-0.5_f64, 0.0, 2.5, 1e300]),
        proptest::sample::select(vec!["", "hello", "a.b", "42"]),
        any::<bool>(),
        proptest::sample::select(vec![&b""[..], &b"ab\xff"[..]]),
        proptest::sample::select(vec![vec![], vec![1_i64, 2, 3], vec![0, -1]]),
        proptest::sample::select(vec![vec![], vec![("a", 1_i64), ("b", 0)]]),
    )
        .prop_map(|(x, u, d, s, b, by, l, m)| Vars {
            x,
            u,
            d,
            s,
            b,
            by,
            l,
            m,
        })
}

fn activation(vars: &Vars) -> HashMap<String, Value> {
    let mut map = MapValue::new();
    for (k, v) in &vars.m {
        map.upsert(Key::String((*k).into()), Value::Int(*v));
    }
    [
        ("x", Value::Int(vars.x)),
        ("u", Value::Uint(vars.u)),
        ("d", Value::Double(vars.d)),
        ("s", Value::string(vars.s)),
        ("b", Value::Bool(vars.b)),
        ("by", Value::bytes(vars.by)),
        (
            "l",
            Value::list(vars.l.iter().map(|&i| Value::Int(i)).collect()),
        ),
        ("m", Value::map(map)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn ours(source: &str, vars: &Vars) -> Result<Value, String> {
    let expr = wicket_grammar::parse(source).map_err(|e| format!("parse: {e}"))?;
    Env::new(&activation(vars))
        .eval(&expr)
        .map_err(|e| e.to_string())
}

fn theirs(source: &str, vars: &Vars) -> Result<Value, String> {
    let program = cel::Program::compile(source).map_err(|e| format!("parse: {e}"))?;
    let mut context = cel::Context::default();
    context.add_variable_from_value("x", cel::Value::Int(vars.x));
    context.add_variable_from_value("u", cel::Value::UInt(vars.u));
    context.add_variable_from_value("d", cel::Value::Float(vars.d));
    context.add_variable_from_value("s", cel::Value::from(vars.s));
    context.add_variable_from_value("b", cel::Value::Bool(vars.b));
    context.add_variable_from_value("by", cel::Value::Bytes(Arc::new(vars.by.to_vec())));
    context.add_variable_from_value(
        "l",
        cel::Value::List(Arc::new(
            vars.l.iter().map(|&i| cel::Value::Int(i)).collect(),
        )),
    );
    let m: HashMap<String, i64> = vars.m.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
    context.add_variable_from_value("m", cel::Value::from(m));
    let value = program.execute(&context).map_err(|e| e.to_string())?;
    from_cel(&value)
}

/// Maps a `cel` crate value into ours; values outside the shared subset are reported as
/// disagreements (an `Err` with a description never equals an `Ok`).
fn from_cel(value: &cel::Value) -> Result<Value, String> {
    Ok(match value {
        cel::Value::Null => Value::Null,
        cel::Value::Bool(b) => Value::Bool(*b),
        cel::Value::Int(i) => Value::Int(*i),
        cel::Value::UInt(u) => Value::Uint(*u),
        cel::Value::Float(d) => Value::Double(*d),
        cel::Value::String(s) => Value::string(s.as_str()),
        cel::Value::Bytes(b) => Value::bytes(b.as_slice()),
        cel::Value::List(items) => {
            Value::list(items.iter().map(from_cel).collect::<Result<_, _>>()?)
        }
        cel::Value::Map(map) => {
            let mut out = MapValue::new();
            for (k, v) in map.map.iter() {
                let key = match k {
                    cel::objects::Key::Int(i) => Key::Int(*i),
                    cel::objects::Key::Uint(u) => Key::Uint(*u),
                    cel::objects::Key::Bool(b) => Key::Bool(*b),
                    cel::objects::Key::String(s) => Key::String(s.as_str().into()),
                };
                out.upsert(key, from_cel(v)?);
            }
            Value::map(out)
        }
        cel::Value::Duration(d) => {
            Value::Duration(jiff::SignedDuration::new(d.num_seconds(), d.subsec_nanos()))
        }
        cel::Value::Timestamp(t) => Value::Timestamp(
            jiff::Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32)
                .map_err(|e| format!("unmapped cel timestamp {t:?}: {e}"))?,
        ),
        other => return Err(format!("unmapped cel value {other:?}")),
    })
}

/// Structural equality with exact types: `1` and `1u` differ, `NaN` equals `NaN`.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Uint(x), Value::Uint(y)) => x == y,
        (Value::Double(x), Value::Double(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bytes(x), Value::Bytes(y)) => x == y,
        (Value::Duration(x), Value::Duration(y)) => x == y,
        (Value::Timestamp(x), Value::Timestamp(y)) => x == y,
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| same(p, q))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, v)| {
                    y.iter()
                        .find(|(k2, _)| *k2 == k)
                        .is_some_and(|(_, w)| same(v, w))
                })
        }
        _ => false,
    }
}

/// [`same`], except that lists may hold their elements in any order.
fn same_unordered(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::List(x), Value::List(y)) => {
            let mut used = vec![false; y.len()];
            x.len() == y.len()
                && x.iter().all(|p| {
                    let found = y
                        .iter()
                        .enumerate()
                        .find(|(i, q)| !used[*i] && same_unordered(p, q));
                    found.is_some_and(|(i, _)| {
                        used[i] = true;
                        true
                    })
                })
        }
        _ => same(a, b),
    }
}

/// Whether the two outcomes agree: both errors, or the same value.
fn agree(ours: &Result<Value, String>, theirs: &Result<Value, String>) -> bool {
    match (ours, theirs) {
        (Err(_), Err(_)) => true,
        (Ok(a), Ok(b)) => same(a, b),
        _ => false,
    }
}

/// Disagreements where cel-spec is on our side (see `differential-divergences.md`): whether
/// the expression contains a shape on which the `cel` crate departs from the spec, and the
/// outcomes differ the way that departure explains.
///
/// Shapes are found by evaluating sub-expressions with our interpreter on their own, with the
/// case's variables (inside a macro body the macro variable then reads the outer variable of
/// the same name, so the check may miss a shape there; it never excuses a case without one).
fn known_divergence(
    source: &str,
    vars: &Vars,
    ours: &Result<Value, String>,
    theirs: &Result<Value, String>,
) -> bool {
    let Ok(expr) = wicket_grammar::parse(source) else {
        return false;
    };
    let activation = activation(vars);
    let env = Env::new(&activation);
    let value = |e: &Expr| env.eval(e).ok();
    let mut nodes = Vec::new();
    collect(&expr, &mut nodes);
    nodes.iter().any(|node| match &node.kind {
        // Not a divergence: the order of a map's keys in `map` and `filter` is unspecified,
        // and the `cel` crate's maps are hash maps.
        ExprKind::Macro(m) => match (&**m, ours, theirs) {
            (Macro::Map { comp: c, .. } | Macro::Filter(c), Ok(a), Ok(b)) => {
                matches!(value(&c.range), Some(Value::Map(map)) if map.len() > 1)
                    && same_unordered(a, b)
            }
            _ => false,
        },
        // Divergence 2: `list + map` concatenates the map's keys in the `cel` crate.
        ExprKind::Binary {
            op: BinaryOp::Add,
            lhs,
            rhs,
        } => {
            ours.is_err()
                && matches!(
                    (value(lhs), value(rhs)),
                    (Some(Value::List(_)), Some(Value::Map(_)))
                )
        }
        // Divergence 10: after 2037 the `cel` crate's time zones (chrono-tz) have no daylight
        // saving time; the tz database's rule for later years (the RFC 8536 footer) applies.
        ExprKind::Call {
            target: Some(target),
            function,
            args,
        } if function.name.starts_with("get") && args.len() == 1 => {
            matches!(value(&args[0]), Some(Value::String(zone)) if zone.contains('/'))
                && matches!(value(target), Some(Value::Timestamp(t))
                    if t > jiff::Timestamp::new(2_145_916_800, 0).unwrap_or(jiff::Timestamp::MAX))
        }
        ExprKind::Call {
            target: Some(target),
            function,
            args,
        } if function.name.starts_with("get") && args.is_empty() => match value(target) {
            // Divergence 7: a duration's `getMilliseconds()` is the total there.
            Some(Value::Duration(d)) => function.name == "getMilliseconds" && d.as_secs() != 0,
            // Divergence 8: a timestamp keeps its parsed offset there, and the getters without
            // a time zone read the time at that offset instead of in UTC.
            Some(Value::Timestamp(_)) => source.contains("+02:00'") || source.contains("-08:00'"),
            _ => false,
        },
        // Divergence 6: `-duration` is not implemented there.
        ExprKind::Unary {
            op: UnaryOp::Neg,
            operand,
        } => theirs.is_err() && matches!(value(operand), Some(Value::Duration(_))),
        // Divergence 3: `x in map` for an `x` that cannot be a key is an error there.
        ExprKind::Binary {
            op: BinaryOp::In,
            lhs,
            rhs,
        } => {
            theirs.is_err()
                && matches!(value(rhs), Some(Value::Map(_)))
                && value(lhs).is_some_and(|k| Key::from_value(&k).is_none())
        }
        ExprKind::Call {
            target: None,
            function,
            args,
        } if args.len() == 1 => match (function.name.as_str(), value(&args[0])) {
            // Divergence 4: `string(double)` is Rust's `Display` there, Go's `%g` here.
            ("string", Some(Value::Double(d))) => {
                matches!(value(node), Some(Value::String(ours)) if *ours != *d.to_string())
            }
            // Divergence 9: `string(duration)` is exact there, through a double here (cel-go).
            ("string", Some(Value::Duration(d))) => {
                let exact = format!(
                    "{}{}.{:09}s",
                    if d.is_negative() { "-" } else { "" },
                    d.as_secs().unsigned_abs(),
                    d.subsec_nanos().unsigned_abs()
                );
                let exact = exact.trim_end_matches("s").trim_end_matches('0');
                let exact = format!("{}s", exact.trim_end_matches('.'));
                matches!(value(node), Some(Value::String(ours)) if *ours != *exact)
            }
            // Divergence 6: `int(duration)` is not implemented there.
            ("int", Some(Value::Duration(_))) => theirs.is_err(),
            // Divergence 5: `uint('+1')` parses with Rust's `u64::from_str` there.
            ("uint", Some(Value::String(text))) => ours.is_err() && text.starts_with('+'),
            // Divergence 11: a finite literal too large for a double is infinity there, a
            // range error here (Go's `strconv.ParseFloat`).
            ("double", Some(Value::String(text))) => {
                ours.is_err()
                    && matches!(theirs, Ok(Value::Double(d)) if d.is_infinite())
                    && !text.to_ascii_lowercase().contains("inf")
            }
            _ => false,
        },
        _ => false,
    })
}

/// `expr` and all its sub-expressions.
fn collect<'e>(expr: &'e Expr, out: &mut Vec<&'e Expr>) {
    out.push(expr);
    let mut children: Vec<&Expr> = Vec::new();
    match &expr.kind {
        ExprKind::Literal(_) | ExprKind::Ident { .. } | ExprKind::Struct { .. } => {}
        ExprKind::Select { operand, .. } | ExprKind::Unary { operand, .. } => {
            children.push(operand);
        }
        ExprKind::Index { operand, index, .. } => children.extend([&**operand, &**index]),
        ExprKind::Call { target, args, .. } => {
            children.extend(target.as_deref());
            children.extend(args);
        }
        ExprKind::Binary { lhs, rhs, .. } => children.extend([&**lhs, &**rhs]),
        ExprKind::Ternary {
            cond,
            then,
            otherwise,
        } => children.extend([&**cond, &**then, &**otherwise]),
        ExprKind::List(elements) => children.extend(elements.iter().map(|e| &e.value)),
        ExprKind::Map(entries) => {
            children.extend(entries.iter().flat_map(|e| [&e.key, &e.value]));
        }
        ExprKind::Macro(m) => match &**m {
            Macro::Has { select } => children.push(select),
            Macro::All(c) | Macro::Exists(c) | Macro::ExistsOne(c) | Macro::Filter(c) => {
                children.extend([&c.range, &c.body]);
            }
            Macro::Map { comp, filter } => {
                children.extend([&comp.range, &comp.body]);
                children.extend(filter);
            }
            _ => {}
        },
    }
    for child in children {
        collect(child, out);
    }
}

fn check(source: &str, vars: &Vars) -> Result<(), TestCaseError> {
    let a = ours(source, vars);
    let b = theirs(source, vars);
    if agree(&a, &b) || known_divergence(source, vars, &a, &b) {
        return Ok(());
    }
    Err(TestCaseError::fail(format!(
        "`{source}` with {vars:?}\n  wicket: {a:?}\n  cel:    {b:?}"
    )))
}

#[test]
fn interpreter_agrees_with_the_cel_crate() {
    let mut runner = TestRunner::new(Config {
        cases: 5000,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&(expressions(3), vars()), |(source, vars)| {
        check(&source, &vars)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

fn fixed_vars() -> Vars {
    Vars {
        x: 3,
        u: 7,
        d: 2.5,
        s: "hello",
        b: true,
        by: b"ab",
        l: vec![1, 2, 3],
        m: vec![("a", 1), ("b", 2)],
    }
}

/// The examples of `differential-divergences.md`, checked against both implementations, so
/// that the document stays true as either side changes.
#[test]
fn divergences_are_as_documented() {
    let vars = fixed_vars();
    let run = |source: &str| (ours(source, &vars), theirs(source, &vars));

    // 1. Pairs of unary operators: `--e` is `-(-e)` here, `e` there.
    let (a, b) = run("--{}");
    assert!(a.is_err(), "{a:?}");
    assert!(matches!(b, Ok(Value::Map(_))), "{b:?}");
    let (a, b) = run("!!1");
    assert!(a.is_err(), "{a:?}");
    assert!(matches!(b, Ok(Value::Int(1))), "{b:?}");

    // 2. `list + map`: no such overload here, key concatenation there.
    let (a, b) = run("[1] + {'a': 1}");
    assert!(a.is_err(), "{a:?}");
    assert!(
        matches!(&b, Ok(Value::List(items)) if items.len() == 2),
        "{b:?}"
    );
    assert!(known_divergence("[1] + {'a': 1}", &vars, &a, &b));

    // 3. `x in map` for a value that cannot be a key: false here, an error there.
    let (a, b) = run("b'a' in {'a': 1}");
    assert!(matches!(a, Ok(Value::Bool(false))), "{a:?}");
    assert!(b.is_err(), "{b:?}");
    assert!(known_divergence("b'a' in {'a': 1}", &vars, &a, &b));

    // 4. `string(double)`: Go's `%g` here, Rust's `Display` there.
    let (a, b) = run("string(1e10)");
    assert!(
        matches!(&a, Ok(Value::String(s)) if &**s == "1e+10"),
        "{a:?}"
    );
    assert!(
        matches!(&b, Ok(Value::String(s)) if &**s == "10000000000"),
        "{b:?}"
    );
    assert!(known_divergence("string(1e10)", &vars, &a, &b));

    // 5. A `+` sign in `uint(string)`: an error here, accepted there.
    let (a, b) = run("uint('+1')");
    assert!(a.is_err(), "{a:?}");
    assert!(matches!(b, Ok(Value::Uint(1))), "{b:?}");
    assert!(known_divergence("uint('+1')", &vars, &a, &b));

    // 6. Overloads missing there: `-duration`, `int(duration)` (nanoseconds in cel-go).
    for source in ["-duration('1s')", "int(duration('1s'))"] {
        let (a, b) = run(source);
        assert!(a.is_ok() && b.is_err(), "{source}: {a:?} / {b:?}");
        assert!(known_divergence(source, &vars, &a, &b));
    }

    // 7. A duration's `getMilliseconds()`: the component here, the total there.
    let (a, b) = run("duration('1.5s').getMilliseconds()");
    assert!(matches!(a, Ok(Value::Int(500))), "{a:?}");
    assert!(matches!(b, Ok(Value::Int(1500))), "{b:?}");

    // 8. Getters without a time zone read UTC here, the parsed offset there.
    let (a, b) = run("timestamp('2024-01-01T12:00:00+02:00').getHours()");
    assert!(matches!(a, Ok(Value::Int(10))), "{a:?}");
    assert!(matches!(b, Ok(Value::Int(12))), "{b:?}");

    // 9. `string(duration)`: through a double here (as cel-go), exact there.
    let source =
        "string(timestamp('2024-06-30T23:59:59.999999999Z') - timestamp('2024-01-01T00:00:00Z'))";
    let (a, b) = run(source);
    assert!(
        matches!(&a, Ok(Value::String(s)) if &**s == "15724799.999999998s"),
        "{a:?}"
    );
    assert!(
        matches!(&b, Ok(Value::String(s)) if &**s == "15724799.999999999s"),
        "{b:?}"
    );
    assert!(known_divergence(source, &vars, &a, &b));

    // 10. Daylight saving time after 2037.
    let source = "timestamp('2100-07-01T12:00:00Z').getHours('America/New_York')";
    let (a, b) = run(source);
    assert!(matches!(a, Ok(Value::Int(8))), "{a:?}");
    assert!(matches!(b, Ok(Value::Int(7))), "{b:?}");
    assert!(known_divergence(source, &vars, &a, &b));

    // 11. A finite literal beyond the largest double: a range error here, infinity there.
    let source = "double('1e3' + '42')";
    let (a, b) = run(source);
    assert!(a.is_err(), "{a:?}");
    assert!(
        matches!(b, Ok(Value::Double(d)) if d.is_infinite()),
        "{b:?}"
    );
    assert!(known_divergence(source, &vars, &a, &b));
    // `double('inf')` is infinity in both.
    let (a, b) = run("double('-Inf')");
    assert!(agree(&a, &b), "{a:?} / {b:?}");

    // Not excused: the same shapes where both agree, or where the outcomes differ otherwise.
    let (a, b) = run("string(1.5)");
    assert!(agree(&a, &b), "{a:?} / {b:?}");
    assert!(!known_divergence(
        "1 + 1",
        &vars,
        &Ok(Value::Int(2)),
        &Ok(Value::Int(3))
    ));

    // Fixed in our interpreter after this check found it: ordering a NaN is an error (it
    // answered `false`), as in cel-go and the `cel` crate.
    let (a, b) = run("0.0 / 0.0 < 1.0");
    assert!(a.is_err() && b.is_err(), "{a:?} / {b:?}");
    // Fixed likewise: timestamps before 1970 with a fraction of a second.
    for source in [
        "string(timestamp('1969-12-31T23:59:59.9Z'))",
        "int(timestamp('1969-12-31T23:59:58.5Z'))",
    ] {
        let (a, b) = run(source);
        assert!(agree(&a, &b), "{source}: {a:?} / {b:?}");
    }
}

/// Map keys come out of `map` and `filter` in an unspecified order; the comparison accepts any.
#[test]
fn map_key_order_is_not_compared() {
    let vars = fixed_vars();
    let ab = Ok(Value::list(vec![Value::string("a"), Value::string("b")]));
    let ba = Ok(Value::list(vec![Value::string("b"), Value::string("a")]));
    assert!(!agree(&ab, &ba));
    assert!(known_divergence("m.filter(s, true)", &vars, &ab, &ba));
    assert!(!known_divergence("['a', 'b']", &vars, &ab, &ba));
}
