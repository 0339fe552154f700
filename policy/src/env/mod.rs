//! The traffic policy environment as data: every variable of spec §4 and every function of
//! spec §2 (ngrok helpers, CEL standard functions and operators, and the CEL extensions), with
//! types and the phases where each exists.
//!
//! The tables are plain `static` slices ([`VARIABLES`], [`FUNCTIONS`]) shared by the type
//! checker, the engine (which resolves names to [`VarId`]/[`FnId`]) and the docs/schema export.
//! [`Env`] adds indexed lookups.

mod functions;
mod types;
mod variables;

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

pub use functions::FUNCTIONS;
pub use types::{ObjectDef, Type, TypeSpec};
pub use variables::{RETRY_CONDITION_VARIABLES, VARIABLES};

use crate::Phase;

/// A set of phases, as a bit set.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PhaseSet(u8);

impl PhaseSet {
    /// No phase.
    pub const EMPTY: PhaseSet = PhaseSet(0);
    /// `on_tcp_connect`.
    pub const TCP: PhaseSet = PhaseSet(1);
    /// `on_http_request`.
    pub const REQ: PhaseSet = PhaseSet(2);
    /// `on_http_response`.
    pub const RES: PhaseSet = PhaseSet(4);
    /// `on_event_stream_message`.
    pub const SSE: PhaseSet = PhaseSet(8);
    /// Every phase.
    pub const ALL: PhaseSet = PhaseSet(15);
    /// The phases that have a request (`req.*`): request, response and event-stream phases
    /// (an event-stream message belongs to a response of a request (inferred)).
    pub const HTTP: PhaseSet = PhaseSet(2 | 4 | 8);
    /// The phases that have a response (`res.*`): response and event-stream phases.
    pub const RESPONSE: PhaseSet = PhaseSet(4 | 8);

    /// The set holding only `phase`.
    #[must_use]
    pub const fn of(phase: Phase) -> PhaseSet {
        PhaseSet(match phase {
            Phase::TcpConnect => 1,
            Phase::HttpRequest => 2,
            Phase::HttpResponse => 4,
            Phase::EventStreamMessage => 8,
        })
    }

    /// Both sets together.
    #[must_use]
    pub const fn union(self, other: PhaseSet) -> PhaseSet {
        PhaseSet(self.0 | other.0)
    }

    /// Whether `phase` is in the set.
    #[must_use]
    pub const fn contains(self, phase: Phase) -> bool {
        self.0 & PhaseSet::of(phase).0 != 0
    }

    /// The phases in the set, in evaluation order.
    pub fn iter(self) -> impl Iterator<Item = Phase> {
        Phase::ALL.into_iter().filter(move |p| self.contains(*p))
    }

    /// The phases as a human list: `on_http_request, on_http_response`.
    #[must_use]
    pub fn describe(self) -> String {
        let names: Vec<_> = self.iter().map(|p| format!("`{}`", p.as_str())).collect();
        names.join(", ")
    }
}

impl fmt::Debug for PhaseSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// Identifies a variable: its position in [`VARIABLES`] (the table is append-only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VarId(pub u32);

/// Identifies one function overload: its position in [`FUNCTIONS`] (append-only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FnId(pub u32);

/// Whether a name is in ngrok's reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VarStatus {
    /// In the variable reference.
    Documented,
    /// Seen in docs examples only (spec §4 "referenced in examples but not documented");
    /// accepted with a warning.
    Undocumented,
    /// A Wicket extension, not in ngrok's reference (e.g. `conn.tls.client.fingerprint`).
    Extension,
}

/// One variable of the environment.
#[derive(Debug)]
pub struct VarDef {
    /// The dotted name (`req.url.path`). Names with `[` describe element fields
    /// (`req.cookies[k][i].name`) and are not addressable.
    pub name: &'static str,
    /// Its CEL type.
    pub ty: TypeSpec,
    /// The phases where it exists.
    pub phases: PhaseSet,
    /// What it is.
    pub doc: &'static str,
    /// Documented or seen only in examples.
    pub status: VarStatus,
}

impl VarDef {
    /// Whether the name can be written as a dotted name in an expression.
    #[must_use]
    pub fn is_addressable(&self) -> bool {
        !self.name.contains('[')
    }

    /// The `actions.ngrok.<ns>` namespace of an action result variable.
    #[must_use]
    pub fn action_namespace(&self) -> Option<&'static str> {
        let rest = self.name.strip_prefix("actions.ngrok.")?;
        Some(rest.split(['.', '[']).next().unwrap_or(rest))
    }
}

