//! The type checker proper: one walk over the AST computing types, resolving names against
//! the environment, and reporting issues.

use std::collections::HashSet;
use std::sync::LazyLock;

use wicket_grammar::Span;
use wicket_grammar::ast::{
    BinaryOp, Comprehension, Expr, ExprKind, Ident, Literal, Macro, UnaryOp,
};

use super::guards::{self, Fact};
use super::{CheckContext, Checked, Expected, Resolution, Resolved, codes, lints, suggest};
use crate::Phase;
use crate::diagnostic::{ExprIssue, Severity};
use crate::env::{Env, FnDef, FnKind, FnOrigin, Type, TypeSpec, VARIABLES, VarDef, VarStatus};

/// ngrok's code for an expression that does not compile.
const NGROK_INVALID_EXPRESSION: u32 = 2200;

/// The message of [`codes::UNGUARDED_LOOKUP`].
const UNGUARDED_MESSAGE: &str = "this lookup fails when the key is absent, and a failed expression ends the request or connection with an error";

/// Walks deeper than this are not checked further (the parser limits depth already).
const MAX_DEPTH: usize = 500;

/// First segments of every addressable variable name (`conn`, `req`, `actions`, …).
static ROOTS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    VARIABLES
        .iter()
        .filter(|v| v.is_addressable())
        .map(|v| v.name.split('.').next().unwrap_or(v.name))
        .collect()
});

/// Every dotted prefix of an addressable variable name that is not itself a variable
/// (`req`, `conn.tls`, `actions.ngrok.oauth.identity` is a variable so not here).
static NAMESPACES: LazyLock<HashSet<String>> = LazyLock::new(|| {
    let mut set = HashSet::new();
    for v in VARIABLES.iter().filter(|v| v.is_addressable()) {
        let mut prefix = String::new();
        for (i, seg) in v.name.split('.').enumerate() {
            if i > 0 {
                prefix.push('.');
            }
            prefix.push_str(seg);
            if prefix.len() < v.name.len() && Env::variable(&prefix).is_none() {
                set.insert(prefix.clone());
            }
        }
    }
    set
});

pub(super) fn check(expr: &Expr, ctx: &CheckContext, expected: Expected) -> Checked {
    let mut c = Checker {
        ctx,
        issues: Vec::new(),
        scopes: Vec::new(),
        blocks: Vec::new(),
        resolutions: Vec::new(),
        guards: ctx.present_keys.clone(),
    };
    let ty = c.expr(expr, 0);
    if expected == Expected::Bool {
        if !ty.is_assignable_to(&Type::Bool) {
            c.error(
                codes::NOT_BOOL,
                expr.span,
                format!("a condition must be a `bool`, but this is `{ty}`"),
                not_bool_help(&ty),
            );
        } else if let Some(value) = c
            .issues
            .iter()
            .all(|i| i.severity != Severity::Error)
            .then(|| super::fold_constant(expr))
            .flatten()
        {
            let (code, what) = if value {
                (codes::ALWAYS_TRUE, "true")
            } else {
                (codes::ALWAYS_FALSE, "false")
            };
            c.warn(
                code,
                expr.span,
                format!("this condition is always {what}"),
                Some(if value {
                    "remove the condition, or the rule if it is not needed".to_owned()
                } else {
                    "the rule can never match; fix or remove the condition".to_owned()
                }),
            );
        }
    }
    let mut issues = c.issues;
    issues.sort_by_key(|i| (i.span.start, i.span.end));
    let mut resolutions = c.resolutions;
    resolutions.sort_by_key(|r| (r.span.start, r.span.end));
    Checked {
        ty,
        issues,
        resolutions,
    }
}

fn not_bool_help(ty: &Type) -> Option<String> {
    match ty {
        Type::List(_) => {
            Some("CEL has no truthiness: test a list with `size(x) > 0` or `'v' in x`".to_owned())
        }
        Type::Map(..) => {
            Some("CEL has no truthiness: test a map with `size(x) > 0` or `'k' in x`".to_owned())
        }
        Type::String => {
            Some("CEL has no truthiness: compare the string, e.g. `x != ''`".to_owned())
        }
        Type::Int | Type::Uint | Type::Double => {
            Some("CEL has no truthiness: compare the number, e.g. `x != 0`".to_owned())
        }
        _ => None,
    }
}

struct Checker<'a> {
    ctx: &'a CheckContext,
    issues: Vec<ExprIssue>,
    /// Local variables of macros and `cel.bind`, innermost last.
    scopes: Vec<(String, Type)>,
    /// Binding types of enclosing `cel.block`s, innermost last.
    blocks: Vec<Vec<Type>>,
    /// Names and calls resolved so far.
    resolutions: Vec<Resolution>,
    /// Keys proven present where the walk is (see [`guards`]).
    guards: Vec<Fact>,
}

/// A resolved dotted name.
struct PrefixMatch<'v> {
    var: &'v VarDef,
    /// How many segments of the chain the variable covers.
    segments: usize,
}

