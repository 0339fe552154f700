//! Expressions to condition nodes: ngrok helper desugaring, constant folding, specialised
//! operations over built-in fields, constant sets, CIDR tables, precompiled regexes and
//! cost-ordered conjuncts.

use std::collections::HashSet;

use wicket_grammar::ast::{
    BinaryOp, Expr, ExprKind, Ident, ListElement, Literal, Macro, Span, UnaryOp,
};

use crate::eval::iptable::{IpTable, parse_policy_cidr};
use crate::eval::{CmpOp, IntField, IpField, Node, StrField, StrOp};
use crate::interp::{self, EmptyActivation};
use crate::value::Value;

/// The largest compiled regex program accepted (bytes), as RE2's default budget.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

fn mk(kind: ExprKind, span: Span) -> Expr {
    Expr::new(kind, span)
}

fn ident_expr(name: &str, span: Span) -> Expr {
    // A dotted variable name as nested selections.
    let mut parts = name.split('.');
    let first = parts.next().unwrap_or(name);
    let mut e = mk(
        ExprKind::Ident {
            name: first.to_owned(),
            root: false,
        },
        span,
    );
    for p in parts {
        e = mk(
            ExprKind::Select {
                operand: Box::new(e),
                field: Ident {
                    name: p.to_owned(),
                    span,
                },
                optional: false,
            },
            span,
        );
    }
    e
}

fn call(target: Option<Expr>, function: &str, args: Vec<Expr>, span: Span) -> Expr {
    mk(
        ExprKind::Call {
            target: target.map(Box::new),
            function: Ident {
                name: function.to_owned(),
                span,
            },
            args,
        },
        span,
    )
}

fn binary(op: BinaryOp, lhs: Expr, rhs: Expr, span: Span) -> Expr {
    mk(
        ExprKind::Binary {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        },
        span,
    )
}

/// `key in map ? map[key] : default`
fn get_or(map: &str, key: Expr, default: Expr, span: Span) -> Expr {
    let has = binary(BinaryOp::In, key.clone(), ident_expr(map, span), span);
    let get = mk(
        ExprKind::Index {
            operand: Box::new(ident_expr(map, span)),
            index: Box::new(key),
            optional: false,
        },
        span,
    );
    mk(
        ExprKind::Ternary {
            cond: Box::new(has),
            then: Box::new(get),
            otherwise: Box::new(default),
        },
        span,
    )
}

fn lower_key(arg: Expr, span: Span) -> Expr {
    match arg.kind {
        ExprKind::Literal(Literal::String(s)) => {
            mk(ExprKind::Literal(Literal::String(s.to_lowercase())), span)
        }
        _ => call(Some(arg), "lowerAscii", Vec::new(), span),
    }
}

fn first_or_error(map: &str, key: Expr, span: Span) -> Expr {
    let list = mk(
        ExprKind::Index {
            operand: Box::new(ident_expr(map, span)),
            index: Box::new(key),
            optional: false,
        },
        span,
    );
    mk(
        ExprKind::Index {
            operand: Box::new(list),
            index: Box::new(mk(ExprKind::Literal(Literal::Int(0)), span)),
            optional: false,
        },
        span,
    )
}

/// Rewrites ngrok's request helpers (`hasReqHeader`, `getQueryParam`, …) into plain CEL over
/// the request variables, so the interpreter and the compiler see the same expression.
pub fn desugar(expr: &mut Expr) {
    for child in children_mut(expr) {
        desugar(child);
    }
    let span = expr.span;
    let ExprKind::Call {
        target: None,
        function,
        args,
    } = &mut expr.kind
    else {
        return;
    };
    if args.len() != 1 {
        return;
    }
    let name = function.name.as_str();
    let empty = || mk(ExprKind::List(Vec::new()), span);
    let replacement = match name {
        "hasReqHeader" | "hasResHeader" => {
            let map = if name == "hasReqHeader" {
                "req.headers"
            } else {
                "res.headers"
            };
            let key = lower_key(args.remove(0), span);
            binary(BinaryOp::In, key, ident_expr(map, span), span)
        }
        "getReqHeader" | "getResHeader" => {
            let map = if name == "getReqHeader" {
                "req.headers"
            } else {
                "res.headers"
            };
            get_or(map, lower_key(args.remove(0), span), empty(), span)
        }
        "hasQueryParam" => binary(
            BinaryOp::In,
            args.remove(0),
            ident_expr("req.url.query_params", span),
            span,
        ),
        "getQueryParam" => get_or("req.url.query_params", args.remove(0), empty(), span),
        "hasReqCookie" | "hasResCookie" => {
            let map = if name == "hasReqCookie" {
                "req.cookies"
            } else {
                "res.cookies"
            };
            binary(BinaryOp::In, args.remove(0), ident_expr(map, span), span)
        }
        "getReqCookie" | "getResCookie" => {
            let map = if name == "getReqCookie" {
                "req.cookies"
            } else {
                "res.cookies"
            };
            first_or_error(map, args.remove(0), span)
        }
        _ => return,
    };
    *expr = replacement;
}