/// How a function is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FnKind {
    /// `f(args)`, including qualified names such as `base64.encode(x)`.
    Global,
    /// `target.f(args)`: the receiver type is the first entry of [`FnDef::params`].
    Member,
    /// An operator (`_+_`, `_[_]`, `@in`, `!_`, …), named as in cel-go.
    Operator,
}

/// Where a function comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FnOrigin {
    /// CEL standard definitions.
    Standard,
    /// ngrok's documented macros and functions (spec §2.2).
    Ngrok,
    /// A cel-go extension library (strings, lists, math, encoders, network, optionals).
    Extension(&'static str),
    /// Named only in the TPU price list or docs examples (spec §2.4); accepted with a warning.
    Undocumented,
}

/// One overload of a function or operator.
#[derive(Debug)]
pub struct FnDef {
    /// The name (`startsWith`, `base64.decode`, `_<_`).
    pub name: &'static str,
    /// Global, member or operator.
    pub kind: FnKind,
    /// Parameter types; for a member function the first is the receiver.
    pub params: &'static [TypeSpec],
    /// When set, the last parameter may repeat (`math.greatest(1, 2, 3)`).
    pub variadic: bool,
    /// The result type.
    pub result: TypeSpec,
    /// The phases where the function can be called.
    pub phases: PhaseSet,
    /// Where it comes from.
    pub origin: FnOrigin,
    /// What it does.
    pub doc: &'static str,
}

impl FnDef {
    /// The number of arguments excluding a member call's receiver.
    #[must_use]
    pub fn arity(&self) -> usize {
        match self.kind {
            FnKind::Member => self.params.len().saturating_sub(1),
            FnKind::Global | FnKind::Operator => self.params.len(),
        }
    }

    /// The signature as shown in messages: `string.startsWith(string) -> bool`.
    #[must_use]
    pub fn signature(&self) -> String {
        let show = |ps: &[TypeSpec]| {
            let mut s: Vec<String> = ps.iter().map(ToString::to_string).collect();
            if self.variadic {
                if let Some(last) = s.last_mut() {
                    last.push_str(", …");
                }
            }
            s.join(", ")
        };
        match self.kind {
            FnKind::Member => match self.params.split_first() {
                Some((recv, rest)) => {
                    format!("{recv}.{}({}) -> {}", self.name, show(rest), self.result)
                }
                None => format!("{}() -> {}", self.name, self.result),
            },
            FnKind::Global | FnKind::Operator => {
                format!("{}({}) -> {}", self.name, show(self.params), self.result)
            }
        }
    }
}

/// The `actions.ngrok.<ns>` namespace where an action type (`basic-auth`) publishes its
/// result variables (`basic_auth`), or `None` for actions without result variables
/// (`deny`, `custom-response`, `circuit-breaker`, …). The namespace is the type with `-` → `_`,
/// except `compress-response` → `compress` and `openid-connect` → `oidc` (spec §4).
#[must_use]
pub fn result_namespace(action_type: &str) -> Option<&'static str> {
    let ns = match action_type {
        "compress-response" => "compress",
        "openid-connect" => "oidc",
        other => {
            let ns = other.replace('-', "_");
            return VARIABLES
                .iter()
                .filter_map(VarDef::action_namespace)
                .find(|n| *n == ns);
        }
    };
    Some(ns)
}

/// The whole environment as JSON, for docs and editor tooling: `{"variables": [...],
/// "functions": [...]}` with each entry's name, CEL type or signature, phases and doc.
#[must_use]
pub fn to_json() -> serde_json::Value {
    let phases = |p: PhaseSet| -> Vec<&'static str> { p.iter().map(Phase::as_str).collect() };
    let variables: Vec<serde_json::Value> = VARIABLES
        .iter()
        .map(|v| {
            serde_json::json!({
                "name": v.name,
                "type": v.ty.to_string(),
                "phases": phases(v.phases),
                "documented": v.status == VarStatus::Documented,
                "extension": v.status == VarStatus::Extension,
                "doc": v.doc,
            })
        })
        .collect();
    let functions: Vec<serde_json::Value> = FUNCTIONS
        .iter()
        .filter(|f| f.kind != FnKind::Operator)
        .map(|f| {
            let origin = match f.origin {
                FnOrigin::Standard => "standard",
                FnOrigin::Ngrok => "ngrok",
                FnOrigin::Extension(lib) => lib,
                FnOrigin::Undocumented => "undocumented",
            };
            serde_json::json!({
                "name": f.name,
                "member": f.kind == FnKind::Member,
                "signature": f.signature(),
                "phases": phases(f.phases),
                "origin": origin,
                "doc": f.doc,
            })
        })
        .collect();
    serde_json::json!({ "variables": variables, "functions": functions })
}

