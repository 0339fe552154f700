//! The one place where the loader hands CEL text to the checker ([`crate::check`]):
//! conditions, `${…}` templates and whole-CEL fields. Issues come back with spans relative to
//! the text; the caller maps them into the file.

use std::collections::{BTreeMap, BTreeSet};

use wicket_grammar::Expr;

use crate::check::{self, CheckContext, Expected};
use crate::diagnostic::ExprIssue;
use crate::env::{RETRY_CONDITION_VARIABLES, Type};
use crate::phase::Phase;

/// What a CEL text is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CelKind {
    /// An entry of `expressions`: a `bool` expression.
    Condition,
    /// `http-request.retry_condition`: a `bool` expression with the retry variables.
    RetryCondition,
    /// A whole-CEL field of any type (`rate-limit.bucket_key[]`).
    AnyField,
    /// A string field with `${…}` interpolations.
    Template,
}

/// What earlier actions of the phase made available.
#[derive(Clone, Debug)]
pub(crate) struct Scope {
    /// The phase.
    pub phase: Phase,
    /// `vars.*` set by earlier `set-vars` entries, with their types.
    pub vars: BTreeMap<String, Type>,
    /// `actions.ngrok.<ns>` namespaces of earlier actions.
    pub actions_run: BTreeSet<String>,
    /// Map keys proven present by the rule's conditions (for the unguarded-lookup lint).
    pub present_keys: Vec<(String, String)>,
}

impl Scope {
    pub(crate) fn new(phase: Phase) -> Self {
        Scope {
            phase,
            vars: BTreeMap::new(),
            actions_run: BTreeSet::new(),
            present_keys: Vec::new(),
        }
    }

    fn context(&self, kind: CelKind) -> CheckContext {
        let mut ctx = CheckContext::new(self.phase);
        ctx.vars = Some(self.vars.clone());
        ctx.actions_run = Some(self.actions_run.clone());
        ctx.present_keys.clone_from(&self.present_keys);
        if kind == CelKind::RetryCondition {
            ctx.extra_variables = RETRY_CONDITION_VARIABLES;
        }
        ctx
    }
}

/// The result of checking one text: its issues, its type, and the parsed expression for
/// whole expressions that parse.
pub(crate) struct CelResult {
    pub issues: Vec<ExprIssue>,
    pub ty: Type,
    pub expr: Option<Expr>,
}

/// Checks `src` as `kind` in `scope`.
pub(crate) fn check(kind: CelKind, src: &str, scope: &Scope) -> CelResult {
    let ctx = scope.context(kind);
    match kind {
        CelKind::Template => {
            let checked = check::check_template_value(src, &ctx);
            CelResult {
                issues: checked.issues,
                ty: checked.ty,
                expr: None,
            }
        }
        CelKind::Condition | CelKind::RetryCondition | CelKind::AnyField => {
            let expected = if kind == CelKind::AnyField {
                Expected::Any
            } else {
                Expected::Bool
            };
            match wicket_grammar::parse(src) {
                Ok(expr) => {
                    let checked = check::check_expr(&expr, &ctx, expected);
                    CelResult {
                        issues: checked.issues,
                        ty: checked.ty,
                        expr: Some(expr),
                    }
                }
                // `check_source` turns the parse error into an issue.
                Err(_) => {
                    let checked = check::check_source(src, &ctx, expected);
                    CelResult {
                        issues: checked.issues,
                        ty: checked.ty,
                        expr: None,
                    }
                }
            }
        }
    }
}

/// Whether `src` contains an interpolation.
pub(crate) fn has_interpolation(src: &str) -> bool {
    src.contains("${")
}
