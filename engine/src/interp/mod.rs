//! The reference interpreter: a plain tree-walking evaluator with exact CEL semantics. It is the
//! oracle the compiled evaluator is checked against.
//!
//! ```
//! use std::collections::HashMap;
//! use wicket_engine::interp::{Env, eval};
//! use wicket_engine::Value;
//! use wicket_grammar::{Expr, ExprKind, Literal, Span};
//!
//! let one = Expr::new(ExprKind::Literal(Literal::Int(1)), Span::new(0, 1));
//! let vars: HashMap<String, Value> = HashMap::new();
//! assert!(matches!(eval(&one, &vars), Ok(Value::Int(1))));
//! assert!(matches!(Env::new(&vars).with_container("com.example").eval(&one), Ok(Value::Int(1))));
//! ```
//!
//! Design points:
//! - Variables come from an [`Activation`], so any caller (tests, the policy compiler's
//!   differential checks, the CLI) can supply them without building a map.
//! - Errors are values of the language: `&&`, `||`, `?:` and the comprehension macros absorb them
//!   by CEL's rules (`false && error == false`, `error && false == false`). Unknowns (partial
//!   evaluation, see [`PartialActivation`]) travel the same channel as
//!   [`EvalError::Unknown`] and are absorbed alike; where an unknown meets an error, the unknown
//!   wins, and two unknowns merge.
//! - Evaluation never panics and is bounded: nesting depth, comprehension iterations, evaluation
//!   steps, the size
//!   of each produced string, bytes, list and map, and the total size of everything produced are
//!   capped by [`Limits`]; exceeding one is an [`EvalError::LimitExceeded`].
//! - Names resolve as cel-spec's "Name Resolution" says: in the container `a.b`, the name `x.y`
//!   tries `a.b.x.y`, `a.x.y`, `x.y`, then `a.b.x` (selecting `y`), `a.x`, `x`; a leading dot
//!   (`.x.y`) searches the root scope only. Macro variables shadow all of these.

pub(crate) mod eval;
pub mod ext;
pub(crate) mod functions;
mod time;

pub use time::{format_duration, format_timestamp, parse_duration};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;

use wicket_grammar::Expr;

use crate::error::EvalError;
use crate::value::Value;

/// The source of variable values for an evaluation.
///
/// `resolve` receives fully qualified names (`x`, `com.example.y`, `request.headers` when a
/// variable is declared under a dotted name). Return `None` for names that are not variables.
pub trait Activation {
    /// The value of the variable `name`, if it exists.
    fn resolve(&self, name: &str) -> Option<Value>;

    /// Whether the variable `name` exists but its value is unknown (partial evaluation); a
    /// reference to it evaluates to [`EvalError::Unknown`]. Checked before [`Self::resolve`].
    fn is_unknown(&self, name: &str) -> bool {
        let _ = name;
        false
    }
}

impl<S: BuildHasher> Activation for HashMap<String, Value, S> {
    fn resolve(&self, name: &str) -> Option<Value> {
        self.get(name).cloned()
    }
}

impl Activation for BTreeMap<String, Value> {
    fn resolve(&self, name: &str) -> Option<Value> {
        self.get(name).cloned()
    }
}

impl<A: Activation + ?Sized> Activation for &A {
    fn resolve(&self, name: &str) -> Option<Value> {
        (**self).resolve(name)
    }

    fn is_unknown(&self, name: &str) -> bool {
        (**self).is_unknown(name)
    }
}

/// An activation with some variables marked unknown, for partial evaluation: the variables of
/// `known`, plus the names in `unknown` whose references evaluate to [`EvalError::Unknown`].
#[derive(Clone, Debug, Default)]
pub struct PartialActivation<A> {
    /// The known variables.
    pub known: A,
    /// The names of the unknown variables.
    pub unknown: BTreeSet<String>,
}

impl<A: Activation> Activation for PartialActivation<A> {
    fn resolve(&self, name: &str) -> Option<Value> {
        self.known.resolve(name)
    }

    fn is_unknown(&self, name: &str) -> bool {
        self.unknown.contains(name)
    }
}

/// An activation with no variables.
#[derive(Clone, Copy, Debug, Default)]
pub struct EmptyActivation;

impl Activation for EmptyActivation {
    fn resolve(&self, _name: &str) -> Option<Value> {
        None
    }
}

/// Resource limits of one evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Maximum nesting of expression evaluation (the depth of the AST path being evaluated,
    /// plus `cel.block` bindings evaluated on demand). The default, 300, is above the parser's
    /// nesting limit and fits a 2 MiB thread stack in unoptimised builds.
    pub max_depth: usize,
    /// Maximum total number of comprehension iterations.
    pub max_iterations: u64,
    /// Maximum number of expression nodes evaluated (bounds the total work, e.g. a large body
    /// in a long comprehension).
    pub max_steps: u64,
    /// Maximum number of elements of a list or entries of a map built during evaluation.
    pub max_collection_len: usize,
    /// Maximum length in bytes of a string or bytes value built during evaluation.
    pub max_string_len: usize,
    /// Maximum total size, in approximate bytes, of all strings, bytes, lists and maps built
    /// during one evaluation (bounds memory even when every single value is within its limit).
    pub max_total_alloc: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 300,
            max_iterations: 1_000_000,
            max_steps: 10_000_000,
            max_collection_len: 1_000_000,
            max_string_len: 16 * 1024 * 1024,
            max_total_alloc: 256 * 1024 * 1024,
        }
    }
}

