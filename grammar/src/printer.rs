//! Printing an [`Expr`] back to canonical CEL source.
//!
//! The output re-parses to the same tree (ignoring spans): parentheses are added exactly where
//! precedence requires them, strings are double-quoted with escapes, field names that are not
//! plain identifiers are backtick-quoted, and macros are printed as the calls they came from.
//! Comprehension variables named `@it:i:j` / `@ac:i:j` print as `cel.iterVar(i, j)` /
//! `cel.accuVar(i, j)`. Non-finite double literals (which the parser never produces) print as
//! `double("NaN")`, `double("Infinity")` and `double("-Infinity")`.

use std::fmt::{self, Write as _};

use crate::ast::{Comprehension, Expr, ExprKind, Ident, Literal, Macro, UnaryOp};
use crate::lexer;

/// Binding strength of a node as printed: 0 conditional, 1..=5 binary operators (see
/// [`crate::BinaryOp::precedence`]), 6 unary, 7 member and primary expressions.
fn strength(e: &Expr) -> u8 {
    match &e.kind {
        ExprKind::Ternary { .. } => 0,
        ExprKind::Binary { op, .. } => op.precedence(),
        ExprKind::Unary { .. } => 6,
        _ => 7,
    }
}

/// Prints `expr` as CEL source.
#[must_use]
pub fn print(expr: &Expr) -> String {
    let mut out = String::new();
    write_expr(&mut out, expr, 0);
    out
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&print(self))
    }
}

/// Writes `e`, in parentheses if it binds less tightly than `min`.
fn write_expr(out: &mut String, e: &Expr, min: u8) {
    if strength(e) < min {
        out.push('(');
        write_inner(out, e);
        out.push(')');
    } else {
        write_inner(out, e);
    }
}

fn write_inner(out: &mut String, e: &Expr) {
    match &e.kind {
        ExprKind::Literal(lit) => write_literal(out, lit),
        ExprKind::Ident { name, root } => {
            if *root {
                out.push('.');
            }
            out.push_str(name);
        }
        ExprKind::Select {
            operand,
            field,
            optional,
        } => {
            write_expr(out, operand, 7);
            out.push_str(if *optional { ".?" } else { "." });
            write_field_name(out, &field.name);
        }
        ExprKind::Index {
            operand,
            index,
            optional,
        } => {
            write_expr(out, operand, 7);
            out.push_str(if *optional { "[?" } else { "[" });
            write_expr(out, index, 0);
            out.push(']');
        }
        ExprKind::Call {
            target,
            function,
            args,
        } => {
            if let Some(t) = target {
                write_expr(out, t, 7);
                out.push('.');
            }
            out.push_str(&function.name);
            out.push('(');
            write_list(out, args.iter(), |out, a| write_expr(out, a, 0));
            out.push(')');
        }
        ExprKind::Unary { op, operand } => write_unary(out, *op, operand),
        ExprKind::Binary { op, lhs, rhs } => {
            let p = op.precedence();
            write_expr(out, lhs, p);
            out.push(' ');
            out.push_str(op.as_str());
            out.push(' ');
            write_expr(out, rhs, p + 1);
        }
        ExprKind::Ternary {
            cond,
            then,
            otherwise,
        } => {
            write_expr(out, cond, 1);
            out.push_str(" ? ");
            write_expr(out, then, 1);
            out.push_str(" : ");
            write_expr(out, otherwise, 0);
        }
        ExprKind::List(elems) => {
            out.push('[');
            write_list(out, elems.iter(), |out, el| {
                if el.optional {
                    out.push('?');
                }
                write_expr(out, &el.value, 0);
            });
            out.push(']');
        }
        ExprKind::Map(entries) => {
            out.push('{');
            write_list(out, entries.iter(), |out, en| {
                if en.optional {
                    out.push('?');
                }
                write_expr(out, &en.key, 0);
                out.push_str(": ");
                write_expr(out, &en.value, 0);
            });
            out.push('}');
        }
        ExprKind::Struct { type_name, fields } => {
            out.push_str(type_name);
            out.push('{');
            write_list(out, fields.iter(), |out, f| {
                if f.optional {
                    out.push('?');
                }
                write_field_name(out, &f.name.name);
                out.push_str(": ");
                write_expr(out, &f.value, 0);
            });
            out.push('}');
        }
        ExprKind::Macro(m) => write_macro(out, m),
    }
}

