//! Compiled general expressions: what [`super::Node::General`] evaluates. Every name is resolved
//! once, when the policy is compiled, so that evaluation matches on ids and never on names:
//!
//! - a variable chain (`req.headers`, `vars.x`, `actions.ngrok.rate_limit.allowed`) becomes a
//!   [`Slot`] (a built-in field, the phase's variables or an action's results) plus the field
//!   keys selected from it, built beforehand;
//! - a macro variable becomes an index into the evaluation's stack of locals;
//! - a function becomes a [`Callee`]: the core library's `Core` id and the extension libraries'
//!   `ExtFn` ids of that name, in the order the reference interpreter tries them. Overloads are
//!   chosen from the argument values by a `match` on their types (CEL's dynamic dispatch).
//!
//! The semantics are exactly those of the reference interpreter over
//! `ViewActivation`: the same values, the same errors, the same resource limits
//! (steps, depth, iterations and allocation are counted as the interpreter counts them). The
//! `compiled_vs_reference` and `general_vs_reference` tests check it.
//!
//! One construct is not compiled: `cel.block` (an optimiser's output, whose bindings are
//! evaluated in the scope of their first use, so their names cannot be resolved beforehand).
//! [`compile`] reports it and the caller keeps the reference interpreter for that expression.

use std::fmt;

use wicket_grammar::ast::{BinaryOp, Comprehension, Expr, ExprKind, Macro, UnaryOp};

use super::{IntField, Scratch, StrField};
use crate::error::EvalError;
use crate::interp::Limits;
use crate::interp::eval::{
    Collect, EvalResult, account, block_var_name, has_key, ident_chain, index_value,
    iteration_values, literal, merge_failures, no_overload, select_key, unwrap_arc, var_name,
};
use crate::interp::ext::{self, ExtFn};
use crate::interp::functions::{self, Core};
use crate::program::view::RequestView;
use crate::value::{CelType, Key, MapValue, Value};

/// Where a variable's value comes from: the reading `ViewActivation` does for a name,
/// decided once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// A string field (composed fields are composed on each read, as the interpreter does).
    Str(StrField),
    /// An integer field.
    Int(IntField),
    /// `req.headers`.
    ReqHeaders,
    /// `res.headers` (absent outside a response phase).
    ResHeaders,
    /// `req.url.query_params`.
    QueryParams,
    /// `req.cookies`.
    Cookies,
    /// `vars`.
    Vars,
    /// `time.now`.
    TimeNow,
    /// `actions.ngrok.<namespace>`: the results of the phase's last run of the action, else
    /// whatever the view provides under the full name.
    Action,
    /// A variable the engine has no field for (IP intelligence, TLS details, …): the view's
    /// [`RequestView::other`] under the name fixed at compile time.
    Other,
}

/// The prefix of the action result variables.
const ACTIONS: &str = "actions.ngrok.";

impl Slot {
    /// The slot of a variable name.
    #[must_use]
    pub fn of(name: &str) -> Slot {
        if let Some(field) = StrField::from_name(name) {
            return Slot::Str(field);
        }
        if let Some(field) = IntField::from_name(name) {
            return Slot::Int(field);
        }
        match name {
            "req.headers" => Slot::ReqHeaders,
            "res.headers" => Slot::ResHeaders,
            "req.url.query_params" => Slot::QueryParams,
            "req.cookies" => Slot::Cookies,
            "vars" => Slot::Vars,
            "time.now" => Slot::TimeNow,
            _ if name.starts_with(ACTIONS) => Slot::Action,
            _ => Slot::Other,
        }
    }

    /// Whether reading the slot always gives a value (no later candidate is ever tried).
    fn always_present(self) -> bool {
        match self {
            Slot::Str(field) => !matches!(
                field,
                StrField::Sni
                    | StrField::TlsVersion
                    | StrField::Url
                    | StrField::Authority
                    | StrField::Uri
                    | StrField::ClientIp
                    | StrField::ServerIp
            ),
            Slot::ReqHeaders | Slot::QueryParams | Slot::Cookies | Slot::Vars | Slot::TimeNow => {
                true
            }
            Slot::Int(_) | Slot::ResHeaders | Slot::Action | Slot::Other => false,
        }
    }

    /// The value of the slot (`name` is the variable's name, read only by [`Slot::Action`] and
    /// [`Slot::Other`]); `None` when absent.
    pub(crate) fn read<V: RequestView + ?Sized>(
        self,
        name: &str,
        view: &V,
        st: &Scratch,
    ) -> Option<Value> {
        match self {
            Slot::Str(field) => {
                if field.composed_slot().is_some() {
                    let mut out = String::new();
                    return super::compose_into(field, view, st, &mut out)
                        .then(|| super::string(&out));
                }
                super::str_field(field, view, st).map(super::string)
            }
            Slot::Int(field) => super::int_field(field, view, st).map(Value::Int),
            Slot::ReqHeaders => Some(
                st.headers
                    .get_or_init(|| super::header_map(&|f| view.for_each_header(f)))
                    .clone(),
            ),
            Slot::ResHeaders => view.response_status().map(|_| {
                st.response_headers
                    .get_or_init(|| super::header_map(&|f| view.for_each_response_header(f)))
                    .clone()
            }),
            Slot::QueryParams => Some(
                st.query_params
                    .get_or_init(|| super::query_map(st.url_parts(view).4))
                    .clone(),
            ),
            Slot::Cookies => Some(st.cookies.get_or_init(|| super::cookie_map(view)).clone()),
            Slot::Vars => Some(Value::map(st.vars.clone())),
            Slot::TimeNow => Some(super::string(&jiff::Timestamp::now().to_string())),
            Slot::Action => {
                if let Some(ns) = name.strip_prefix(ACTIONS) {
                    if let Some(v) = st.result(ns) {
                        return Some(v);
                    }
                }
                view.other(name)
            }
            Slot::Other => view.other(name),
        }
    }
}

/// A field selected by name from a map value, with its map key built beforehand.
#[derive(Clone, PartialEq)]
pub struct Field {
    key: Key,
    name: Box<str>,
}

