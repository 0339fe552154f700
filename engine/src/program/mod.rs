//! The compiled, immutable policy ([`Program`]) and what evaluating it yields ([`Outcome`]).
//!
//! `Program::eval` walks the candidate rules of a phase in document order: rules whose guard
//! (a conjunct on an input actions cannot change during the phase) rules them out are skipped
//! through per-phase indexes, so the result is exactly that of a linear reading. A runtime CEL
//! error ends the phase closed with [`Decision::Error`] naming the rule.

pub mod json;
pub mod view;

use std::collections::HashMap;
use std::sync::Arc;

use wicket_grammar::Expr;
use wicket_policy::Phase;

pub use crate::actions::BreakerToken;
pub use crate::actions::breaker::Upstream;
use crate::actions::{self, Action, Flow};
use crate::error::EvalError;
pub use crate::eval::Scratch;
use crate::eval::{self, Node, StrField};
use crate::value::{MapValue, Value};
pub use view::{OwnedRequest, RequestView};

/// Response headers: lower-case names and values.
pub type HeaderList = Arc<[(Arc<str>, Arc<str>)]>;

/// What the runtime must do with the request or connection after a phase.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Nothing terminated the phase: go on (to the upstream, or the next phase).
    Continue,
    /// `deny`: answer with this status and no body (TCP: close the connection).
    Deny {
        /// The HTTP status.
        status: u16,
    },
    /// `custom-response`: answer with this response (then run `on_http_response` on it).
    Respond {
        /// The HTTP status.
        status: u16,
        /// Response headers.
        headers: HeaderList,
        /// The body.
        body: Arc<str>,
    },
    /// `redirect`: answer with a redirect.
    Redirect {
        /// The 3xx status.
        status: u16,
        /// The `Location` header.
        location: Arc<str>,
        /// Extra response headers.
        headers: HeaderList,
    },
    /// An authentication failure or limit: answer with this status and headers
    /// (`basic-auth` 401 with `www-authenticate`, `restrict-ips` 403, `rate-limit` 429 with
    /// `retry-after`).
    Reject {
        /// The HTTP status.
        status: u16,
        /// Response headers.
        headers: HeaderList,
        /// The ngrok error code, when the spec names one (`ERR_NGROK_3203`).
        code: Option<&'static str>,
    },
    /// `close-connection` (or a TCP-phase deny): drop the connection.
    CloseConnection,
    /// `forward-internal`: hand the request or connection to an internal endpoint.
    Forward {
        /// The internal endpoint URL.
        url: Arc<str>,
        /// With `on_error: continue`, a failed forward resumes evaluation after this action
        /// ([`Program::resume`]).
        resume_on_error: Option<Resume>,
    },
    /// An action that needs I/O (`oauth`, `openid-connect`, `jwt-validation`, `verify-webhook`,
    /// `http-request`, `terminate-tls`): the runtime carries it out, records
    /// its result variables with [`Scratch::set_action_result`] and calls [`Program::resume`]
    /// unless the action terminated the request.
    External {
        /// The action type.
        kind: Arc<str>,
        /// Its config as written.
        config: Arc<crate::compile::ir::ConfigValue>,
        /// Where to resume.
        resume: Resume,
    },
    /// A runtime error (a CEL error, an interpolation failure): end the request with an error
    /// response naming the rule (fail closed).
    Error {
        /// The rule (`name`, or `on_http_request[2]`).
        rule: Arc<str>,
        /// What went wrong.
        message: String,
    },
}

impl Decision {
    /// Whether the phase ended here.
    #[must_use]
    pub fn terminates(&self) -> bool {
        !matches!(self, Decision::Continue)
    }
}

/// An action the runtime carries out, as listed by [`Program::external_actions`].
#[derive(Clone, Copy, Debug)]
pub struct ExternalAction<'p> {
    /// The resume point its [`Decision::External`] carries (phase, rule, next action).
    pub resume: Resume,
    /// The rule's label (`name`, or `on_http_request[2]`).
    pub rule: &'p Arc<str>,
    /// The action type.
    pub kind: &'p Arc<str>,
    /// Its config as written.
    pub config: &'p Arc<crate::compile::ir::ConfigValue>,
}

/// Where to resume evaluation after an external action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Resume {
    /// The phase.
    pub phase: Phase,
    /// The rule index in the phase.
    pub rule: u32,
    /// The index of the next action of that rule.
    pub action: u32,
}

