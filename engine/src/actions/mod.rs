//! Actions: compiled from their configs once, run per request without I/O. Actions that need
//! I/O stop the phase with [`Decision::External`] for the runtime to carry out.

pub mod breaker;
pub mod jwt;
pub mod ratelimit;
pub(crate) mod template;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use wicket_policy::Phase;

use crate::compile::expr::desugar;
use crate::compile::ir::ConfigValue;
use crate::error::EvalError;
use crate::eval::iptable::{IpTable, parse_policy_cidr};
use crate::eval::{RestrictOutcome, Scratch, StrField, UrlParts, read_str};
use crate::program::view::RequestView;
use crate::program::{Decision, Effect, HeaderList, Resume};
use crate::value::{Key, MapValue, Value};
use breaker::{BreakerConfig, BreakerVerdict, CircuitBreakerStore};
use ratelimit::{RateLimitStore, RateVerdict};
use template::{Tmpl, ValueTmpl, to_text};

/// State shared by all evaluations of a program.
#[derive(Debug)]
pub(crate) struct Shared {
    pub rate_limits: Arc<dyn RateLimitStore>,
    pub breakers: Arc<dyn CircuitBreakerStore>,
    /// Every `circuit-breaker` action of the program by [`CircuitBreaker::index`]: its state
    /// key and settings, for [`crate::Program::report`].
    pub breaker_list: Vec<(Arc<str>, BreakerConfig)>,
}

/// What an action tells the rule loop.
#[derive(Debug)]
pub(crate) enum Flow {
    Continue,
    Stop(Decision),
}

/// Header templates, with the rendered list prepared when no value interpolates.
#[derive(Debug, Default)]
pub(crate) struct Headers {
    list: Vec<(Arc<str>, Tmpl)>,
    fixed: Option<HeaderList>,
}

impl Headers {
    fn new(list: Vec<(Arc<str>, Tmpl)>) -> Self {
        let fixed = list
            .iter()
            .map(|(n, t)| t.as_literal().map(|v| (n.clone(), v.clone())))
            .collect::<Option<Vec<_>>>()
            .map(Arc::from);
        Headers { list, fixed }
    }
}

/// A compiled action.
#[derive(Debug)]
pub(crate) enum Action {
    Deny {
        status: u16,
        tcp: bool,
    },
    Respond {
        status: u16,
        headers: Headers,
        body: Tmpl,
    },
    Close,
    Redirect {
        from: Option<Pattern>,
        to: Tmpl,
        status: u16,
        headers: Headers,
    },
    Rewrite {
        from: Option<Pattern>,
        to: Tmpl,
    },
    AddHeaders {
        headers: Headers,
    },
    RemoveHeaders {
        names: Vec<Arc<str>>,
        result: Value,
    },
    SetVars {
        vars: Vec<(Arc<str>, ValueTmpl)>,
    },
    Log {
        metadata: ValueTmpl,
    },
    RestrictIps(Box<RestrictIps>),
    BasicAuth(Box<BasicAuth>),
    RateLimit(Box<RateLimit>),
    CircuitBreaker(Box<CircuitBreaker>),
    Jwt(Box<JwtAction>),
    Compress {
        algorithms: Arc<[Arc<str>]>,
    },
    Forward {
        url: Tmpl,
        on_error_continue: bool,
    },
    External {
        kind: Arc<str>,
        config: Arc<ConfigValue>,
    },
}

#[derive(Debug)]
pub(crate) enum Pattern {
    Fixed(regex::Regex),
    Dynamic(Tmpl),
}

#[derive(Debug)]
pub(crate) struct RestrictIps {
    enforce: bool,
    tcp: bool,
    allow: CidrSet,
    deny: CidrSet,
    /// The (empty) headers of the 403, built once.
    no_headers: HeaderList,
}

#[derive(Debug)]
enum CidrSet {
    Fixed(IpTable),
    Dynamic(Vec<Tmpl>),
}

#[derive(Debug)]
pub(crate) struct BasicAuth {
    credentials: Vec<Tmpl>,
    enforce: bool,
    challenge: HeaderList,
}

#[derive(Debug)]
pub(crate) struct JwtAction {
    validation: jwt::JwtValidation,
    challenge: HeaderList,
}

/// A compiled `circuit-breaker`; `index` and `key` are assigned once the whole program is
/// compiled ([`number_breakers`]).
#[derive(Debug)]
pub(crate) struct CircuitBreaker {
    index: u32,
    key: Arc<str>,
    config: BreakerConfig,
    enforce: bool,
}

/// A `circuit-breaker` admission the runtime must report back with [`crate::Program::report`]
/// once it knows what became of the request (listed by [`Scratch::breaker_tokens`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerToken {
    pub(crate) index: u32,
    pub(crate) ticket: breaker::Ticket,
}

#[derive(Debug)]
pub(crate) struct RateLimit {
    name: String,
    enforce: bool,
    capacity: u64,
    window: Duration,
    bucket_key: Vec<crate::eval::general::Compiled>,
}