impl Field {
    fn new(name: &str) -> Self {
        Self {
            key: Key::String(name.into()),
            name: name.into(),
        }
    }
}

impl fmt::Debug for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, ".{}", self.name)
    }
}

/// One way to read a variable chain: a slot (under its full name) and the fields selected from
/// its value.
#[derive(Clone, Debug)]
pub struct Candidate {
    slot: Slot,
    name: Box<str>,
    path: Box<[Field]>,
}

/// A variable chain (`a.b.c`) resolved at compile time: the candidate names, longest first, as
/// the interpreter tries them, then a type name (`int`, `google.protobuf.Timestamp`).
#[derive(Clone, Debug)]
pub struct VarRef {
    candidates: Box<[Candidate]>,
    ty: Option<(CelType, Box<[Field]>)>,
}

impl VarRef {
    fn new(segments: &[&str]) -> Self {
        let mut candidates = Vec::new();
        for n in (1..=segments.len()).rev() {
            let name = segments[..n].join(".");
            let slot = Slot::of(&name);
            candidates.push(Candidate {
                slot,
                name: name.into(),
                path: segments[n..].iter().map(|s| Field::new(s)).collect(),
            });
            if slot.always_present() {
                break;
            }
        }
        let always = candidates.last().is_some_and(|c| c.slot.always_present());
        let ty = if always {
            None
        } else {
            (1..=segments.len()).rev().find_map(|n| {
                CelType::from_name(&segments[..n].join(".")).map(|ty| {
                    (
                        ty,
                        segments[n..]
                            .iter()
                            .map(|s| Field::new(s))
                            .collect::<Box<[_]>>(),
                    )
                })
            })
        };
        Self {
            candidates: candidates.into(),
            ty,
        }
    }
}

/// A function resolved at compile time: ids only (no name to look up).
#[derive(Clone, Debug)]
pub struct Callee(CalleeKind);

#[derive(Clone, Debug)]
enum CalleeKind {
    /// The core function and the extension functions of one name, in dispatch order.
    Resolved {
        /// The core library's function of that name.
        core: Option<Core>,
        /// The extension functions of that name (member or global, as the call is written).
        ext: Box<[ExtFn]>,
    },
    /// No function has that name: the call fails (after its arguments are evaluated).
    Undeclared(EvalError),
}

impl Callee {
    fn new(name: &str, member: bool) -> Self {
        let core = Core::from_name(name);
        let ext: Box<[ExtFn]> = if member {
            ext::resolve_member(name).into()
        } else {
            ext::resolve_global(name).into_iter().collect()
        };
        Callee(if core.is_none() && ext.is_empty() {
            CalleeKind::Undeclared(EvalError::UndeclaredReference(name.to_owned()))
        } else {
            CalleeKind::Resolved { core, ext }
        })
    }

    /// Whether a function of the name exists.
    #[must_use]
    pub fn is_resolved(&self) -> bool {
        matches!(self.0, CalleeKind::Resolved { .. })
    }

    /// The name of a resolved function, for its errors.
    fn name(core: Option<Core>, ext: &[ExtFn]) -> &'static str {
        core.map(Core::name)
            .or_else(|| ext.first().map(|f| f.name()))
            .unwrap_or("")
    }
}

/// The receiver of a call.
#[derive(Clone, Debug)]
pub enum Target {
    /// A global call.
    None,
    /// A member call on any expression.
    Expr(Box<GExpr>),
    /// A member call on a variable chain; when no candidate of the chain is present, the
    /// expression is the qualified global call `chain.function(…)` instead (compiled here).
    Chain(VarRef, Box<GExpr>),
    /// A member call on a macro variable (`x.size()`), with fields selected from it.
    Local(usize, Box<[Field]>),
}

/// The kind of a comprehension macro.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loop {
    /// `all`.
    All,
    /// `exists`.
    Exists,
    /// `exists_one`.
    ExistsOne,
    /// `map`, `filter`, `transformList`, `transformMap`, `transformMapEntry`.
    Collect(CollectKind),
    /// `sortBy`.
    SortBy,
}

/// What a collecting comprehension builds (the interpreter's `Collect`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CollectKind {
    /// `filter`.
    Filter,
    /// `map` / `transformList`.
    List,
    /// `transformMap`.
    Map,
    /// `transformMapEntry`.
    MapEntry,
}

impl CollectKind {
    fn mode(self) -> Collect {
        match self {
            CollectKind::Filter => Collect::Filter,
            CollectKind::List => Collect::List,
            CollectKind::Map => Collect::Map,
            CollectKind::MapEntry => Collect::MapEntry,
        }
    }
}

/// A compiled expression. It holds no function or variable names to look up: functions are
/// [`Callee`] ids, variables [`VarRef`] slots or local indexes.
#[derive(Clone, Debug)]
pub enum GExpr {
    /// A literal.
    Const(Value),
    /// An expression that always fails when evaluated (`Msg{…}`, a misplaced `cel.iterVar`).
    Fail(EvalError),
    /// A variable chain.
    Var(VarRef),
    /// A macro variable (index in the locals) and the fields selected from it.
    Local(usize, Box<[Field]>),
    /// `operand.field` / `operand.?field`.
    Select {
        /// The operand.
        operand: Box<GExpr>,
        /// The field.
        field: Field,
        /// `.?`
        optional: bool,
    },
    /// `operand[index]` / `operand[?index]`.
    Index {
        /// The operand.
        operand: Box<GExpr>,
        /// The index.
        index: Box<GExpr>,
        /// `[?`
        optional: bool,
    },
    /// A function call.
    Call {
        /// The function.
        f: Callee,
        /// The receiver.
        target: Target,
        /// The arguments.
        args: Box<[GExpr]>,
    },
    /// `!x`.
    Not(Box<GExpr>),
    /// `-x`.
    Neg(Box<GExpr>),
    /// `&&` (false absorbs errors).
    And(Box<GExpr>, Box<GExpr>),
    /// `||` (true absorbs errors).
    Or(Box<GExpr>, Box<GExpr>),
    /// A strict binary operator.
    Binary(BinaryOp, Box<GExpr>, Box<GExpr>),
    /// `c ? a : b`.
    Cond(Box<GExpr>, Box<GExpr>, Box<GExpr>),
    /// A list literal (`true` marks an optional element).
    List(Box<[(GExpr, bool)]>),
    /// A map literal (`true` marks an optional entry).
    Map(Box<[(GExpr, GExpr, bool)]>),
    /// `has(operand.field)`.
    Has(Box<GExpr>, Field),
    /// `has(…)` of something that is not a field selection.
    HasInvalid,
    /// A comprehension macro: its variables are pushed as locals while `body` and `filter`
    /// run.
    Loop {
        /// Which macro.
        kind: Loop,
        /// The range.
        range: Box<GExpr>,
        /// Whether it binds two variables.
        two_vars: bool,
        /// The body (predicate, transform or key).
        body: Box<GExpr>,
        /// The filter of `map(x, p, t)` and the `transform*` forms with a predicate.
        filter: Option<Box<GExpr>>,
    },
    /// `cel.bind(var, init, body)`.
    Bind(Box<GExpr>, Box<GExpr>),
    /// `opt.optMap(v, body)` (`false`) / `opt.optFlatMap(v, body)` (`true`).
    OptMap(Box<GExpr>, Box<GExpr>, bool),
}