/// The direct sub-expressions of `expr`.
fn children_mut(expr: &mut Expr) -> Vec<&mut Expr> {
    let mut out: Vec<&mut Expr> = Vec::new();
    match &mut expr.kind {
        ExprKind::Literal(_) | ExprKind::Ident { .. } => {}
        ExprKind::Select { operand, .. } => out.push(operand),
        ExprKind::Index { operand, index, .. } => {
            out.push(operand);
            out.push(index);
        }
        ExprKind::Call { target, args, .. } => {
            if let Some(t) = target {
                out.push(t);
            }
            out.extend(args.iter_mut());
        }
        ExprKind::Unary { operand, .. } => out.push(operand),
        ExprKind::Binary { lhs, rhs, .. } => {
            out.push(lhs);
            out.push(rhs);
        }
        ExprKind::Ternary {
            cond,
            then,
            otherwise,
        } => {
            out.push(cond);
            out.push(then);
            out.push(otherwise);
        }
        ExprKind::List(items) => {
            out.extend(items.iter_mut().map(|e: &mut ListElement| &mut e.value))
        }
        ExprKind::Map(entries) => {
            for e in entries {
                out.push(&mut e.key);
                out.push(&mut e.value);
            }
        }
        ExprKind::Struct { fields, .. } => out.extend(fields.iter_mut().map(|f| &mut f.value)),
        ExprKind::Macro(m) => match &mut **m {
            Macro::Has { select } => out.push(select),
            Macro::All(c)
            | Macro::Exists(c)
            | Macro::ExistsOne(c)
            | Macro::Filter(c)
            | Macro::SortBy(c) => {
                out.push(&mut c.range);
                out.push(&mut c.body);
            }
            Macro::Map { comp, filter }
            | Macro::TransformList { comp, filter }
            | Macro::TransformMap { comp, filter }
            | Macro::TransformMapEntry { comp, filter } => {
                out.push(&mut comp.range);
                out.push(&mut comp.body);
                if let Some(f) = filter {
                    out.push(f);
                }
            }
            Macro::Bind { init, body, .. } => {
                out.push(init);
                out.push(body);
            }
            Macro::OptMap { target, body, .. } | Macro::OptFlatMap { target, body, .. } => {
                out.push(target);
                out.push(body);
            }
            Macro::Block { bindings, result } => {
                out.extend(bindings.iter_mut());
                out.push(result);
            }
        },
    }
    out
}

/// Whether the expression reads no variable and nothing non-deterministic: it can be folded.
fn is_constant(expr: &Expr) -> bool {
    match &expr.kind {
        ExprKind::Literal(_) => true,
        ExprKind::Ident { .. } | ExprKind::Macro(_) | ExprKind::Struct { .. } => false,
        _ => children(expr).iter().all(|c| is_constant(c)),
    }
}

fn children(expr: &Expr) -> Vec<&Expr> {
    match &expr.kind {
        ExprKind::Literal(_) | ExprKind::Ident { .. } | ExprKind::Macro(_) => Vec::new(),
        ExprKind::Select { operand, .. } => vec![operand],
        ExprKind::Index { operand, index, .. } => vec![operand, index],
        ExprKind::Call { target, args, .. } => target.iter().map(|t| &**t).chain(args).collect(),
        ExprKind::Unary { operand, .. } => vec![operand],
        ExprKind::Binary { lhs, rhs, .. } => vec![lhs, rhs],
        ExprKind::Ternary {
            cond,
            then,
            otherwise,
        } => vec![cond, then, otherwise],
        ExprKind::List(items) => items.iter().map(|e| &e.value).collect(),
        ExprKind::Map(entries) => entries.iter().flat_map(|e| [&e.key, &e.value]).collect(),
        ExprKind::Struct { fields, .. } => fields.iter().map(|f| &f.value).collect(),
    }
}

/// The dotted name of an identifier chain (`req.url.path`), without a leading dot.
#[must_use]
pub fn dotted_name(expr: &Expr) -> Option<String> {
    match &expr.kind {
        ExprKind::Ident { name, .. } => Some(name.clone()),
        ExprKind::Select {
            operand,
            field,
            optional: false,
        } => {
            let mut base = dotted_name(operand)?;
            base.push('.');
            base.push_str(&field.name);
            Some(base)
        }
        _ => None,
    }
}

fn str_field(expr: &Expr) -> Option<StrField> {
    StrField::from_name(&dotted_name(expr)?)
}