impl Action {
    /// The action type name.
    pub fn kind(&self) -> &str {
        match self {
            Action::Deny { .. } => "deny",
            Action::Respond { .. } => "custom-response",
            Action::Close => "close-connection",
            Action::Redirect { .. } => "redirect",
            Action::Rewrite { .. } => "url-rewrite",
            Action::AddHeaders { .. } => "add-headers",
            Action::RemoveHeaders { .. } => "remove-headers",
            Action::SetVars { .. } => "set-vars",
            Action::Log { .. } => "log",
            Action::RestrictIps(_) => "restrict-ips",
            Action::BasicAuth(_) => "basic-auth",
            Action::RateLimit(_) => "rate-limit",
            Action::CircuitBreaker(_) => "circuit-breaker",
            Action::Jwt(_) => "jwt-validation",
            Action::Compress { .. } => "compress-response",
            Action::Forward { .. } => "forward-internal",
            Action::External { kind, .. } => kind,
        }
    }

    /// Whether the action can change the request URL that later rules read.
    pub fn rewrites_url(&self) -> bool {
        matches!(self, Action::Rewrite { .. })
    }
}

// ---------------------------------------------------------------------------------------------
// Compilation
// ---------------------------------------------------------------------------------------------

fn get<'c>(config: &'c ConfigValue, key: &str) -> Option<&'c ConfigValue> {
    match config.get(key) {
        Some(ConfigValue::Null) | None => None,
        Some(v) => Some(v),
    }
}

fn get_str<'c>(config: &'c ConfigValue, key: &str) -> Result<Option<&'c str>, String> {
    match get(config, key) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(Some)
            .ok_or_else(|| format!("`{key}` must be a string")),
    }
}

fn get_bool(config: &ConfigValue, key: &str, default: bool) -> Result<bool, String> {
    match get(config, key) {
        None => Ok(default),
        Some(ConfigValue::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("`{key}` must be a boolean")),
    }
}

