//! CEL type checking of policy expressions and `${…}` templates against the environment of a
//! phase ([`crate::env`]), with the expression-level lints.
//!
//! Entry points: [`check_expr`] for a parsed expression, [`check_source`] to parse and check
//! an expression string, [`check_template`] / [`check_template_value`] for a string with
//! `${…}` segments, [`fold_constant`] to tell whether a condition is constant, and
//! [`presence_facts`] for the keys a sibling condition guards. Problems come back as
//! [`ExprIssue`]s with spans relative to the checked string; the codes are listed in
//! [`codes`]. [`Checked::resolutions`] gives the variable ([`crate::env::VarId`]) and the
//! overloads ([`crate::env::FnId`]) each node resolved to.
//!
//! How names resolve: a local (macro or `cel.bind` variable) first; then a dotted chain
//! rooted at an environment namespace resolves to its longest prefix that is a variable
//! (`conn.client_ip` is a string, `conn.client_ip.geo.location.city` another variable), the
//! remaining segments being field selections; `a.b(x)` is the qualified global function
//! `a.b` when one exists or `a` is not a variable. `dyn` (JSON values, `vars.*` of unknown
//! type, results of `json.decode`) defers every check on it to run time.
//!
//! Beyond types, the checker reports what is certainly wrong or very likely unintended:
//! constant conditions after folding (including contradictory ranges such as
//! `x < 200 && x >= 300`), string comparisons with CIDR literals, upper-case keys into the
//! lower-cased header maps, non-canonical names given to the header functions, regexes and
//! literal arguments (`duration`, `timestamp`, time zones, IPs, CIDRs) that cannot work,
//! lookups of possibly absent keys without a guard, `${…}` inside expressions, and names
//! seen only in docs examples.

mod checker;
pub mod codes;
mod fold;
mod guards;
mod lints;
mod suggest;

use std::collections::{BTreeMap, BTreeSet};

use wicket_grammar::template::{TemplatePart, parse_template};
use wicket_grammar::{Expr, Span};

use crate::Phase;
use crate::diagnostic::{ExprIssue, Severity};
use crate::env::{FnId, Type, VarDef, VarId};

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
    /// (`basic_auth`, `oidc`, …; [`crate::env::result_namespace`] maps an action type to
    /// its namespace). `None` turns the "action has not run" check off.
    pub actions_run: Option<BTreeSet<String>>,
    /// Variables that exist only in this field (for `http-request.retry_condition`:
    /// [`crate::env::RETRY_CONDITION_VARIABLES`]).
    pub extra_variables: &'static [VarDef],
    /// Keys proven present by the other conditions of the same rule (a rule's `expressions`
    /// are one conjunction): [`presence_facts`] of each sibling. Lookups of these keys are not
    /// reported as unguarded.
    pub present_keys: Vec<(String, String)>,
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
            present_keys: Vec::new(),
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
    /// What each environment name and each call or operator resolved to, by the span of its
    /// node, in source order: the compiler's name and overload resolution.
    pub resolutions: Vec<Resolution>,
}

/// The resolution of one node: see [`Checked::resolutions`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    /// The span of the node: the `Select`/`Ident` naming the variable (its last segment ends
    /// the variable name), or the whole call or operator expression.
    pub span: Span,
    /// What it resolved to.
    pub target: Resolved,
}

/// What a node resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// An environment variable.
    Variable {
        /// Its id, `None` for a field-specific variable ([`CheckContext::extra_variables`]).
        id: Option<VarId>,
        /// Its name.
        name: &'static str,
    },
    /// A call or operator: the overloads that accept the argument types (one unless some
    /// argument is `dyn`, in which case the choice is made at run time).
    Overloads(Vec<FnId>),
}

/// Type-checks `expr` in `ctx`, expecting a value of kind `expected`.
#[must_use]
pub fn check_expr(expr: &Expr, ctx: &CheckContext, expected: Expected) -> Checked {
    checker::check(expr, ctx, expected)
}

/// The keys a condition proves present when it is true: `('x' in req.headers)` gives
/// `("req.headers", "x")`, `hasReqHeader('X')` gives `("getReqHeader", "X")`, `has(m.k)`
/// gives `("m", "k")`. Feed the facts of a rule's other conditions into
/// [`CheckContext::present_keys`].
#[must_use]
pub fn presence_facts(expr: &Expr) -> Vec<(String, String)> {
    let mut out = Vec::new();
    guards::facts(expr, true, &mut out, 0);
    out
}