impl Checker<'_> {
    fn push(
        &mut self,
        severity: Severity,
        code: &'static str,
        span: Span,
        message: String,
        help: Option<String>,
    ) {
        let ngrok_code = (severity == Severity::Error).then_some(NGROK_INVALID_EXPRESSION);
        self.issues.push(ExprIssue {
            code,
            ngrok_code,
            severity,
            message,
            span,
            labels: Vec::new(),
            help,
        });
    }

    fn error(&mut self, code: &'static str, span: Span, message: String, help: Option<String>) {
        self.push(Severity::Error, code, span, message, help);
    }

    fn warn(&mut self, code: &'static str, span: Span, message: String, help: Option<String>) {
        self.push(Severity::Warning, code, span, message, help);
    }

    fn local(&self, name: &str) -> Option<&Type> {
        self.scopes
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
    }

    fn expr(&mut self, e: &Expr, depth: usize) -> Type {
        if depth > MAX_DEPTH {
            return Type::Error;
        }
        let d = depth + 1;
        match &e.kind {
            ExprKind::Literal(lit) => self.literal(lit, e.span),
            ExprKind::Ident { .. } | ExprKind::Select { .. } => self.name_or_select(e, d),
            ExprKind::Index {
                operand,
                index,
                optional,
            } => self.index(e, operand, index, *optional, d),
            ExprKind::Call {
                target,
                function,
                args,
            } => self.call(e, target.as_deref(), function, args, d),
            ExprKind::Unary { op, operand } => {
                let t = self.expr(operand, d);
                let name = match op {
                    UnaryOp::Not => "!_",
                    UnaryOp::Neg => "-_",
                };
                if *op == UnaryOp::Not && !t.is_assignable_to(&Type::Bool) {
                    self.error(
                        codes::NOT_BOOL,
                        operand.span,
                        format!("the operand of `!` must be a `bool`, but this is `{t}`"),
                        not_bool_help(&t),
                    );
                    return Type::Error;
                }
                self.overload(name, FnKind::Operator, &[t], e.span, &[operand])
            }
            ExprKind::Binary { op, lhs, rhs } => self.binary(e, *op, lhs, rhs, d),
            ExprKind::Ternary {
                cond,
                then,
                otherwise,
            } => {
                let ct = self.expr(cond, d);
                if !ct.is_assignable_to(&Type::Bool) {
                    self.error(
                        codes::NOT_BOOL,
                        cond.span,
                        format!("the condition of `?:` must be a `bool`, but this is `{ct}`"),
                        not_bool_help(&ct),
                    );
                }
                let a = self.guarded(cond, true, |s| s.expr(then, d));
                let b = self.guarded(cond, false, |s| s.expr(otherwise, d));
                join_nullable(&a, &b)
            }
            ExprKind::List(elems) => {
                let mut elem: Option<Type> = None;
                for el in elems {
                    let mut t = self.expr(&el.value, d);
                    if el.optional {
                        t = self.unwrap_optional(t, el.value.span);
                    }
                    elem = Some(match elem {
                        None => t,
                        Some(prev) => prev.join(&t),
                    });
                }
                Type::list(elem.unwrap_or(Type::Free))
            }
            ExprKind::Map(entries) => {
                let mut kt: Option<Type> = None;
                let mut vt: Option<Type> = None;
                for en in entries {
                    let k = self.expr(&en.key, d);
                    if !matches!(
                        k,
                        Type::String
                            | Type::Int
                            | Type::Uint
                            | Type::Bool
                            | Type::Dyn
                            | Type::Error
                    ) {
                        self.error(
                            codes::NO_MATCHING_OVERLOAD,
                            en.key.span,
                            format!(
                                "a map key must be a string, int, uint or bool, but this is `{k}`"
                            ),
                            None,
                        );
                    }
                    let mut v = self.expr(&en.value, d);
                    if en.optional {
                        v = self.unwrap_optional(v, en.value.span);
                    }
                    kt = Some(kt.map_or(k.clone(), |p| p.join(&k)));
                    vt = Some(vt.map_or(v.clone(), |p| p.join(&v)));
                }
                Type::map(kt.unwrap_or(Type::Free), vt.unwrap_or(Type::Free))
            }
            ExprKind::Struct { type_name, fields } => {
                for f in fields {
                    self.expr(&f.value, d);
                }
                self.error(
                    codes::UNSUPPORTED_SYNTAX,
                    e.span,
                    format!("message construction (`{type_name}{{…}}`) is not supported in traffic policy expressions"),
                    Some("use a map literal: `{'key': value}`".to_owned()),
                );
                Type::Error
            }
            ExprKind::Macro(m) => self.macro_(m, d),
        }
    }

    fn unwrap_optional(&mut self, t: Type, span: Span) -> Type {
        match t {
            Type::Optional(inner) => *inner,
            t if t.is_dyn() => Type::Dyn,
            t => {
                self.error(
                    codes::NO_MATCHING_OVERLOAD,
                    span,
                    format!("an optional entry (`?x`) needs an optional value, but this is `{t}`"),
                    None,
                );
                Type::Error
            }
        }
    }

    fn literal(&mut self, lit: &Literal, span: Span) -> Type {
        match lit {
            Literal::Null => Type::Null,
            Literal::Bool(_) => Type::Bool,
            Literal::Int(_) => Type::Int,
            Literal::Uint(_) => Type::Uint,
            Literal::Double(_) => Type::Double,
            Literal::String(s) => {
                if s.contains("${") {
                    self.warn(
                        codes::INTERPOLATION_IN_STRING_LITERAL,
                        span,
                        "`${…}` is not interpolated inside an expression; this is literal text".to_owned(),
                        Some("in expressions refer to the value directly, e.g. `vars.name` instead of `'${vars.name}'`".to_owned()),
                    );
                }
                Type::String
            }
            Literal::Bytes(_) => Type::Bytes,
        }
    }

    // ---- names ----

    /// The segments of a pure dotted chain (`a.b.c`) with the span of each prefix, or `None`
    /// when the chain contains calls, indexes or optional selects.
    fn chain(e: &Expr) -> Option<Vec<(&str, Span)>> {
        match &e.kind {
            ExprKind::Ident { name, .. } => Some(vec![(name.as_str(), e.span)]),
            ExprKind::Select {
                operand,
                field,
                optional: false,
            } => {
                let mut v = Self::chain(operand)?;
                v.push((field.name.as_str(), e.span));
                Some(v)
            }
            _ => None,
        }
    }

    fn lookup_var(&self, name: &str) -> Option<&'static VarDef> {
        self.ctx
            .extra_variables
            .iter()
            .find(|v| v.name == name)
            .or_else(|| Env::variable(name).filter(|v| v.is_addressable()))
    }

    /// Resolves the longest prefix of `segs` that names a variable.
    fn resolve_prefix(&self, segs: &[(&str, Span)]) -> Option<PrefixMatch<'static>> {
        let mut name = String::new();
        let mut best = None;
        for (i, (seg, _)) in segs.iter().enumerate() {
            if i > 0 {
                name.push('.');
            }
            name.push_str(seg);
            if let Some(var) = self.lookup_var(&name) {
                best = Some(PrefixMatch {
                    var,
                    segments: i + 1,
                });
            }
        }
        best
    }

    fn name_or_select(&mut self, e: &Expr, d: usize) -> Type {
        if let Some(segs) = Self::chain(e) {
            let root = segs[0].0;
            if let Some(t) = self.local(root) {
                let mut t = t.clone();
                for (field, span) in &segs[1..] {
                    t = self.select_on(t, field, *span);
                }
                return t;
            }
            let root_is_var = ROOTS.contains(root)
                || self
                    .ctx
                    .extra_variables
                    .iter()
                    .any(|v| v.name.split('.').next() == Some(root));
            if root_is_var {
                return self.qualified(&segs);
            }
            let full = join_segments(&segs);
            if let Some(t) = type_name(&full) {
                return t;
            }
            let shown = if is_root_scoped(e) {
                format!(".{full}")
            } else {
                full.clone()
            };
            let span = segs[segs.len() - 1].1;
            let help = self.suggest_variable(&full);
            self.error(
                codes::UNKNOWN_VARIABLE,
                span,
                format!("unknown variable `{shown}`"),
                help,
            );
            return Type::Error;
        }
        // A select on a computed operand (`x[0].name`, `f().field`).
        let ExprKind::Select {
            operand,
            field,
            optional,
        } = &e.kind
        else {
            return Type::Error;
        };
        let t = self.expr(operand, d);
        if *optional {
            let inner = match t {
                Type::Optional(inner) => *inner,
                t => t,
            };
            let ft = self.select_on(inner, &field.name, e.span);
            return Type::Optional(Box::new(ft));
        }
        self.lookup_guard(e, operand, None);
        self.select_on(t, &field.name, e.span)
    }

    /// "did you mean" for an unknown dotted name: the closest variable by edit distance, or
    /// else a variable ending with the same last two segments (`.ngrok.geo.country_code` →
    /// `conn.geo.country_code`).
    fn suggest_variable(&self, name: &str) -> Option<String> {
        let candidates = self.variable_names();
        let close =
            suggest::closest(name, candidates.iter().map(String::as_str)).map(str::to_owned);
        let tail = || {
            let segs: Vec<&str> = name.rsplitn(3, '.').collect();
            if segs.len() < 3 {
                return None;
            }
            let suffix = format!(".{}.{}", segs[1], segs[0]);
            candidates.iter().find(|c| c.ends_with(&suffix)).cloned()
        };
        close.or_else(tail).map(|s| format!("did you mean `{s}`?"))
    }

    fn variable_names(&self) -> Vec<String> {
        let phase = self.ctx.phase;
        VARIABLES
            .iter()
            .chain(self.ctx.extra_variables)
            .filter(|v| {
                v.is_addressable()
                    && v.phases.contains(phase)
                    && v.status != VarStatus::Undocumented
            })
            .map(|v| v.name.to_owned())
            .collect()
    }

    /// A dotted name rooted at an environment namespace.
    fn qualified(&mut self, segs: &[(&str, Span)]) -> Type {
        let full = join_segments(segs);
        let Some(res) = self.resolve_prefix(segs) else {
            let span = segs[segs.len() - 1].1;
            if NAMESPACES.contains(&full) {
                let under: Vec<String> = self
                    .variable_names()
                    .into_iter()
                    .filter(|n| n.starts_with(&full) && n.as_bytes().get(full.len()) == Some(&b'.'))
                    .take(4)
                    .map(|n| format!("`{n}`"))
                    .collect();
                self.error(
                    codes::NAMESPACE_AS_VALUE,
                    span,
                    format!("`{full}` is a namespace, not a value"),
                    (!under.is_empty())
                        .then(|| format!("select a variable in it, e.g. {}", under.join(", "))),
                );
            } else {
                let help = self.suggest_variable(&full);
                self.error(
                    codes::UNKNOWN_VARIABLE,
                    span,
                    format!("unknown variable `{full}`"),
                    help,
                );
            }
            return Type::Error;
        };
        let var = res.var;
        let var_span = segs[res.segments - 1].1;
        self.check_var_use(var, var_span);
        let mut t = var.ty.to_type();
        for (i, (field, span)) in segs[res.segments..].iter().enumerate() {
            if var.name == "vars" && i == 0 {
                t = self.vars_field(field, *span);
                continue;
            }
            if is_header_map(var.name) && i == 0 {
                self.header_key(field, *span, var.name);
            }
            if guards::is_keyed_map(var.name)
                && i == 0
                && !(is_header_map(var.name) && field.chars().any(|c| c.is_ascii_uppercase()))
                && !self
                    .guards
                    .contains(&(var.name.to_owned(), (*field).to_owned()))
            {
                self.warn(
                    codes::UNGUARDED_LOOKUP,
                    *span,
                    UNGUARDED_MESSAGE.to_owned(),
                    Some(format!("guard it: `has({}.{field}) && …`", var.name)),
                );
            }
            let before = t.clone();
            t = match &before {
                Type::Map(..) | Type::Object(_) => self.select_on(before, field, *span),
                t if t.is_dyn() => Type::Dyn,
                _ => {
                    let name = join_segments(&segs[..res.segments + i + 1]);
                    let help = self.suggest_variable(&name);
                    self.error(
                        codes::UNKNOWN_VARIABLE,
                        *span,
                        format!("unknown variable `{name}`"),
                        help.or_else(|| {
                            Some(format!("`{}` is a `{before}` and has no fields", var.name))
                        }),
                    );
                    return Type::Error;
                }
            };
        }
        t
    }

    /// Phase availability, documentation status and earlier-action checks for a variable use;
    /// records the resolution.
    fn check_var_use(&mut self, var: &'static VarDef, span: Span) {
        self.resolutions.push(Resolution {
            span,
            target: Resolved::Variable {
                id: Env::variable_id(var.name).filter(|id| std::ptr::eq(Env::var(*id), var)),
                name: var.name,
            },
        });
        let phase = self.ctx.phase;
        if !var.phases.contains(phase) {
            self.error(
                codes::VARIABLE_NOT_IN_PHASE,
                span,
                format!("`{}` is not available in `{phase}`", var.name),
                Some(format!("it exists in {}", var.phases.describe())),
            );
        }
        if var.status == VarStatus::Undocumented {
            self.warn(
                codes::UNDOCUMENTED_VARIABLE,
                span,
                format!("`{}` is not a documented variable", var.name),
                Some(var.doc.to_owned()),
            );
        }
        if let (Some(ns), Some(ran)) = (var.action_namespace(), &self.ctx.actions_run) {
            // `terminate-tls` runs in `on_tcp_connect`; its results describe the connection and
            // are read in the later phases (see `crate::env::VARIABLES`).
            let connection_level = ns == "terminate_tls" && phase != Phase::TcpConnect;
            if !ran.contains(ns) && !connection_level {
                self.warn(
                    codes::ACTION_RESULT_BEFORE_ACTION,
                    span,
                    format!("`{}` is read before any `{}` action ran in `{phase}`", var.name, action_type(ns)),
                    Some("action result variables exist only after the action ran earlier in the same phase".to_owned()),
                );
            }
        }
    }

    fn vars_field(&mut self, field: &str, span: Span) -> Type {
        let Some(known) = &self.ctx.vars else {
            return Type::Dyn;
        };
        if let Some(t) = known.get(field) {
            return t.clone();
        }
        let help = suggest::closest(field, known.keys().map(String::as_str))
            .map(|s| format!("did you mean `vars.{s}`?"))
            .or_else(|| {
                Some(
                    "set it with a `set-vars` action in an earlier rule or action of this phase"
                        .to_owned(),
                )
            });
        self.warn(
            codes::VAR_NOT_SET,
            span,
            format!(
                "`vars.{field}` is not set by an earlier `set-vars` in `{}`",
                self.ctx.phase
            ),
            help,
        );
        Type::Dyn
    }

    /// `t.field`.
    fn select_on(&mut self, t: Type, field: &str, span: Span) -> Type {
        match t {
            // Optional chaining: `opt.field` is an optional of the field.
            Type::Optional(inner) => Type::Optional(Box::new(self.select_on(*inner, field, span))),
            Type::Map(k, v) => {
                if k.is_assignable_to(&Type::String) {
                    *v
                } else {
                    self.error(
                        codes::UNDEFINED_FIELD,
                        span,
                        format!("cannot select `{field}` on a map with `{k}` keys"),
                        None,
                    );
                    Type::Error
                }
            }
            Type::Object(def) => match def.field(field) {
                Some(ft) => ft,
                None => {
                    let help = suggest::closest(field, def.fields.iter().map(|(n, _)| *n))
                        .map(|s| format!("did you mean `{s}`?"));
                    self.error(
                        codes::UNDEFINED_FIELD,
                        span,
                        format!("type `{}` has no field `{field}`", def.name),
                        help,
                    );
                    Type::Error
                }
            },
            t if t.is_dyn() => Type::Dyn,
            t => {
                self.error(
                    codes::UNDEFINED_FIELD,
                    span,
                    format!("cannot select field `{field}` on a value of type `{t}`"),
                    None,
                );
                Type::Error
            }
        }
    }

    fn header_key(&mut self, key: &str, span: Span, map: &str) {
        if key.chars().any(|c| c.is_ascii_uppercase()) {
            let lower = key.to_ascii_lowercase();
            self.warn(
                codes::HEADER_KEY_CASE,
                span,
                format!("`{map}` keys are lower-case, so `{key}` never matches"),
                Some(format!("use `'{lower}'`")),
            );
        }
    }

    // ---- index ----

    fn index(&mut self, e: &Expr, operand: &Expr, index: &Expr, optional: bool, d: usize) -> Type {
        let ot = self.expr(operand, d);
        let it = self.expr(index, d);
        if !optional {
            self.lookup_guard(e, operand, Some(index));
        }
        if let (Some(segs), ExprKind::Literal(Literal::String(key))) =
            (Self::chain(operand), &index.kind)
        {
            let name = join_segments(&segs);
            if is_header_map(&name) && self.local(segs[0].0).is_none() {
                self.header_key(key, index.span, &name);
            }
        }
        // `m[?k]`, and optional chaining `opt[k]`, give optionals.
        if optional || matches!(ot, Type::Optional(_)) {
            let inner = match ot {
                Type::Optional(t) => *t,
                t => t,
            };
            let t = self.overload(
                "_[_]",
                FnKind::Operator,
                &[inner, it],
                e.span,
                &[operand, index],
            );
            return Type::Optional(Box::new(t));
        }
        self.overload(
            "_[_]",
            FnKind::Operator,
            &[ot, it],
            e.span,
            &[operand, index],
        )
    }

    // ---- operators ----

    fn binary(&mut self, e: &Expr, op: BinaryOp, lhs: &Expr, rhs: &Expr, d: usize) -> Type {
        // `&&` and `||` absorb errors on either side: a guard on one side protects the other.
        let logical = matches!(op, BinaryOp::And | BinaryOp::Or);
        let positive = op == BinaryOp::And;
        let lt = if logical {
            self.guarded(rhs, positive, |s| s.expr(lhs, d))
        } else {
            self.expr(lhs, d)
        };
        if let ExprKind::Unary {
            op: UnaryOp::Not,
            operand,
        } = &lhs.kind
        {
            if lt == Type::Error {
                self.precedence_hint(operand.span, op);
            }
        }
        let rt = if logical {
            self.guarded(lhs, positive, |s| s.expr(rhs, d))
        } else {
            self.expr(rhs, d)
        };
        match op {
            BinaryOp::And | BinaryOp::Or => {
                for (t, side) in [(&lt, lhs), (&rt, rhs)] {
                    if !t.is_assignable_to(&Type::Bool) {
                        self.error(
                            codes::NOT_BOOL,
                            side.span,
                            format!(
                                "the operands of `{}` must be `bool`, but this is `{t}`",
                                op.as_str()
                            ),
                            not_bool_help(t),
                        );
                    }
                }
                let name = if op == BinaryOp::And { "_&&_" } else { "_||_" };
                self.record_operator(name, e.span);
                Type::Bool
            }
            BinaryOp::Eq | BinaryOp::Ne => {
                self.cidr_compare(op, lhs, rhs, &lt);
                self.cidr_compare(op, rhs, lhs, &rt);
                if equality_ok(&lt, &rt) {
                    let name = if op == BinaryOp::Eq { "_==_" } else { "_!=_" };
                    self.record_operator(name, e.span);
                } else {
                    self.no_overload(op.as_str(), &[lt, rt], e.span, &[lhs, rhs]);
                }
                Type::Bool
            }
            BinaryOp::In => {
                self.cidr_in(lhs, rhs, &lt);
                if let (ExprKind::Literal(Literal::String(key)), Some(segs)) =
                    (&lhs.kind, Self::chain(rhs))
                {
                    let name = join_segments(&segs);
                    if is_header_map(&name) && self.local(segs[0].0).is_none() {
                        self.header_key(key, lhs.span, &name);
                    }
                }
                self.overload("@in", FnKind::Operator, &[lt, rt], e.span, &[lhs, rhs])
            }
            _ => {
                let name = match op {
                    BinaryOp::Lt => "_<_",
                    BinaryOp::Le => "_<=_",
                    BinaryOp::Gt => "_>_",
                    BinaryOp::Ge => "_>=_",
                    BinaryOp::Add => "_+_",
                    BinaryOp::Sub => "_-_",
                    BinaryOp::Mul => "_*_",
                    BinaryOp::Div => "_/_",
                    _ => "_%_",
                };
                self.overload(name, FnKind::Operator, &[lt, rt], e.span, &[lhs, rhs])
            }
        }
    }

    /// Checks `check` with the facts `guard` proves (when `positive`, or disproves) in scope.
    fn guarded(
        &mut self,
        guard: &Expr,
        positive: bool,
        check: impl FnOnce(&mut Self) -> Type,
    ) -> Type {
        let before = self.guards.len();
        guards::facts(guard, positive, &mut self.guards, 0);
        let t = check(self);
        self.guards.truncate(before);
        t
    }

    /// Warns about `m['k']` on a request map, or `getReqHeader('K')[i]` /
    /// `getReqCookie('k').field`, without a presence guard in scope.
    fn lookup_guard(&mut self, e: &Expr, operand: &Expr, index: Option<&Expr>) {
        let (fact, guard_text) = match (&operand.kind, index) {
            (
                ExprKind::Call {
                    target: None,
                    function,
                    args,
                },
                _,
            ) => {
                let (Some(test), [ExprKind::Literal(Literal::String(key))]) = (
                    guards::presence_test(&function.name),
                    args.iter().map(|a| &a.kind).collect::<Vec<_>>().as_slice(),
                ) else {
                    return;
                };
                (
                    (function.name.clone(), key.clone()),
                    format!("`{test}('{key}') && …`"),
                )
            }
            (
                _,
                Some(Expr {
                    kind: ExprKind::Literal(Literal::String(key)),
                    ..
                }),
            ) => {
                let Some(map) = guards::dotted(operand) else {
                    return;
                };
                let root = map.split('.').next().unwrap_or(&map);
                // An upper-case header key gets its own warning (`HEADER_KEY_CASE`).
                let case_warned =
                    is_header_map(&map) && key.chars().any(|c| c.is_ascii_uppercase());
                if !guards::is_keyed_map(&map) || self.local(root).is_some() || case_warned {
                    return;
                }
                (
                    (map.clone(), key.clone()),
                    format!("`'{key}' in {map} && …`"),
                )
            }
            _ => return,
        };
        if self.guards.contains(&fact) {
            return;
        }
        self.warn(
            codes::UNGUARDED_LOOKUP,
            e.span,
            UNGUARDED_MESSAGE.to_owned(),
            Some(format!("guard it: {guard_text}")),
        );
    }

    /// Records the (generic) overloads of an operator checked outside the overload tables
    /// (`&&`, `||`, `==`, `!=`).
    fn record_operator(&mut self, name: &str, span: Span) {
        let ids: Vec<_> = Env::functions(name).map(|(id, _)| id).collect();
        self.resolutions.push(Resolution {
            span,
            target: Resolved::Overloads(ids),
        });
    }

    /// `!x in list` parses as `(!x) in list`: explain on the `!` operand's error.
    fn precedence_hint(&mut self, operand: Span, op: BinaryOp) {
        if let Some(issue) = self
            .issues
            .iter_mut()
            .rev()
            .find(|i| i.code == codes::NOT_BOOL && i.span == operand)
        {
            issue.help = Some(format!(
                "`!` binds tighter than `{}`: write `!(… {} …)` to negate the whole comparison",
                op.as_str(),
                op.as_str()
            ));
        }
    }

    fn cidr_compare(&mut self, op: BinaryOp, value: &Expr, lit: &Expr, value_ty: &Type) {
        let ExprKind::Literal(Literal::String(s)) = &lit.kind else {
            return;
        };
        if !lints::is_cidr_literal(s) || !matches!(value_ty, Type::String) {
            return;
        }
        let who = Self::chain(value).map_or_else(|| "ip".to_owned(), |segs| join_segments(&segs));
        let not = if op == BinaryOp::Ne { "!" } else { "" };
        self.warn(
            codes::CIDR_AS_STRING,
            lit.span,
            format!(
                "`{s}` is a CIDR range, but `{}` compares strings",
                op.as_str()
            ),
            Some(format!(
                "to match addresses in the range use `{not}inCidrRange({who}, '{s}')`"
            )),
        );
    }

    fn cidr_in(&mut self, value: &Expr, list: &Expr, value_ty: &Type) {
        let ExprKind::List(elems) = &list.kind else {
            return;
        };
        if !matches!(value_ty, Type::String) {
            return;
        }
        let cidrs: Vec<&str> = elems
            .iter()
            .filter_map(|el| match &el.value.kind {
                ExprKind::Literal(Literal::String(s)) if lints::is_cidr_literal(s) => {
                    Some(s.as_str())
                }
                _ => None,
            })
            .collect();
        if cidrs.is_empty() {
            return;
        }
        let who = Self::chain(value).map_or_else(|| "ip".to_owned(), |segs| join_segments(&segs));
        let quoted: Vec<String> = cidrs.iter().map(|c| format!("'{c}'")).collect();
        self.warn(
            codes::CIDR_AS_STRING,
            list.span,
            format!(
                "`in` compares strings, but the list holds CIDR ranges ({})",
                quoted.join(", ")
            ),
            Some(format!(
                "to match addresses in the ranges use `inCidrRanges({who}, [{}])`",
                quoted.join(", ")
            )),
        );
    }

    // ---- calls ----

    fn call(
        &mut self,
        e: &Expr,
        target: Option<&Expr>,
        function: &Ident,
        args: &[Expr],
        d: usize,
    ) -> Type {
        // `cel.index(i)` inside a `cel.block`.
        if let Some(t) = target {
            if let Some(segs) = Self::chain(t) {
                let qualified = format!("{}.{}", join_segments(&segs), function.name);
                let root = segs[0].0;
                let shadowed = self.local(root).is_some();
                if qualified == "cel.index" && !shadowed {
                    return self.block_index(args, e.span);
                }
                if matches!(qualified.as_str(), "cel.iterVar" | "cel.accuVar") && !shadowed {
                    // Variables of comprehensions written in `cel.block` form.
                    return Type::Dyn;
                }
                let is_var_root = ROOTS.contains(root)
                    || self
                        .ctx
                        .extra_variables
                        .iter()
                        .any(|v| v.name.starts_with(root));
                if !shadowed && (Env::has_function(&qualified) || !is_var_root) {
                    // A qualified global function: `base64.encode(x)`, `math.greatest(…)`.
                    let span = Span::new(t.span.start, function.span.end);
                    return self.global_call(&qualified, span, e.span, args, d);
                }
            }
        }
        match target {
            None => self.global_call(&function.name, function.span, e.span, args, d),
            Some(t) => {
                if let Some(ty) = self.sort_with_comparator(t, function, args, d) {
                    return ty;
                }
                let tt = self.expr(t, d);
                let mut types = vec![tt];
                for a in args {
                    types.push(self.expr(a, d));
                }
                if !Env::functions(&function.name).any(|(_, f)| f.kind == FnKind::Member) {
                    self.unknown_function(&function.name, function.span, true);
                    return Type::Error;
                }
                let mut exprs: Vec<&Expr> = vec![t];
                exprs.extend(args.iter());
                self.call_lints(&function.name, &exprs[1..]);
                self.resolve_call(
                    &function.name,
                    FnKind::Member,
                    &types,
                    function.span,
                    e.span,
                    &exprs,
                )
            }
        }
    }

    /// `list.sort(x, y, x.k < y.k)`: a comparator form seen in docs examples but not
    /// documented (spec §2.4). Checked like a macro with both variables bound to the element
    /// type, and reported as undocumented.
    fn sort_with_comparator(
        &mut self,
        target: &Expr,
        function: &Ident,
        args: &[Expr],
        d: usize,
    ) -> Option<Type> {
        let [a, b, body] = args else { return None };
        let (ExprKind::Ident { name: x, .. }, ExprKind::Ident { name: y, .. }) = (&a.kind, &b.kind)
        else {
            return None;
        };
        if function.name != "sort" {
            return None;
        }
        let rt = self.expr(target, d);
        let elem = match &rt {
            Type::List(e) => (**e).clone(),
            t if t.is_dyn() => Type::Dyn,
            t => {
                self.error(
                    codes::NOT_ITERABLE,
                    target.span,
                    format!("`sort` needs a list, but this is `{t}`"),
                    None,
                );
                Type::Error
            }
        };
        let depth = self.scopes.len();
        self.scopes.push((x.clone(), elem.clone()));
        self.scopes.push((y.clone(), elem));
        let bt = self.expr(body, d);
        self.scopes.truncate(depth);
        self.expect_bool(&bt, body.span, "sort");
        self.warn(
            codes::UNDOCUMENTED_FUNCTION,
            function.span,
            "`sort` with a comparator is not documented".to_owned(),
            Some("use `sortBy(x, key)` (lists extension) or `sort()`".to_owned()),
        );
        Some(rt)
    }

    fn global_call(
        &mut self,
        name: &str,
        name_span: Span,
        span: Span,
        args: &[Expr],
        d: usize,
    ) -> Type {
        let types: Vec<Type> = args.iter().map(|a| self.expr(a, d)).collect();
        if !Env::functions(name).any(|(_, f)| f.kind == FnKind::Global) {
            self.unknown_function(name, name_span, false);
            return Type::Error;
        }
        let exprs: Vec<&Expr> = args.iter().collect();
        self.call_lints(name, &exprs);
        self.resolve_call(name, FnKind::Global, &types, name_span, span, &exprs)
    }

    fn block_index(&mut self, args: &[Expr], span: Span) -> Type {
        if let [
            Expr {
                kind: ExprKind::Literal(Literal::Int(i)),
                ..
            },
        ] = args
        {
            if let Some(t) = usize::try_from(*i)
                .ok()
                .and_then(|i| self.blocks.last().and_then(|b| b.get(i)))
            {
                return t.clone();
            }
        }
        self.error(
            codes::UNKNOWN_FUNCTION,
            span,
            "`cel.index` refers to no binding of an enclosing `cel.block`".to_owned(),
            None,
        );
        Type::Error
    }

    fn unknown_function(&mut self, name: &str, span: Span, member: bool) {
        let other_kind = Env::functions(name).next().is_some();
        if other_kind {
            let (msg, help) = if member {
                (
                    format!("`{name}` is not a member function"),
                    format!("call it as a global function: `{name}(…)`"),
                )
            } else {
                (
                    format!("`{name}` is a member function"),
                    format!("call it on a value: `x.{name}(…)`"),
                )
            };
            self.error(codes::UNKNOWN_FUNCTION, span, msg, Some(help));
            return;
        }
        // Suggest documented functions of the same call style, never operators.
        let kind = if member {
            FnKind::Member
        } else {
            FnKind::Global
        };
        let names: Vec<&str> = Env::function_names()
            .filter(|n| {
                Env::functions(n).any(|(_, f)| f.kind == kind && f.origin != FnOrigin::Undocumented)
            })
            .collect();
        let help = suggest::closest(name, names).map(|s| format!("did you mean `{s}`?"));
        self.error(
            codes::UNKNOWN_FUNCTION,
            span,
            format!("unknown function `{name}`"),
            help,
        );
    }

    /// Lints on specific calls: regex literals, header-name case.
    fn call_lints(&mut self, name: &str, args: &[&Expr]) {
        self.literal_argument_lints(name, args);
        match name {
            "matches" => {
                if let Some(Expr {
                    kind: ExprKind::Literal(Literal::String(re)),
                    span,
                }) = args.last()
                {
                    if let Some(err) = lints::regex_error(re) {
                        self.error(
                            codes::INVALID_REGEX,
                            *span,
                            format!("invalid regular expression: {err}"),
                            Some(
                                "patterns use RE2 syntax: no look-around, no back-references"
                                    .to_owned(),
                            ),
                        );
                    }
                }
            }
            "getReqHeader" | "hasReqHeader" | "getResHeader" | "hasResHeader" => {
                if let Some(Expr {
                    kind: ExprKind::Literal(Literal::String(h)),
                    span,
                }) = args.first()
                {
                    if let Some(canon) = lints::canonical_header(h) {
                        if canon != *h {
                            self.warn(
                                codes::HEADER_NAME_NOT_CANONICAL,
                                *span,
                                format!("`{name}` expects the canonical header name, not `{h}`"),
                                Some(format!("use `'{canon}'`")),
                            );
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Literal arguments that can never convert (`duration('1x')`) and CIDR lists with
    /// invalid entries.
    fn literal_argument_lints(&mut self, name: &str, args: &[&Expr]) {
        let timestamp_accessor = matches!(
            name,
            "getDate"
                | "getDayOfMonth"
                | "getDayOfWeek"
                | "getDayOfYear"
                | "getFullYear"
                | "getMonth"
                | "getHours"
                | "getMinutes"
                | "getSeconds"
                | "getMilliseconds"
        );
        if let (true, [tz]) = (timestamp_accessor, args) {
            if let ExprKind::Literal(Literal::String(s)) = &tz.kind {
                if let Some(err) = lints::time_zone_error(s) {
                    self.error(codes::INVALID_LITERAL_ARGUMENT, tz.span, err, None);
                }
            }
        }
        let string_lit = |e: &Expr| match &e.kind {
            ExprKind::Literal(Literal::String(s)) => Some(s.clone()),
            _ => None,
        };
        if let Some(first) = args.first() {
            if let Some(s) = string_lit(first) {
                let only_arg = args.len() == 1;
                let applies = matches!(name, "inCidrRange" | "inCidrRanges")
                    || (only_arg
                        && matches!(
                            name,
                            "duration" | "timestamp" | "int" | "uint" | "double" | "ip" | "cidr"
                        ));
                if let Some(err) = applies
                    .then(|| lints::literal_argument_error(name, &s))
                    .flatten()
                {
                    self.error(codes::INVALID_LITERAL_ARGUMENT, first.span, err, None);
                }
            }
        }
        let cidrs: Vec<&Expr> = match (name, args) {
            ("inCidrRange", [_, c]) => vec![*c],
            ("inCidrRanges", [_, list]) => match &list.kind {
                ExprKind::List(elems) => elems.iter().map(|e| &e.value).collect(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        for c in cidrs {
            let Some(s) = string_lit(c) else { continue };
            if s.parse::<ipnet::IpNet>().is_ok() || s.parse::<std::net::IpAddr>().is_ok() {
                continue;
            }
            let effect = if name == "inCidrRange" {
                "so this test is always false"
            } else {
                "so this entry is ignored"
            };
            self.warn(
                codes::INVALID_CIDR,
                c.span,
                format!("`{s}` is not a valid CIDR range, {effect}"),
                Some("write a range such as `10.0.0.0/8` or `2001:db8::/32`".to_owned()),
            );
        }
    }

    /// Resolves an operator with its own name (used for `!`, `-`, `[]`, `in`, arithmetic).
    fn overload(
        &mut self,
        name: &str,
        kind: FnKind,
        types: &[Type],
        span: Span,
        exprs: &[&Expr],
    ) -> Type {
        self.resolve_call(name, kind, types, span, span, exprs)
    }

    fn resolve_call(
        &mut self,
        name: &str,
        kind: FnKind,
        types: &[Type],
        name_span: Span,
        span: Span,
        exprs: &[&Expr],
    ) -> Type {
        let mut matched: Vec<(&'static FnDef, Type)> = Vec::new();
        let mut ids = Vec::new();
        for (id, f) in Env::functions(name) {
            if f.kind != kind {
                continue;
            }
            if let Some(result) = match_overload(f, types) {
                matched.push((f, result));
                ids.push(id);
            }
        }
        if !ids.is_empty() {
            self.resolutions.push(Resolution {
                span,
                target: Resolved::Overloads(ids),
            });
        }
        if matched.is_empty() {
            if types.iter().any(|t| matches!(t, Type::Error)) {
                return Type::Error;
            }
            self.no_overload(name, types, span, exprs);
            return Type::Error;
        }
        let phase = self.ctx.phase;
        if matched.iter().all(|(f, _)| !f.phases.contains(phase)) {
            let f = matched[0].0;
            self.error(
                codes::FUNCTION_NOT_IN_PHASE,
                name_span,
                format!("`{name}` is not available in `{phase}`"),
                Some(format!("it exists in {}", f.phases.describe())),
            );
        }
        if matched
            .iter()
            .all(|(f, _)| f.origin == FnOrigin::Undocumented)
        {
            self.warn(
                codes::UNDOCUMENTED_FUNCTION,
                name_span,
                format!("`{name}` is not a documented function"),
                Some(matched[0].0.doc.to_owned()),
            );
        }
        let first = matched[0].1.clone();
        if matched.iter().all(|(_, t)| *t == first) {
            first
        } else {
            Type::Dyn
        }
    }

    fn no_overload(&mut self, name: &str, types: &[Type], span: Span, exprs: &[&Expr]) {
        let shown = display_name(name);
        let list: Vec<String> = types.iter().map(ToString::to_string).collect();
        let message = format!(
            "no matching overload for `{shown}` with argument types ({})",
            list.join(", ")
        );
        let help = self.overload_help(name, types, exprs);
        self.error(codes::NO_MATCHING_OVERLOAD, span, message, help);
    }

    fn overload_help(&self, name: &str, types: &[Type], exprs: &[&Expr]) -> Option<String> {
        // `time.now` (a string) against a timestamp.
        for (i, e) in exprs.iter().enumerate() {
            let is_time_now = Self::chain(e).is_some_and(|s| join_segments(&s) == "time.now");
            if is_time_now && types.contains(&Type::Timestamp) {
                return Some("`time.now` is a string: use `timestamp(time.now)`".to_owned());
            }
            if types.get(i) == Some(&Type::String) {
                if let ExprKind::Literal(Literal::String(s)) = &e.kind {
                    if s.parse::<i64>().is_ok() && types.iter().any(Type::is_numeric) {
                        return Some(format!("compare with a number, not a string: `{s}`"));
                    }
                }
            }
        }
        if types.contains(&Type::String) && types.iter().any(Type::is_numeric) {
            if let Some(i) = types.iter().position(|t| *t == Type::String) {
                if exprs
                    .get(i)
                    .is_some_and(|e| !matches!(e.kind, ExprKind::Literal(_)))
                {
                    return Some("convert first, e.g. `int(x)` or `double(x)`".to_owned());
                }
            }
        }
        let sigs: Vec<String> = Env::functions(name)
            .map(|(_, f)| f.signature())
            .take(6)
            .collect();
        if sigs.is_empty() || name.starts_with('_') || name.starts_with('@') || name.ends_with('_')
        {
            return None;
        }
        Some(format!("expected one of: {}", sigs.join("; ")))
    }

    // ---- macros ----

    fn macro_(&mut self, m: &Macro, d: usize) -> Type {
        match m {
            Macro::Has { select } => self.has(select, d),
            Macro::All(c) | Macro::Exists(c) | Macro::ExistsOne(c) => {
                let (v1, v2) = self.range_vars(c, m.name(), d);
                let bt = self.with_vars(c, v1, v2, |s| s.expr(&c.body, d));
                self.expect_bool(&bt, c.body.span, m.name());
                Type::Bool
            }
            Macro::Map { comp, filter } => {
                let (v1, v2) = self.range_vars(comp, "map", d);
                let bt = self.with_vars(comp, v1, v2, |s| {
                    if let Some(f) = filter {
                        let ft = s.expr(f, d);
                        s.expect_bool(&ft, f.span, "map");
                    }
                    s.expr(&comp.body, d)
                });
                Type::list(bt)
            }
            Macro::Filter(c) => {
                let (v1, v2) = self.range_vars(c, "filter", d);
                let elem = v1.clone();
                let bt = self.with_vars(c, v1, v2, |s| s.expr(&c.body, d));
                self.expect_bool(&bt, c.body.span, "filter");
                Type::list(elem)
            }
            Macro::TransformList { comp, filter } => {
                let (v1, v2) = self.range_vars(comp, m.name(), d);
                let bt = self.with_vars(comp, v1, v2, |s| {
                    if let Some(f) = filter {
                        let ft = s.expr(f, d);
                        s.expect_bool(&ft, f.span, "transformList");
                    }
                    s.expr(&comp.body, d)
                });
                Type::list(bt)
            }
            Macro::TransformMap { comp, filter } => {
                let (v1, v2) = self.range_vars(comp, m.name(), d);
                let key = v1.clone();
                let bt = self.with_vars(comp, v1, v2, |s| {
                    if let Some(f) = filter {
                        let ft = s.expr(f, d);
                        s.expect_bool(&ft, f.span, "transformMap");
                    }
                    s.expr(&comp.body, d)
                });
                Type::map(key, bt)
            }
            Macro::TransformMapEntry { comp, filter } => {
                let (v1, v2) = self.range_vars(comp, m.name(), d);
                let bt = self.with_vars(comp, v1, v2, |s| {
                    if let Some(f) = filter {
                        let ft = s.expr(f, d);
                        s.expect_bool(&ft, f.span, "transformMapEntry");
                    }
                    s.expr(&comp.body, d)
                });
                match bt {
                    t @ Type::Map(..) => t,
                    t if t.is_dyn() => Type::map(Type::Dyn, Type::Dyn),
                    t => {
                        self.error(
                            codes::NO_MATCHING_OVERLOAD,
                            comp.body.span,
                            format!("`transformMapEntry` needs a map entry, but this is `{t}`"),
                            None,
                        );
                        Type::Error
                    }
                }
            }
            Macro::SortBy(c) => {
                let rt = self.expr(&c.range, d);
                let elem = match &rt {
                    Type::List(e) => (**e).clone(),
                    t if t.is_dyn() => Type::Dyn,
                    t => {
                        self.error(
                            codes::NOT_ITERABLE,
                            c.range.span,
                            format!("`sortBy` needs a list, but this is `{t}`"),
                            None,
                        );
                        Type::Error
                    }
                };
                self.scopes.push((c.var.name.clone(), elem));
                self.expr(&c.body, d);
                self.scopes.pop();
                rt
            }
            Macro::Bind { var, init, body } => {
                let it = self.expr(init, d);
                self.scopes.push((var.name.clone(), it));
                let bt = self.expr(body, d);
                self.scopes.pop();
                bt
            }
            Macro::OptMap { target, var, body } | Macro::OptFlatMap { target, var, body } => {
                let tt = self.expr(target, d);
                let inner = match tt {
                    Type::Optional(t) => *t,
                    t if t.is_dyn() => Type::Dyn,
                    t => {
                        self.error(
                            codes::NO_MATCHING_OVERLOAD,
                            target.span,
                            format!("`{}` needs an optional value, but this is `{t}`", m.name()),
                            None,
                        );
                        Type::Error
                    }
                };
                self.scopes.push((var.name.clone(), inner));
                let bt = self.expr(body, d);
                self.scopes.pop();
                if matches!(m, Macro::OptMap { .. }) {
                    Type::Optional(Box::new(bt))
                } else {
                    bt
                }
            }
            Macro::Block { bindings, result } => {
                self.blocks.push(Vec::new());
                for b in bindings {
                    let t = self.expr(b, d);
                    if let Some(last) = self.blocks.last_mut() {
                        last.push(t);
                    }
                }
                let t = self.expr(result, d);
                self.blocks.pop();
                t
            }
        }
    }

    fn expect_bool(&mut self, t: &Type, span: Span, macro_name: &str) {
        if !t.is_assignable_to(&Type::Bool) {
            self.error(
                codes::NOT_BOOL,
                span,
                format!("the predicate of `{macro_name}` must be a `bool`, but this is `{t}`"),
                not_bool_help(t),
            );
        }
    }

    /// The types of a comprehension's variables: list → element (two-variable form: index,
    /// element); map → key (two-variable form: key, value).
    fn range_vars(&mut self, c: &Comprehension, name: &str, d: usize) -> (Type, Type) {
        let rt = self.expr(&c.range, d);
        match rt {
            Type::List(e) => {
                if c.var2.is_some() {
                    (Type::Int, *e)
                } else {
                    (*e, Type::Dyn)
                }
            }
            Type::Map(k, v) => (*k, *v),
            t if t.is_dyn() => (Type::Dyn, Type::Dyn),
            t => {
                self.error(
                    codes::NOT_ITERABLE,
                    c.range.span,
                    format!("`{name}` needs a list or a map, but this is `{t}`"),
                    None,
                );
                (Type::Error, Type::Error)
            }
        }
    }

    fn with_vars(
        &mut self,
        c: &Comprehension,
        v1: Type,
        v2: Type,
        f: impl FnOnce(&mut Self) -> Type,
    ) -> Type {
        let depth = self.scopes.len();
        self.scopes.push((c.var.name.clone(), v1));
        if let Some(v) = &c.var2 {
            self.scopes.push((v.name.clone(), v2));
        }
        let t = f(self);
        self.scopes.truncate(depth);
        t
    }

    fn has(&mut self, select: &Expr, d: usize) -> Type {
        let ExprKind::Select { operand, field, .. } = &select.kind else {
            self.error(
                codes::INVALID_HAS,
                select.span,
                "`has()` needs a field selection such as `has(x.field)`".to_owned(),
                None,
            );
            return Type::Bool;
        };
        if let Some(segs) = Self::chain(select) {
            if self.local(segs[0].0).is_none() {
                if let Some(var) = self.lookup_var(&join_segments(&segs)) {
                    self.check_var_use(var, select.span);
                    return Type::Bool;
                }
            }
        }
        let ot = if let Some(segs) = Self::chain(operand) {
            // Do not warn about unset `vars.x` inside `has(vars.x.y)`: has() is the guard.
            if segs.len() == 1 && segs[0].0 == "vars" && self.local("vars").is_none() {
                Type::map(Type::String, Type::Dyn)
            } else {
                self.expr(operand, d)
            }
        } else {
            self.expr(operand, d)
        };
        match ot {
            Type::Map(..)
            | Type::Dyn
            | Type::Error
            | Type::Param(_)
            | Type::Free
            | Type::Optional(_) => {}
            Type::Object(def) => {
                if def.field(&field.name).is_none() {
                    self.error(
                        codes::UNDEFINED_FIELD,
                        field.span,
                        format!("type `{}` has no field `{}`", def.name, field.name),
                        None,
                    );
                }
            }
            t => self.error(
                codes::INVALID_HAS,
                select.span,
                format!("`has()` tests a field of a map or object, but the operand is `{t}`"),
                None,
            ),
        }
        Type::Bool
    }
}

/// Matches `f` against argument types; gives the result type with type parameters bound.
fn match_overload(f: &FnDef, types: &[Type]) -> Option<Type> {
    let params = f.params;
    if f.variadic {
        if types.is_empty() || types.len() < params.len() {
            return None;
        }
    } else if params.len() != types.len() {
        return None;
    }
    let mut bindings: Vec<(&'static str, Type)> = Vec::new();
    for (i, t) in types.iter().enumerate() {
        let spec = params.get(i).or(params.last())?;
        if !unify(*spec, t, &mut bindings) {
            return None;
        }
    }
    Some(substitute(f.result, &bindings))
}

fn unify(spec: TypeSpec, t: &Type, b: &mut Vec<(&'static str, Type)>) -> bool {
    if matches!(t, Type::Error) {
        return true;
    }
    match spec {
        TypeSpec::Param(p) => {
            if let Some(i) = b.iter().position(|(n, _)| *n == p) {
                let bound = b[i].1.clone();
                if bound.is_dyn() {
                    b[i].1 = t.clone();
                    true
                } else if t.is_dyn() {
                    true
                } else if t.is_assignable_to(&bound) {
                    b[i].1 = bound.join(t);
                    true
                } else {
                    false
                }
            } else {
                b.push((p, t.clone()));
                true
            }
        }
        TypeSpec::Dyn => true,
        _ if t.is_dyn() => {
            // Bind the parameters inside the spec to dyn.
            bind_dyn(spec, b);
            true
        }
        TypeSpec::List(e) => match t {
            Type::List(te) => unify(*e, te, b),
            _ => false,
        },
        TypeSpec::Optional(e) => match t {
            Type::Optional(te) => unify(*e, te, b),
            _ => false,
        },
        TypeSpec::Map(k, v) => match t {
            Type::Map(tk, tv) => unify(*k, tk, b) && unify(*v, tv, b),
            _ => false,
        },
        // `t` is not dyn here, so this is exact (object types by name).
        other => other.to_type().is_assignable_to(t),
    }
}

fn bind_dyn(spec: TypeSpec, b: &mut Vec<(&'static str, Type)>) {
    match spec {
        TypeSpec::Param(p) if !b.iter().any(|(n, _)| *n == p) => b.push((p, Type::Dyn)),
        TypeSpec::List(e) | TypeSpec::Optional(e) => bind_dyn(*e, b),
        TypeSpec::Map(k, v) => {
            bind_dyn(*k, b);
            bind_dyn(*v, b);
        }
        _ => {}
    }
}

fn substitute(spec: TypeSpec, b: &[(&'static str, Type)]) -> Type {
    match spec {
        TypeSpec::Param(p) => b
            .iter()
            .find(|(n, _)| *n == p)
            .map_or(Type::Free, |(_, t)| t.clone()),
        TypeSpec::List(e) => Type::list(substitute(*e, b)),
        TypeSpec::Optional(e) => Type::Optional(Box::new(substitute(*e, b))),
        TypeSpec::Map(k, v) => Type::map(substitute(*k, b), substitute(*v, b)),
        other => other.to_type(),
    }
}

/// Whether `==`/`!=` accepts the two types: equal types, numbers of any kind, `null` against
/// anything, or anything `dyn`.
fn equality_ok(a: &Type, b: &Type) -> bool {
    if a.contains_dyn() || b.contains_dyn() {
        return a.is_assignable_to(b) || b.is_assignable_to(a) || a.is_dyn() || b.is_dyn();
    }
    matches!(a, Type::Null)
        || matches!(b, Type::Null)
        || (a.is_numeric() && b.is_numeric())
        || a.is_assignable_to(b)
}

/// The type of `c ? a : b`: `null` joins with anything as that thing.
fn join_nullable(a: &Type, b: &Type) -> Type {
    match (a, b) {
        (Type::Null, t) | (t, Type::Null) => t.clone(),
        _ => a.join(b),
    }
}

/// The type denoted by a type name used as a value (`type(x) == string`).
fn type_name(name: &str) -> Option<Type> {
    matches!(
        name,
        "bool"
            | "int"
            | "uint"
            | "double"
            | "string"
            | "bytes"
            | "list"
            | "map"
            | "null_type"
            | "type"
            | "dyn"
            | "optional_type"
            | "net.IP"
            | "net.CIDR"
            | "google.protobuf.Timestamp"
            | "google.protobuf.Duration"
    )
    .then_some(Type::Type)
}

/// Whether the innermost name of a dotted chain was written with a leading dot (`.a.b`).
fn is_root_scoped(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Ident { root, .. } => *root,
        ExprKind::Select { operand, .. } => is_root_scoped(operand),
        _ => false,
    }
}

fn join_segments(segs: &[(&str, Span)]) -> String {
    let mut s = String::new();
    for (i, (seg, _)) in segs.iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        s.push_str(seg);
    }
    s
}

fn is_header_map(name: &str) -> bool {
    matches!(
        name,
        "req.headers" | "res.headers" | "req.trailers" | "res.trailers"
    )
}

/// The action type of an `actions.ngrok.<ns>` namespace.
fn action_type(ns: &str) -> String {
    match ns {
        "compress" => "compress-response".to_owned(),
        "oidc" => "openid-connect".to_owned(),
        other => other.replace('_', "-"),
    }
}

/// An operator's name as users write it (`_<_` → `<`).
fn display_name(name: &str) -> &str {
    match name {
        "@in" => "in",
        "_[_]" => "[]",
        n => n.trim_matches('_'),
    }
}
