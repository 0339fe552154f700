//! The hot-path evaluator: compiled condition nodes over a borrowed [`RequestView`], with
//! per-worker [`Scratch`] space. Specialised nodes read request fields as `&str` and never
//! allocate; [`Node::General`] evaluates a [`general::GExpr`] (allocation allowed), whose names
//! were all resolved at compile time, with the values the reference interpreter sees through
//! `ViewActivation`.

pub mod general;
pub mod iptable;

use std::cell::OnceCell;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use wicket_grammar::Expr;

use crate::error::EvalError;
use crate::interp::{self, Activation};
use crate::program::Effect;
use crate::program::view::RequestView;
use crate::value::{Key, MapValue, Value};
use ipnet::IpNet;
use iptable::IpTable;

/// A string-valued built-in field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StrField {
    /// `req.method`
    Method,
    /// `req.url.scheme`
    Scheme,
    /// `req.host`
    Host,
    /// `req.url.host`
    UrlHost,
    /// `req.url.path`
    Path,
    /// `req.url.query`
    Query,
    /// `req.version`
    Version,
    /// `req.user_agent` (first `user-agent` header value, empty when absent)
    UserAgent,
    /// `conn.tls.sni`
    Sni,
    /// `conn.tls.version`
    TlsVersion,
    /// `req.url` (composed)
    Url,
    /// `req.url.authority` (composed)
    Authority,
    /// `req.url.uri` (composed)
    Uri,
    /// `conn.client_ip` (formatted)
    ClientIp,
    /// `conn.server_ip` (formatted)
    ServerIp,
}

impl StrField {
    const ALL: [(&'static str, StrField); 15] = [
        ("req.method", StrField::Method),
        ("req.url.scheme", StrField::Scheme),
        ("req.host", StrField::Host),
        ("req.url.host", StrField::UrlHost),
        ("req.url.path", StrField::Path),
        ("req.url.query", StrField::Query),
        ("req.version", StrField::Version),
        ("req.user_agent", StrField::UserAgent),
        ("conn.tls.sni", StrField::Sni),
        ("conn.tls.version", StrField::TlsVersion),
        ("req.url", StrField::Url),
        ("req.url.authority", StrField::Authority),
        ("req.url.uri", StrField::Uri),
        ("conn.client_ip", StrField::ClientIp),
        ("conn.server_ip", StrField::ServerIp),
    ];

    /// The field of a variable name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<StrField> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    /// The variable name.
    #[must_use]
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("", |(n, _)| n)
    }

    /// Whether a `url-rewrite` can change the field.
    #[must_use]
    pub fn is_url(self) -> bool {
        matches!(
            self,
            StrField::Scheme
                | StrField::UrlHost
                | StrField::Path
                | StrField::Query
                | StrField::Url
                | StrField::Authority
                | StrField::Uri
        )
    }

    fn composed_slot(self) -> Option<usize> {
        match self {
            StrField::Url => Some(0),
            StrField::Authority => Some(1),
            StrField::Uri => Some(2),
            StrField::ClientIp => Some(3),
            StrField::ServerIp => Some(4),
            _ => None,
        }
    }
}

/// An integer-valued built-in field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IntField {
    /// `req.url.port` (the scheme's default port when the URL has none)
    UrlPort,
    /// `conn.client_port`
    ClientPort,
    /// `conn.server_port`
    ServerPort,
    /// `res.status_code`
    Status,
}

impl IntField {
    /// The field of a variable name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<IntField> {
        Some(match name {
            "req.url.port" => IntField::UrlPort,
            "conn.client_port" => IntField::ClientPort,
            "conn.server_port" => IntField::ServerPort,
            "res.status_code" => IntField::Status,
            _ => return None,
        })
    }
}

/// An address-valued built-in field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpField {
    /// `conn.client_ip`
    Client,
    /// `conn.server_ip`
    Server,
}

/// A string comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `startsWith`
    Prefix,
    /// `endsWith`
    Suffix,
    /// `contains`
    Contains,
}

