//! The compiled program and the plain reading of the same policy (every rule in order, each
//! expression through the reference interpreter, no index) give the same outcome, on generated
//! policies and requests — including large CIDR lists and thousands of rules.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use wicket_engine::compile::compile;
use wicket_engine::compile::ir::{ActionIr, ConfigValue, PolicyIr, RuleIr};
use wicket_engine::program::{Decision, Outcome, OwnedRequest, Program, Scratch};
use wicket_policy::Phase;

const HOSTS: &[&str] = &["a.test", "b.test", "c.test", "api.example.test"];
const PATHS: &[&str] = &[
    "/",
    "/a",
    "/a/1",
    "/a/22/x",
    "/b/",
    "/admin/x",
    "/v1/internal/y",
    "/x.php",
];
/// Client addresses that requests use and guards name (IPv4, IPv6, IPv4-mapped IPv6).
const FIXED_IPS: &[&str] = &[
    "10.0.0.1",
    "10.1.2.3",
    "203.0.113.7",
    "2001:db8:5::1",
    "::ffff:10.0.0.1",
];
const METHODS: &[&str] = &["GET", "POST", "DELETE", "OPTIONS"];

fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(METHODS).prop_map(|m| format!("req.method == '{m}'")),
        prop::sample::select(METHODS).prop_map(|m| format!("req.method != '{m}'")),
        prop::sample::select(HOSTS).prop_map(|h| format!("req.url.host == '{h}'")),
        prop::sample::select(HOSTS).prop_map(|h| format!("req.host == '{h}'")),
        prop::sample::subsequence(HOSTS.to_vec(), 0..3)
            .prop_map(|hs| format!("req.url.host in [{}]", quote_list(&hs))),
        prop::sample::select(PATHS).prop_map(|p| format!("req.url.path.startsWith('{p}')")),
        prop::sample::select(PATHS).prop_map(|p| format!("req.url.path == '{p}'")),
        prop::sample::select(&["/1", ".php", "x", "/"][..])
            .prop_map(|p| format!("req.url.path.endsWith('{p}')")),
        prop::sample::select(&["a/", "admin", "internal"][..])
            .prop_map(|p| format!("req.url.path.contains('{p}')")),
        prop::sample::select(&["^/a/[0-9]+$", "^/v[0-9]+/", "php$", "("][..])
            .prop_map(|r| format!("req.url.path.matches('{r}')")),
        cidrs(0..6).prop_map(|c| format!("inCidrRanges(conn.client_ip, [{}])", quote_list(&c))),
        cidrs(1..2).prop_map(|c| format!("inCidrRange(conn.client_ip, '{}')", c[0])),
        prop::sample::select(FIXED_IPS).prop_map(|ip| format!("conn.client_ip == '{ip}'")),
        prop::sample::subsequence(FIXED_IPS.to_vec(), 0..3)
            .prop_map(|ips| format!("conn.client_ip in [{}]", quote_list(&ips))),
        prop::sample::select(&["x-a", "X-A", "authorization", "cookie"][..])
            .prop_map(|h| format!("hasReqHeader('{h}')")),
        prop::sample::select(&["x-a", "X-A", "authorization"][..])
            .prop_map(|h| format!("'{h}' in req.headers")),
        (
            prop::sample::select(&["==", "!=", "<", ">="][..]),
            prop::sample::select(&[80i64, 443, 8443][..])
        )
            .prop_map(|(op, p)| format!("req.url.port {op} {p}")),
        Just("size(req.url.path) > 3".to_owned()),
        Just("req.headers['x-a'][0] == '1'".to_owned()),
        Just("getReqHeader('x-a').exists(v, v == '2')".to_owned()),
        Just("getQueryParam('q') == ['1']".to_owned()),
        Just("vars.v == 'set'".to_owned()),
        Just("has(vars.v)".to_owned()),
        Just("1 / 0 == 1".to_owned()),
        Just("1 + 1 == 2".to_owned()),
        Just("req.url == 'https://a.test/a'".to_owned()),
        Just("req.url.query == 'q=1'".to_owned()),
        Just("actions.ngrok.url_rewrite.url != ''".to_owned()),
    ]
}