/// `cookie`: a request or response cookie (`req.cookies[k][i]`, `getReqCookie(name)`).
pub static COOKIE: ObjectDef = ObjectDef {
    name: "cookie",
    fields: &[
        ("name", TypeSpec::String),
        ("value", TypeSpec::String),
        ("domain", TypeSpec::String),
        ("expires", TypeSpec::Timestamp),
        ("http_only", TypeSpec::Bool),
        ("max_age", TypeSpec::Duration),
        ("path", TypeSpec::String),
        ("same_site", TypeSpec::String),
        ("secure", TypeSpec::Bool),
        (
            "unparsed_attributes",
            TypeSpec::Map(&TypeSpec::String, &TypeSpec::String),
        ),
    ],
    doc: "An HTTP cookie. Request cookies carry `name` and `value`; response cookies also carry their attributes.",
};

/// `Extension`: an X.509 certificate extension (`conn.tls.client.extensions[i]`).
pub static EXTENSION: ObjectDef = ObjectDef {
    name: "Extension",
    fields: &[
        ("id", TypeSpec::String),
        ("critical", TypeSpec::Bool),
        ("value", TypeSpec::Bytes),
    ],
    doc: "An X.509 certificate extension.",
};

/// `net.IP` (network extension): an IP address.
pub static NET_IP: ObjectDef = ObjectDef {
    name: "net.IP",
    fields: &[],
    doc: "An IP address (network extension `ip(s)`).",
};

/// `net.CIDR` (network extension): an IP prefix.
pub static NET_CIDR: ObjectDef = ObjectDef {
    name: "net.CIDR",
    fields: &[],
    doc: "An IP prefix (network extension `cidr(s)`).",
};

/// The environment: indexed access to [`VARIABLES`] and [`FUNCTIONS`].
#[derive(Debug)]
pub struct Env {
    vars: HashMap<&'static str, VarId>,
    funcs: HashMap<&'static str, Vec<FnId>>,
}

static ENV: LazyLock<Env> = LazyLock::new(|| {
    let mut vars = HashMap::with_capacity(VARIABLES.len());
    for (i, v) in VARIABLES.iter().enumerate() {
        vars.entry(v.name).or_insert(VarId(index_u32(i)));
    }
    let mut funcs: HashMap<&'static str, Vec<FnId>> = HashMap::new();
    for (i, f) in FUNCTIONS.iter().enumerate() {
        funcs.entry(f.name).or_default().push(FnId(index_u32(i)));
    }
    Env { vars, funcs }
});