fn get_int(config: &ConfigValue, key: &str) -> Result<Option<i64>, String> {
    match get(config, key) {
        None => Ok(None),
        Some(ConfigValue::Int(i)) => Ok(Some(*i)),
        Some(ConfigValue::Str(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| format!("`{key}` must be an integer")),
        Some(_) => Err(format!("`{key}` must be an integer")),
    }
}

fn status(
    config: &ConfigValue,
    default: u16,
    range: std::ops::RangeInclusive<u16>,
) -> Result<u16, String> {
    match get_int(config, "status_code")? {
        None => Ok(default),
        Some(s) => u16::try_from(s)
            .ok()
            .filter(|s| range.contains(s))
            .ok_or_else(|| {
                format!(
                    "`status_code` {s} is out of range {}–{}",
                    range.start(),
                    range.end()
                )
            }),
    }
}

fn header_map(config: &ConfigValue, key: &str) -> Result<Headers, String> {
    let Some(v) = get(config, key) else {
        return Ok(Headers::new(Vec::new()));
    };
    let ConfigValue::Map(entries) = v else {
        return Err(format!(
            "`{key}` must be a mapping of header names to values"
        ));
    };
    let list = entries
        .iter()
        .map(|(name, value)| {
            let text = match value {
                ConfigValue::Int(i) => i.to_string(),
                ConfigValue::Bool(b) => b.to_string(),
                other => other
                    .as_str()
                    .ok_or_else(|| format!("header `{name}` must have a string value"))?
                    .to_owned(),
            };
            Ok((Arc::from(name.to_ascii_lowercase()), Tmpl::parse(&text)?))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Headers::new(list))
}

fn string_list(config: &ConfigValue, key: &str) -> Result<Vec<String>, String> {
    match get(config, key) {
        None => Ok(Vec::new()),
        Some(ConfigValue::List(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("`{key}` must be a list of strings"))
            })
            .collect(),
        Some(_) => Err(format!("`{key}` must be a list")),
    }
}

fn pattern(src: Option<&str>) -> Result<Option<Pattern>, String> {
    let Some(src) = src else { return Ok(None) };
    let t = Tmpl::parse(src)?;
    Ok(Some(match t.as_literal() {
        Some(lit) => {
            Pattern::Fixed(build_regex(lit).map_err(|e| format!("invalid regex `{lit}`: {e}"))?)
        }
        None => Pattern::Dynamic(t),
    }))
}

fn build_regex(src: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(src)
        .size_limit(crate::compile::expr::REGEX_SIZE_LIMIT)
        .build()
}

fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

const EXTERNAL: &[&str] = &[
    "jwt-validation",
    "oauth",
    "openid-connect",
    "verify-webhook",
    "terminate-tls",
    "http-request",
];

/// Compiles one action of a rule in `phase`.
pub(crate) fn compile(kind: &str, config: &ConfigValue, phase: Phase) -> Result<Action, String> {
    let c = config;
    Ok(match kind {
        "deny" => Action::Deny {
            status: status(c, 403, 100..=599)?,
            tcp: phase == Phase::TcpConnect,
        },
        "custom-response" => {
            let body = get_str(c, "body")?.or(get_str(c, "content")?).unwrap_or("");
            Action::Respond {
                status: status(c, 200, 100..=599)?,
                headers: header_map(c, "headers")?,
                body: Tmpl::parse(body)?,
            }
        }
        "close-connection" => Action::Close,
        "redirect" => {
            let to = get_str(c, "to")?.ok_or("`to` is required")?;
            Action::Redirect {
                from: pattern(get_str(c, "from")?)?,
                to: Tmpl::parse(to)?,
                status: status(c, 302, 300..=399)?,
                headers: header_map(c, "headers")?,
            }
        }
        "url-rewrite" => {
            let to = get_str(c, "to")?.ok_or("`to` is required")?;
            Action::Rewrite {
                from: pattern(get_str(c, "from")?)?,
                to: Tmpl::parse(to)?,
            }
        }
        "add-headers" => {
            let headers = header_map(c, "headers")?;
            if headers.list.is_empty() {
                return Err("`headers` must name at least one header".into());
            }
            for (name, _) in &headers.list {
                if &**name == "user-agent" || &**name == "ngrok-skip-browser-warning" {
                    return Err(format!("the header `{name}` cannot be added"));
                }
            }
            Action::AddHeaders { headers }
        }
        "remove-headers" => {
            let names = string_list(c, "headers")?;
            if names.is_empty() {
                return Err("`headers` must name at least one header".into());
            }
            let names: Vec<Arc<str>> = names
                .iter()
                .map(|n| Arc::from(n.to_ascii_lowercase()))
                .collect();
            if names.iter().any(|n| &**n == "user-agent") {
                return Err("the header `user-agent` cannot be removed".into());
            }
            let result = map_of([(
                "headers_removed",
                Value::list(names.iter().map(|n| Value::String(n.clone())).collect()),
            )]);
            Action::RemoveHeaders { names, result }
        }
        "set-vars" => {
            let mut vars = Vec::new();
            let entries: Vec<&(String, ConfigValue)> = match get(c, "vars") {
                Some(ConfigValue::List(items)) => {
                    let mut out = Vec::new();
                    for item in items {
                        match item {
                            ConfigValue::Map(e) => out.extend(e.iter()),
                            _ => return Err("`vars` entries must be `name: value` mappings".into()),
                        }
                    }
                    out
                }
                Some(ConfigValue::Map(e)) => e.iter().collect(),
                _ => return Err("`vars` must be a list of `name: value` mappings".into()),
            };
            for (name, value) in entries {
                vars.push((Arc::from(name.as_str()), ValueTmpl::compile(value)?));
            }
            Action::SetVars { vars }
        }
        "log" => {
            let metadata = get(c, "metadata").ok_or("`metadata` is required")?;
            if !matches!(metadata, ConfigValue::Map(_)) {
                return Err("`metadata` must be a mapping".into());
            }
            Action::Log {
                metadata: ValueTmpl::compile(metadata)?,
            }
        }
        "restrict-ips" => {
            if get(c, "ip_policies").is_some() {
                return Err("`ip_policies` (account IP policies) are not supported; list the CIDRs in `allow`/`deny`".into());
            }
            let set = |key| -> Result<CidrSet, String> {
                let items = string_list(c, key)?;
                if items.iter().all(|s| !s.contains("${")) {
                    // No interpolation (the common case, and lists can be long): parse directly.
                    let mut nets = Vec::with_capacity(items.len());
                    for text in &items {
                        nets.push(
                            parse_policy_cidr(text)
                                .ok_or_else(|| format!("`{text}` is not a CIDR"))?,
                        );
                    }
                    return Ok(CidrSet::Fixed(IpTable::new(nets)));
                }
                let tmpls = items
                    .iter()
                    .map(|s| Tmpl::parse(s))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(CidrSet::Dynamic(tmpls))
            };
            Action::RestrictIps(Box::new(RestrictIps {
                enforce: get_bool(c, "enforce", true)?,
                tcp: phase == Phase::TcpConnect,
                allow: set("allow")?,
                deny: set("deny")?,
                no_headers: Arc::from(Vec::new()),
            }))
        }
        "basic-auth" => {
            let creds = string_list(c, "credentials")?;
            if creds.is_empty() {
                return Err("`credentials` must list at least one `user:password`".into());
            }
            let realm = get_str(c, "realm")?.unwrap_or("ngrok");
            if !realm.is_ascii() || realm.contains('"') {
                return Err("`realm` must be ASCII without `\"`".into());
            }
            let challenge: HeaderList = Arc::from(vec![(
                Arc::from("www-authenticate"),
                Arc::from(format!("Basic realm=\"{realm}\"")),
            )]);
            Action::BasicAuth(Box::new(BasicAuth {
                credentials: creds
                    .iter()
                    .map(|s| Tmpl::parse(s))
                    .collect::<Result<_, _>>()?,
                enforce: get_bool(c, "enforce", true)?,
                challenge,
            }))
        }
        "rate-limit" => {
            let name = get_str(c, "name")?.ok_or("`name` is required")?.to_owned();
            if let Some(alg) = get_str(c, "algorithm")? {
                if alg != "sliding_window" {
                    return Err(format!(
                        "unknown `algorithm` `{alg}` (only `sliding_window`)"
                    ));
                }
            }
            let capacity = get_int(c, "capacity")?.ok_or("`capacity` is required")?;
            let capacity = u64::try_from(capacity)
                .ok()
                .filter(|c| (1..=2_000_000_000).contains(c))
                .ok_or("`capacity` must be between 1 and 2000000000")?;
            let window = match get(c, "rate") {
                Some(ConfigValue::Duration(d)) => *d,
                Some(v) => v
                    .as_str()
                    .and_then(parse_duration)
                    .ok_or("`rate` must be a duration such as `60s`")?,
                None => return Err("`rate` is required".into()),
            };
            if window.is_zero() {
                return Err("`rate` must be positive".into());
            }
            let mut bucket_key = Vec::new();
            for src in string_list(c, "bucket_key")? {
                let mut e = wicket_grammar::parse(&src)
                    .map_err(|e| format!("bucket key `{src}` does not parse: {e}"))?;
                desugar(&mut e);
                bucket_key.push(crate::eval::general::Compiled::new(e));
            }
            Action::RateLimit(Box::new(RateLimit {
                name,
                enforce: get_bool(c, "enforce", true)?,
                capacity,
                window,
                bucket_key,
            }))
        }
        "circuit-breaker" => Action::CircuitBreaker(Box::new(CircuitBreaker {
            index: 0,
            key: Arc::from(""),
            config: breaker_config(c)?,
            enforce: get_bool(c, "enforce", true)?,
        })),
        "compress-response" => {
            let mut algorithms = string_list(c, "algorithms")?;
            if algorithms.is_empty() {
                algorithms = ["gzip", "deflate", "br", "compress"]
                    .map(str::to_owned)
                    .to_vec();
            }
            for a in &algorithms {
                if !["gzip", "deflate", "br", "compress"].contains(&a.as_str()) {
                    return Err(format!("unknown compression algorithm `{a}`"));
                }
            }
            Action::Compress {
                algorithms: algorithms.into_iter().map(Arc::from).collect(),
            }
        }
        "forward-internal" => {
            let url = get_str(c, "url")?.ok_or("`url` is required")?;
            let on_error = get_str(c, "on_error")?.unwrap_or("halt");
            if on_error != "halt" && on_error != "continue" {
                return Err(format!(
                    "`on_error` must be `halt` or `continue`, not `{on_error}`"
                ));
            }
            Action::Forward {
                url: Tmpl::parse(url)?,
                on_error_continue: on_error == "continue",
            }
        }
        "jwt-validation" if !jwt::needs_runtime(c) => Action::Jwt(Box::new(JwtAction {
            validation: jwt::JwtValidation::compile(c)?,
            challenge: Arc::from(vec![(
                Arc::from("www-authenticate"),
                Arc::from(jwt::CHALLENGE),
            )]),
        })),
        k if EXTERNAL.contains(&k) => Action::External {
            kind: Arc::from(k),
            config: Arc::new(config.clone()),
        },
        other => return Err(format!("the action `{other}` is not supported")),
    })
}

fn breaker_duration(config: &ConfigValue, key: &str) -> Result<Option<Duration>, String> {
    let d = match get(config, key) {
        None => return Ok(None),
        Some(ConfigValue::Duration(d)) => *d,
        Some(v) => v
            .as_str()
            .and_then(|s| wicket_policy::model::duration::parse_duration(s).ok())
            .ok_or_else(|| format!("`{key}` must be a duration such as `10s`"))?,
    };
    if !(Duration::from_secs(1)..=Duration::from_secs(120)).contains(&d) {
        return Err(format!("`{key}` must be between 1s and 2m"));
    }
    Ok(Some(d))
}

fn breaker_config(c: &ConfigValue) -> Result<BreakerConfig, String> {
    let defaults = BreakerConfig::default();
    let number = |key: &str| -> Result<Option<f64>, String> {
        Ok(match get(c, key) {
            None => None,
            Some(ConfigValue::Float(f)) => Some(*f),
            #[expect(clippy::cast_precision_loss, reason = "range-checked by the callers")]
            Some(ConfigValue::Int(i)) => Some(*i as f64),
            Some(v) => Some(
                v.as_str()
                    .and_then(|s| s.trim().parse().ok())
                    .ok_or_else(|| format!("`{key}` must be a number"))?,
            ),
        })
    };
    // `error_threshold_percentage` (0–100) is the legacy form.
    let error_threshold = match (
        number("error_threshold")?,
        number("error_threshold_percentage")?,
    ) {
        (Some(f), _) => f,
        (None, Some(p)) => {
            if !(0.0..=100.0).contains(&p) {
                return Err("`error_threshold_percentage` must be between 0 and 100".into());
            }
            p / 100.0
        }
        (None, None) => defaults.error_threshold,
    };
    if !(0.0..=1.0).contains(&error_threshold) {
        return Err("`error_threshold` must be between 0.0 and 1.0".into());
    }
    let volume_threshold = match get_int(c, "volume_threshold")? {
        None => defaults.volume_threshold,
        Some(v) => u64::try_from(v)
            .ok()
            .filter(|v| (1..=2_000_000_000).contains(v))
            .ok_or("`volume_threshold` must be between 1 and 2000000000")?,
    };
    let buckets = match get_int(c, "num_buckets")? {
        None => defaults.buckets,
        Some(v) => u32::try_from(v)
            .ok()
            .filter(|v| (1..=100).contains(v))
            .ok_or("`num_buckets` must be between 1 and 100 (ngrok fixes it at 10)")?,
    };
    Ok(BreakerConfig {
        error_threshold,
        volume_threshold,
        window: match breaker_duration(c, "window_duration")? {
            Some(d) => d,
            // The legacy name.
            None => breaker_duration(c, "rolling_window")?.unwrap_or(defaults.window),
        },
        tripped: breaker_duration(c, "tripped_duration")?.unwrap_or(defaults.tripped),
        buckets,
    })
}

/// Gives every `circuit-breaker` action of a compiled program its index and state key (the
/// rule label and the action's position: `on_http_request[0]#1`), and lists them.
pub(crate) fn number_breakers<'a>(
    rules: impl Iterator<Item = (&'a Arc<str>, &'a mut Vec<Action>)>,
) -> Vec<(Arc<str>, BreakerConfig)> {
    let mut list = Vec::new();
    for (label, actions) in rules {
        for (a, action) in actions.iter_mut().enumerate() {
            if let Action::CircuitBreaker(cb) = action {
                cb.index = u32::try_from(list.len()).unwrap_or(u32::MAX);
                cb.key = Arc::from(format!("{label}#{a}"));
                list.push((cb.key.clone(), cb.config.clone()));
            }
        }
    }
    list
}