fn quote_list(items: &[impl AsRef<str>]) -> String {
    items
        .iter()
        .map(|s| format!("'{}'", s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn cidr() -> impl Strategy<Value = String> {
    prop_oneof![
        (any::<u32>(), 0u8..=32).prop_map(|(a, p)| format!("{}/{p}", Ipv4Addr::from(a))),
        (0u8..4, 8u8..=32).prop_map(|(b, p)| format!("10.{b}.0.0/{p}")),
        (any::<u16>(), 16u8..=128).prop_map(|(a, p)| format!("2001:db8:{a:x}::/{p}")),
        Just("not-a-cidr".to_owned()),
        Just("::ffff:10.0.0.0/104".to_owned()),
    ]
}

fn cidrs(n: std::ops::Range<usize>) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(cidr(), n)
}

fn expr() -> impl Strategy<Value = String> {
    leaf().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) && ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) || ({b})")),
            inner.prop_map(|a| format!("!({a})")),
        ]
    })
}

fn config(json: serde_json::Value) -> ConfigValue {
    ConfigValue::from_json(&json)
}

fn action() -> impl Strategy<Value = ActionIr> {
    let a = |kind: &str, json: serde_json::Value| ActionIr {
        kind: kind.to_owned(),
        config: config(json),
    };
    prop_oneof![
        (400u16..404).prop_map(move |s| a("deny", serde_json::json!({"status_code": s}))),
        Just(a("custom-response", serde_json::json!({"status_code": 200, "body": "hi ${req.url.path}"}))),
        Just(a("set-vars", serde_json::json!({"vars": [{"v": "set"}, {"n": "${size(req.url.path)}"}]}))),
        Just(a("add-headers", serde_json::json!({"headers": {"x-m": "${req.method}", "x-c": "c"}}))),
        Just(a("remove-headers", serde_json::json!({"headers": ["x-a"]}))),
        Just(a("url-rewrite", serde_json::json!({"from": "/a/", "to": "/b/"}))),
        Just(a("url-rewrite", serde_json::json!({"from": "^https://[^/]+/admin", "to": "https://c.test/x"}))),
        Just(a("redirect", serde_json::json!({"from": "/x\\.php$", "to": "/x.html", "status_code": 301}))),
        Just(a("log", serde_json::json!({"metadata": {"path": "${req.url.path}", "k": 1}}))),
        cidrs(0..4).prop_map(move |c| a("restrict-ips", serde_json::json!({"allow": ["0.0.0.0/0"], "deny": c.into_iter().filter(|s| s != "not-a-cidr").collect::<Vec<_>>()}))),
        Just(a("basic-auth", serde_json::json!({"credentials": ["user:password1"], "enforce": false}))),
        Just(a("close-connection", serde_json::json!(null))),
    ]
}

/// Actions that never end the phase, with a result that shows which rule ran.
fn passthrough_action() -> impl Strategy<Value = ActionIr> {
    (0u32..1000).prop_map(|i| ActionIr {
        kind: "add-headers".to_owned(),
        config: config(serde_json::json!({"headers": {"x-rule": format!("{i}")}})),
    })
}

fn rule() -> impl Strategy<Value = RuleIr> {
    (
        prop::collection::vec(expr(), 0..3),
        prop::collection::vec(action(), 1..3),
        any::<bool>(),
    )
        .prop_map(|(expressions, actions, named)| RuleIr {
            name: named.then(|| "named".to_owned()),
            expressions,
            actions,
        })
}

/// Rules whose expressions are mostly single comparisons, so that many carry an index guard.
fn guarded_rule() -> impl Strategy<Value = RuleIr> {
    (
        prop::collection::vec(prop_oneof![4 => leaf(), 1 => expr()], 1..3),
        prop::collection::vec(prop_oneof![4 => passthrough_action(), 1 => action()], 1..3),
    )
        .prop_map(|(expressions, actions)| RuleIr {
            name: None,
            expressions,
            actions,
        })
}