/// An expression [`compile`] leaves to the reference interpreter.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is evaluated by the reference interpreter")]
pub struct NotCompiled(pub &'static str);

/// Compiles an expression (evaluated with no container, as rule conditions are).
///
/// # Errors
/// [`NotCompiled`] for `cel.block` and its `cel.index` references.
pub fn compile(expr: &Expr) -> Result<GExpr, NotCompiled> {
    Compiler { scope: Vec::new() }.expr(expr)
}

struct Compiler {
    /// The macro variables in scope, outermost first (their index is their slot).
    scope: Vec<String>,
}

impl Compiler {
    fn local(&self, name: &str) -> Option<usize> {
        self.scope.iter().rposition(|n| n == name)
    }

    fn fields(segments: &[&str]) -> Box<[Field]> {
        segments.iter().map(|s| Field::new(s)).collect()
    }

    /// A chain `segments` (root-scoped when `root`): a local, or a variable.
    fn chain(&self, segments: &[&str], root: bool) -> Result<GExpr, VarRef> {
        if let Some((first, rest)) = segments.split_first() {
            if !root {
                if let Some(i) = self.local(first) {
                    return Ok(GExpr::Local(i, Self::fields(rest)));
                }
            }
        }
        Err(VarRef::new(segments))
    }

    fn var(&self, segments: &[&str], root: bool) -> GExpr {
        match self.chain(segments, root) {
            Ok(local) => local,
            Err(var) => GExpr::Var(var),
        }
    }

    fn boxed(&mut self, expr: &Expr) -> Result<Box<GExpr>, NotCompiled> {
        self.expr(expr).map(Box::new)
    }

    fn exprs(&mut self, exprs: &[Expr]) -> Result<Box<[GExpr]>, NotCompiled> {
        exprs.iter().map(|e| self.expr(e)).collect()
    }

    fn expr(&mut self, expr: &Expr) -> Result<GExpr, NotCompiled> {
        Ok(match &expr.kind {
            ExprKind::Literal(lit) => GExpr::Const(literal(lit)),
            ExprKind::Ident { name, root } => self.var(&[name.as_str()], *root),
            ExprKind::Select {
                operand,
                field,
                optional,
            } => {
                if !optional {
                    if let Some((segments, root)) = ident_chain(expr) {
                        return Ok(self.var(&segments, root));
                    }
                }
                GExpr::Select {
                    operand: self.boxed(operand)?,
                    field: Field::new(&field.name),
                    optional: *optional,
                }
            }
            ExprKind::Index {
                operand,
                index,
                optional,
            } => GExpr::Index {
                operand: self.boxed(operand)?,
                index: self.boxed(index)?,
                optional: *optional,
            },
            ExprKind::Call {
                target,
                function,
                args,
            } => self.call(target.as_deref(), &function.name, args)?,
            ExprKind::Unary { op, operand } => match op {
                UnaryOp::Not => GExpr::Not(self.boxed(operand)?),
                UnaryOp::Neg => GExpr::Neg(self.boxed(operand)?),
            },
            ExprKind::Binary { op, lhs, rhs } => {
                let (lhs, rhs) = (self.boxed(lhs)?, self.boxed(rhs)?);
                match op {
                    BinaryOp::And => GExpr::And(lhs, rhs),
                    BinaryOp::Or => GExpr::Or(lhs, rhs),
                    _ => GExpr::Binary(*op, lhs, rhs),
                }
            }
            ExprKind::Ternary {
                cond,
                then,
                otherwise,
            } => GExpr::Cond(self.boxed(cond)?, self.boxed(then)?, self.boxed(otherwise)?),
            ExprKind::List(elements) => GExpr::List(
                elements
                    .iter()
                    .map(|e| Ok((self.expr(&e.value)?, e.optional)))
                    .collect::<Result<_, _>>()?,
            ),
            ExprKind::Map(entries) => GExpr::Map(
                entries
                    .iter()
                    .map(|e| Ok((self.expr(&e.key)?, self.expr(&e.value)?, e.optional)))
                    .collect::<Result<_, _>>()?,
            ),
            ExprKind::Struct { type_name, .. } => GExpr::Fail(EvalError::Unsupported(format!(
                "message construction `{type_name}`"
            ))),
            ExprKind::Macro(mac) => self.mac(mac)?,
        })
    }

    fn call(
        &mut self,
        target: Option<&Expr>,
        name: &str,
        args: &[Expr],
    ) -> Result<GExpr, NotCompiled> {
        let target = match target {
            None => Target::None,
            Some(target) => match ident_chain(target) {
                Some((segments, root)) => match self.chain(&segments, root) {
                    Ok(GExpr::Local(i, path)) => Target::Local(i, path),
                    Ok(other) => Target::Expr(Box::new(other)),
                    Err(var) => {
                        let qualified = format!("{}.{name}", segments.join("."));
                        let fallback = self.qualified(&qualified, args)?;
                        Target::Chain(var, Box::new(fallback))
                    }
                },
                None => Target::Expr(self.boxed(target)?),
            },
        };
        let member = !matches!(target, Target::None);
        Ok(GExpr::Call {
            f: Callee::new(name, member),
            target,
            args: self.exprs(args)?,
        })
    }

    /// A qualified global call `a.b(args)` whose receiver is not a variable.
    fn qualified(&mut self, qualified: &str, args: &[Expr]) -> Result<GExpr, NotCompiled> {
        match qualified {
            "cel.index" => return Err(NotCompiled("cel.index")),
            "cel.iterVar" | "cel.accuVar" => {
                return Ok(match block_var_name(qualified, args) {
                    Ok(var) => match self.local(&var) {
                        Some(i) => GExpr::Local(i, Box::new([])),
                        None => GExpr::Fail(EvalError::UndeclaredReference(var)),
                    },
                    Err(e) => GExpr::Fail(e),
                });
            }
            _ => {}
        }
        if !ext::is_function(qualified) {
            return Ok(GExpr::Fail(EvalError::UndeclaredReference(
                qualified.to_owned(),
            )));
        }
        Ok(GExpr::Call {
            f: Callee::new(qualified, false),
            target: Target::None,
            args: self.exprs(args)?,
        })
    }

    /// Compiles `body` with `vars` in scope.
    fn scoped(&mut self, vars: &[&str], body: &Expr) -> Result<Box<GExpr>, NotCompiled> {
        let len = self.scope.len();
        self.scope.extend(vars.iter().map(|v| var_name(v)));
        let result = self.boxed(body);
        self.scope.truncate(len);
        result
    }

    fn comprehension(
        &mut self,
        kind: Loop,
        comp: &Comprehension,
        filter: Option<&Expr>,
    ) -> Result<GExpr, NotCompiled> {
        let mut vars = vec![comp.var.name.as_str()];
        if let Some(v) = &comp.var2 {
            vars.push(v.name.as_str());
        }
        let range = self.boxed(&comp.range)?;
        let body = self.scoped(&vars, &comp.body)?;
        let filter = match filter {
            Some(f) => Some(self.scoped(&vars, f)?),
            None => None,
        };
        Ok(GExpr::Loop {
            kind,
            range,
            two_vars: comp.var2.is_some(),
            body,
            filter,
        })
    }

    fn mac(&mut self, mac: &Macro) -> Result<GExpr, NotCompiled> {
        let collect = |k| Loop::Collect(k);
        match mac {
            Macro::Has { select } => Ok(match &select.kind {
                ExprKind::Select { operand, field, .. } => {
                    GExpr::Has(self.boxed(operand)?, Field::new(&field.name))
                }
                _ => GExpr::HasInvalid,
            }),
            Macro::All(c) => self.comprehension(Loop::All, c, None),
            Macro::Exists(c) => self.comprehension(Loop::Exists, c, None),
            Macro::ExistsOne(c) => self.comprehension(Loop::ExistsOne, c, None),
            Macro::Map { comp, filter } | Macro::TransformList { comp, filter } => {
                self.comprehension(collect(CollectKind::List), comp, filter.as_ref())
            }
            Macro::Filter(c) => self.comprehension(collect(CollectKind::Filter), c, None),
            Macro::TransformMap { comp, filter } => {
                self.comprehension(collect(CollectKind::Map), comp, filter.as_ref())
            }
            Macro::TransformMapEntry { comp, filter } => {
                self.comprehension(collect(CollectKind::MapEntry), comp, filter.as_ref())
            }
            Macro::SortBy(c) => self.comprehension(Loop::SortBy, c, None),
            Macro::Bind { var, init, body } => {
                let init = self.boxed(init)?;
                Ok(GExpr::Bind(init, self.scoped(&[var.name.as_str()], body)?))
            }
            Macro::OptMap { target, var, body } | Macro::OptFlatMap { target, var, body } => {
                let flat = matches!(mac, Macro::OptFlatMap { .. });
                let target = self.boxed(target)?;
                Ok(GExpr::OptMap(
                    target,
                    self.scoped(&[var.name.as_str()], body)?,
                    flat,
                ))
            }
            Macro::Block { .. } => Err(NotCompiled("cel.block")),
        }
    }
}

/// An expression compiled once for evaluation on every request, outside rule conditions
/// (`${…}` interpolations, rate-limit bucket keys): resolved ([`GExpr`]) unless it uses
/// `cel.block`, which [`compile`] leaves to the reference interpreter.
#[derive(Debug)]
pub enum Compiled {
    /// Every name resolved.
    Resolved(GExpr),
    /// Evaluated by the reference interpreter (`cel.block`).
    Interp(Expr),
}

impl Compiled {
    /// Compiles `expr` (already desugared).
    #[must_use]
    pub fn new(expr: Expr) -> Self {
        match compile(&expr) {
            Ok(g) => Self::Resolved(g),
            Err(_) => Self::Interp(expr),
        }
    }

    /// Evaluates the expression over a request.
    ///
    /// # Errors
    /// The CEL error the expression evaluates to.
    pub fn eval<V: RequestView + ?Sized>(
        &self,
        view: &V,
        st: &Scratch,
    ) -> Result<Value, EvalError> {
        match self {
            Self::Resolved(g) => eval(g, view, st),
            Self::Interp(e) => crate::eval::eval_value(e, view, st),
        }
    }
}

/// Evaluates a compiled expression over a request.
///
/// # Errors
/// The CEL error the expression evaluates to.
pub fn eval<V: RequestView + ?Sized>(
    expr: &GExpr,
    view: &V,
    st: &Scratch,
) -> Result<Value, EvalError> {
    st.mark_general();
    let limits = Limits::default();
    let mut run = Run {
        view,
        st,
        limits: &limits,
        locals: Vec::new(),
        depth: 0,
        iterations: 0,
        steps: 0,
        allocated: 0,
    };
    run.eval(expr)
}

/// The state of one evaluation (the interpreter's `Evaluator`, with locals by index).
struct Run<'a, V: ?Sized> {
    view: &'a V,
    st: &'a Scratch,
    limits: &'a Limits,
    locals: Vec<Value>,
    depth: usize,
    iterations: u64,
    steps: u64,
    allocated: usize,
}