// ---------------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------------

fn map_of<const N: usize>(entries: [(&str, Value); N]) -> Value {
    let mut m = MapValue::new();
    for (k, v) in entries {
        m.upsert(Key::String(Arc::from(k)), v);
    }
    Value::map(m)
}

fn render_headers<V: RequestView + ?Sized>(
    headers: &Headers,
    view: &V,
    st: &Scratch,
) -> Result<HeaderList, EvalError> {
    if let Some(fixed) = &headers.fixed {
        return Ok(fixed.clone());
    }
    headers
        .list
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.render(view, st)?)))
        .collect()
}

fn url_escape(text: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'<')
        .add(b'>')
        .add(b'`')
        .add(b'{')
        .add(b'}')
        .add(b'|')
        .add(b'\\')
        .add(b'^');
    percent_encoding::utf8_percent_encode(text, SET).to_string()
}

fn compile_pattern<'p, V: RequestView + ?Sized>(
    p: &'p Pattern,
    view: &V,
    st: &Scratch,
) -> Result<std::borrow::Cow<'p, regex::Regex>, EvalError> {
    Ok(match p {
        Pattern::Fixed(re) => std::borrow::Cow::Borrowed(re),
        Pattern::Dynamic(t) => {
            let src = t.render(view, st)?;
            std::borrow::Cow::Owned(build_regex(&src).map_err(|e| {
                EvalError::InvalidArgument(format!("interpolated regex `{src}` is invalid: {e}"))
            })?)
        }
    })
}

