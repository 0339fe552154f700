//! The CEL grammar used by Wicket: a `nom` parser producing an [`ast::Expr`] with byte spans,
//! a printer that gives CEL source back, and the `${…}` template parser used by policy fields.
//!
//! This crate knows nothing about YAML, variables or evaluation: its input is a `&str` and its
//! output is syntax with spans.
//!
//! ```
//! use wicket_grammar::{BinaryOp, ExprKind, parse, print};
//!
//! let expr = parse("req.method == 'GET' && size(req.headers) > 2").unwrap();
//! let ExprKind::Binary { op, .. } = &expr.kind else { panic!() };
//! assert_eq!(*op, BinaryOp::And);
//! assert_eq!(print(&expr), "req.method == \"GET\" && size(req.headers) > 2");
//!
//! let err = parse("a + ").unwrap_err();
//! assert_eq!(err.message, "expected an expression, found the end of the expression");
//! assert_eq!(err.span.range(), 4..4);
//! ```
//!
//! # The language
//!
//! The whole syntax of cel-spec's language definition, with the extensions cel-go accepts:
//! every literal form (decimal and hex `int`s, `uint`s with `u`, doubles with `.` or an
//! exponent, single-, double- and triple-quoted strings, raw `r''` and bytes `b''` literals
//! with all escapes), the operators with their precedence (`?:` lowest and right-associative,
//! then `||`, `&&`, relations and `in`, `+ -`, `* / %`, unary `!` and `-`, then member access,
//! indexing and calls; binary operators are left-associative), backtick-quoted field names,
//! reserved words as field and method names, root-scope names (`.a.b`), message construction
//! (`a.b.Msg{field: v}`), the optionals syntax (`a.?f`, `a[?i]`, `[?x]`, `{?k: v}`,
//! `Msg{?f: v}`), trailing commas in list, map and message literals, and `//` comments.
//!
//! Some choices worth knowing (all as in cel-go):
//!
//! - A minus sign directly before an int or double literal is part of the literal:
//!   `-9223372036854775808` is an `int`, `-1.abs()` calls `abs` on `-1`, while `-(1)` and
//!   `-x` are negations. `-1u` is a negation of `1u`.
//! - Qualified function names (`base64.encode(x)`) parse as member calls on an identifier;
//!   a leading dot on a global call is kept in the function name (`.f(x)` calls `.f`).
//! - Macros are recognised by name, receiver and arity and kept as [`ExprKind::Macro`]:
//!   `has(a.b)`; `all`, `exists`, `exists_one`/`existsOne` with one or two variables; `map`
//!   with or without a filter; `filter`; `transformList`, `transformMap`, `transformMapEntry`
//!   with or without a filter; `cel.bind`; `cel.block`; `optMap`, `optFlatMap`; `sortBy`. Their
//!   variable arguments must be simple names (or the block extension's `cel.iterVar(i, j)` /
//!   `cel.accuVar(i, j)`, which become the variables `@it:i:j` / `@ac:i:j`); `has` needs a field
//!   selection. Other calls with these names (wrong arity or receiver) stay ordinary calls, and
//!   [`ParseOptions::macros`] turns recognition off.
//!
//! # Limits
//!
//! Parsing is linear in the input (no backtracking). [`ParseOptions`] bounds the input length
//! and the nesting depth, which covers both the parser's own recursion and the height of the
//! tree, so that hostile input (10,000 nested parentheses, 100,000 chained field selections,
//! a megabyte of `!`) is an error rather than a stack overflow, here or in any consumer that
//! walks the tree recursively. With the default depth of 250 the parser fits in a 2 MiB
//! thread stack even in unoptimised builds.
//!
//! # Modules
//!
//! - [`ast`]: the tree; [`Expr::eq_ignoring_spans`] and [`Expr::map_spans`] work on whole
//!   trees.
//! - [`print()`] / `Display for Expr`: canonical CEL source; `parse(print(e))` gives `e` back
//!   (ignoring spans).
//! - [`template`]: `${…}` templates; `$${` is the escape for a literal `${`.

pub mod ast;
mod error;
#[doc(hidden)]
pub mod fuzz;
mod lexer;
mod parser;
mod printer;
mod spans;
pub mod template;

pub use ast::{BinaryOp, Expr, ExprKind, Ident, Literal, Macro, Span, UnaryOp};
pub use error::ParseError;
pub use parser::ParseOptions;
pub use printer::print;

/// Parses a CEL expression with the default [`ParseOptions`].
///
/// # Errors
///
/// A [`ParseError`] with the span of the offending text and what was expected there.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    parse_with(src, &ParseOptions::default())
}

/// Parses a CEL expression with explicit options.
///
/// # Errors
///
/// A [`ParseError`] with the span of the offending text and what was expected there; also
/// when the input exceeds [`ParseOptions::max_len`] or nests deeper than
/// [`ParseOptions::max_depth`].
pub fn parse_with(src: &str, options: &ParseOptions) -> Result<Expr, ParseError> {
    parser::parse_range(src, 0, src.len(), options)
}