/// An integer comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// A compiled boolean condition.
#[derive(Debug)]
pub enum Node {
    /// A constant (folded at compile time).
    Const(bool),
    /// A constant error (folded at compile time): evaluating it fails.
    ConstErr(EvalError),
    /// All must be true (CEL `&&`: false wins over errors).
    And(Vec<Node>),
    /// One must be true (CEL `||`: true wins over errors).
    Or(Vec<Node>),
    /// Negation.
    Not(Box<Node>),
    /// A string field compared with a constant.
    Str {
        /// The field.
        field: StrField,
        /// The comparison.
        op: StrOp,
        /// The constant.
        arg: Box<str>,
    },
    /// A string field in a constant set.
    StrIn {
        /// The field.
        field: StrField,
        /// The set.
        set: HashSet<Box<str>>,
    },
    /// A string field matched against a precompiled regex (unanchored search).
    StrRegex {
        /// The field.
        field: StrField,
        /// The regex.
        re: regex::Regex,
    },
    /// An address field in a constant CIDR table.
    Ip {
        /// The field.
        field: IpField,
        /// The merged ranges.
        table: IpTable,
    },
    /// An integer field compared with a constant.
    Int {
        /// The field.
        field: IntField,
        /// The comparison.
        op: CmpOp,
        /// The constant.
        arg: i64,
    },
    /// `'name' in req.headers` / `res.headers` (name lower-case).
    HeaderHas {
        /// Response headers rather than request headers.
        response: bool,
        /// The header name.
        name: Box<str>,
    },
    /// Anything else: a general expression, its names resolved (or, for `cel.block` only, left
    /// to the reference interpreter — see [`general::Compiled`]).
    General(Box<general::Compiled>),
}

impl Node {
    /// Estimated evaluation cost, to order conjuncts and disjuncts.
    #[must_use]
    pub fn cost(&self) -> u32 {
        match self {
            Node::Const(_) | Node::ConstErr(_) => 0,
            Node::Int { .. } => 1,
            Node::Str { field, op, .. } => {
                let base = if field.composed_slot().is_some() {
                    4
                } else {
                    1
                };
                base + u32::from(*op == StrOp::Contains) * 2
            }
            Node::StrIn { .. } | Node::HeaderHas { .. } => 3,
            Node::Ip { .. } => 4,
            Node::StrRegex { .. } => 20,
            Node::Not(n) => n.cost(),
            Node::And(ns) | Node::Or(ns) => ns.iter().map(Node::cost).sum(),
            // The same cost for both, so that the order of conjuncts (and which error a
            // failing conjunction reports) does not depend on how an expression is evaluated.
            Node::General(_) => 100,
        }
    }

    /// Whether evaluating the node can allocate (it contains a [`Node::General`]).
    #[must_use]
    pub fn is_general(&self) -> bool {
        match self {
            Node::General(_) => true,
            Node::Not(n) => n.is_general(),
            Node::And(ns) | Node::Or(ns) => ns.iter().any(Node::is_general),
            _ => false,
        }
    }
}

/// URL parts after a `url-rewrite`.
#[derive(Clone, Debug, Default)]
pub(crate) struct UrlParts {
    pub scheme: String,
    pub host: String,
    pub port: Option<u16>,
    pub path: String,
    pub query: String,
}

/// The result namespace of `restrict-ips`.
pub(crate) const RESTRICT_IPS: &str = "restrict_ips";

/// What a `restrict-ips` run decided, kept as plain data until a rule reads
/// `actions.ngrok.restrict_ips`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RestrictOutcome {
    /// The request is denied (matched a deny range, or no allow range).
    pub deny: bool,
    /// The range that decided, if any.
    pub matched: Option<IpNet>,
}

impl RestrictOutcome {
    /// The result variables: `action` (`allow` or `deny`) and `matched_cidr` (empty when no
    /// range matched).
    pub(crate) fn to_value(self) -> Value {
        let mut map = MapValue::new();
        map.upsert(
            Key::String(Arc::from("action")),
            Value::string(if self.deny { "deny" } else { "allow" }),
        );
        map.upsert(
            Key::String(Arc::from("matched_cidr")),
            Value::string(self.matched.map(|n| n.to_string()).unwrap_or_default()),
        );
        Value::map(map)
    }
}