/// A client-address guard: a range test (IPv4, IPv6, invalid CIDRs included), an equality or a
/// list membership.
fn ip_guard() -> impl Strategy<Value = String> {
    prop_oneof![
        cidrs(0..6).prop_map(|c| format!("inCidrRanges(conn.client_ip, [{}])", quote_list(&c))),
        cidrs(1..2).prop_map(|c| format!("inCidrRange(conn.client_ip, '{}')", c[0])),
        prop::sample::select(FIXED_IPS).prop_map(|ip| format!("conn.client_ip == '{ip}'")),
        prop::sample::subsequence(FIXED_IPS.to_vec(), 0..4)
            .prop_map(|ips| format!("conn.client_ip in [{}]", quote_list(&ips))),
    ]
}

/// Rules guarded on the client address, with another conjunct now and then.
fn ip_guarded_rule() -> impl Strategy<Value = RuleIr> {
    (
        ip_guard(),
        prop::option::of(prop_oneof![3 => leaf(), 1 => expr()]),
        prop::collection::vec(prop_oneof![4 => passthrough_action(), 1 => action()], 1..3),
    )
        .prop_map(|(guard, other, actions)| RuleIr {
            name: None,
            expressions: match other {
                Some(o) => vec![guard, o],
                None => vec![guard],
            },
            actions,
        })
}

fn request() -> impl Strategy<Value = OwnedRequest> {
    (
        prop::sample::select(METHODS),
        prop::sample::select(&["http", "https"][..]),
        prop::sample::select(HOSTS),
        prop::option::of(prop::sample::select(&[443u16, 8443][..])),
        prop::sample::select(PATHS),
        prop::sample::select(&["", "q=1", "q=2&q=1"][..]),
        prop::collection::vec(
            (
                prop::sample::select(&["x-a", "authorization", "cookie"][..]),
                prop::sample::select(&["1", "2", "Basic dXNlcjpwYXNzd29yZDE="][..]),
            ),
            0..3,
        ),
        prop_oneof![
            any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
            (0u8..4, any::<u16>()).prop_map(|(b, c)| IpAddr::V4(Ipv4Addr::new(
                10,
                b,
                (c >> 8) as u8,
                c as u8
            ))),
            any::<u16>().prop_map(|a| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, a, 0, 0, 0, 0, 1))),
            prop::sample::select(FIXED_IPS)
                .prop_map(|ip| ip.parse::<IpAddr>().expect("fixed addresses parse")),
        ],
    )
        .prop_map(|(method, scheme, host, port, path, query, headers, ip)| {
            let mut line = format!("{method} {scheme}://{host}");
            if let Some(p) = port {
                let _ = write!(line, ":{p}");
            }
            line.push_str(path);
            if !query.is_empty() {
                line.push('?');
                line.push_str(query);
            }
            let mut r = OwnedRequest::parse(&line)
                .expect("generated request lines are valid")
                .with_client_ip(ip);
            for (n, v) in headers {
                r = r.with_header(n, v);
            }
            r
        })
}

/// The comparable form of an outcome: errors compare by rule (which of several errors is
/// reported may differ, as `&&`/`||` operands are reordered by cost).
fn summary(out: &Outcome<'_>, scratch_vars: String) -> String {
    let decision = match &out.decision {
        Decision::Error { rule, .. } => format!("Error({rule})"),
        d => format!("{d:?}"),
    };
    format!("{decision} | {:?} | {scratch_vars}", out.effects)
}

