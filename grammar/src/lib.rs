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