/// Reusable per-worker space for one evaluation at a time: lazily parsed request fields, the
/// phase's variables and action results, and the outcome's effects. Reuse one per worker thread
/// so that steady-state evaluation does not allocate.
#[derive(Debug, Default)]
pub struct Scratch {
    pub(crate) vars: MapValue,
    pub(crate) results: Vec<(&'static str, Value)>,
    /// The outcome of the last `restrict-ips` run, turned into `actions.ngrok.restrict_ips` only
    /// when something reads it, so that the common allowed or denied request allocates nothing.
    pub(crate) restrict_ips: Option<RestrictOutcome>,
    pub(crate) url: Option<UrlParts>,
    composed: [String; 5],
    ready: u8,
    headers: OnceCell<Value>,
    response_headers: OnceCell<Value>,
    query_params: OnceCell<Value>,
    cookies: OnceCell<Value>,
    /// Whether the general path may have filled the caches above since the last reset.
    general_used: std::cell::Cell<bool>,
    pub(crate) effects: Vec<Effect>,
    pub(crate) candidates: Vec<u32>,
    /// `circuit-breaker` admissions to report once the upstream answered.
    pub(crate) breakers: Vec<crate::actions::BreakerToken>,
    /// Whether an action may have written the fields above since the last reset (vars,
    /// results, URL, effects, admissions).
    pub(crate) touched: bool,
}

impl Scratch {
    /// Empty scratch space.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets everything of the previous evaluation, keeping the buffers.
    pub(crate) fn reset(&mut self) {
        self.ready = 0;
        if self.general_used.get() {
            self.headers.take();
            self.response_headers.take();
            self.query_params.take();
            self.cookies.take();
            self.general_used.set(false);
        }
        // What only actions write: left alone when no action ran (the common request).
        if self.touched {
            if !self.vars.is_empty() {
                self.vars = MapValue::new();
            }
            self.results.clear();
            self.restrict_ips = None;
            self.url = None;
            self.effects.clear();
            self.candidates.clear();
            self.breakers.clear();
            self.touched = false;
        }
    }

    /// Notes that the general path may fill the lazily parsed caches.
    fn mark_general(&self) {
        self.general_used.set(true);
    }

    /// The value of action result namespace `ns`, if the action ran in this phase.
    pub(crate) fn result(&self, ns: &str) -> Option<Value> {
        if ns == RESTRICT_IPS {
            if let Some(outcome) = self.restrict_ips {
                return Some(outcome.to_value());
            }
        }
        self.results
            .iter()
            .find(|(n, _)| *n == ns)
            .map(|(_, v)| v.clone())
    }

    /// Records the result variables of an action (replacing an earlier run's).
    pub(crate) fn set_result(&mut self, ns: &'static str, value: Value) {
        if ns == RESTRICT_IPS {
            self.restrict_ips = None;
        }
        match self.results.iter_mut().find(|(n, _)| *n == ns) {
            Some(slot) => slot.1 = value,
            None => self.results.push((ns, value)),
        }
    }

    /// Records the outcome of a `restrict-ips` run (replacing an earlier run's) without building
    /// its result variables.
    pub(crate) fn set_restrict_ips(&mut self, outcome: RestrictOutcome) {
        self.results.retain(|(n, _)| *n != RESTRICT_IPS);
        self.restrict_ips = Some(outcome);
    }

    /// The URL as later rules see it (after any `url-rewrite`).
    pub(crate) fn url_parts<'a, V: RequestView + ?Sized>(
        &'a self,
        view: &'a V,
    ) -> (&'a str, &'a str, Option<u16>, &'a str, &'a str) {
        match &self.url {
            Some(u) => (&u.scheme, &u.host, u.port, &u.path, &u.query),
            None => (
                view.scheme(),
                view.url_host(),
                view.url_port(),
                view.path(),
                view.query(),
            ),
        }
    }
}

/// Writes the text of a composed field.
fn compose_into<V: RequestView + ?Sized>(
    field: StrField,
    view: &V,
    st: &Scratch,
    out: &mut String,
) -> bool {
    out.clear();
    let (scheme, host, port, path, query) = st.url_parts(view);
    let authority = |out: &mut String| {
        if host.contains(':') {
            // An IPv6 literal.
            out.push('[');
            out.push_str(host);
            out.push(']');
        } else {
            out.push_str(host);
        }
        if let Some(p) = port {
            let _ = write!(out, ":{p}");
        }
    };
    let uri = |out: &mut String| {
        out.push_str(path);
        if !query.is_empty() {
            out.push('?');
            out.push_str(query);
        }
    };
    match field {
        StrField::Url => {
            out.push_str(scheme);
            out.push_str("://");
            authority(out);
            uri(out);
        }
        StrField::Authority => authority(out),
        StrField::Uri => uri(out),
        StrField::ClientIp | StrField::ServerIp => {
            let ip = if field == StrField::ClientIp {
                view.client_ip()
            } else {
                view.server_ip()
            };
            match ip {
                Some(ip) => {
                    let _ = write!(out, "{ip}");
                }
                None => return false,
            }
        }
        _ => return false,
    }
    true
}

