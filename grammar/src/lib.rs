//! The CEL grammar used by Wicket: a `nom` parser producing an [`ast::Expr`] with byte spans,
//! a printer that gives CEL source back, and the `${…}` template parser used by policy fields.
//!
//! This crate knows nothing about YAML, variables or evaluation: its input is a `&str` and its
//! output is syntax with spans.

pub mod ast;

pub use ast::{BinaryOp, Expr, ExprKind, Ident, Literal, Macro, Span, UnaryOp};
