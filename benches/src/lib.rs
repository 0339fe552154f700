//! Shared workloads for the Wicket benchmarks: the policies, the requests, the same work
//! set up for the `cel` crate, and a side-by-side timer that prints our figure, the `cel`
//! crate's figure and their ratio.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wicket_engine::compile::compile;
use wicket_engine::compile::ir::{ActionIr, ConfigValue, PolicyIr, RuleIr};
use wicket_engine::program::{OwnedRequest, Program};
use wicket_policy::Phase;

/// The simple predicate of design.md §3.3.
pub const SIMPLE: &str = "req.method == 'POST' && req.url.path.startsWith('/api/')";

/// A deny action.
#[must_use]
pub fn deny(status: i64) -> ActionIr {
    ActionIr {
        kind: "deny".into(),
        config: ConfigValue::Map(vec![("status_code".into(), ConfigValue::Int(status))]),
    }
}

/// A policy of one phase with a rule per expression list, each denying.
///
/// # Panics
/// When the generated policy does not compile (a bug in the workload).
#[must_use]
pub fn program(rules: Vec<Vec<String>>) -> Program {
    let rules = rules
        .into_iter()
        .map(|expressions| RuleIr {
            name: None,
            expressions,
            actions: vec![deny(403)],
        })
        .collect();
    compile(&PolicyIr {
        phases: vec![(Phase::HttpRequest, rules)],
    })
    .expect("benchmark policies compile")
}

/// A request.
///
/// # Panics
/// When `line` is not `METHOD URL`.
#[must_use]
pub fn request(line: &str, client_ip: [u8; 4]) -> OwnedRequest {
    OwnedRequest::parse(line)
        .expect("benchmark requests parse")
        .with_header("user-agent", "bench/1")
        .with_header("accept", "*/*")
        .with_client_ip(IpAddr::V4(Ipv4Addr::from(client_ip)))
}

/// A typical `on_http_request` phase of 20 rules (CORS, IP blocks, admin, versions, bots,
/// methods, …); the benchmark request passes all of them.
#[must_use]
pub fn typical_20() -> Vec<Vec<String>> {
    [
        "req.method == 'OPTIONS'",
        "inCidrRanges(conn.client_ip, ['10.0.0.0/8', '192.168.0.0/16', '172.16.0.0/12', '100.64.0.0/10'])",
        "req.url.host in ['old.example.test', 'legacy.example.test', 'beta.example.test']",
        "req.url.path.startsWith('/admin') && !hasReqHeader('authorization')",
        "req.url.path.startsWith('/internal/')",
        "req.url.path.endsWith('.php')",
        "req.url.path.contains('..')",
        "req.url.path.endsWith('.env')",
        "req.method == 'TRACE' || req.method == 'CONNECT'",
        "req.url.path == '/wp-login.php'",
        "req.url.path.startsWith('/v0/')",
        "req.url.host == 'staging.example.test' && req.method != 'GET'",
        "req.url.path.startsWith('/api/') && req.method == 'DELETE'",
        "req.url.scheme != 'https'",
        "req.url.port == 8080",
        "hasReqHeader('x-debug')",
        "req.url.path.startsWith('/.git')",
        "req.url.query.contains('<script')",
        "req.url.path == '/metrics' && !inCidrRange(conn.client_ip, '10.0.0.0/8')",
        "req.user_agent.startsWith('BadBot')",
    ]
    .iter()
    .map(|e| vec![(*e).to_owned()])
    .collect()
}

/// `n` CIDRs spread over the IPv4 space (none contains 203.0.113.7).
#[must_use]
pub fn cidrs(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            // 11.0.0.0 upward in /28 steps: distinct, unmergeable where gaps remain.
            let base = (11u32 << 24).wrapping_add(i.wrapping_mul(32));
            format!("{}/28", Ipv4Addr::from(base))
        })
        .collect()
}