/// Makes a composed field readable through [`str_field`] (at most once per evaluation).
#[inline]
fn prepare<V: RequestView + ?Sized>(field: StrField, view: &V, st: &mut Scratch) {
    if let Some(slot) = field.composed_slot() {
        if st.ready & (1u8 << slot) == 0 {
            compose_slot(field, slot, view, st);
        }
    }
}

#[inline(never)]
fn compose_slot<V: RequestView + ?Sized>(field: StrField, slot: usize, view: &V, st: &mut Scratch) {
    let mut buf = std::mem::take(&mut st.composed[slot]);
    let ok = compose_into(field, view, st, &mut buf);
    st.composed[slot] = buf;
    st.ready |= 1u8 << slot;
    if !ok {
        st.composed[slot].clear();
        st.composed[slot].push('\0');
    }
}

/// The value of a string field (composed fields must be [`prepare`]d). `None` when absent.
#[inline]
fn str_field<'a, V: RequestView + ?Sized>(
    field: StrField,
    view: &'a V,
    st: &'a Scratch,
) -> Option<&'a str> {
    Some(match field {
        StrField::Method => view.method(),
        StrField::Scheme => st.url.as_ref().map_or_else(|| view.scheme(), |u| &u.scheme),
        StrField::Host => view.host(),
        StrField::UrlHost => st.url.as_ref().map_or_else(|| view.url_host(), |u| &u.host),
        StrField::Path => st.url.as_ref().map_or_else(|| view.path(), |u| &u.path),
        StrField::Query => st.url.as_ref().map_or_else(|| view.query(), |u| &u.query),
        StrField::Version => view.version(),
        StrField::UserAgent => view.header("user-agent", 0).unwrap_or(""),
        StrField::Sni => view.tls_sni()?,
        StrField::TlsVersion => view.tls_version()?,
        StrField::Url
        | StrField::Authority
        | StrField::Uri
        | StrField::ClientIp
        | StrField::ServerIp => {
            let slot = field.composed_slot()?;
            let s = st.composed[slot].as_str();
            if s == "\0" {
                return None;
            }
            s
        }
    })
}

/// The value of a string field, preparing it when needed, for the actions.
pub(crate) fn read_str<'a, V: RequestView + ?Sized>(
    field: StrField,
    view: &'a V,
    st: &'a mut Scratch,
) -> Option<&'a str> {
    prepare(field, view, st);
    str_field(field, view, st)
}

/// The value of an integer field (`None` when absent).
pub(crate) fn int_field<V: RequestView + ?Sized>(
    field: IntField,
    view: &V,
    st: &Scratch,
) -> Option<i64> {
    match field {
        // Without an explicit port the scheme's default port is reported, so that comparisons
        // such as `req.url.port == 8080` do not fail closed on every default-port request
        // **[inferred]**.
        IntField::UrlPort => {
            let (scheme, _, port, _, _) = st.url_parts(view);
            port.or(match scheme {
                "https" => Some(443),
                "http" => Some(80),
                _ => None,
            })
            .map(i64::from)
        }
        IntField::ClientPort => view.client_port().map(i64::from),
        IntField::ServerPort => view.server_port().map(i64::from),
        IntField::Status => view.response_status().map(i64::from),
    }
}

fn ip_field<V: RequestView + ?Sized>(field: IpField, view: &V) -> Option<IpAddr> {
    match field {
        IpField::Client => view.client_ip(),
        IpField::Server => view.server_ip(),
    }
}

fn absent(name: &str) -> EvalError {
    EvalError::UndeclaredReference(name.to_owned())
}

fn not_bool(op: &str) -> EvalError {
    EvalError::NoMatchingOverload {
        function: op.to_owned(),
    }
}

