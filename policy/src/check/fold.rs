//! Constant folding of conditions: enough of CEL to tell whether a condition is always true or
//! always false without knowing the request.

use wicket_grammar::ast::{BinaryOp, Expr, ExprKind, Literal, UnaryOp};

/// A constant value known at check time.
#[derive(Clone, Debug, PartialEq)]
enum Const {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Double(f64),
    String(String),
    Bytes(Vec<u8>),
    List(Vec<Const>),
}

/// The value of a condition when it does not depend on the request: `Some(true)` for
/// `1 == 1` or `true || x`, `Some(false)` for `'a' in []` or `x && false`, `None` otherwise.
///
/// Follows CEL's commutative logic: `x || true` is true and `x && false` is false whatever
/// `x` is (even an error).
#[must_use]
pub fn fold_constant(expr: &Expr) -> Option<bool> {
    match fold(expr, 0)? {
        Const::Bool(b) => Some(b),
        _ => None,
    }
}

/// Folding stops below this depth (the parser bounds depth too; this keeps us independent).
const MAX_DEPTH: usize = 200;

fn fold(expr: &Expr, depth: usize) -> Option<Const> {
    if depth > MAX_DEPTH {
        return None;
    }
    let d = depth + 1;
    match &expr.kind {
        ExprKind::Literal(lit) => Some(match lit {
            Literal::Null => Const::Null,
            Literal::Bool(b) => Const::Bool(*b),
            Literal::Int(i) => Const::Int(*i),
            Literal::Uint(u) => Const::Uint(*u),
            Literal::Double(f) => Const::Double(*f),
            Literal::String(s) => Const::String(s.clone()),
            Literal::Bytes(b) => Const::Bytes(b.clone()),
        }),
        ExprKind::List(elems) => {
            let mut out = Vec::with_capacity(elems.len());
            for e in elems {
                if e.optional {
                    return None;
                }
                out.push(fold(&e.value, d)?);
            }
            Some(Const::List(out))
        }
        ExprKind::Unary {
            op: UnaryOp::Not,
            operand,
        } => match fold(operand, d)? {
            Const::Bool(b) => Some(Const::Bool(!b)),
            _ => None,
        },
        ExprKind::Binary { op, lhs, rhs } => fold_binary(*op, lhs, rhs, d),
        ExprKind::Ternary {
            cond,
            then,
            otherwise,
        } => match fold(cond, d)? {
            Const::Bool(true) => fold(then, d),
            Const::Bool(false) => fold(otherwise, d),
            _ => None,
        },
        ExprKind::Call {
            target,
            function,
            args,
        } if function.name == "size" => {
            let arg = match (target, args.as_slice()) {
                (Some(t), []) => t.as_ref(),
                (None, [a]) => a,
                _ => return None,
            };
            let n = match fold(arg, d)? {
                Const::String(s) => s.chars().count(),
                Const::Bytes(b) => b.len(),
                Const::List(l) => l.len(),
                _ => return None,
            };
            i64::try_from(n).ok().map(Const::Int)
        }
        _ => None,
    }
}

fn fold_binary(op: BinaryOp, lhs: &Expr, rhs: &Expr, d: usize) -> Option<Const> {
    match op {
        BinaryOp::Or | BinaryOp::And => {
            let absorbing = op == BinaryOp::Or;
            let l = fold(lhs, d);
            let r = fold(rhs, d);
            if l == Some(Const::Bool(absorbing)) || r == Some(Const::Bool(absorbing)) {
                return Some(Const::Bool(absorbing));
            }
            match (l?, r?) {
                (Const::Bool(a), Const::Bool(b)) => {
                    Some(Const::Bool(if absorbing { a || b } else { a && b }))
                }
                _ => None,
            }
        }
        BinaryOp::In => {
            // `x in []` is false whatever `x` is.
            if let ExprKind::List(elems) = &rhs.kind {
                if elems.is_empty() {
                    return Some(Const::Bool(false));
                }
            }
            let needle = fold(lhs, d)?;
            match fold(rhs, d)? {
                Const::List(items) => {
                    let mut any = false;
                    for item in &items {
                        any |= const_eq(&needle, item)?;
                    }
                    Some(Const::Bool(any))
                }
                _ => None,
            }
        }
        BinaryOp::Eq | BinaryOp::Ne => {
            let eq = const_eq(&fold(lhs, d)?, &fold(rhs, d)?)?;
            Some(Const::Bool(if op == BinaryOp::Eq { eq } else { !eq }))
        }
        BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
            let ord = const_cmp(&fold(lhs, d)?, &fold(rhs, d)?)?;
            Some(Const::Bool(match op {
                BinaryOp::Lt => ord.is_lt(),
                BinaryOp::Le => ord.is_le(),
                BinaryOp::Gt => ord.is_gt(),
                _ => ord.is_ge(),
            }))
        }
        _ => None,
    }
}

/// Numeric value of an int, uint or double constant.
fn num(c: &Const) -> Option<f64> {
    match c {
        #[allow(clippy::cast_precision_loss)]
        Const::Int(i) => Some(*i as f64),
        #[allow(clippy::cast_precision_loss)]
        Const::Uint(u) => Some(*u as f64),
        Const::Double(f) => Some(*f),
        _ => None,
    }
}

/// CEL equality of two constants; `None` when the comparison would be a type error or is not
/// decided here.
fn const_eq(a: &Const, b: &Const) -> Option<bool> {
    match (a, b) {
        (Const::Null, Const::Null) => Some(true),
        (Const::Bool(x), Const::Bool(y)) => Some(x == y),
        (Const::String(x), Const::String(y)) => Some(x == y),
        (Const::Bytes(x), Const::Bytes(y)) => Some(x == y),
        (Const::Int(x), Const::Int(y)) => Some(x == y),
        (Const::Uint(x), Const::Uint(y)) => Some(x == y),
        (Const::List(x), Const::List(y)) => {
            if x.len() != y.len() {
                return Some(false);
            }
            let mut all = true;
            for (p, q) in x.iter().zip(y) {
                all &= const_eq(p, q)?;
            }
            Some(all)
        }
        _ => {
            let (x, y) = (num(a)?, num(b)?);
            Some(x == y)
        }
    }
}

fn const_cmp(a: &Const, b: &Const) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Const::Bool(x), Const::Bool(y)) => Some(x.cmp(y)),
        (Const::String(x), Const::String(y)) => Some(x.cmp(y)),
        (Const::Bytes(x), Const::Bytes(y)) => Some(x.cmp(y)),
        (Const::Int(x), Const::Int(y)) => Some(x.cmp(y)),
        (Const::Uint(x), Const::Uint(y)) => Some(x.cmp(y)),
        _ => num(a)?.partial_cmp(&num(b)?),
    }
}