fn matches_value(caps: Option<&regex::Captures<'_>>) -> Value {
    Value::list(caps.map_or_else(Vec::new, |c| {
        c.iter()
            .map(|m| Value::string(m.map_or("", |m| m.as_str())))
            .collect()
    }))
}

/// Splits an absolute URL into the parts later rules read.
fn parse_url(url: &str) -> Result<UrlParts, EvalError> {
    let bad = || {
        EvalError::InvalidArgument(format!(
            "rewritten URL `{url}` is not an absolute http(s) URL"
        ))
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    if scheme != "http" && scheme != "https" {
        return Err(bad());
    }
    let rest = rest.split('#').next().unwrap_or(rest);
    let (authority, path_query) = match rest.find(['/', '?']) {
        Some(pos) => rest.split_at(pos),
        None => (rest, ""),
    };
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (h, Some(p.parse::<u16>().map_err(|_| bad())?))
        }
        _ => (authority, None),
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
    Ok(UrlParts {
        scheme: scheme.to_owned(),
        host: host.to_owned(),
        port,
        path: if path.is_empty() {
            "/".to_owned()
        } else {
            path.to_owned()
        },
        query: query.to_owned(),
    })
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Compares two byte strings in time independent of where they differ (both are hashed first,
/// so lengths do not leak through early exits either).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (digest(a), digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn cidr_table<'s, V: RequestView + ?Sized>(
    set: &'s CidrSet,
    view: &V,
    st: &Scratch,
) -> Result<std::borrow::Cow<'s, IpTable>, EvalError> {
    Ok(match set {
        CidrSet::Fixed(t) => std::borrow::Cow::Borrowed(t),
        CidrSet::Dynamic(tmpls) => {
            let mut nets = Vec::new();
            for t in tmpls {
                let text = t.render(view, st)?;
                nets.push(parse_policy_cidr(&text).ok_or_else(|| {
                    EvalError::InvalidArgument(format!("`{text}` is not a CIDR"))
                })?);
            }
            std::borrow::Cow::Owned(IpTable::new(nets))
        }
    })
}