/// `inCidrRanges(conn.client_ip, [..n CIDRs..])`.
#[must_use]
pub fn cidr_expr(n: usize) -> String {
    let mut s = String::from("inCidrRanges(conn.client_ip, [");
    for (i, c) in cidrs(n).iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "'{c}'");
    }
    s.push_str("])");
    s
}

/// A policy denying the `n` CIDRs of [`cidrs`] with `restrict-ips` (everything else allowed).
///
/// # Panics
/// When the generated policy does not compile (a bug in the workload).
#[must_use]
pub fn restrict_ips_program(n: usize) -> Program {
    let list =
        |items: Vec<String>| ConfigValue::List(items.into_iter().map(ConfigValue::Str).collect());
    let action = ActionIr {
        kind: "restrict-ips".into(),
        config: ConfigValue::Map(vec![
            (
                "allow".into(),
                list(vec!["0.0.0.0/0".into(), "::/0".into()]),
            ),
            ("deny".into(), list(cidrs(n))),
        ]),
    };
    compile(&PolicyIr {
        phases: vec![(
            Phase::HttpRequest,
            vec![RuleIr {
                name: None,
                expressions: Vec::new(),
                actions: vec![action],
            }],
        )],
    })
    .expect("benchmark policies compile")
}

/// The `n` CIDRs of [`cidrs`] as a `cel` crate list value (bound as the variable `cidrs`).
#[must_use]
pub fn cel_cidr_list(n: usize) -> cel::Value {
    cel::Value::List(Arc::new(cidrs(n).into_iter().map(Into::into).collect()))
}

/// `n` rules each guarded on a host and a path prefix.
#[must_use]
pub fn host_path_rules(n: usize) -> Vec<Vec<String>> {
    (0..n)
        .map(|i| {
            vec![format!(
                "req.url.host == 'h{i}.example.test' && req.url.path.startsWith('/svc{}/')",
                i % 10
            )]
        })
        .collect()
}

/// `n` rules each guarded on the client address in a /24 (`10.x.y.0/24`) and a path prefix.
#[must_use]
pub fn client_ip_rules(n: usize) -> Vec<Vec<String>> {
    (0..n)
        .map(|i| {
            vec![format!(
                "inCidrRanges(conn.client_ip, ['10.{}.{}.0/24']) && req.url.path.startsWith('/svc{}/')",
                (i / 256) % 256,
                i % 256,
                i % 10
            )]
        })
        .collect()
}

/// `n` rules no index can use (suffix tests and negations).
#[must_use]
pub fn non_indexable_rules(n: usize) -> Vec<Vec<String>> {
    (0..n)
        .map(|i| {
            vec![format!(
                "req.url.path.endsWith('.x{i}') && req.method != 'TRACE'"
            )]
        })
        .collect()
}

/// `n` rules no specialised node covers (general expressions: a function call, arithmetic, a
/// header lookup), none of which matches the benchmark request.
#[must_use]
pub fn general_rules(n: usize) -> Vec<Vec<String>> {
    (0..n)
        .map(|i| {
            vec![format!(
                "size(req.url.path) > {} || req.headers['accept'][0] == 'text/x{i}'",
                100 + i
            )]
        })
        .collect()
}