fn select_path(mut value: Value, path: &[Field]) -> EvalResult {
    for field in path {
        value = select_key(&value, &field.key, &field.name, false)?;
    }
    Ok(value)
}

impl<V: RequestView + ?Sized> Run<'_, V> {
    fn eval(&mut self, expr: &GExpr) -> EvalResult {
        if self.depth >= self.limits.max_depth {
            return Err(EvalError::LimitExceeded(format!(
                "expression nesting exceeds the limit of {}",
                self.limits.max_depth
            )));
        }
        self.steps += 1;
        if self.steps > self.limits.max_steps {
            return Err(EvalError::LimitExceeded(format!(
                "evaluation exceeds the limit of {} steps",
                self.limits.max_steps
            )));
        }
        self.depth += 1;
        let result = self.eval_kind(expr);
        self.depth -= 1;
        result
    }

    fn account(&mut self, value: &Value) -> Result<(), EvalError> {
        account(self.limits, &mut self.allocated, value)
    }

    fn local(&self, index: usize, path: &[Field]) -> EvalResult {
        match self.locals.get(index) {
            Some(v) => select_path(v.clone(), path),
            // Unreachable by construction (the compiler counted the scope).
            None => Err(EvalError::InvalidArgument(
                "macro variable out of scope".to_owned(),
            )),
        }
    }

    /// The value of a variable chain; `None` when no candidate is present.
    fn var(&self, var: &VarRef) -> Option<EvalResult> {
        for c in &*var.candidates {
            if c.slot == Slot::Vars {
                // `vars.x`: the entry itself, without copying the phase's variables.
                if let Some((first, rest)) = c.path.split_first() {
                    return Some(match self.st.vars.get_key(&first.key) {
                        Some(v) => select_path(v.clone(), rest),
                        None => Err(EvalError::NoSuchKey(first.name.to_string())),
                    });
                }
            }
            if let Some(value) = c.slot.read(&c.name, self.view, self.st) {
                return Some(select_path(value, &c.path));
            }
        }
        var.ty
            .as_ref()
            .map(|(ty, path)| select_path(Value::Type(ty.clone()), path))
    }

    fn eval_kind(&mut self, expr: &GExpr) -> EvalResult {
        match expr {
            GExpr::Const(v) => Ok(v.clone()),
            GExpr::Fail(e) => Err(e.clone()),
            GExpr::Var(var) => match self.var(var) {
                Some(result) => result,
                None => Err(undeclared(var)),
            },
            GExpr::Local(i, path) => self.local(*i, path),
            GExpr::Select {
                operand,
                field,
                optional,
            } => {
                let value = self.eval(operand)?;
                select_key(&value, &field.key, &field.name, *optional)
            }
            GExpr::Index {
                operand,
                index,
                optional,
            } => {
                let value = self.eval(operand)?;
                let index = self.eval(index)?;
                index_value(&value, &index, *optional)
            }
            GExpr::Call { f, target, args } => self.call(f, target, args),
            GExpr::Not(operand) => match self.eval(operand)? {
                Value::Bool(b) => Ok(Value::Bool(!b)),
                _ => Err(no_overload("!_")),
            },
            GExpr::Neg(operand) => {
                let value = self.eval(operand)?;
                functions::negate(&value)
            }
            GExpr::And(lhs, rhs) => self.logic(lhs, rhs, false),
            GExpr::Or(lhs, rhs) => self.logic(lhs, rhs, true),
            GExpr::Binary(op, lhs, rhs) => {
                let a = self.eval(lhs)?;
                let b = self.eval(rhs)?;
                let result = functions::binary(*op, &a, &b)?;
                self.account(&result)?;
                Ok(result)
            }
            GExpr::Cond(cond, then, otherwise) => match self.eval(cond)? {
                Value::Bool(true) => self.eval(then),
                Value::Bool(false) => self.eval(otherwise),
                _ => Err(no_overload("_?_:_")),
            },
            GExpr::List(elements) => self.list(elements),
            GExpr::Map(entries) => self.map(entries),
            GExpr::Has(operand, field) => {
                let value = self.eval(operand)?;
                has_key(&value, &field.key)
            }
            GExpr::HasInvalid => Err(no_overload("has")),
            GExpr::Loop {
                kind,
                range,
                two_vars,
                body,
                filter,
            } => {
                let range = self.eval(range)?;
                match kind {
                    Loop::All => self.quantifier(&range, *two_vars, body, false),
                    Loop::Exists => self.quantifier(&range, *two_vars, body, true),
                    Loop::ExistsOne => self.exists_one(&range, *two_vars, body),
                    Loop::Collect(k) => {
                        self.collect(&range, *two_vars, body, filter.as_deref(), k.mode())
                    }
                    Loop::SortBy => self.sort_by(&range, *two_vars, body),
                }
            }
            GExpr::Bind(init, body) => {
                let value = self.eval(init)?;
                self.with_locals(&[value], body)
            }
            GExpr::OptMap(target, body, flat) => {
                let name = if *flat { "optFlatMap" } else { "optMap" };
                match self.eval(target)? {
                    Value::Optional(None) => Ok(Value::Optional(None)),
                    Value::Optional(Some(inner)) => {
                        let result = self.with_locals(&[unwrap_arc(inner)], body)?;
                        if *flat {
                            match result {
                                result @ Value::Optional(_) => Ok(result),
                                _ => Err(no_overload(name)),
                            }
                        } else {
                            Ok(Value::optional_of(result))
                        }
                    }
                    _ => Err(no_overload(name)),
                }
            }
        }
    }

    fn call(&mut self, f: &Callee, target: &Target, args: &[GExpr]) -> EvalResult {
        let receiver = match target {
            Target::None => None,
            Target::Expr(e) => Some(self.eval(e)?),
            Target::Local(i, path) => Some(self.local(*i, path)?),
            Target::Chain(var, fallback) => match self.var(var) {
                Some(result) => Some(result?),
                // Not a variable: the qualified global call, evaluated as the interpreter does
                // (no step of its own).
                None => return self.eval_kind(fallback),
            },
        };
        self.dispatch(f, receiver.as_ref(), args)
    }

    /// Evaluates the arguments and calls the function: the core library first, then the
    /// extensions, as the interpreter's `dispatch` does.
    fn dispatch(&mut self, f: &Callee, target: Option<&Value>, args: &[GExpr]) -> EvalResult {
        // The common arities without a heap-allocated argument list.
        match args {
            [] => self.apply(f, target, &[]),
            [a] => {
                let a = self.eval(a)?;
                self.apply(f, target, &[a])
            }
            [a, b] => {
                let a = self.eval(a)?;
                let b = self.eval(b)?;
                self.apply(f, target, &[a, b])
            }
            _ => {
                let mut values = Vec::with_capacity(args.len());
                for arg in args {
                    values.push(self.eval(arg)?);
                }
                self.apply(f, target, &values)
            }
        }
    }

    /// Calls the function with evaluated arguments.
    fn apply(&mut self, f: &Callee, target: Option<&Value>, values: &[Value]) -> EvalResult {
        let (core, ext) = match &f.0 {
            CalleeKind::Resolved { core, ext } => (*core, &**ext),
            CalleeKind::Undeclared(e) => return Err(e.clone()),
        };
        let call_ext = |values: &[Value]| ext.iter().find_map(|f| f.call(target, values));
        let result = match core.and_then(|c| functions::call_core(c, target, values)) {
            Some(Err(EvalError::NoMatchingOverload { function })) => match call_ext(values) {
                Some(result) => result,
                None => Err(EvalError::NoMatchingOverload { function }),
            },
            Some(result) => result,
            None => match call_ext(values) {
                Some(result) => result,
                None => Err(EvalError::UndeclaredReference(
                    Callee::name(core, ext).to_owned(),
                )),
            },
        }?;
        self.account(&result)?;
        Ok(result)
    }

    fn logic(&mut self, lhs: &GExpr, rhs: &GExpr, absorbing: bool) -> EvalResult {
        let name = if absorbing { "_||_" } else { "_&&_" };
        let left = self.eval(lhs);
        if let Ok(Value::Bool(b)) = left {
            if b == absorbing {
                return Ok(Value::Bool(b));
            }
        }
        let right = self.eval(rhs);
        match (left, right) {
            (_, Ok(Value::Bool(b))) if b == absorbing => Ok(Value::Bool(b)),
            (Ok(Value::Bool(_)), Ok(Value::Bool(b))) => Ok(Value::Bool(b)),
            (Err(a), Err(b)) => Err(merge_failures(a, b)),
            (Err(e), _) | (Ok(Value::Bool(_)), Err(e)) => Err(e),
            (Ok(_), Err(e)) if e.is_unknown() => Err(e),
            _ => Err(no_overload(name)),
        }
    }

    fn list(&mut self, elements: &[(GExpr, bool)]) -> EvalResult {
        let mut items = Vec::with_capacity(elements.len());
        for (element, optional) in elements {
            let value = self.eval(element)?;
            if *optional {
                match value {
                    Value::Optional(Some(inner)) => items.push(unwrap_arc(inner)),
                    Value::Optional(None) => {}
                    _ => return Err(no_overload("optional list element")),
                }
            } else {
                items.push(value);
            }
        }
        let list = Value::list(items);
        self.account(&list)?;
        Ok(list)
    }

    fn map(&mut self, entries: &[(GExpr, GExpr, bool)]) -> EvalResult {
        let mut map = MapValue::new();
        for (key, value, optional) in entries {
            let key = self.eval(key)?;
            let key = Key::from_value(&key).ok_or_else(|| {
                EvalError::InvalidArgument(format!(
                    "unsupported map key type `{}`",
                    key.cel_type().name()
                ))
            })?;
            let value = self.eval(value)?;
            if *optional {
                match value {
                    Value::Optional(Some(inner)) => map.insert(key, unwrap_arc(inner))?,
                    Value::Optional(None) => {}
                    _ => return Err(no_overload("optional map entry")),
                }
            } else {
                map.insert(key, value)?;
            }
        }
        let map = Value::map(map);
        self.account(&map)?;
        Ok(map)
    }

    /// Evaluates `body` with `values` pushed as locals.
    fn with_locals(&mut self, values: &[Value], body: &GExpr) -> EvalResult {
        let len = self.locals.len();
        self.locals.extend(values.iter().cloned());
        let result = self.eval(body);
        self.locals.truncate(len);
        result
    }

    fn with_item(&mut self, item: &(Value, Value), two_vars: bool, body: &GExpr) -> EvalResult {
        if two_vars {
            self.with_locals(&[item.0.clone(), item.1.clone()], body)
        } else {
            self.with_locals(std::slice::from_ref(&item.0), body)
        }
    }

    fn tick(&mut self) -> Result<(), EvalError> {
        self.iterations += 1;
        if self.iterations > self.limits.max_iterations {
            return Err(EvalError::LimitExceeded(format!(
                "comprehensions exceed the limit of {} iterations",
                self.limits.max_iterations
            )));
        }
        Ok(())
    }

    fn quantifier(
        &mut self,
        range: &Value,
        two_vars: bool,
        body: &GExpr,
        absorbing: bool,
    ) -> EvalResult {
        let items = iteration_values(range, two_vars)?;
        let mut error: Option<EvalError> = None;
        for item in &items {
            self.tick()?;
            let failure = match self.with_item(item, two_vars, body) {
                Ok(Value::Bool(b)) if b == absorbing => return Ok(Value::Bool(b)),
                Ok(Value::Bool(_)) => continue,
                Ok(_) => no_overload(if absorbing { "_||_" } else { "_&&_" }),
                Err(EvalError::LimitExceeded(limit)) => {
                    return Err(EvalError::LimitExceeded(limit));
                }
                Err(e) => e,
            };
            error = Some(match error {
                Some(previous) => merge_failures(previous, failure),
                None => failure,
            });
        }
        match error {
            Some(e) => Err(e),
            None => Ok(Value::Bool(!absorbing)),
        }
    }

    fn exists_one(&mut self, range: &Value, two_vars: bool, body: &GExpr) -> EvalResult {
        let items = iteration_values(range, two_vars)?;
        let mut count = 0usize;
        for item in &items {
            self.tick()?;
            match self.with_item(item, two_vars, body)? {
                Value::Bool(true) => count += 1,
                Value::Bool(false) => {}
                _ => return Err(no_overload("exists_one")),
            }
        }
        Ok(Value::Bool(count == 1))
    }

    fn collect(
        &mut self,
        range: &Value,
        two_vars: bool,
        body: &GExpr,
        filter: Option<&GExpr>,
        mode: Collect,
    ) -> EvalResult {
        let items = iteration_values(range, two_vars)?;
        let mut list = Vec::new();
        let mut map = MapValue::new();
        for item in &items {
            self.tick()?;
            let predicate = match mode {
                Collect::Filter => Some(body),
                _ => filter,
            };
            if let Some(predicate) = predicate {
                match self.with_item(item, two_vars, predicate)? {
                    Value::Bool(true) => {}
                    Value::Bool(false) => continue,
                    _ => return Err(no_overload("filter")),
                }
            }
            match mode {
                Collect::Filter => list.push(item.0.clone()),
                Collect::List => list.push(self.with_item(item, two_vars, body)?),
                Collect::Map => {
                    let value = self.with_item(item, two_vars, body)?;
                    let key =
                        Key::from_value(&item.0).ok_or_else(|| no_overload("transformMap"))?;
                    map.insert(key, value)?;
                }
                Collect::MapEntry => match self.with_item(item, two_vars, body)? {
                    Value::Map(entry) => {
                        for (k, v) in entry.iter() {
                            map.insert(k.clone(), v.clone())?;
                        }
                    }
                    _ => return Err(no_overload("transformMapEntry")),
                },
            }
            if list.len() > self.limits.max_collection_len
                || map.len() > self.limits.max_collection_len
            {
                return Err(EvalError::LimitExceeded(format!(
                    "comprehension result exceeds the limit of {} elements",
                    self.limits.max_collection_len
                )));
            }
        }
        let result = match mode {
            Collect::Filter | Collect::List => Value::list(list),
            Collect::Map | Collect::MapEntry => Value::map(map),
        };
        self.account(&result)?;
        Ok(result)
    }

    fn sort_by(&mut self, range: &Value, two_vars: bool, body: &GExpr) -> EvalResult {
        let Value::List(items) = range else {
            return Err(no_overload("sortBy"));
        };
        let mut keyed = Vec::with_capacity(items.len());
        for item in items.iter() {
            self.tick()?;
            let key = self.with_item(&(item.clone(), Value::Null), two_vars, body)?;
            keyed.push((key, item.clone()));
        }
        functions::sort_by_keys(keyed).map(Value::list)
    }
}