/// Runs one action.
pub(crate) fn run<V: RequestView + ?Sized>(
    action: &Action,
    shared: &Shared,
    view: &V,
    st: &mut Scratch,
    resume: Resume,
) -> Result<Flow, EvalError> {
    Ok(match action {
        Action::Deny { status, tcp } => Flow::Stop(if *tcp {
            Decision::CloseConnection
        } else {
            Decision::Deny { status: *status }
        }),
        Action::Close => Flow::Stop(Decision::CloseConnection),
        Action::Respond {
            status,
            headers,
            body,
        } => Flow::Stop(Decision::Respond {
            status: *status,
            headers: render_headers(headers, view, st)?,
            body: body.render(view, st)?,
        }),
        Action::AddHeaders { headers } => {
            let mut added = MapValue::new();
            for (name, t) in &headers.list {
                let value = t.render(view, st)?;
                added.upsert(Key::String(name.clone()), Value::String(value.clone()));
                st.effects.push(Effect::AddHeader {
                    name: name.clone(),
                    value,
                });
            }
            st.set_result(
                "add_headers",
                map_of([("headers_added", Value::map(added))]),
            );
            Flow::Continue
        }
        Action::RemoveHeaders { names, result } => {
            for name in names {
                st.effects.push(Effect::RemoveHeader { name: name.clone() });
            }
            st.set_result("remove_headers", result.clone());
            Flow::Continue
        }
        Action::SetVars { vars } => {
            for (name, vt) in vars {
                let value = vt.eval(view, st)?;
                st.vars.upsert(Key::String(name.clone()), value);
            }
            Flow::Continue
        }
        Action::Log { metadata } => {
            let metadata = metadata.eval(view, st)?;
            st.set_result("log", map_of([("metadata", metadata.clone())]));
            st.effects.push(Effect::Log { metadata });
            Flow::Continue
        }
        Action::Compress { algorithms } => {
            st.effects.push(Effect::CompressResponse {
                algorithms: algorithms.clone(),
            });
            Flow::Continue
        }
        Action::Redirect {
            from,
            to,
            status,
            headers,
        } => {
            let url = read_str(StrField::Url, view, st).unwrap_or("").to_owned();
            let (new, caps_value) = match from {
                None => (
                    to.render_with(view, st, Some(url_escape))?.to_string(),
                    Value::list(vec![Value::string(url.as_str())]),
                ),
                Some(p) => {
                    let re = compile_pattern(p, view, st)?;
                    let Some(caps) = re.captures(&url) else {
                        st.set_result(
                            "redirect",
                            map_of([
                                ("matches", Value::list(Vec::new())),
                                ("url", Value::string(url.as_str())),
                            ]),
                        );
                        return Ok(Flow::Continue);
                    };
                    let replacement = to.render_with(view, st, Some(url_escape))?;
                    let whole = caps.get(0).map_or(0..0, |m| m.range());
                    let mut out = String::with_capacity(url.len() + replacement.len());
                    out.push_str(&url[..whole.start]);
                    caps.expand(&replacement, &mut out);
                    out.push_str(&url[whole.end..]);
                    (out, matches_value(Some(&caps)))
                }
            };
            st.set_result(
                "redirect",
                map_of([
                    ("matches", caps_value),
                    ("url", Value::string(new.as_str())),
                ]),
            );
            if new == url {
                Flow::Continue
            } else {
                Flow::Stop(Decision::Redirect {
                    status: *status,
                    location: Arc::from(url_escape(&new)),
                    headers: render_headers(headers, view, st)?,
                })
            }
        }
        Action::Rewrite { from, to } => {
            let url = read_str(StrField::Url, view, st).unwrap_or("").to_owned();
            let replacement = to.render(view, st)?;
            let (new, caps_value) = match from {
                None => (
                    replacement.to_string(),
                    Value::list(vec![Value::string(url.as_str())]),
                ),
                Some(p) => {
                    let re = compile_pattern(p, view, st)?;
                    let caps = matches_value(re.captures(&url).as_ref());
                    (re.replace_all(&url, &*replacement).into_owned(), caps)
                }
            };
            st.set_result(
                "url_rewrite",
                map_of([
                    ("matches", caps_value),
                    ("url", Value::string(new.as_str())),
                ]),
            );
            if new != url {
                st.url = Some(parse_url(&new)?);
                st.effects.push(Effect::RewriteUrl {
                    url: Arc::from(new),
                });
            }
            Flow::Continue
        }
        Action::RestrictIps(r) => {
            let ip = view.client_ip().ok_or_else(|| {
                EvalError::InvalidArgument("the connection has no client address".into())
            })?;
            let deny = cidr_table(&r.deny, view, st)?;
            let allow = cidr_table(&r.allow, view, st)?;
            let outcome = if let Some(net) = deny.matching(ip) {
                RestrictOutcome {
                    deny: true,
                    matched: Some(net),
                }
            } else if let Some(net) = allow.matching(ip) {
                RestrictOutcome {
                    deny: false,
                    matched: Some(net),
                }
            } else {
                RestrictOutcome {
                    deny: true,
                    matched: None,
                }
            };
            drop((deny, allow));
            // Recorded as plain data: the result variables are built only if a rule reads them.
            st.set_restrict_ips(outcome);
            if outcome.deny && r.enforce {
                Flow::Stop(if r.tcp {
                    Decision::CloseConnection
                } else {
                    Decision::Reject {
                        status: 403,
                        headers: r.no_headers.clone(),
                        code: Some("ERR_NGROK_3203"),
                    }
                })
            } else {
                Flow::Continue
            }
        }
        Action::BasicAuth(b) => {
            let presented = view
                .header("authorization", 0)
                .and_then(|h| {
                    let (scheme, rest) = h.trim().split_once(' ')?;
                    scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
                })
                .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok());
            let mut authorized = false;
            let mut username = String::new();
            if let Some(given) = &presented {
                if let Some(pos) = given.iter().position(|&c| c == b':') {
                    username = String::from_utf8_lossy(&given[..pos]).into_owned();
                }
                for cred in &b.credentials {
                    let cred = cred.render(view, st)?;
                    // No early exit: every credential is compared.
                    authorized |= constant_time_eq(cred.as_bytes(), given);
                }
            }
            st.set_result(
                "basic_auth",
                map_of([(
                    "credentials",
                    map_of([
                        ("presented", Value::Bool(presented.is_some())),
                        ("username", Value::string(username)),
                        ("authorized", Value::Bool(authorized)),
                    ]),
                )]),
            );
            if !authorized && b.enforce {
                Flow::Stop(Decision::Reject {
                    status: 401,
                    headers: b.challenge.clone(),
                    code: None,
                })
            } else {
                Flow::Continue
            }
        }
        Action::RateLimit(r) => {
            let mut key = String::new();
            for e in &r.bucket_key {
                let v = e.eval(view, st)?;
                if !key.is_empty() {
                    key.push('\u{1f}');
                }
                to_text(&v, &mut key);
            }
            let bucket = format!("{}\u{1e}{key}", r.name);
            let verdict = shared.rate_limits.hit(&bucket, r.capacity, r.window);
            let limited = matches!(verdict, RateVerdict::Limited { .. });
            st.set_result(
                "rate_limit",
                map_of([
                    ("bucket_key", Value::string(key)),
                    ("limited", Value::Bool(limited)),
                ]),
            );
            match verdict {
                RateVerdict::Limited { retry_after } if r.enforce => {
                    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                    Flow::Stop(Decision::Reject {
                        status: 429,
                        headers: Arc::from(vec![(
                            Arc::from("retry-after"),
                            Arc::from(secs.to_string()),
                        )]),
                        code: None,
                    })
                }
                _ => Flow::Continue,
            }
        }
        Action::CircuitBreaker(cb) => {
            if !cb.enforce {
                // `enforce: false` never trips (and the action has no result variables).
                return Ok(Flow::Continue);
            }
            match shared.breakers.admit(&cb.key, &cb.config) {
                BreakerVerdict::Allowed(ticket) => {
                    st.breakers.push(BreakerToken {
                        index: cb.index,
                        ticket,
                    });
                    Flow::Continue
                }
                BreakerVerdict::Open { retry_after } => {
                    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                    Flow::Stop(Decision::Reject {
                        status: 503,
                        headers: Arc::from(vec![(
                            Arc::from("retry-after"),
                            Arc::from(secs.to_string()),
                        )]),
                        code: Some("ERR_NGROK_3202"),
                    })
                }
            }
        }
        Action::Jwt(j) => run_jwt(j, view, st)?,
        Action::Forward {
            url,
            on_error_continue,
        } => Flow::Stop(Decision::Forward {
            url: url.render(view, st)?,
            resume_on_error: on_error_continue.then_some(resume),
        }),
        Action::External { kind, config } => Flow::Stop(Decision::External {
            kind: kind.clone(),
            config: config.clone(),
            resume,
        }),
    })
}