/// A pass-through effect for the runtime to apply, in order.
#[derive(Clone, Debug)]
pub enum Effect {
    /// `add-headers`: append (replace for `host`) a header.
    AddHeader {
        /// Lower-case name.
        name: Arc<str>,
        /// Value.
        value: Arc<str>,
    },
    /// `remove-headers`: remove every value of a header.
    RemoveHeader {
        /// Lower-case name.
        name: Arc<str>,
    },
    /// `url-rewrite`: the request goes upstream with this URL.
    RewriteUrl {
        /// The new absolute URL.
        url: Arc<str>,
    },
    /// `log`: a structured event for the request log.
    Log {
        /// The metadata map.
        metadata: Value,
    },
    /// `compress-response`: negotiate compression with these algorithms.
    CompressResponse {
        /// The algorithms, in preference order.
        algorithms: Arc<[Arc<str>]>,
    },
}

/// The result of evaluating one phase.
#[derive(Debug)]
pub struct Outcome<'s> {
    /// How the phase ended.
    pub decision: Decision,
    /// The pass-through effects, in order.
    pub effects: &'s [Effect],
}

/// One compiled rule.
#[derive(Debug)]
pub(crate) struct Rule {
    pub label: Arc<str>,
    /// The conjunction of the rule's expressions.
    pub cond: Node,
    /// The expressions as written (desugared), for the reference reading and `--explain`.
    pub exprs: Vec<Expr>,
    /// The expressions' source texts.
    pub sources: Vec<String>,
    pub actions: Vec<Action>,
    /// The input the index guards the rule on, if any.
    pub guard: Option<&'static str>,
}

/// How one rule fared in an explained evaluation ([`Program::explain`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleResult {
    /// The index ruled it out without evaluating it: its guard on this input is false.
    SkippedByIndex(&'static str),
    /// Its expressions are not all true.
    NotMatched,
    /// It matched and its actions ran.
    Matched,
    /// Evaluating it failed; the phase ended closed.
    Error(String),
    /// An earlier rule ended the phase.
    NotReached,
}

/// The trace of one rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleTrace {
    /// The rule label.
    pub rule: Arc<str>,
    /// What happened to it.
    pub result: RuleResult,
    /// Each expression's source and value (or error), when it was evaluated.
    pub expressions: Vec<(String, Result<String, String>)>,
}

/// Per-phase rule indexes.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// Rules without a guard.
    pub always: Vec<u32>,
    /// Exact-value guards per field.
    pub exact: Vec<(StrField, FieldIndex)>,
    /// Path-prefix guards: prefix lengths present and the rules per prefix.
    pub prefix: Option<(Vec<usize>, FieldIndex)>,
    /// Port guards (`req.url.port == N`, `conn.server_port == N`).
    pub ports: Vec<(crate::eval::IntField, PortIndex)>,
    /// Client-address range guards (`inCidrRange(conn.client_ip, …)`, `inCidrRanges`).
    pub client_ip: Option<IpRangeIndex>,
}

/// The rules guarded on the client address being in a constant set of ranges: every range of
/// every guarded rule, sorted by first address, with the running maximum of last addresses so
/// that a lookup stops as soon as no earlier range can contain the address.
#[derive(Debug, Default)]
pub(crate) struct IpRangeIndex {
    pub v4: RangeList<u32>,
    pub v6: RangeList<u128>,
    /// Every rule guarded on the client address (candidates when it is absent).
    pub all: Vec<u32>,
}

/// Ranges `(first, last, rule)` sorted by `first`, and the maximum `last` up to each position.
#[derive(Debug)]
pub(crate) struct RangeList<T> {
    ranges: Vec<(T, T, u32)>,
    max_last: Vec<T>,
}

impl<T> Default for RangeList<T> {
    fn default() -> Self {
        Self {
            ranges: Vec::new(),
            max_last: Vec::new(),
        }
    }
}

impl<T: Copy + Ord> RangeList<T> {
    /// A list of the `(first, last, rule)` ranges.
    pub(crate) fn new(mut ranges: Vec<(T, T, u32)>) -> Self {
        ranges.sort_unstable();
        let mut max_last = Vec::with_capacity(ranges.len());
        let mut max: Option<T> = None;
        for r in &ranges {
            let m = max.map_or(r.1, |m| m.max(r.1));
            max = Some(m);
            max_last.push(m);
        }
        Self { ranges, max_last }
    }