/// Evaluates a condition.
///
/// # Errors
/// The CEL error the condition evaluates to.
pub fn eval_bool<V: RequestView + ?Sized>(
    node: &Node,
    view: &V,
    st: &mut Scratch,
) -> Result<bool, EvalError> {
    // The common nodes are handled here, inline; the others out of line, so that this
    // function stays small (its prologue runs for every node).
    match node {
        Node::Const(b) => Ok(*b),
        Node::And(nodes) => {
            let mut error = None;
            for n in nodes {
                match eval_leaf(n, view, st) {
                    Ok(true) => {}
                    Ok(false) => return Ok(false),
                    Err(e) => {
                        if error.is_none() {
                            error = Some(e);
                        }
                    }
                }
            }
            error.map_or(Ok(true), Err)
        }
        Node::Or(nodes) => {
            let mut error = None;
            for n in nodes {
                match eval_leaf(n, view, st) {
                    Ok(true) => return Ok(true),
                    Ok(false) => {}
                    Err(e) => {
                        if error.is_none() {
                            error = Some(e);
                        }
                    }
                }
            }
            error.map_or(Ok(false), Err)
        }
        _ => eval_leaf(node, view, st),
    }
}

/// A condition's value without its error: the hot path returns this small value and only a
/// condition that fails is evaluated again by [`eval_bool`] for the error itself (evaluation is
/// deterministic and side-effect free: the second run sees the same fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Truth {
    /// `false`.
    False,
    /// `true`.
    True,
    /// An error (ask [`eval_bool`] which).
    Error,
}

/// [`eval_bool`] without the error value (see [`Truth`]).
pub(crate) fn truth<V: RequestView + ?Sized>(node: &Node, view: &V, st: &mut Scratch) -> Truth {
    match node {
        Node::And(nodes) => {
            let mut error = false;
            for n in nodes {
                match truth_leaf(n, view, st) {
                    Truth::True => {}
                    Truth::False => return Truth::False,
                    Truth::Error => error = true,
                }
            }
            if error { Truth::Error } else { Truth::True }
        }
        Node::Or(nodes) => {
            let mut error = false;
            for n in nodes {
                match truth_leaf(n, view, st) {
                    Truth::True => return Truth::True,
                    Truth::False => {}
                    Truth::Error => error = true,
                }
            }
            if error { Truth::Error } else { Truth::False }
        }
        _ => truth_leaf(node, view, st),
    }
}

#[inline(always)]
fn truth_leaf<V: RequestView + ?Sized>(node: &Node, view: &V, st: &mut Scratch) -> Truth {
    let b = match node {
        Node::Const(b) => *b,
        Node::Str { field, op, arg } => {
            prepare(*field, view, st);
            let Some(s) = str_field(*field, view, st) else {
                return Truth::Error;
            };
            match op {
                StrOp::Eq => s == &**arg,
                StrOp::Ne => s != &**arg,
                StrOp::Prefix => s.starts_with(&**arg),
                StrOp::Suffix => s.ends_with(&**arg),
                StrOp::Contains => s.contains(&**arg),
            }
        }
        _ => match eval_other(node, view, st) {
            Ok(b) => b,
            Err(_) => return Truth::Error,
        },
    };
    if b { Truth::True } else { Truth::False }
}

/// A node under `&&` / `||`: string comparisons inline, the rest through [`eval_other`].
#[inline]
fn eval_leaf<V: RequestView + ?Sized>(
    node: &Node,
    view: &V,
    st: &mut Scratch,
) -> Result<bool, EvalError> {
    match node {
        Node::Str { field, op, arg } => {
            prepare(*field, view, st);
            match str_field(*field, view, st) {
                Some(s) => Ok(match op {
                    StrOp::Eq => s == &**arg,
                    StrOp::Ne => s != &**arg,
                    StrOp::Prefix => s.starts_with(&**arg),
                    StrOp::Suffix => s.ends_with(&**arg),
                    StrOp::Contains => s.contains(&**arg),
                }),
                None => Err(absent(field.name())),
            }
        }
        Node::Const(b) => Ok(*b),
        _ => eval_other(node, view, st),
    }
}