fn int_field(expr: &Expr) -> Option<IntField> {
    IntField::from_name(&dotted_name(expr)?)
}

fn ip_field(expr: &Expr) -> Option<IpField> {
    match dotted_name(expr)?.as_str() {
        "conn.client_ip" => Some(IpField::Client),
        "conn.server_ip" => Some(IpField::Server),
        _ => None,
    }
}

fn str_lit(expr: &Expr) -> Option<&str> {
    match &expr.kind {
        ExprKind::Literal(Literal::String(s)) => Some(s),
        _ => None,
    }
}

fn int_lit(expr: &Expr) -> Option<i64> {
    match &expr.kind {
        ExprKind::Literal(Literal::Int(i)) => Some(*i),
        _ => None,
    }
}

fn str_list(expr: &Expr) -> Option<Vec<&str>> {
    match &expr.kind {
        ExprKind::List(items) => items
            .iter()
            .map(|e| if e.optional { None } else { str_lit(&e.value) })
            .collect(),
        _ => None,
    }
}

fn fold(expr: &Expr) -> Node {
    match interp::eval(expr, &EmptyActivation) {
        Ok(Value::Bool(b)) => Node::Const(b),
        Ok(_) => Node::ConstErr(crate::error::EvalError::NoMatchingOverload {
            function: "_&&_".to_owned(),
        }),
        Err(e) => Node::ConstErr(e),
    }
}

/// A condition no specialised node covers: compiled with every name resolved, or (for
/// `cel.block` only) left to the reference interpreter.
fn general(expr: &Expr) -> Node {
    Node::General(Box::new(crate::eval::general::Compiled::new(expr.clone())))
}

fn flatten<'e>(expr: &'e Expr, op: BinaryOp, out: &mut Vec<&'e Expr>) {
    match &expr.kind {
        ExprKind::Binary { op: o, lhs, rhs } if *o == op => {
            flatten(lhs, op, out);
            flatten(rhs, op, out);
        }
        _ => out.push(expr),
    }
}

fn cmp_op(op: BinaryOp, swapped: bool) -> Option<CmpOp> {
    Some(match (op, swapped) {
        (BinaryOp::Eq, _) => CmpOp::Eq,
        (BinaryOp::Ne, _) => CmpOp::Ne,
        (BinaryOp::Lt, false) | (BinaryOp::Gt, true) => CmpOp::Lt,
        (BinaryOp::Le, false) | (BinaryOp::Ge, true) => CmpOp::Le,
        (BinaryOp::Gt, false) | (BinaryOp::Lt, true) => CmpOp::Gt,
        (BinaryOp::Ge, false) | (BinaryOp::Le, true) => CmpOp::Ge,
        _ => return None,
    })
}

fn regex(pattern: &str) -> Option<regex::Regex> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .ok()
}

/// Compiles a boolean-valued expression (a rule condition) into a node.
#[must_use]
pub fn compile_bool(expr: &Expr) -> Node {
    if is_constant(expr) {
        return fold(expr);
    }
    match &expr.kind {
        ExprKind::Binary {
            op: op @ (BinaryOp::And | BinaryOp::Or),
            ..
        } => {
            let mut parts = Vec::new();
            flatten(expr, *op, &mut parts);
            let mut nodes: Vec<Node> = parts.into_iter().map(compile_bool).collect();
            nodes.sort_by_key(Node::cost);
            if *op == BinaryOp::And {
                Node::And(nodes)
            } else {
                Node::Or(nodes)
            }
        }
        ExprKind::Unary {
            op: UnaryOp::Not,
            operand,
        } => Node::Not(Box::new(compile_bool(operand))),
        ExprKind::Binary { op, lhs, rhs } => {
            compile_binary(*op, lhs, rhs).unwrap_or_else(|| general(expr))
        }
        ExprKind::Call {
            target,
            function,
            args,
        } => compile_call(target.as_deref(), &function.name, args).unwrap_or_else(|| general(expr)),
        _ => general(expr),
    }
}