fn both(p: &Program, req: &OwnedRequest) -> (String, String) {
    let mut s1 = Scratch::new();
    let compiled = p.eval(Phase::HttpRequest, req, &mut s1);
    let compiled = summary(&compiled, String::new());
    let vars1 = format!("{:?}", s1.vars());
    let mut s2 = Scratch::new();
    let reference = p.eval_reference(Phase::HttpRequest, req, &mut s2);
    let reference = summary(&reference, String::new());
    let vars2 = format!("{:?}", s2.vars());
    (
        format!("{compiled} {vars1}"),
        format!("{reference} {vars2}"),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn compiled_equals_reference(
        rules in prop::collection::vec(rule(), 0..12),
        reqs in prop::collection::vec(request(), 1..6),
    ) {
        let policy = PolicyIr { phases: vec![(Phase::HttpRequest, rules)] };
        let p = compile(&policy).unwrap();
        for req in &reqs {
            let (c, r) = both(&p, req);
            prop_assert_eq!(c, r, "request {:?}", req);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(60))]

    /// Enough generated rules that the phase is indexed, with rewrites disabling URL guards
    /// after them.
    #[test]
    fn many_generated_rules_agree(
        rules in prop::collection::vec(guarded_rule(), 20..60),
        reqs in prop::collection::vec(request(), 1..4),
    ) {
        let policy = PolicyIr { phases: vec![(Phase::HttpRequest, rules)] };
        let p = compile(&policy).unwrap();
        for req in &reqs {
            let (c, r) = both(&p, req);
            prop_assert_eq!(c, r, "request {:?}", req);
        }
    }

    /// Phases indexed on the client address (ranges, equalities, lists; IPv4, IPv6, IPv4-mapped
    /// addresses, invalid CIDRs) mixed with other guarded rules.
    #[test]
    fn client_ip_guarded_rules_agree(
        rules in prop::collection::vec(prop_oneof![3 => ip_guarded_rule(), 1 => guarded_rule()], 10..50),
        reqs in prop::collection::vec(request(), 1..4),
    ) {
        let policy = PolicyIr { phases: vec![(Phase::HttpRequest, rules)] };
        let p = compile(&policy).unwrap();
        for req in &reqs {
            let (c, r) = both(&p, req);
            prop_assert_eq!(c, r, "request {:?}", req);
        }
    }
}

fn host_path_rules(n: usize, with_general: bool) -> Vec<RuleIr> {
    (0..n)
        .map(|i| {
            let mut expressions = vec![
                format!("req.url.host == 'h{}.test'", i % 50),
                format!("req.url.path.startsWith('/p{}')", i % 13),
            ];
            if with_general && i % 17 == 0 {
                expressions.push("size(req.url.query) >= 0".to_owned());
            }
            if i % 101 == 0 {
                expressions = vec![format!("req.method == '{}'", METHODS[i % 4])];
            }
            let action = if i % 3 == 0 {
                ActionIr {
                    kind: "deny".into(),
                    config: config(serde_json::json!({"status_code": 400 + (i % 100)})),
                }
            } else {
                ActionIr {
                    kind: "set-vars".into(),
                    config: config(serde_json::json!({"vars": [{"last": format!("{i}")}]})),
                }
            };
            RuleIr {
                name: None,
                expressions,
                actions: vec![action],
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// Thousands of indexed rules: the index skips rules, never changes the result.
    #[test]
    fn thousands_of_rules_agree(
        host in 0usize..60,
        path in 0usize..15,
        method in prop::sample::select(METHODS),
        n in 1000usize..3000,
        with_general in any::<bool>(),
    ) {
        let policy = PolicyIr { phases: vec![(Phase::HttpRequest, host_path_rules(n, with_general))] };
        let p = compile(&policy).unwrap();
        let req = OwnedRequest::parse(&format!("{method} https://h{host}.test/p{path}/z")).unwrap();
        let (c, r) = both(&p, &req);
        prop_assert_eq!(c, r);
    }

    /// Large CIDR lists: the merged range table answers as the interpreter's linear scan.
    #[test]
    fn large_cidr_lists_agree(
        list in cidrs(500..3000),
        ips in prop::collection::vec(any::<u32>(), 20),
    ) {
        let expr = format!("inCidrRanges(conn.client_ip, [{}])", quote_list(&list));
        let policy = PolicyIr { phases: vec![(Phase::HttpRequest, vec![RuleIr {
            name: None,
            expressions: vec![expr],
            actions: vec![ActionIr { kind: "deny".into(), config: ConfigValue::Null }],
        }])] };
        let p = compile(&policy).unwrap();
        // Addresses drawn from the list's own ranges as well as at random.
        let mut addrs: Vec<IpAddr> = ips.into_iter().map(|a| IpAddr::V4(Ipv4Addr::from(a))).collect();
        for c in list.iter().take(20) {
            if let Some((ip, _)) = c.split_once('/') {
                if let Ok(ip) = ip.parse() {
                    addrs.push(ip);
                }
            }
        }
        for ip in addrs {
            let req = OwnedRequest::parse("GET https://a.test/").unwrap().with_client_ip(ip);
            let (c, r) = both(&p, &req);
            prop_assert_eq!(c, r, "ip {}", ip);
        }
    }
}