#[inline(never)]
fn eval_other<V: RequestView + ?Sized>(
    node: &Node,
    view: &V,
    st: &mut Scratch,
) -> Result<bool, EvalError> {
    match node {
        Node::Const(b) => Ok(*b),
        Node::ConstErr(e) => Err(e.clone()),
        Node::And(_) | Node::Or(_) | Node::Str { .. } => eval_bool(node, view, st),
        Node::Not(n) => eval_bool(n, view, st).map(|b| !b),
        Node::StrIn { field, set } => {
            prepare(*field, view, st);
            let s = str_field(*field, view, st).ok_or_else(|| absent(field.name()))?;
            Ok(set.contains(s))
        }
        Node::StrRegex { field, re } => {
            prepare(*field, view, st);
            let s = str_field(*field, view, st).ok_or_else(|| absent(field.name()))?;
            Ok(re.is_match(s))
        }
        Node::Ip { field, table } => {
            let ip = ip_field(*field, view).ok_or_else(|| absent("conn.client_ip"))?;
            Ok(table.contains(ip))
        }
        Node::Int { field, op, arg } => {
            let v = int_field(*field, view, st).ok_or_else(|| absent("port"))?;
            Ok(match op {
                CmpOp::Eq => v == *arg,
                CmpOp::Ne => v != *arg,
                CmpOp::Lt => v < *arg,
                CmpOp::Le => v <= *arg,
                CmpOp::Gt => v > *arg,
                CmpOp::Ge => v >= *arg,
            })
        }
        Node::HeaderHas { response, name } => {
            if *response {
                if view.response_status().is_none() {
                    return Err(absent("res.headers"));
                }
                Ok(view.response_header_count(name) > 0)
            } else {
                Ok(view.header_count(name) > 0)
            }
        }
        Node::General(expr) => match expr.eval(view, st)? {
            Value::Bool(b) => Ok(b),
            _ => Err(not_bool("_&&_")),
        },
    }
}

/// Evaluates any expression with the reference interpreter over the request.
///
/// # Errors
/// The CEL error the expression evaluates to.
pub fn eval_value<V: RequestView + ?Sized>(
    expr: &Expr,
    view: &V,
    st: &Scratch,
) -> Result<Value, EvalError> {
    st.mark_general();
    let act = ViewActivation { view, st };
    interp::eval(expr, &act)
}

/// The variables of the environment, read from a request view and the phase's state.
pub(crate) struct ViewActivation<'a, V: ?Sized> {
    pub view: &'a V,
    pub st: &'a Scratch,
}

fn string(s: &str) -> Value {
    Value::String(Arc::from(s))
}

/// Calls a visitor with every (name, value) header pair.
type ForEachHeader<'a> = &'a dyn Fn(&mut dyn FnMut(&str, &str));

fn header_map(each: ForEachHeader<'_>) -> Value {
    let mut entries: Vec<(String, Vec<Value>)> = Vec::new();
    each(
        &mut |name, value| match entries.iter_mut().find(|(n, _)| n == name) {
            Some((_, values)) => values.push(string(value)),
            None => entries.push((name.to_owned(), vec![string(value)])),
        },
    );
    let mut map = MapValue::new();
    for (name, values) in entries {
        map.upsert(Key::String(Arc::from(name)), Value::list(values));
    }
    Value::map(map)
}

fn decode_component(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

fn query_map(query: &str) -> Value {
    let mut entries: Vec<(String, Vec<Value>)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (decode_component(k), decode_component(v));
        match entries.iter_mut().find(|(n, _)| *n == k) {
            Some((_, values)) => values.push(string(&v)),
            None => entries.push((k, vec![string(&v)])),
        }
    }
    let mut map = MapValue::new();
    for (name, values) in entries {
        map.upsert(Key::String(Arc::from(name)), Value::list(values));
    }
    Value::map(map)
}

fn cookie_map<V: RequestView + ?Sized>(view: &V) -> Value {
    let mut entries: Vec<(String, Vec<Value>)> = Vec::new();
    let count = view.header_count("cookie");
    for i in 0..count {
        let Some(header) = view.header("cookie", i) else {
            continue;
        };
        for part in header.split(';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            let mut cookie = MapValue::new();
            cookie.upsert(Key::String(Arc::from("name")), string(name));
            cookie.upsert(Key::String(Arc::from("value")), string(value));
            let cookie = Value::map(cookie);
            match entries.iter_mut().find(|(n, _)| n == name) {
                Some((_, values)) => values.push(cookie),
                None => entries.push((name.to_owned(), vec![cookie])),
            }
        }
    }
    let mut map = MapValue::new();
    for (name, values) in entries {
        map.upsert(Key::String(Arc::from(name)), Value::list(values));
    }
    Value::map(map)
}

impl<V: RequestView + ?Sized> Activation for ViewActivation<'_, V> {
    fn resolve(&self, name: &str) -> Option<Value> {
        general::Slot::of(name).read(name, self.view, self.st)
    }
}
