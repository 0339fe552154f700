//! CEL type checking of policy expressions and `${…}` templates against the environment of a
//! phase ([`crate::env`]), with the expression-level lints.
//!
//! Entry points: [`check_expr`] for a parsed expression, [`check_source`] to parse and check
//! an expression string, [`check_template`] for a string with `${…}` segments, and
//! [`fold_constant`] to tell whether a condition is constant. Problems come back as
//! [`ExprIssue`]s with spans relative to the checked string; the codes are listed in
//! [`codes`].

mod checker;
pub mod codes;
mod fold;
mod lints;
mod suggest;

use std::collections::{BTreeMap, BTreeSet};

use wicket_grammar::Expr;

use crate::Phase;
use crate::diagnostic::ExprIssue;
use crate::env::{Type, VarDef};

pub use fold::fold_constant;
pub use suggest::{closest, edit_distance};

/// What the checker knows about the place an expression is in.
#[derive(Clone, Debug)]
pub struct CheckContext {
    /// The phase whose variables and functions are available.
    pub phase: Phase,
    /// Names set by earlier `set-vars` actions in this phase, with their types (`dyn` when
    /// unknown). `None` turns the "not set earlier" check off.
    pub vars: Option<BTreeMap<String, Type>>,
    /// `actions.ngrok.<ns>` namespaces of actions that may have run earlier in this phase
    /// (`basic_auth`, `oidc`, …). `None` turns the "action has not run" check off.
    pub actions_run: Option<BTreeSet<String>>,
    /// Variables that exist only in this field (for `http-request.retry_condition`:
    /// [`crate::env::RETRY_CONDITION_VARIABLES`]).
    pub extra_variables: &'static [VarDef],
}

impl CheckContext {
    /// A context for `phase` with no knowledge of earlier actions (those checks are off).
    #[must_use]
    pub fn new(phase: Phase) -> Self {
        Self {
            phase,
            vars: None,
            actions_run: None,
            extra_variables: &[],
        }
    }
}

/// What the expression's value is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// A condition (`expressions`, `retry_condition`): must be `bool`.
    Bool,
    /// A template segment: anything convertible to a string.
    String,
    /// Any value (`set-vars` whole-value interpolations, `bucket_key`).
    Any,
}

/// The result of checking one expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    /// The expression's type (`dyn` when it depends on run-time values or checking failed).
    pub ty: Type,
    /// Errors and warnings, in source order.
    pub issues: Vec<ExprIssue>,
}

/// Type-checks `expr` in `ctx`, expecting a value of kind `expected`.
#[must_use]
pub fn check_expr(expr: &Expr, ctx: &CheckContext, expected: Expected) -> Checked {
    checker::check(expr, ctx, expected)
}