/// The error of a variable chain none of whose names is present.
fn undeclared(var: &VarRef) -> EvalError {
    EvalError::UndeclaredReference(
        var.candidates
            .first()
            .map(|c| {
                let mut name = c.name.to_string();
                for f in &*c.path {
                    name.push('.');
                    name.push_str(&f.name);
                }
                name
            })
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::eval::{RestrictOutcome, eval_value};
    use crate::interp::functions::Core;
    use crate::program::OwnedRequest;

    fn compiled(src: &str) -> GExpr {
        compile(&wicket_grammar::parse(src).expect("test expression parses")).expect("compiles")
    }

    /// Every call node of `g`.
    fn calls<'g>(g: &'g GExpr, out: &mut Vec<&'g Callee>) {
        let mut visit = |e: &'g GExpr| calls(e, out);
        match g {
            GExpr::Const(_) | GExpr::Fail(_) | GExpr::Var(_) | GExpr::Local(..) => {}
            GExpr::HasInvalid => {}
            GExpr::Select { operand, .. } | GExpr::Not(operand) | GExpr::Neg(operand) => {
                visit(operand)
            }
            GExpr::Has(operand, _) => visit(operand),
            GExpr::Index { operand, index, .. } => {
                visit(operand);
                visit(index);
            }
            GExpr::And(a, b) | GExpr::Or(a, b) | GExpr::Binary(_, a, b) | GExpr::Bind(a, b) => {
                visit(a);
                visit(b);
            }
            GExpr::OptMap(a, b, _) => {
                visit(a);
                visit(b);
            }
            GExpr::Cond(a, b, c) => {
                visit(a);
                visit(b);
                visit(c);
            }
            GExpr::List(items) => items.iter().for_each(|(e, _)| visit(e)),
            GExpr::Map(entries) => entries.iter().for_each(|(k, v, _)| {
                visit(k);
                visit(v);
            }),
            GExpr::Loop {
                range,
                body,
                filter,
                ..
            } => {
                visit(range);
                visit(body);
                if let Some(f) = filter {
                    visit(f);
                }
            }
            GExpr::Call { f, target, args } => {
                out.push(f);
                match target {
                    Target::Expr(e) | Target::Chain(_, e) => calls(e, out),
                    Target::None | Target::Local(..) => {}
                }
                args.iter().for_each(|a| calls(a, out));
            }
        }
    }

    #[test]
    fn every_function_resolves_to_ids() {
        let mut names: Vec<&str> = Core::ALL.iter().map(|(_, n)| *n).collect();
        names.extend(ext::all_names());
        for name in names {
            let member = (!name.contains('.')).then(|| format!("x.{name}(1)"));
            for src in member.into_iter().chain([format!("{name}(1)")]) {
                let Ok(expr) = wicket_grammar::parse(&src) else {
                    continue;
                };
                let g = compile(&expr).expect("compiles");
                let mut found = Vec::new();
                calls(&g, &mut found);
                // Calls of existing functions resolve; a global call of a member-only name (and
                // the reverse) is an undeclared reference, decided at compile time too.
                // (`a.b(…)` also compiles the member call `b` on a variable `a`, tried first.)
                let exists = Core::from_name(name).is_some()
                    || if src.starts_with("x.") {
                        !ext::resolve_member(name).is_empty()
                    } else {
                        ext::resolve_global(name).is_some()
                    };
                assert_eq!(
                    found.iter().any(|f| f.is_resolved()),
                    exists,
                    "`{src}`: {g:?}"
                );
                for f in found.iter().filter(|f| f.is_resolved()) {
                    let debug = format!("{f:?}");
                    assert!(
                        !debug.contains(&format!("\"{name}\"")),
                        "`{src}` keeps the name: {debug}"
                    );
                }
            }
        }
    }

    #[test]
    fn unknown_functions_fail_without_a_lookup() {
        let g = compiled("nope(1)");
        let mut found = Vec::new();
        calls(&g, &mut found);
        assert!(!found[0].is_resolved());
        let view = OwnedRequest::default();
        assert!(matches!(
            eval(&g, &view, &Scratch::new()),
            Err(EvalError::UndeclaredReference(n)) if n == "nope"
        ));
    }

    #[test]
    fn variables_resolve_to_slots() {
        let GExpr::Var(var) = compiled("req.headers") else {
            panic!("a variable");
        };
        assert_eq!(var.candidates.len(), 1);
        assert_eq!(var.candidates[0].slot, Slot::ReqHeaders);
        let GExpr::Var(var) = compiled("vars.a.b") else {
            panic!("a variable");
        };
        let slots: Vec<Slot> = var.candidates.iter().map(|c| c.slot).collect();
        assert_eq!(slots, [Slot::Other, Slot::Other, Slot::Vars]);
        assert!(matches!(
            compiled("[1].map(x, x.y)"),
            GExpr::Loop { body, .. } if matches!(*body, GExpr::Local(0, _))
        ));
    }

    #[test]
    fn phase_state_reads_as_the_interpreter_reads_it() {
        let mut st = Scratch::new();
        st.vars
            .upsert(Key::String(Arc::from("v")), Value::string("set"));
        let mut result = MapValue::new();
        result.upsert(Key::String(Arc::from("url")), Value::string("/x"));
        st.set_result("url_rewrite", Value::map(result));
        st.set_restrict_ips(RestrictOutcome {
            deny: true,
            matched: None,
        });
        let view = OwnedRequest::parse("GET https://a.test/p?q=1").expect("valid request");
        for src in [
            "vars.v",
            "vars.missing",
            "vars",
            "has(vars.v)",
            "vars.v.x",
            "actions.ngrok.url_rewrite.url",
            "actions.ngrok.url_rewrite.nope",
            "actions.ngrok.restrict_ips.action",
            "actions.ngrok.rate_limit",
            "time.now != ''",
        ] {
            let expr = wicket_grammar::parse(src).expect("test expression parses");
            let g = compile(&expr).expect("compiles");
            let reference = format!("{:?}", eval_value(&expr, &view, &st));
            let ours = format!("{:?}", eval(&g, &view, &st));
            assert_eq!(reference, ours, "`{src}`");
        }
    }

    #[test]
    fn limits_are_counted_as_the_interpreter_counts_them() {
        let wide = format!(
            "[{0}].map(x, [{0}].map(y, [{0}].map(z, [{0}].map(w, w))))",
            (0..40).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
        );
        let view = OwnedRequest::default();
        let expr = wicket_grammar::parse(&wide).expect("parses");
        let g = compile(&expr).expect("compiles");
        let st = Scratch::new();
        assert_eq!(
            format!("{:?}", eval_value(&expr, &view, &st)),
            format!("{:?}", eval(&g, &view, &st))
        );
        assert!(matches!(
            eval(&g, &view, &st),
            Err(EvalError::LimitExceeded(_))
        ));
    }
}