fn compile_binary(op: BinaryOp, lhs: &Expr, rhs: &Expr) -> Option<Node> {
    match op {
        BinaryOp::Eq | BinaryOp::Ne => {
            let sop = if op == BinaryOp::Eq {
                StrOp::Eq
            } else {
                StrOp::Ne
            };
            if let (Some(field), Some(arg)) = (str_field(lhs), str_lit(rhs)) {
                return Some(Node::Str {
                    field,
                    op: sop,
                    arg: arg.into(),
                });
            }
            if let (Some(arg), Some(field)) = (str_lit(lhs), str_field(rhs)) {
                return Some(Node::Str {
                    field,
                    op: sop,
                    arg: arg.into(),
                });
            }
            compile_int(op, lhs, rhs)
        }
        BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => compile_int(op, lhs, rhs),
        BinaryOp::In => {
            if let (Some(field), Some(items)) = (str_field(lhs), str_list(rhs)) {
                return Some(Node::StrIn {
                    field,
                    set: items.into_iter().map(Box::from).collect::<HashSet<_>>(),
                });
            }
            let map = dotted_name(rhs)?;
            let response = match map.as_str() {
                "req.headers" => false,
                "res.headers" => true,
                _ => return None,
            };
            let name = str_lit(lhs)?;
            if name.bytes().any(|b| b.is_ascii_uppercase()) {
                // Header keys are lower-case: an upper-case key is never present (but
                // `res.headers` outside a response is still an error, so keep it general).
                return (!response).then_some(Node::Const(false));
            }
            Some(Node::HeaderHas {
                response,
                name: name.into(),
            })
        }
        _ => None,
    }
}

fn compile_int(op: BinaryOp, lhs: &Expr, rhs: &Expr) -> Option<Node> {
    if let (Some(field), Some(arg)) = (int_field(lhs), int_lit(rhs)) {
        return Some(Node::Int {
            field,
            op: cmp_op(op, false)?,
            arg,
        });
    }
    if let (Some(arg), Some(field)) = (int_lit(lhs), int_field(rhs)) {
        return Some(Node::Int {
            field,
            op: cmp_op(op, true)?,
            arg,
        });
    }
    None
}

fn compile_call(target: Option<&Expr>, function: &str, args: &[Expr]) -> Option<Node> {
    match (target, function, args) {
        (Some(t), "startsWith" | "endsWith" | "contains", [arg]) => {
            let field = str_field(t)?;
            let arg = str_lit(arg)?;
            let op = match function {
                "startsWith" => StrOp::Prefix,
                "endsWith" => StrOp::Suffix,
                _ => StrOp::Contains,
            };
            Some(Node::Str {
                field,
                op,
                arg: arg.into(),
            })
        }
        (Some(t), "matches", [pattern]) | (None, "matches", [t, pattern]) => {
            let field = str_field(t)?;
            let re = regex(str_lit(pattern)?)?;
            Some(Node::StrRegex { field, re })
        }
        (None, "inCidrRange", [ip, cidr]) => {
            let field = ip_field(ip)?;
            let nets = str_lit(cidr).map(|c| parse_policy_cidr(c).into_iter().collect())?;
            Some(Node::Ip {
                field,
                table: IpTable::new(nets),
            })
        }
        (None, "inCidrRanges", [ip, cidrs]) => {
            let field = ip_field(ip)?;
            let nets = str_list(cidrs)?
                .into_iter()
                .filter_map(parse_policy_cidr)
                .collect();
            Some(Node::Ip {
                field,
                table: IpTable::new(nets),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(src: &str) -> Node {
        let mut e = wicket_grammar::parse(src).unwrap();
        desugar(&mut e);
        compile_bool(&e)
    }

    #[test]
    fn specialises_built_in_fields() {
        assert!(matches!(
            node("req.method == 'GET'"),
            Node::Str {
                field: StrField::Method,
                op: StrOp::Eq,
                ..
            }
        ));
        assert!(matches!(
            node("'GET' != req.method"),
            Node::Str { op: StrOp::Ne, .. }
        ));
        assert!(matches!(
            node("req.url.path.startsWith('/a')"),
            Node::Str {
                op: StrOp::Prefix,
                ..
            }
        ));
        assert!(matches!(
            node("req.url.host in ['a', 'b']"),
            Node::StrIn { .. }
        ));
        assert!(matches!(
            node("inCidrRanges(conn.client_ip, ['10.0.0.0/8'])"),
            Node::Ip { .. }
        ));
        assert!(matches!(
            node("res.status_code >= 500"),
            Node::Int { op: CmpOp::Ge, .. }
        ));
        assert!(matches!(
            node("500 < res.status_code"),
            Node::Int { op: CmpOp::Gt, .. }
        ));
        assert!(matches!(
            node("hasReqHeader('X-Api-Key')"),
            Node::HeaderHas { .. }
        ));
        assert!(matches!(
            node("req.url.path.matches('^/v[0-9]+/')"),
            Node::StrRegex { .. }
        ));
        assert!(matches!(node("1 + 1 == 2"), Node::Const(true)));
        assert!(matches!(node("1 / 0 == 2"), Node::ConstErr(_)));
        assert!(matches!(node("size(req.url.path) > 3"), Node::General(_)));
    }

    #[test]
    fn orders_conjuncts_by_cost() {
        let Node::And(parts) = node("size(req.headers) > 1 && req.method == 'GET'") else {
            panic!("expected a conjunction");
        };
        assert!(matches!(parts[0], Node::Str { .. }));
        assert!(matches!(parts[1], Node::General(_)));
    }
}
