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
            if let (Some(Const::Bool(a)), Some(Const::Bool(b))) = (&l, &r) {
                return Some(Const::Bool(if absorbing { *a || *b } else { *a && *b }));
            }
            // `x < 200 && x >= 300` is never true; `x == 1 || x != 1` is always true.
            let mut atoms = Vec::new();
            collect(op, lhs, &mut atoms);
            collect(op, rhs, &mut atoms);
            let constraints: Vec<Constraint<'_>> = atoms
                .into_iter()
                .filter_map(|e| constraint(e, absorbing))
                .collect();
            unsatisfiable(&constraints).then_some(Const::Bool(absorbing))
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

/// The operands of a chain of `op` (`a && b && c`).
fn collect<'e>(op: BinaryOp, e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match &e.kind {
        ExprKind::Binary { op: o, lhs, rhs } if *o == op && out.len() < MAX_DEPTH => {
            collect(op, lhs, out);
            collect(op, rhs, out);
        }
        _ => out.push(e),
    }
}

/// A comparison of a dotted name with a constant.
#[derive(Debug)]
struct Constraint<'e> {
    name: Vec<&'e str>,
    op: BinaryOp,
    value: Const,
}

/// The dotted name of a pure `a.b.c` chain.
fn dotted(e: &Expr) -> Option<Vec<&str>> {
    match &e.kind {
        ExprKind::Ident { name, .. } => Some(vec![name.as_str()]),
        ExprKind::Select {
            operand,
            field,
            optional: false,
        } => {
            let mut v = dotted(operand)?;
            v.push(field.name.as_str());
            Some(v)
        }
        _ => None,
    }
}

/// `name op constant` (or `constant op name`, flipped); negated for the atoms of an `||`
/// chain, whose tautology is the contradiction of the negations.
fn constraint(e: &Expr, negate: bool) -> Option<Constraint<'_>> {
    let ExprKind::Binary { op, lhs, rhs } = &e.kind else {
        return None;
    };
    let (name, value, op) = match (dotted(lhs), dotted(rhs)) {
        (Some(n), None) => (n, fold(rhs, 0)?, *op),
        (None, Some(n)) => (n, fold(lhs, 0)?, flip(*op)?),
        _ => return None,
    };
    if !matches!(
        value,
        Const::Int(_) | Const::Uint(_) | Const::Double(_) | Const::String(_)
    ) {
        return None;
    }
    let op = if negate { negation(op)? } else { op };
    matches!(
        op,
        BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge
    )
    .then_some(Constraint { name, op, value })
}

/// `a op b` ⇔ `b flip(op) a`.
fn flip(op: BinaryOp) -> Option<BinaryOp> {
    Some(match op {
        BinaryOp::Lt => BinaryOp::Gt,
        BinaryOp::Le => BinaryOp::Ge,
        BinaryOp::Gt => BinaryOp::Lt,
        BinaryOp::Ge => BinaryOp::Le,
        BinaryOp::Eq | BinaryOp::Ne => op,
        _ => return None,
    })
}

/// `!(a op b)` ⇔ `a negation(op) b` (for values that are ordered).
fn negation(op: BinaryOp) -> Option<BinaryOp> {
    Some(match op {
        BinaryOp::Lt => BinaryOp::Ge,
        BinaryOp::Le => BinaryOp::Gt,
        BinaryOp::Gt => BinaryOp::Le,
        BinaryOp::Ge => BinaryOp::Lt,
        BinaryOp::Eq => BinaryOp::Ne,
        BinaryOp::Ne => BinaryOp::Eq,
        _ => return None,
    })
}

/// Whether no value satisfies every constraint on some name at once.
fn unsatisfiable(cs: &[Constraint<'_>]) -> bool {
    cs.iter().enumerate().any(|(i, a)| {
        cs[i + 1..]
            .iter()
            .any(|b| a.name == b.name && pair_unsatisfiable(a, b))
    })
}

fn pair_unsatisfiable(a: &Constraint<'_>, b: &Constraint<'_>) -> bool {
    use BinaryOp::{Eq, Ge, Gt, Le, Lt, Ne};
    match (a.op, b.op) {
        (Eq, Eq) => const_eq(&a.value, &b.value) == Some(false),
        (Eq, Ne) | (Ne, Eq) => const_eq(&a.value, &b.value) == Some(true),
        (Eq, _) => !holds(&a.value, b.op, &b.value).unwrap_or(true),
        (_, Eq) => !holds(&b.value, a.op, &a.value).unwrap_or(true),
        (Lt | Le, Gt | Ge) => disjoint(&a.value, a.op, &b.value, b.op),
        (Gt | Ge, Lt | Le) => disjoint(&b.value, b.op, &a.value, a.op),
        _ => false,
    }
}

/// Whether `v op bound` holds for constants.
fn holds(v: &Const, op: BinaryOp, bound: &Const) -> Option<bool> {
    let ord = const_cmp(v, bound)?;
    Some(match op {
        BinaryOp::Lt => ord.is_lt(),
        BinaryOp::Le => ord.is_le(),
        BinaryOp::Gt => ord.is_gt(),
        BinaryOp::Ge => ord.is_ge(),
        BinaryOp::Ne => !ord.is_eq(),
        _ => ord.is_eq(),
    })
}

/// Whether `x upper_op upper` and `x lower_op lower` (an upper and a lower bound) exclude
/// each other.
fn disjoint(upper: &Const, upper_op: BinaryOp, lower: &Const, lower_op: BinaryOp) -> bool {
    let Some(ord) = const_cmp(upper, lower) else {
        return false;
    };
    let inclusive = upper_op == BinaryOp::Le && lower_op == BinaryOp::Ge;
    ord.is_lt() || (ord.is_eq() && !inclusive)
}
