//! Snapshots of the checker's issues for good and bad expressions, most taken from the docs
//! example corpus (`../shared/corpus/policies`), the rest written to exercise one diagnostic
//! each. Review changes with `cargo insta review`.

use std::fmt::Write as _;

use wicket_policy::Phase;
use wicket_policy::check::{CheckContext, Expected, check_source, check_template};

const REQ: Phase = Phase::HttpRequest;
const RES: Phase = Phase::HttpResponse;
const TCP: Phase = Phase::TcpConnect;

/// `(phase, expression)`; `${` at the start marks a template.
const CASES: &[(Phase, &str)] = &[
    // from the corpus: clean
    (
        REQ,
        "req.method == \"GET\" && req.url.path.startsWith(\"/status/200\")",
    ),
    (
        REQ,
        "'session' in req.cookies && req.cookies['session'][0].value.contains('premium')",
    ),
    (
        REQ,
        "'debug' in req.url.query_params && req.url.query_params['debug'][0] == 'true'",
    ),
    (
        REQ,
        "req.user_agent.is_bot || 'proxy.anonymous.tor' in conn.client_ip.categories",
    ),
    (
        REQ,
        "size(req.headers['user-agent'].filter(x, x.matches('(?i).*Edg/\\\\d+.*'))) > 0",
    ),
    (
        REQ,
        "req.headers.exists_one(x, x == 'x-request-header') && req.headers['x-request-header'].join(',').matches('x-value-.*')",
    ),
    (
        REQ,
        "req.url.query_params.exists_one(x, x == 'my-query-param') && req.url.query_params['my-query-param'].join(',').matches('value-.*')",
    ),
    (
        REQ,
        "actions.ngrok.restrict_ips.action == 'allow' || actions.ngrok.basic_auth.credentials.authorized == true",
    ),
    (
        REQ,
        "!(actions.ngrok.oauth.identity.email in ['john@acme.com', 'jane@doe.com'])",
    ),
    (
        REQ,
        "conn.k8s.pod.metadata.annotations[\"k8s.ngrok.com/environment\"] != \"production\"",
    ),
    (
        REQ,
        "conn.client_ip.geo.location.continent in ['North America', 'South America']",
    ),
    (REQ, "req.content_length >= 1000"),
    (REQ, "rand.double() <= 0.2"),
    (REQ, "'bar' in getQueryParam('foo')"),
    (RES, "res.status_code != 200 && res.status_code != 204"),
    (TCP, "conn.tls.version < '1.3'"),
    (REQ, "${timestamp(time.now)}"),
    (REQ, "${req.host.split('.')[0]}"),
    // from the corpus: problems
    (RES, "res.status_code < '200' && res.status_code >= '300'"),
    (REQ, "!conn.client_ip in ['<TESTING_PROVIDER_IP_RANGE>']"),
    (
        REQ,
        "req.headers['x-deployment-version'].join(',') == ${vars.test}",
    ),
    (REQ, "'2' in req.headers['X-Api-Version']"),
    (REQ, "!('Authorization' in req.headers)"),
    (REQ, "getReqHeader('tier').exists(v, v.matches('(?i)gold'))"),
    (REQ, "req.url.includes('/wp-admin')"),
    (REQ, "req.path.startsWith('/api/accounts')"),
    (REQ, "conn.ClientIP != '8.8.8.8'"),
    (REQ, "${.ngrok.geo.country_code}"),
    (REQ, "${request.headers['x-foo']}"),
    // one per diagnostic
    (REQ, "res.status_code == 200"),
    (TCP, "req.method == 'GET'"),
    (REQ, "hasResHeader('Content-Type')"),
    (REQ, "req.url.pathh == '/'"),
    (REQ, "req.url.path.startWith('/api')"),
    (REQ, "req.headers['accept'] && true"),
    (REQ, "req.url.path"),
    (REQ, "time.now < timestamp('2025-01-01T00:00:00Z')"),
    (REQ, "conn.client_ip in ['10.0.0.0/8', '192.168.0.0/16']"),
    (REQ, "conn.client_ip == '10.0.0.0/8'"),
    (REQ, "req.url.path.matches('^/api/(v1|v2')"),
    (REQ, "1 == 1"),
    (REQ, "req.method in []"),
    (REQ, "req.headers.exists(k, k > 1)"),
    (REQ, "getReqCookie('session').valeu == 'x'"),
    (RES, "res.status_code < 200 && res.status_code >= 300"),
    (REQ, "inCidrRange(conn.client_ip, '10.0.0.0/33')"),
    (
        REQ,
        "timestamp(time.now) - conn.ts.start > duration('5 minutes')",
    ),
    (REQ, "req.method == "),
    (REQ, "${req.method"),
];

fn render() -> String {
    let mut out = String::new();
    for (phase, src) in CASES {
        let ctx = CheckContext::new(*phase);
        let (kind, issues) = if src.starts_with("${") {
            ("template", check_template(src, &ctx))
        } else {
            ("expr", check_source(src, &ctx, Expected::Bool).issues)
        };
        let _ = writeln!(out, "[{phase}] {kind} `{src}`");
        if issues.is_empty() {
            let _ = writeln!(out, "  ok");
        }
        for i in issues {
            let text = src.get(i.span.range()).unwrap_or("");
            let ngrok = i
                .ngrok_code
                .map(|c| format!(" ERR_NGROK_{c}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {}{ngrok} {:?} at {:?} `{text}`: {}",
                i.code, i.severity, i.span, i.message
            );
            if let Some(help) = i.help {
                let _ = writeln!(out, "    help: {help}");
            }
        }
    }
    out
}

#[test]
fn checker_issues() {
    insta::assert_snapshot!(render());
}