/// An evaluation environment: the variables, the container (namespace) names are resolved in,
/// and the resource limits.
#[derive(Clone)]
pub struct Env<'a> {
    activation: &'a dyn Activation,
    container: String,
    limits: Limits,
}

impl std::fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("container", &self.container)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl<'a> Env<'a> {
    /// An environment over `activation`, with no container and default limits.
    #[must_use]
    pub fn new(activation: &'a dyn Activation) -> Self {
        Self {
            activation,
            container: String::new(),
            limits: Limits::default(),
        }
    }

    /// Resolve names in `container` (e.g. `com.example`); empty means the root scope only.
    #[must_use]
    pub fn with_container(mut self, container: &str) -> Self {
        container
            .trim_start_matches('.')
            .clone_into(&mut self.container);
        self
    }

    /// Use these resource limits.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Evaluates `expr`.
    ///
    /// # Errors
    /// The CEL error the expression evaluates to (division by zero, no such key, no matching
    /// overload, …), or [`EvalError::LimitExceeded`] when a resource limit is hit.
    pub fn eval(&self, expr: &Expr) -> Result<Value, EvalError> {
        eval::Evaluator::new(self.activation, &self.container, &self.limits).eval(expr)
    }
}

/// Evaluates `expr` with the variables of `activation`, no container and default limits.
///
/// # Errors
/// See [`Env::eval`].
pub fn eval(expr: &Expr, activation: &dyn Activation) -> Result<Value, EvalError> {
    Env::new(activation).eval(expr)
}

#[cfg(test)]
mod tests {
    use wicket_grammar::ast::{BinaryOp, ExprKind, Literal, Span};

    use super::*;

    fn lit(l: Literal) -> Expr {
        Expr::new(ExprKind::Literal(l), Span::default())
    }

    fn binary(op: BinaryOp, lhs: Expr, rhs: Expr) -> Expr {
        Expr::new(
            ExprKind::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
            },
            Span::default(),
        )
    }

    fn ident(name: &str) -> Expr {
        Expr::new(
            ExprKind::Ident {
                name: name.to_owned(),
                root: false,
            },
            Span::default(),
        )
    }

    #[test]
    fn errors_are_absorbed_by_logical_operators() {
        let error = binary(BinaryOp::Div, lit(Literal::Int(1)), lit(Literal::Int(0)));
        let and = binary(BinaryOp::And, error.clone(), lit(Literal::Bool(false)));
        assert!(matches!(
            eval(&and, &EmptyActivation),
            Ok(Value::Bool(false))
        ));
        let or = binary(BinaryOp::Or, lit(Literal::Bool(true)), error.clone());
        assert!(matches!(eval(&or, &EmptyActivation), Ok(Value::Bool(true))));
        let strict = binary(BinaryOp::And, lit(Literal::Bool(true)), error);
        assert!(matches!(
            eval(&strict, &EmptyActivation),
            Err(EvalError::DivisionByZero)
        ));
    }

    #[test]
    fn names_resolve_through_the_container() {
        let mut vars = HashMap::new();
        vars.insert("x.y".to_owned(), Value::Bool(true));
        vars.insert("y".to_owned(), Value::Bool(false));
        let env = Env::new(&vars).with_container("x");
        assert!(matches!(env.eval(&ident("y")), Ok(Value::Bool(true))));
        assert!(matches!(eval(&ident("y"), &vars), Ok(Value::Bool(false))));
        assert!(matches!(
            eval(&ident("missing"), &vars),
            Err(EvalError::UndeclaredReference(_))
        ));
        assert!(matches!(
            eval(&ident("int"), &vars),
            Ok(Value::Type(crate::value::CelType::Int))
        ));
    }

    #[test]
    fn nesting_beyond_the_limit_is_an_error() {
        let mut expr = lit(Literal::Int(0));
        for _ in 0..50 {
            expr = binary(BinaryOp::Add, expr, lit(Literal::Int(1)));
        }
        assert!(matches!(eval(&expr, &EmptyActivation), Ok(Value::Int(50))));
        let limits = Limits {
            max_depth: 10,
            ..Limits::default()
        };
        let env = Env::new(&EmptyActivation).with_limits(limits);
        assert!(matches!(env.eval(&expr), Err(EvalError::LimitExceeded(_))));
    }

    #[test]
    fn default_depth_limit_fits_a_test_thread_stack() {
        // Nested list literals and member calls, just under and well over the default limit,
        // on the 2 MiB stack of a test thread.
        let nest = |depth: usize| {
            let mut expr = lit(Literal::Int(1));
            for i in 0..depth {
                expr = if i % 2 == 0 {
                    Expr::new(
                        ExprKind::List(vec![wicket_grammar::ast::ListElement {
                            value: expr,
                            optional: false,
                        }]),
                        Span::default(),
                    )
                } else {
                    Expr::new(
                        ExprKind::Call {
                            target: None,
                            function: wicket_grammar::Ident {
                                name: "dyn".to_owned(),
                                span: Span::default(),
                            },
                            args: vec![expr],
                        },
                        Span::default(),
                    )
                };
            }
            expr
        };
        let limit = Limits::default().max_depth;
        assert!(eval(&nest(limit - 1), &EmptyActivation).is_ok());
        assert!(matches!(
            eval(&nest(limit * 5), &EmptyActivation),
            Err(EvalError::LimitExceeded(_))
        ));
    }
}