/// The request as the `cel` crate's variables: `req` (method, URL parts, headers as lists,
/// user agent) and `conn` (client address), as nested maps — what a user of the crate binds for
/// each request.
#[must_use]
pub fn cel_request_vars(req: &OwnedRequest) -> [(&'static str, cel::Value); 2] {
    let mut url: HashMap<String, cel::Value> = HashMap::new();
    url.insert("path".into(), req.path.clone().into());
    url.insert("host".into(), req.url_host.clone().into());
    url.insert("scheme".into(), req.scheme.clone().into());
    url.insert("query".into(), req.query.clone().into());
    url.insert("port".into(), i64::from(req.url_port.unwrap_or(443)).into());
    let mut headers: HashMap<String, cel::Value> = HashMap::new();
    for (n, v) in &req.headers {
        headers.insert(
            n.clone(),
            cel::Value::List(Arc::new(vec![v.clone().into()])),
        );
    }
    let mut r: HashMap<String, cel::Value> = HashMap::new();
    r.insert("method".into(), req.method.clone().into());
    r.insert("url".into(), url.into());
    r.insert("headers".into(), headers.into());
    r.insert("user_agent".into(), "bench/1".into());
    let mut conn: HashMap<String, cel::Value> = HashMap::new();
    conn.insert(
        "client_ip".into(),
        req.client_ip
            .map(|ip| ip.to_string())
            .unwrap_or_default()
            .into(),
    );
    [("req", r.into()), ("conn", conn.into())]
}

/// A `cel` crate context holding the request as maps ([`cel_request_vars`]), and an
/// `inCidrRanges` function doing what a user of the crate would write: parse each CIDR and
/// test it.
///
/// # Panics
/// When the `cel` crate rejects the setup (a bug in the workload).
#[must_use]
pub fn cel_context(req: &OwnedRequest) -> cel::Context<'static, 'static> {
    let mut ctx = cel::Context::default();
    for (name, value) in cel_request_vars(req) {
        ctx.add_variable_from_value(name, value);
    }
    ctx.add_function(
        "inCidrRanges",
        |ip: Arc<String>, list: Arc<Vec<cel::Value>>| -> bool {
            let Ok(ip) = ip.parse::<IpAddr>() else {
                return false;
            };
            list.iter().any(|c| match c {
                cel::Value::String(s) => s.parse::<ipnet::IpNet>().is_ok_and(|n| n.contains(&ip)),
                _ => false,
            })
        },
    )
    .expect("inCidrRanges is free in the cel crate");
    ctx.add_function("inCidrRange", |ip: Arc<String>, c: Arc<String>| -> bool {
        let Ok(ip) = ip.parse::<IpAddr>() else {
            return false;
        };
        c.parse::<ipnet::IpNet>().is_ok_and(|n| n.contains(&ip))
    })
    .expect("inCidrRange is free in the cel crate");
    ctx.add_function("hasReqHeader", |name: Arc<String>| -> bool {
        // What a cel crate user would write without access to the request: always false
        // here, the benchmark request has no such header.
        name.is_empty()
    })
    .expect("hasReqHeader is free in the cel crate");
    ctx
}

/// Compiles expressions with the `cel` crate.
///
/// # Panics
/// When the `cel` crate rejects an expression (a bug in the workload).
#[must_use]
pub fn cel_programs(rules: &[Vec<String>]) -> Vec<cel::Program> {
    rules
        .iter()
        .map(|r| cel::Program::compile(&r.join(" && ")).expect("the cel crate parses the workload"))
        .collect()
}

/// Runs the rules in order with the `cel` crate, stopping at the first that is true; returns
/// how many ran.
#[must_use]
pub fn cel_run(programs: &[cel::Program], ctx: &cel::Context<'_, '_>) -> usize {
    for (i, p) in programs.iter().enumerate() {
        if matches!(p.execute(ctx), Ok(cel::Value::Bool(true))) {
            return i;
        }
    }
    programs.len()
}

fn time_per_iter(mut f: impl FnMut(), budget: Duration) -> Duration {
    // Calibrate, then take the best of five batches.
    let mut iters: u32 = 1;
    loop {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        if t.elapsed() >= budget / 20 || iters >= 1 << 24 {
            break;
        }
        iters *= 2;
    }
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        best = best.min(t.elapsed() / iters);
    }
    best
}

/// Times our work and the `cel` crate's for the same case and prints both and the ratio.
pub fn compare(case: &str, ours: impl FnMut(), theirs: impl FnMut()) -> (Duration, Duration) {
    let budget = Duration::from_millis(300);
    let a = time_per_iter(ours, budget);
    let b = time_per_iter(theirs, budget);
    let ratio = b.as_secs_f64() / a.as_secs_f64().max(1e-12);
    println!("RATIO {case}: wicket {a:?}, cel {b:?}, cel/wicket = {ratio:.1}x");
    black_box((a, b))
}