    /// Appends the rules with a range containing `x` (possibly repeated).
    fn rules_containing(&self, x: T, out: &mut Vec<u32>) {
        let mut i = self.ranges.partition_point(|r| r.0 <= x);
        while i > 0 {
            i -= 1;
            if self.max_last[i] < x {
                break;
            }
            if self.ranges[i].1 >= x {
                out.push(self.ranges[i].2);
            }
        }
    }
}

impl IpRangeIndex {
    /// Appends the candidate rules for client address `ip` (`None`: absent, every guarded rule).
    fn candidates(&self, ip: Option<std::net::IpAddr>, out: &mut Vec<u32>) {
        match ip.map(|ip| ip.to_canonical()) {
            Some(std::net::IpAddr::V4(a)) => self.v4.rules_containing(u32::from(a), out),
            Some(std::net::IpAddr::V6(a)) => self.v6.rules_containing(u128::from(a), out),
            None => out.extend_from_slice(&self.all),
        }
    }
}

/// The rules guarded on one port field.
#[derive(Debug, Default)]
pub(crate) struct PortIndex {
    pub map: HashMap<i64, Vec<u32>>,
    /// Every rule guarded on this field (candidates when the field is absent).
    pub all: Vec<u32>,
}

/// The rules guarded on one field.
#[derive(Debug, Default)]
pub(crate) struct FieldIndex {
    pub map: HashMap<Box<str>, Vec<u32>>,
    /// Every rule guarded on this field (candidates when the field is absent).
    pub all: Vec<u32>,
}

impl Index {
    pub(crate) fn is_trivial(&self) -> bool {
        self.exact.is_empty()
            && self.prefix.is_none()
            && self.ports.is_empty()
            && self.client_ip.is_none()
    }
}

#[derive(Debug, Default)]
pub(crate) struct PhaseProgram {
    pub rules: Vec<Rule>,
    pub index: Index,
}

/// A compiled policy: immutable, `Send + Sync`, shared by all workers.
#[derive(Debug)]
pub struct Program {
    pub(crate) phases: [PhaseProgram; 4],
    pub(crate) shared: Arc<actions::Shared>,
}