fn index_u32(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

impl Env {
    /// The shared environment.
    #[must_use]
    pub fn get() -> &'static Env {
        &ENV
    }

    /// The variable named `name` (dotted, as in [`VarDef::name`]).
    #[must_use]
    pub fn variable(name: &str) -> Option<&'static VarDef> {
        Env::variable_id(name).map(Env::var)
    }

    /// The id of the variable named `name`.
    #[must_use]
    pub fn variable_id(name: &str) -> Option<VarId> {
        ENV.vars.get(name).copied()
    }

    /// Resolves a dotted name given as segments (`["req", "url", "path", "x"]`) to the
    /// variable named by its longest prefix, with the number of segments that prefix covers
    /// (the rest are field selections on the variable's value). `conn.client_ip` and
    /// `conn.client_ip.geo.location.city` are both variables, so the longest match wins, as
    /// in CEL's resolution of qualified names.
    #[must_use]
    pub fn resolve<S: AsRef<str>>(segments: &[S]) -> Option<(VarId, usize)> {
        let mut name = String::new();
        let mut best = None;
        for (i, seg) in segments.iter().enumerate() {
            if i > 0 {
                name.push('.');
            }
            name.push_str(seg.as_ref());
            if let Some(id) = Env::variable_id(&name).filter(|id| Env::var(*id).is_addressable()) {
                best = Some((id, i + 1));
            }
        }
        best
    }

    /// The variable with id `id`.
    ///
    /// # Panics
    /// Never for an id obtained from this module; a forged id out of range panics.
    #[must_use]
    pub fn var(id: VarId) -> &'static VarDef {
        &VARIABLES[id.0 as usize]
    }

    /// Every overload named `name` (`startsWith`, `base64.decode`, `_<_`), with its id.
    pub fn functions(name: &str) -> impl Iterator<Item = (FnId, &'static FnDef)> {
        ENV.funcs
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|id| (*id, Env::function(*id)))
    }

    /// The overload with id `id`.
    ///
    /// # Panics
    /// Never for an id obtained from this module; a forged id out of range panics.
    #[must_use]
    pub fn function(id: FnId) -> &'static FnDef {
        &FUNCTIONS[id.0 as usize]
    }

    /// Whether some overload is named `name`.
    #[must_use]
    pub fn has_function(name: &str) -> bool {
        ENV.funcs.contains_key(name)
    }

    /// The addressable variables that exist in `phase`.
    pub fn for_phase(phase: Phase) -> impl Iterator<Item = &'static VarDef> {
        VARIABLES
            .iter()
            .filter(move |v| v.phases.contains(phase) && v.is_addressable())
    }

    /// The function overloads callable in `phase`.
    pub fn functions_for_phase(phase: Phase) -> impl Iterator<Item = &'static FnDef> {
        FUNCTIONS.iter().filter(move |f| f.phases.contains(phase))
    }

    /// Every distinct function name (for "did you mean").
    pub fn function_names() -> impl Iterator<Item = &'static str> {
        ENV.funcs.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_counts_match_the_spec() {
        let documented = VARIABLES
            .iter()
            .filter(|v| v.status == VarStatus::Documented)
            .count();
        let results = VARIABLES
            .iter()
            .filter(|v| v.name.starts_with("actions.ngrok."))
            .count();
        // 206 documented variables + 241 action result variables + `vars`.
        assert_eq!(results, 241);
        assert_eq!(documented, 206 + 241 + 1);
        let body = Env::variable("actions.ngrok.http_request.res.body").map(|v| v.ty);
        assert_eq!(body, Some(TypeSpec::Dyn));
    }

    #[test]
    fn names_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for v in VARIABLES {
            assert!(seen.insert(v.name), "duplicate variable {}", v.name);
        }
    }

    #[test]
    fn spec_types_are_followed() {
        let ty = |n: &str| Env::variable(n).map(|v| v.ty.to_type().to_string());
        assert_eq!(
            ty("req.headers").as_deref(),
            Some("map(string, list(string))")
        );
        assert_eq!(
            ty("req.url.query_params").as_deref(),
            Some("map(string, list(string))")
        );
        assert_eq!(
            ty("req.cookies").as_deref(),
            Some("map(string, list(cookie))")
        );
        assert_eq!(ty("conn.client_ip").as_deref(), Some("string"));
        assert_eq!(ty("time.now").as_deref(), Some("string"));
        assert_eq!(ty("conn.geo.latitude").as_deref(), Some("string"));
        assert_eq!(ty("res.status_code").as_deref(), Some("int"));
        assert_eq!(ty("conn.ts.start").as_deref(), Some("timestamp"));
    }

    #[test]
    fn phases_follow_the_namespaces() {
        let res = Env::variable("res.status_code").map(|v| v.phases);
        assert_eq!(res, Some(PhaseSet::RESPONSE));
        assert!(Env::for_phase(Phase::TcpConnect).all(|v| !v.name.starts_with("req.")));
        assert!(Env::for_phase(Phase::HttpRequest).any(|v| v.name == "req.url.path"));
        let basic = Env::variable("actions.ngrok.basic_auth.credentials.authorized");
        assert_eq!(basic.map(|v| v.phases), Some(PhaseSet::REQ));
        assert_eq!(basic.and_then(VarDef::action_namespace), Some("basic_auth"));
    }

    #[test]
    fn functions_have_overloads() {
        assert!(Env::functions("startsWith").count() >= 1);
        assert!(Env::functions("_<_").count() >= 10);
        assert_eq!(Env::functions("no_such").count(), 0);
        let sig = Env::functions("inCidrRange")
            .map(|(_, f)| f.signature())
            .next();
        assert_eq!(sig.as_deref(), Some("inCidrRange(string, string) -> bool"));
    }

    #[test]
    fn every_documented_function_is_in_the_table() {
        // Spec §2.2 (macros `has`, `all`, `exists`, `exists_one`, `filter`, `map`, `sortBy`
        // are syntax and checked by the checker).
        let documented = [
            "getReqHeader",
            "hasReqHeader",
            "getReqCookie",
            "hasReqCookie",
            "getQueryParam",
            "hasQueryParam",
            "getResHeader",
            "hasResHeader",
            "getResCookie",
            "hasResCookie",
            "inCidrRange",
            "inCidrRanges",
            "base64.decode",
            "base64.encode",
            "basic_auth.encode",
            "size",
            "hash.crc32",
            "hash.crc64",
            "hash.md5",
            "hash.sha1",
            "hash.sha256",
            "hash.sha512",
            "hash.xxhash64",
            "md5",
            "sha1",
            "sha256",
            "sha512",
            "crc32",
            "crc64",
            "xxhash64",
            "json.decode",
            "json.encode",
            "encodeJson",
            "encodeQueryString",
            "queryString.decode",
            "queryString.encode",
            "join",
            "slice",
            "flatten",
            "sort",
            "distinct",
            "lists.range",
            "rand.double",
            "rand.int",
            "secrets.get",
            "matches",
            "startsWith",
            "endsWith",
            "contains",
            "charAt",
            "indexOf",
            "lastIndexOf",
            "format",
            "split",
            "replace",
            "substring",
            "trim",
            "reverse",
            "lowerAscii",
            "upperAscii",
            "lower",
            "upper",
            "decodeBase64",
            "encodeBase64",
            "decodeJson",
            "decodeQueryString",
            "escapeUrl",
            "unescapeUrl",
            "url.escape",
            "url.unescape",
            "parseUrl",
            "url.parse",
            "isJson",
            "isQueryString",
            "isURL",
            "isPrivateIp",
            "strings.quote",
            "getDate",
            "getDayOfMonth",
            "getDayOfWeek",
            "getDayOfYear",
            "getFullYear",
            "getHours",
            "getMinutes",
            "getSeconds",
            "getMilliseconds",
            "getMonth",
        ];
        for name in documented {
            assert!(Env::has_function(name), "missing {name}");
        }
    }

    #[test]
    fn function_rows_are_well_formed() {
        for f in FUNCTIONS {
            assert!(f.phases != PhaseSet::EMPTY, "{} has no phase", f.name);
            if f.kind == FnKind::Member {
                assert!(!f.params.is_empty(), "member {} has no receiver", f.name);
            }
            if f.kind != FnKind::Operator {
                assert!(!f.doc.is_empty(), "{} has no doc", f.name);
            }
        }
        // Overloads of one name and kind never repeat the same parameter list.
        for (i, a) in FUNCTIONS.iter().enumerate() {
            for b in &FUNCTIONS[i + 1..] {
                assert!(
                    !(a.name == b.name && a.kind == b.kind && a.params == b.params),
                    "duplicate overload {}",
                    a.signature()
                );
            }
        }
    }

    #[test]
    fn resolve_takes_the_longest_prefix() {
        let name = |segs: &[&str]| Env::resolve(segs).map(|(id, n)| (Env::var(id).name, n));
        assert_eq!(name(&["conn", "client_ip"]), Some(("conn.client_ip", 2)));
        assert_eq!(
            name(&["conn", "client_ip", "geo", "location", "city"]),
            Some(("conn.client_ip.geo.location.city", 5))
        );
        assert_eq!(
            name(&["req", "url", "path", "x"]),
            Some(("req.url.path", 3))
        );
        assert_eq!(name(&["vars", "a", "b"]), Some(("vars", 1)));
        assert_eq!(name(&["req"]), None);
        assert_eq!(name(&["nope", "x"]), None);
    }

    #[test]
    fn json_dump_lists_everything() {
        let j = to_json();
        let vars = j["variables"].as_array().map_or(0, Vec::len);
        assert_eq!(vars, VARIABLES.len());
        let first = &j["variables"][0];
        assert_eq!(first["name"], "conn.bytes_in");
        assert_eq!(first["type"], "int");
        let starts = j["functions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["name"] == "startsWith");
        assert_eq!(
            starts.map(|f| f["signature"].clone()),
            Some(serde_json::json!("string.startsWith(string) -> bool"))
        );
    }

    #[test]
    fn result_namespaces() {
        assert_eq!(result_namespace("basic-auth"), Some("basic_auth"));
        assert_eq!(result_namespace("compress-response"), Some("compress"));
        assert_eq!(result_namespace("openid-connect"), Some("oidc"));
        assert_eq!(result_namespace("terminate-tls"), Some("terminate_tls"));
        assert_eq!(result_namespace("deny"), None);
        assert_eq!(result_namespace("circuit-breaker"), None);
    }

    #[test]
    fn ids_round_trip() {
        let id = Env::variable_id("req.method");
        assert_eq!(id.map(|id| Env::var(id).name), Some("req.method"));
    }
}
