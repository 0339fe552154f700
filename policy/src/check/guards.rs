//! Presence guards: what a condition proves about map keys and header lookups, so that an
//! unguarded `req.headers['x']` can be told from a guarded one.
//!
//! A missing key makes `m['k']` a CEL error, and a failed expression ends the request with an
//! error (spec §1.5), so lookups should be guarded. CEL's `&&` and `||` are commutative and
//! absorb errors (`error && false` is `false`), so a guard anywhere in the same conjunction
//! (or a negated guard in the same disjunction) protects the lookup, whichever side it is on.

use wicket_grammar::ast::{BinaryOp, Expr, ExprKind, Literal, Macro, UnaryOp};

/// A fact `key is present in source`: `("req.headers", "x-api-key")`, or
/// `("getReqHeader", "X-Api-Key")` for the header functions.
pub(super) type Fact = (String, String);

/// Maps whose missing keys make indexing fail.
pub(super) fn is_keyed_map(name: &str) -> bool {
    matches!(
        name,
        "req.headers"
            | "res.headers"
            | "req.trailers"
            | "res.trailers"
            | "req.url.query_params"
            | "req.cookies"
            | "res.cookies"
            | "req.content_type.parameters"
            | "res.content_type.parameters"
            | "conn.k8s.pod.metadata.annotations"
    )
}

/// The presence test that guards a getter: `getReqHeader` → `hasReqHeader`.
pub(super) fn presence_test(getter: &str) -> Option<&'static str> {
    Some(match getter {
        "getReqHeader" => "hasReqHeader",
        "getResHeader" => "hasResHeader",
        "getQueryParam" => "hasQueryParam",
        "getReqCookie" => "hasReqCookie",
        "getResCookie" => "hasResCookie",
        _ => return None,
    })
}

fn getter_of(test: &str) -> Option<&'static str> {
    Some(match test {
        "hasReqHeader" => "getReqHeader",
        "hasResHeader" => "getResHeader",
        "hasQueryParam" => "getQueryParam",
        "hasReqCookie" => "getReqCookie",
        "hasResCookie" => "getResCookie",
        _ => return None,
    })
}

/// The dotted name of a pure `a.b.c` chain.
pub(super) fn dotted(e: &Expr) -> Option<String> {
    match &e.kind {
        ExprKind::Ident { name, .. } => Some(name.clone()),
        ExprKind::Select {
            operand,
            field,
            optional: false,
        } => Some(format!("{}.{}", dotted(operand)?, field.name)),
        _ => None,
    }
}

fn string_literal(e: &Expr) -> Option<&str> {
    match &e.kind {
        ExprKind::Literal(Literal::String(s)) => Some(s),
        _ => None,
    }
}

/// What `e` being `positive` (true, or false when `!positive`) proves present.
pub(super) fn facts(e: &Expr, positive: bool, out: &mut Vec<Fact>, depth: usize) {
    if depth > 64 {
        return;
    }
    let d = depth + 1;
    match &e.kind {
        ExprKind::Unary {
            op: UnaryOp::Not,
            operand,
        } => facts(operand, !positive, out, d),
        ExprKind::Binary { op, lhs, rhs } => match (op, positive) {
            (BinaryOp::And, true) | (BinaryOp::Or, false) => {
                facts(lhs, positive, out, d);
                facts(rhs, positive, out, d);
            }
            (BinaryOp::In, true) => {
                if let (Some(key), Some(map)) = (string_literal(lhs), dotted(rhs)) {
                    out.push((map, key.to_owned()));
                }
            }
            _ => {}
        },
        ExprKind::Call {
            target: None,
            function,
            args,
        } if positive => {
            if let (Some(getter), [arg]) = (getter_of(&function.name), args.as_slice()) {
                if let Some(key) = string_literal(arg) {
                    out.push((getter.to_owned(), key.to_owned()));
                }
            }
        }
        ExprKind::Macro(m) if positive => match m.as_ref() {
            Macro::Has { select } => {
                if let ExprKind::Select { operand, field, .. } = &select.kind {
                    if let Some(map) = dotted(operand) {
                        out.push((map, field.name.clone()));
                    }
                }
            }
            // `req.headers.exists_one(x, x == 'x-id')`, as the docs write it.
            Macro::Exists(c) | Macro::ExistsOne(c) if c.var2.is_none() => {
                let (
                    Some(map),
                    ExprKind::Binary {
                        op: BinaryOp::Eq,
                        lhs,
                        rhs,
                    },
                ) = (dotted(&c.range), &c.body.kind)
                else {
                    return;
                };
                let is_var = |e: &Expr| matches!(&e.kind, ExprKind::Ident { name, .. } if *name == c.var.name);
                let key = if is_var(lhs) {
                    string_literal(rhs)
                } else if is_var(rhs) {
                    string_literal(lhs)
                } else {
                    None
                };
                if let Some(key) = key {
                    out.push((map, key.to_owned()));
                }
            }
            _ => {}
        },
        _ => {}
    }
}