fn write_unary(out: &mut String, op: UnaryOp, operand: &Expr) {
    let c = match op {
        UnaryOp::Not => '!',
        UnaryOp::Neg => '-',
    };
    out.push(c);
    // `!-x` and `-!x` are not CEL: a run of unary operators must be all the same.
    let mut paren = match &operand.kind {
        ExprKind::Unary { op: inner, .. } => *inner != op,
        _ => strength(operand) < 7,
    };
    let mut text = String::new();
    write_expr(&mut text, operand, 0);
    // A minus directly before a number literal would be folded into it when re-parsed.
    if op == UnaryOp::Neg && lexer::starts_number(&text) {
        paren = true;
    }
    if paren {
        out.push('(');
        out.push_str(&text);
        out.push(')');
    } else {
        out.push_str(&text);
    }
}

fn write_list<T>(
    out: &mut String,
    items: impl Iterator<Item = T>,
    mut f: impl FnMut(&mut String, T),
) {
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        f(out, item);
    }
}

fn write_field_name(out: &mut String, name: &str) {
    if lexer::is_plain_selector(name) {
        out.push_str(name);
    } else {
        out.push('`');
        out.push_str(name);
        out.push('`');
    }
}

fn write_var(out: &mut String, var: &Ident) {
    for (prefix, function) in [("@it:", "iterVar"), ("@ac:", "accuVar")] {
        if let Some((a, b)) = var
            .name
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once(':'))
        {
            let _ = write!(out, "cel.{function}({a}, {b})");
            return;
        }
    }
    out.push_str(&var.name);
}

fn write_comprehension(out: &mut String, name: &str, c: &Comprehension, filter: Option<&Expr>) {
    write_expr(out, &c.range, 7);
    out.push('.');
    out.push_str(name);
    out.push('(');
    write_var(out, &c.var);
    if let Some(v) = &c.var2 {
        out.push_str(", ");
        write_var(out, v);
    }
    if let Some(f) = filter {
        out.push_str(", ");
        write_expr(out, f, 0);
    }
    out.push_str(", ");
    write_expr(out, &c.body, 0);
    out.push(')');
}

fn write_macro(out: &mut String, m: &Macro) {
    match m {
        Macro::Has { select } => {
            out.push_str("has(");
            write_expr(out, select, 0);
            out.push(')');
        }
        Macro::All(c)
        | Macro::Exists(c)
        | Macro::ExistsOne(c)
        | Macro::Filter(c)
        | Macro::SortBy(c) => write_comprehension(out, m.name(), c, None),
        Macro::Map { comp, filter }
        | Macro::TransformList { comp, filter }
        | Macro::TransformMap { comp, filter }
        | Macro::TransformMapEntry { comp, filter } => {
            write_comprehension(out, m.name(), comp, filter.as_ref());
        }
        Macro::Bind { var, init, body } => {
            out.push_str("cel.bind(");
            write_var(out, var);
            out.push_str(", ");
            write_expr(out, init, 0);
            out.push_str(", ");
            write_expr(out, body, 0);
            out.push(')');
        }
        Macro::OptMap { target, var, body } | Macro::OptFlatMap { target, var, body } => {
            write_expr(out, target, 7);
            out.push('.');
            out.push_str(m.name());
            out.push('(');
            write_var(out, var);
            out.push_str(", ");
            write_expr(out, body, 0);
            out.push(')');
        }
        Macro::Block { bindings, result } => {
            out.push_str("cel.block([");
            write_list(out, bindings.iter(), |out, b| write_expr(out, b, 0));
            out.push_str("], ");
            write_expr(out, result, 0);
            out.push(')');
        }
    }
}

fn write_literal(out: &mut String, lit: &Literal) {
    match lit {
        Literal::Null => out.push_str("null"),
        Literal::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Literal::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Literal::Uint(u) => {
            let _ = write!(out, "{u}u");
        }
        Literal::Double(d) => write_double(out, *d),
        Literal::String(s) => write_string(out, s),
        Literal::Bytes(b) => write_bytes(out, b),
    }
}

fn write_double(out: &mut String, d: f64) {
    if d.is_nan() {
        out.push_str("double(\"NaN\")");
    } else if d.is_infinite() {
        out.push_str(if d > 0.0 {
            "double(\"Infinity\")"
        } else {
            "double(\"-Infinity\")"
        });
    } else {
        // `Debug` gives the shortest text that reads back to the same value, always with a
        // `.` or an exponent (`1.0`, `1e-7`, `1e16`), all valid CEL double literals.
        let _ = write!(out, "{d:?}");
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_bytes(out: &mut String, bytes: &[u8]) {
    out.push_str("b\"");
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('"');
}