fn phase_index(phase: Phase) -> usize {
    match phase {
        Phase::TcpConnect => 0,
        Phase::HttpRequest => 1,
        Phase::HttpResponse => 2,
        Phase::EventStreamMessage => 3,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Compiled,
    Reference,
}

/// CEL `&&` over the values of a rule's expressions: false wins over errors.
fn reference_match<V: RequestView + ?Sized>(
    exprs: &[Expr],
    view: &V,
    st: &Scratch,
) -> Result<bool, EvalError> {
    let mut error = None;
    for e in exprs {
        match eval::eval_value(e, view, st) {
            Ok(Value::Bool(true)) => {}
            Ok(Value::Bool(false)) => return Ok(false),
            Ok(_) => {
                error.get_or_insert(EvalError::NoMatchingOverload {
                    function: "_&&_".to_owned(),
                });
            }
            Err(e) => {
                error.get_or_insert(e);
            }
        }
    }
    error.map_or(Ok(true), Err)
}

impl Program {
    /// The number of rules of `phase`.
    #[must_use]
    pub fn rule_count(&self, phase: Phase) -> usize {
        self.phases[phase_index(phase)].rules.len()
    }

    /// Evaluates `phase` for a request.
    pub fn eval<'s, V: RequestView + ?Sized>(
        &self,
        phase: Phase,
        view: &V,
        scratch: &'s mut Scratch,
    ) -> Outcome<'s> {
        scratch.reset();
        let decision = self.run_compiled(phase, view, scratch);
        Outcome {
            decision,
            effects: &scratch.effects,
        }
    }

    /// Evaluates `phase` by the plain reading of the policy: every rule in order, each
    /// expression through the reference interpreter, no index. The oracle for the compiled
    /// evaluation ([`Program::eval`] must give the same outcome).
    pub fn eval_reference<'s, V: RequestView + ?Sized>(
        &self,
        phase: Phase,
        view: &V,
        scratch: &'s mut Scratch,
    ) -> Outcome<'s> {
        scratch.reset();
        let decision = self.run(phase, view, scratch, 0, 0, Mode::Reference);
        Outcome {
            decision,
            effects: &scratch.effects,
        }
    }

    /// Evaluates `phase` like [`Program::eval`] and reports, for every rule, whether the index
    /// skipped it, the value of each expression and whether it matched.
    pub fn explain<'s, V: RequestView + ?Sized>(
        &self,
        phase: Phase,
        view: &V,
        scratch: &'s mut Scratch,
    ) -> (Outcome<'s>, Vec<RuleTrace>) {
        scratch.reset();
        let mut trace = Vec::new();
        let decision =
            self.run_traced(phase, view, scratch, 0, 0, Mode::Compiled, Some(&mut trace));
        let ph = &self.phases[phase_index(phase)];
        for rule in ph.rules.iter().skip(trace.len()) {
            trace.push(RuleTrace {
                rule: rule.label.clone(),
                result: RuleResult::NotReached,
                expressions: Vec::new(),
            });
        }
        (
            Outcome {
                decision,
                effects: &scratch.effects,
            },
            trace,
        )
    }

    /// Every action of the program the runtime carries out ([`Decision::External`]), with the
    /// [`Resume`] point its decision carries: the runtime prepares a handler for each at load
    /// time (so a bad config is refused before any request) and finds it by that key.
    pub fn external_actions(&self) -> Vec<ExternalAction<'_>> {
        let mut out = Vec::new();
        for phase in [
            Phase::TcpConnect,
            Phase::HttpRequest,
            Phase::HttpResponse,
            Phase::EventStreamMessage,
        ] {
            let ph = &self.phases[phase_index(phase)];
            for (r, rule) in ph.rules.iter().enumerate() {
                for (a, action) in rule.actions.iter().enumerate() {
                    if let Action::External { kind, config } = action {
                        out.push(ExternalAction {
                            resume: Resume {
                                phase,
                                rule: u32::try_from(r).unwrap_or(u32::MAX),
                                action: u32::try_from(a + 1).unwrap_or(u32::MAX),
                            },
                            rule: &rule.label,
                            kind,
                            config,
                        });
                    }
                }
            }
        }
        out
    }

    /// Continues a phase after an external action ([`Decision::External`]) or a failed
    /// `forward-internal` with `on_error: continue`. Effects produced before the suspension are
    /// kept in `scratch` and included in the outcome.
    pub fn resume<'s, V: RequestView + ?Sized>(
        &self,
        at: Resume,
        view: &V,
        scratch: &'s mut Scratch,
    ) -> Outcome<'s> {
        scratch.candidates.clear();
        let decision = self.run(at.phase, view, scratch, at.rule, at.action, Mode::Compiled);
        Outcome {
            decision,
            effects: &scratch.effects,
        }
    }

    /// Reports what became of a request a `circuit-breaker` admitted (each token of
    /// [`Scratch::breaker_tokens`] once): the upstream's status, [`Upstream::Failed`] when it
    /// gave no response, [`Upstream::NotSent`] when the request was answered without it. A token
    /// of another program is ignored.
    pub fn report(&self, token: BreakerToken, result: Upstream) {
        if let Some((key, config)) = self.shared.breaker_list.get(token.index as usize) {
            self.shared
                .breakers
                .report(key, config, token.ticket, result);
        }
    }

    /// [`Program::report`] of an upstream response with `status` (5xx counts as a failure).
    pub fn report_response(&self, token: BreakerToken, status: u16) {
        self.report(token, Upstream::Response(status));
    }

    fn candidates<V: RequestView + ?Sized>(
        index: &Index,
        view: &V,
        st: &mut Scratch,
        out: &mut Vec<u32>,
    ) {
        out.extend_from_slice(&index.always);
        for (field, fi) in &index.exact {
            match eval::read_str(*field, view, st) {
                Some(value) => {
                    if let Some(rules) = fi.map.get(value) {
                        out.extend_from_slice(rules);
                    }
                }
                None => out.extend_from_slice(&fi.all),
            }
        }
        for (field, pi) in &index.ports {
            match eval::int_field(*field, view, st) {
                Some(port) => {
                    if let Some(rules) = pi.map.get(&port) {
                        out.extend_from_slice(rules);
                    }
                }
                None => out.extend_from_slice(&pi.all),
            }
        }
        if let Some(ii) = &index.client_ip {
            ii.candidates(view.client_ip(), out);
        }
        if let Some((lens, fi)) = &index.prefix {
            if let Some(path) = eval::read_str(StrField::Path, view, st) {
                for &len in lens {
                    if len > path.len() {
                        break;
                    }
                    if let Some(p) = path.get(..len) {
                        if let Some(rules) = fi.map.get(p) {
                            out.extend_from_slice(rules);
                        }
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
    }

    fn run<V: RequestView + ?Sized>(
        &self,
        phase: Phase,
        view: &V,
        st: &mut Scratch,
        start_rule: u32,
        start_action: u32,
        mode: Mode,
    ) -> Decision {
        self.run_traced(phase, view, st, start_rule, start_action, mode, None)
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "internal; the public entry points are small"
    )]
    fn run_traced<V: RequestView + ?Sized>(
        &self,
        phase: Phase,
        view: &V,
        st: &mut Scratch,
        start_rule: u32,
        start_action: u32,
        mode: Mode,
        mut trace: Option<&mut Vec<RuleTrace>>,
    ) -> Decision {
        let ph = &self.phases[phase_index(phase)];
        let indexed = mode == Mode::Compiled && !ph.index.is_trivial();
        let mut cands = std::mem::take(&mut st.candidates);
        if indexed {
            cands.clear();
            Self::candidates(&ph.index, view, st, &mut cands);
        }
        // Walk the candidates only; when tracing, walk every rule and report the skipped ones.
        let walk_candidates = indexed && trace.is_none();
        let count = if walk_candidates {
            cands.len()
        } else {
            ph.rules.len()
        };
        let mut decision = Decision::Continue;
        let order = (0..count).map(|i| {
            if walk_candidates {
                cands[i]
            } else {
                u32::try_from(i).unwrap_or(u32::MAX)
            }
        });
        for r in order {
            if r < start_rule {
                continue;
            }
            let Some(rule) = ph.rules.get(r as usize) else {
                continue;
            };
            if let Some(t) = trace.as_deref_mut() {
                if indexed && cands.binary_search(&r).is_err() {
                    t.push(RuleTrace {
                        rule: rule.label.clone(),
                        result: RuleResult::SkippedByIndex(rule.guard.unwrap_or("index")),
                        expressions: Vec::new(),
                    });
                    continue;
                }
                let expressions = rule
                    .sources
                    .iter()
                    .zip(&rule.exprs)
                    .map(|(src, e)| {
                        let v = eval::eval_value(e, view, st)
                            .map(|v| crate::actions::template::display(&v))
                            .map_err(|e| e.to_string());
                        (src.clone(), v)
                    })
                    .collect();
                t.push(RuleTrace {
                    rule: rule.label.clone(),
                    result: RuleResult::NotMatched,
                    expressions,
                });
            }
            let first_action = if r == start_rule && start_action > 0 {
                start_action as usize
            } else {
                let matched = match mode {
                    Mode::Compiled => eval::eval_bool(&rule.cond, view, st),
                    Mode::Reference => reference_match(&rule.exprs, view, st),
                };
                match matched {
                    Ok(true) => {
                        if let Some(last) = trace.as_deref_mut().and_then(|t| t.last_mut()) {
                            last.result = RuleResult::Matched;
                        }
                        0
                    }
                    Ok(false) => continue,
                    Err(e) => {
                        if let Some(last) = trace.as_deref_mut().and_then(|t| t.last_mut()) {
                            last.result = RuleResult::Error(e.to_string());
                        }
                        decision = Decision::Error {
                            rule: rule.label.clone(),
                            message: format!("expression failed: {e}"),
                        };
                        break;
                    }
                }
            };
            if let Some(d) = self.run_actions(phase, r, rule, first_action, view, st) {
                decision = d;
                break;
            }
        }
        st.candidates = cands;
        decision
    }

    /// Runs the actions of matched rule `r` from `first_action`; `Some` when one ended the
    /// phase.
    fn run_actions<V: RequestView + ?Sized>(
        &self,
        phase: Phase,
        r: u32,
        rule: &Rule,
        first_action: usize,
        view: &V,
        st: &mut Scratch,
    ) -> Option<Decision> {
        st.touched = true;
        for (a, action) in rule.actions.iter().enumerate().skip(first_action) {
            let resume = Resume {
                phase,
                rule: r,
                action: u32::try_from(a + 1).unwrap_or(u32::MAX),
            };
            match actions::run(action, &self.shared, view, st, resume) {
                Ok(Flow::Continue) => {}
                Ok(Flow::Stop(d)) => return Some(d),
                Err(e) => {
                    return Some(Decision::Error {
                        rule: rule.label.clone(),
                        message: format!("action `{}` failed: {e}", action.kind()),
                    });
                }
            }
        }
        None
    }

    /// Rule `r` from its condition: `Some` when it ended the phase.
    #[inline(always)]
    fn step<V: RequestView + ?Sized>(
        &self,
        phase: Phase,
        r: u32,
        rule: &Rule,
        view: &V,
        st: &mut Scratch,
    ) -> Option<Decision> {
        let matched = match eval::truth(&rule.cond, view, st) {
            eval::Truth::False => false,
            eval::Truth::True => true,
            // Rare: evaluate again for the error itself.
            eval::Truth::Error => match eval::eval_bool(&rule.cond, view, st) {
                Ok(b) => b,
                Err(e) => {
                    return Some(Decision::Error {
                        rule: rule.label.clone(),
                        message: format!("expression failed: {e}"),
                    });
                }
            },
        };
        if matched {
            self.run_actions(phase, r, rule, 0, view, st)
        } else {
            None
        }
    }

    /// [`Program::eval`]'s walk: the candidate rules in order, no trace.
    fn run_compiled<V: RequestView + ?Sized>(
        &self,
        phase: Phase,
        view: &V,
        st: &mut Scratch,
    ) -> Decision {
        let ph = &self.phases[phase_index(phase)];
        if ph.index.is_trivial() {
            for (r, rule) in (0u32..).zip(&ph.rules) {
                if let Some(d) = self.step(phase, r, rule, view, st) {
                    return d;
                }
            }
            return Decision::Continue;
        }
        let mut cands = std::mem::take(&mut st.candidates);
        cands.clear();
        Self::candidates(&ph.index, view, st, &mut cands);
        let mut decision = Decision::Continue;
        for &r in &cands {
            if let Some(rule) = ph.rules.get(r as usize) {
                if let Some(d) = self.step(phase, r, rule, view, st) {
                    decision = d;
                    break;
                }
            }
        }
        st.candidates = cands;
        decision
    }
}

impl Scratch {
    /// The `vars.*` set during the last evaluation.
    #[must_use]
    pub fn vars(&self) -> &MapValue {
        &self.vars
    }

    /// The result variables (`actions.ngrok.<ns>`) recorded during the last evaluation, in the
    /// order the actions ran (a `restrict-ips` result, built on demand, comes last).
    #[must_use]
    pub fn action_results(&self) -> Vec<(&'static str, Value)> {
        let mut out = self.results.clone();
        if let Some(outcome) = self.restrict_ips {
            out.push((crate::eval::RESTRICT_IPS, outcome.to_value()));
        }
        out
    }

    /// The `circuit-breaker` admissions of the last request-phase evaluation: report each with
    /// [`Program::report`] once the request's fate is known (a half-open breaker admits one
    /// probe and waits for its report).
    #[must_use]
    pub fn breaker_tokens(&self) -> &[BreakerToken] {
        &self.breakers
    }

    /// Takes the `circuit-breaker` admissions out (see [`Scratch::breaker_tokens`]), so that a
    /// resumed evaluation does not list them again.
    pub fn take_breaker_tokens(&mut self) -> std::vec::Drain<'_, BreakerToken> {
        self.breakers.drain(..)
    }

    /// Records the result variables of an external action before [`Program::resume`].
    pub fn set_action_result(&mut self, namespace: &'static str, value: Value) {
        self.touched = true;
        self.set_result(namespace, value);
    }

    /// A copy of what the phase has set so far (`vars.*`, `actions.ngrok.*`), for an external
    /// action whose templates read them while the phase is suspended.
    #[must_use]
    pub fn phase_state(&self) -> PhaseState {
        PhaseState {
            vars: self.vars.clone(),
            results: self.action_results(),
        }
    }

    /// Scratch space holding `state`: expressions evaluated over it (with
    /// [`crate::eval::eval_value`]) see those `vars.*` and `actions.ngrok.*`.
    #[must_use]
    pub fn from_phase_state(state: &PhaseState) -> Self {
        let mut s = Self::new();
        s.vars = state.vars.clone();
        for (ns, v) in &state.results {
            s.set_result(ns, v.clone());
        }
        s.touched = true;
        s
    }

    /// The effects of the current evaluation so far, in order (those of an evaluation suspended
    /// at an external action included).
    #[must_use]
    pub fn effects(&self) -> &[Effect] {
        &self.effects
    }
}

/// `vars.*` and `actions.ngrok.*` as a suspended phase left them ([`Scratch::phase_state`]):
/// plain values, shareable across threads, unlike the [`Scratch`] they come from.
#[derive(Clone, Debug, Default)]
pub struct PhaseState {
    /// `vars.*`.
    pub vars: MapValue,
    /// `actions.ngrok.<ns>`, in the order the actions ran.
    pub results: Vec<(&'static str, Value)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Program>();
        fn send<T: Send>() {}
        send::<Scratch>();
    }
}