/// ngrok's code for an expression that does not compile.
const NGROK_INVALID_EXPRESSION: u32 = 2200;
/// ngrok's code for a `${…}` template that does not compile.
const NGROK_INVALID_TEMPLATE: u32 = 2224;

/// Parses `src` as one CEL expression and type-checks it. A parse error becomes an
/// [`codes::PARSE_ERROR`] issue (or [`codes::INTERPOLATION_IN_EXPRESSION`] when the text
/// contains `${`).
#[must_use]
pub fn check_source(src: &str, ctx: &CheckContext, expected: Expected) -> Checked {
    match wicket_grammar::parse(src) {
        Ok(expr) => check_expr(&expr, ctx, expected),
        Err(err) => {
            let issue = match interpolation_span(src) {
                Some(span) => ExprIssue {
                    code: codes::INTERPOLATION_IN_EXPRESSION,
                    ngrok_code: Some(NGROK_INVALID_EXPRESSION),
                    severity: Severity::Error,
                    message: "`${…}` interpolation is not allowed in an expression".to_owned(),
                    span,
                    labels: vec![(err.span, err.message)],
                    help: Some(
                        "expressions are CEL already: write the inner expression directly, e.g. `vars.name` instead of `${vars.name}`"
                            .to_owned(),
                    ),
                },
                None => {
                    let help = err.message.contains("has()").then(|| {
                        "`has()` tests a field; to test for a map key write `'key' in map`, e.g. `'x-api-key' in req.headers`"
                            .to_owned()
                    });
                    ExprIssue {
                        code: codes::PARSE_ERROR,
                        ngrok_code: Some(NGROK_INVALID_EXPRESSION),
                        severity: Severity::Error,
                        message: err.message,
                        span: err.span,
                        labels: Vec::new(),
                        help,
                    }
                }
            };
            Checked {
                ty: Type::Error,
                issues: vec![issue],
                resolutions: Vec::new(),
            }
        }
    }
}

/// The span of the first `${…}` in `src` (to the matching `}` or the end), if any.
fn interpolation_span(src: &str) -> Option<Span> {
    let start = src.find("${")?;
    let mut depth = 0usize;
    let mut end = src.len();
    for (i, c) in src[start + 1..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    end = start + 1 + i + 1;
                    break;
                }
            }
            _ => {}
        }
    }
    Some(Span::new(offset(start), offset(end)))
}

fn offset(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// Checks every `${…}` segment of a template string (an action field marked CEL-capable).
/// Spans are relative to the template string; errors carry ngrok code 2224.
#[must_use]
pub fn check_template(src: &str, ctx: &CheckContext) -> Vec<ExprIssue> {
    check_template_value(src, ctx).issues
}

/// Like [`check_template`], also giving the template's value type: the expression's type
/// when the string is exactly one interpolation (`"${expr}"`, which keeps its CEL type in
/// `set-vars`), `string` otherwise.
#[must_use]
pub fn check_template_value(src: &str, ctx: &CheckContext) -> Checked {
    let template = match parse_template(src) {
        Ok(t) => t,
        Err(err) => {
            let issue = ExprIssue {
                code: codes::PARSE_ERROR,
                ngrok_code: Some(NGROK_INVALID_TEMPLATE),
                severity: Severity::Error,
                message: err.to_string(),
                span: err.span(),
                labels: Vec::new(),
                help: None,
            };
            return Checked {
                ty: Type::Error,
                issues: vec![issue],
                resolutions: Vec::new(),
            };
        }
    };
    let mut issues = Vec::new();
    let mut resolutions = Vec::new();
    let mut ty = Type::String;
    for part in template.parts() {
        if let TemplatePart::Expr { expr, .. } = part {
            let checked = check_expr(expr, ctx, Expected::String);
            if template.is_single_interpolation() {
                ty = checked.ty;
            }
            issues.extend(checked.issues);
            resolutions.extend(checked.resolutions);
        }
    }
    for issue in &mut issues {
        if issue.severity == Severity::Error {
            issue.ngrok_code = Some(NGROK_INVALID_TEMPLATE);
        }
    }
    Checked {
        ty,
        issues,
        resolutions,
    }
}

#[cfg(test)]
mod tests;