#[cfg(test)]
mod proptests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::eval::eval_value;
    use crate::program::OwnedRequest;

    /// A request whose [`RequestView::other`] serves the interpreter proptest's variables.
    type View = crate::program::view::WithVariables<OwnedRequest>;

    fn view() -> View {
        let mut vars = HashMap::new();
        vars.insert(
            "x".to_owned(),
            Value::list(vec![Value::Int(1), Value::string("a")]),
        );
        let mut map = MapValue::new();
        map.upsert(Key::String("f".into()), Value::Uint(3));
        map.upsert(Key::Int(-1), Value::Null);
        vars.insert("m".to_owned(), Value::map(map));
        vars.insert("y".to_owned(), Value::Double(0.5));
        let req = OwnedRequest::parse("GET https://a.test/a/1?q=1&q=2")
            .expect("valid request")
            .with_header("x-a", "1")
            .with_header("cookie", "s=1")
            .with_client_ip("10.0.0.1".parse().expect("valid address"));
        View { req, vars }
    }

    /// Request variables to mix into the interpreter's generated expressions.
    const REQUEST_LEAVES: &[&str] = &[
        "req.method",
        "req.url.path",
        "req.url",
        "req.headers",
        "req.headers['x-a']",
        "req.url.query_params",
        "req.cookies",
        "vars",
        "vars.v",
        "conn.client_ip",
        "conn.tls.sni",
        "res.status_code",
        "actions.ngrok.url_rewrite.url",
        "size(req.url.path)",
        "req.url.port",
    ];

    fn mixed() -> impl Strategy<Value = String> {
        let expr = crate::interp::eval::proptests::expr;
        prop_oneof![
            expr(),
            (
                expr(),
                prop::sample::select(REQUEST_LEAVES),
                prop::sample::select(&["+", "==", "<", "in", "&&", "||"][..]),
            )
                .prop_map(|(a, leaf, op)| format!("({a}) {op} ({leaf})")),
            (prop::sample::select(REQUEST_LEAVES), expr())
                .prop_map(|(leaf, b)| format!("[{leaf}].exists(v, v == ({b}))")),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// The compiled form and the interpreter agree on value and error, message included.
        #[test]
        fn compiled_agrees_with_the_interpreter(src in mixed()) {
            let Ok(expr) = wicket_grammar::parse(&src) else {
                return Ok(());
            };
            let Ok(g) = compile(&expr) else {
                return Ok(());
            };
            let view = view();
            let mut st = Scratch::new();
            st.vars.upsert(Key::String(Arc::from("v")), Value::string("set"));
            let reference = format!("{:?}", eval_value(&expr, &view, &st));
            let ours = format!("{:?}", eval(&g, &view, &st));
            prop_assert_eq!(reference, ours, "`{}`", src);
        }
    }
}