fn token_text<'a, V: RequestView + ?Sized>(
    location: &jwt::Location,
    view: &'a V,
    st: &Scratch,
) -> Option<std::borrow::Cow<'a, str>> {
    match location {
        jwt::Location::Header(name) => view.header(name, 0).map(std::borrow::Cow::Borrowed),
        jwt::Location::Cookie(name) => jwt::cookie_value(
            (0..view.header_count("cookie")).filter_map(|i| view.header("cookie", i)),
            name,
        )
        .map(std::borrow::Cow::Borrowed),
        jwt::Location::Query(name) => jwt::query_value(st.url_parts(view).4, name)
            .map(|v| std::borrow::Cow::Owned(v.into_owned())),
        // A validation with a body token compiles to `Action::External` (`needs_runtime`): it
        // never runs here. Were it to, the token would count as missing — a 401, never a pass.
        jwt::Location::Body(_) => None,
    }
}

fn run_jwt<V: RequestView + ?Sized>(
    j: &JwtAction,
    view: &V,
    st: &mut Scratch,
) -> Result<Flow, EvalError> {
    let now = std::time::SystemTime::now();
    let checked = {
        let st = &*st;
        j.validation
            .validate(&[], |location| token_text(location, view, st), now)
    };
    st.set_result("jwt_validation", checked.result);
    Ok(match checked.failure {
        Some(e) => Flow::Stop(Decision::Reject {
            status: 401,
            headers: j.challenge.clone(),
            code: Some(e.code()),
        }),
        None => Flow::Continue,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restrict_ips_results_are_built_on_demand() {
        use crate::compile::{compile, ir::PolicyIr};
        use crate::program::OwnedRequest;
        use wicket_policy::Phase;
        let doc = serde_json::json!({"on_http_request": [
            {"actions": [{"type": "restrict-ips", "config": {"enforce": false, "allow": ["203.0.113.0/24"], "deny": ["203.0.113.7/32"]}}]},
            {"actions": [{"type": "restrict-ips", "config": {"enforce": false, "allow": ["2001:db8::/32"]}}]},
            {"expressions": ["actions.ngrok.restrict_ips.matched_cidr == '2001:db8::/32' && actions.ngrok.restrict_ips.action == 'allow'"],
             "actions": [{"type": "custom-response", "config": {"body": "v6 allowed"}}]},
            {"expressions": ["actions.ngrok.restrict_ips.action == 'deny' && actions.ngrok.restrict_ips.matched_cidr == ''"],
             "actions": [{"type": "custom-response", "config": {"body": "no range"}}]}
        ]});
        let p = compile(&PolicyIr::from_json(&doc).unwrap()).unwrap();
        let mut s = Scratch::new();
        let req = |ip: &str| {
            OwnedRequest::parse("GET https://a.test/")
                .unwrap()
                .with_client_ip(ip.parse().unwrap())
        };
        let body = |d: &Decision| match d {
            Decision::Respond { body, .. } => body.to_string(),
            other => format!("{other:?}"),
        };
        let out = p.eval(Phase::HttpRequest, &req("2001:db8::9"), &mut s);
        assert_eq!(body(&out.decision), "v6 allowed");
        let out = p.eval(Phase::HttpRequest, &req("203.0.113.7"), &mut s);
        assert_eq!(body(&out.decision), "no range");
        // The second run replaced the first one's result; the diagnostic list builds it.
        let results = s.action_results();
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].0, "restrict_ips");
        let expected = crate::eval::RestrictOutcome {
            deny: true,
            matched: None,
        }
        .to_value();
        assert_eq!(format!("{:?}", results[0].1), format!("{expected:?}"));
        // An external result under the same name replaces the pending one.
        s.set_action_result("restrict_ips", Value::string("x"));
        let results = s.action_results();
        assert_eq!(results.len(), 1);
        assert_eq!(
            format!("{:?}", results[0].1),
            format!("{:?}", Value::string("x"))
        );
    }

    #[test]
    fn parses_rewritten_urls() {
        let u = parse_url("https://user@h.test:8443/a/b?x=1#frag").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str(), u.query.as_str()),
            ("h.test", Some(8443), "/a/b", "x=1")
        );
        assert!(parse_url("/relative").is_err());
    }

    #[test]
    fn compares_in_constant_time_shape() {
        assert!(constant_time_eq(b"a:b", b"a:b"));
        assert!(!constant_time_eq(b"a:b", b"a:c"));
    }

    #[test]
    fn rejects_unknown_actions() {
        let err = compile("owasp-crs-request", &ConfigValue::Null, Phase::HttpRequest).unwrap_err();
        assert!(err.contains("not supported"), "{err}");
    }
}
