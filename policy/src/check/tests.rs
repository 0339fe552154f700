//! Unit tests of the checker: one or more per diagnostic, asserting code, span and message.

use super::*;
use crate::Phase;

fn run(src: &str, phase: Phase) -> Vec<ExprIssue> {
    check_source(src, &CheckContext::new(phase), Expected::Bool).issues
}

/// `(code, spanned text, message)` of every issue.
fn issues(src: &str, phase: Phase) -> Vec<(&'static str, String, String)> {
    run(src, phase)
        .into_iter()
        .map(|i| (i.code, src[i.span.range()].to_owned(), i.message))
        .collect()
}

fn req(src: &str) -> Vec<(&'static str, String, String)> {
    issues(src, Phase::HttpRequest)
}

fn codes_of(src: &str, phase: Phase) -> Vec<&'static str> {
    run(src, phase).into_iter().map(|i| i.code).collect()
}

fn help_of(src: &str, phase: Phase) -> Option<String> {
    run(src, phase).into_iter().find_map(|i| i.help)
}

#[test]
fn clean_expressions_have_no_issues() {
    for src in [
        "req.method == 'POST' && req.url.path.startsWith('/api/')",
        "conn.client_ip.geo.location.country_code in ['US', 'CA']",
        "inCidrRange(conn.client_ip, '10.0.0.0/8')",
        "'x-api-key' in req.headers && req.headers['x-api-key'][0] == 'secret'",
        "'x-forwarded-for' in req.headers && size(req.headers['x-forwarded-for']) > 0",
        "has(req.cookies.session) && req.cookies['session'][0].value != ''",
        "hasReqCookie('session') && getReqCookie('session').value == 'x'",
        "timestamp(time.now) > timestamp('2024-01-01T00:00:00Z')",
        "double(conn.geo.latitude) > 10.5",
        "req.headers.exists(k, k.startsWith('x-'))",
        "req.url.query_params.all(k, size(req.url.query_params[k]) == 1)",
        "getReqHeader('Accept').exists_one(v, v.matches('^text/'))",
        "has(req.url.port) && req.url.port == 8080",
        "vars.anything.deep == 1",
        "rand.double() < 0.5",
        "base64.decode('aGk=') == b'hi'",
        "hash.sha256(req.url.path) != ''",
        "req.url.path.split('/').size() > 2",
        "cel.bind(p, req.url.path, p.startsWith('/a') || p.endsWith('/b'))",
        "[1, 2, 3].map(x, x * 2).filter(y, y > 2).size() == 2",
        "res.status_code >= 500",
        "math.greatest(1, 2, 3) == 3",
        "conn.tls.client.extensions.exists(e, e.critical)",
        "json.decode('{\"a\": 1}').a == 1",
        "type(req.url.path) == string",
    ] {
        let phase = if src.starts_with("res.") {
            Phase::HttpResponse
        } else {
            Phase::HttpRequest
        };
        assert_eq!(issues(src, phase), vec![], "{src}");
    }
}

#[test]
fn unknown_variable_with_suggestion() {
    let src = "req.url.pth == '/'";
    assert_eq!(
        req(src),
        vec![(
            codes::UNKNOWN_VARIABLE,
            "req.url.pth".to_owned(),
            "unknown variable `req.url.pth`".to_owned()
        )]
    );
    assert_eq!(
        help_of(src, Phase::HttpRequest).as_deref(),
        Some("did you mean `req.url.path`?")
    );
    let src = "reqq.method == 'GET'";
    assert_eq!(req(src)[0].0, codes::UNKNOWN_VARIABLE);
    assert_eq!(
        help_of(src, Phase::HttpRequest).as_deref(),
        Some("did you mean `req.method`?")
    );
}

#[test]
fn namespace_used_as_value() {
    assert_eq!(
        req("conn.tls == 'x'"),
        vec![(
            codes::NAMESPACE_AS_VALUE,
            "conn.tls".to_owned(),
            "`conn.tls` is a namespace, not a value".to_owned()
        )]
    );
}

#[test]
fn unknown_function_with_suggestion() {
    let src = "req.url.path.startWith('/a')";
    assert_eq!(
        req(src),
        vec![(
            codes::UNKNOWN_FUNCTION,
            "startWith".to_owned(),
            "unknown function `startWith`".to_owned()
        )]
    );
    assert_eq!(
        help_of(src, Phase::HttpRequest).as_deref(),
        Some("did you mean `startsWith`?")
    );
    let src = "inCidrRnge(conn.client_ip, '10.0.0.0/8')";
    assert_eq!(req(src)[0].0, codes::UNKNOWN_FUNCTION);
    assert_eq!(
        help_of(src, Phase::HttpRequest).as_deref(),
        Some("did you mean `inCidrRange`?")
    );
}

#[test]
fn member_global_confusion() {
    assert_eq!(
        req("conn.client_ip.inCidrRange('10.0.0.0/8')"),
        vec![(
            codes::UNKNOWN_FUNCTION,
            "inCidrRange".to_owned(),
            "`inCidrRange` is not a member function".to_owned()
        )]
    );
}

#[test]
fn wrong_argument_types() {
    let src = "res.status_code < '200'";
    assert_eq!(
        issues(src, Phase::HttpResponse),
        vec![(
            codes::NO_MATCHING_OVERLOAD,
            src.to_owned(),
            "no matching overload for `<` with argument types (int, string)".to_owned()
        )]
    );
    assert_eq!(
        help_of(src, Phase::HttpResponse).as_deref(),
        Some("compare with a number, not a string: `200`")
    );
    let src = "req.url.path.startsWith(1)";
    assert_eq!(
        req(src),
        vec![(
            codes::NO_MATCHING_OVERLOAD,
            src.to_owned(),
            "no matching overload for `startsWith` with argument types (string, int)".to_owned()
        )]
    );
}

#[test]
fn time_now_is_a_string() {
    let src = "time.now < timestamp('2024-01-01T00:00:00Z')";
    assert_eq!(req(src)[0].0, codes::NO_MATCHING_OVERLOAD);
    assert_eq!(
        help_of(src, Phase::HttpRequest).as_deref(),
        Some("`time.now` is a string: use `timestamp(time.now)`")
    );
}

#[test]
fn non_bool_conditions() {
    assert_eq!(
        req("getReqHeader('X') && true"),
        vec![(
            codes::NOT_BOOL,
            "getReqHeader('X')".to_owned(),
            "the operands of `&&` must be `bool`, but this is `list(string)`".to_owned()
        )]
    );
    assert_eq!(
        req("req.url.path"),
        vec![(
            codes::NOT_BOOL,
            "req.url.path".to_owned(),
            "a condition must be a `bool`, but this is `string`".to_owned()
        )]
    );
    assert_eq!(req("!req.method")[0].0, codes::NOT_BOOL);
    assert_eq!(req("req.headers.all(k, k)")[0].0, codes::NOT_BOOL);
}

#[test]
fn variable_in_the_wrong_phase() {
    let src = "res.status_code == 200";
    assert_eq!(
        req(src),
        vec![(
            codes::VARIABLE_NOT_IN_PHASE,
            "res.status_code".to_owned(),
            "`res.status_code` is not available in `on_http_request`".to_owned()
        )]
    );
    assert_eq!(
        help_of(src, Phase::HttpRequest).as_deref(),
        Some("it exists in `on_http_response`, `on_event_stream_message`")
    );
    assert_eq!(
        codes_of("req.method == 'GET'", Phase::TcpConnect),
        vec![codes::VARIABLE_NOT_IN_PHASE]
    );
}

#[test]
fn function_in_the_wrong_phase() {
    assert_eq!(
        req("hasResHeader('X-Foo')"),
        vec![(
            codes::FUNCTION_NOT_IN_PHASE,
            "hasResHeader".to_owned(),
            "`hasResHeader` is not available in `on_http_request`".to_owned()
        )]
    );
}

#[test]
fn interpolation_in_expression() {
    let src = "req.headers['x'].join(',') == ${vars.test}";
    assert_eq!(
        req(src),
        vec![(
            codes::INTERPOLATION_IN_EXPRESSION,
            "${vars.test}".to_owned(),
            "`${…}` interpolation is not allowed in an expression".to_owned()
        )]
    );
    assert_eq!(
        req("req.url.path == '${vars.p}'"),
        vec![(
            codes::INTERPOLATION_IN_STRING_LITERAL,
            "'${vars.p}'".to_owned(),
            "`${…}` is not interpolated inside an expression; this is literal text".to_owned()
        )]
    );
}

#[test]
fn parse_errors_keep_the_parser_message() {
    let got = run("req.method == ", Phase::HttpRequest);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].code, codes::PARSE_ERROR);
    assert_eq!(got[0].ngrok_code, Some(2200));
    assert_eq!(got[0].span, Span::new(14, 14));
}

#[test]
fn invalid_regex_literal() {
    let src = "req.url.path.matches('^/(api')";
    let got = run(src, Phase::HttpRequest);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].code, codes::INVALID_REGEX);
    assert_eq!(&src[got[0].span.range()], "'^/(api'");
    assert!(
        got[0].message.starts_with("invalid regular expression: "),
        "{}",
        got[0].message
    );
    assert_eq!(
        codes_of("matches(req.url.path, '(?=x)')", Phase::HttpRequest),
        vec![codes::INVALID_REGEX]
    );
}

#[test]
fn undefined_fields() {
    assert_eq!(
        req("hasReqCookie('a') && getReqCookie('a').vale == 'x'"),
        vec![(
            codes::UNDEFINED_FIELD,
            "getReqCookie('a').vale".to_owned(),
            "type `cookie` has no field `vale`".to_owned()
        )]
    );
    assert_eq!(req("req.url.path.foo == 'x'")[0].0, codes::UNKNOWN_VARIABLE);
}

#[test]
fn has_checks_its_argument() {
    assert_eq!(req("has(req.url.port)"), vec![]);
    assert_eq!(req("has(req.headers.foo)"), vec![]);
    assert_eq!(req("has(vars.x)"), vec![]);
    assert_eq!(
        req("has(getReqCookie('a').nope)"),
        vec![(
            codes::UNDEFINED_FIELD,
            "nope".to_owned(),
            "type `cookie` has no field `nope`".to_owned()
        )]
    );
    assert_eq!(
        req("[1].map(x, has(x.f)).size() == 1"),
        vec![(
            codes::INVALID_HAS,
            "x.f".to_owned(),
            "`has()` tests a field of a map or object, but the operand is `int`".to_owned()
        )]
    );
}

#[test]
fn macros_bind_element_types() {
    // Elements of `req.headers['accept']` are strings: `v + 1` is an error.
    assert_eq!(
        req("getReqHeader('Accept').exists(v, v + 1 == 2)")[0].0,
        codes::NO_MATCHING_OVERLOAD
    );
    // Map comprehensions iterate keys (strings).
    assert_eq!(
        req("req.headers.exists(k, k > 1)")[0].0,
        codes::NO_MATCHING_OVERLOAD
    );
    // Two-variable form over a map: key and value.
    assert_eq!(
        req("req.headers.exists(k, v, v[0] == 'x' && k == 'a')"),
        vec![]
    );
    // Not iterable.
    assert_eq!(
        req("req.method.all(c, c == 'a')"),
        vec![(
            codes::NOT_ITERABLE,
            "req.method".to_owned(),
            "`all` needs a list or a map, but this is `string`".to_owned()
        )]
    );
}

#[test]
fn dyn_defers_checks() {
    assert_eq!(req("vars.x + 1 == 2 && vars.y.z.startsWith('a')"), vec![]);
    assert_eq!(req("json.decode('{}').a.b > 3"), vec![]);
    assert_eq!(req("dyn(req.method) == 1"), vec![]);
}

#[test]
fn constant_conditions() {
    assert_eq!(
        req("1 == 1"),
        vec![(
            codes::ALWAYS_TRUE,
            "1 == 1".to_owned(),
            "this condition is always true".to_owned()
        )]
    );
    assert_eq!(req("true || req.method == 'GET'")[0].0, codes::ALWAYS_TRUE);
    assert_eq!(
        req("req.method == 'GET' && false")[0].0,
        codes::ALWAYS_FALSE
    );
    assert_eq!(req("req.method in []")[0].0, codes::ALWAYS_FALSE);
    assert_eq!(req("'a' in ['a', 'b']")[0].0, codes::ALWAYS_TRUE);
    assert_eq!(req("size('abc') == 4")[0].0, codes::ALWAYS_FALSE);
}

#[test]
fn fold_constant_is_exposed() {
    let e = |s: &str| {
        wicket_grammar::parse(s)
            .map(|e| fold_constant(&e))
            .ok()
            .flatten()
    };
    assert_eq!(e("true"), Some(true));
    assert_eq!(e("!(1 < 2)"), Some(false));
    assert_eq!(e("req.method == 'GET'"), None);
    assert_eq!(e("x || true"), Some(true));
    assert_eq!(e("1 == 1u"), Some(true));
    assert_eq!(e("true ? 1 == 2 : x"), Some(false));
}

#[test]
fn cidr_compared_as_string() {
    let src = "conn.client_ip == '10.0.0.0/8'";
    assert_eq!(
        req(src),
        vec![(
            codes::CIDR_AS_STRING,
            "'10.0.0.0/8'".to_owned(),
            "`10.0.0.0/8` is a CIDR range, but `==` compares strings".to_owned()
        )]
    );
    assert_eq!(
        help_of(src, Phase::HttpRequest).as_deref(),
        Some("to match addresses in the range use `inCidrRange(conn.client_ip, '10.0.0.0/8')`")
    );
    let src = "conn.client_ip in ['10.0.0.0/8', '1.2.3.4']";
    assert_eq!(
        req(src),
        vec![(
            codes::CIDR_AS_STRING,
            "['10.0.0.0/8', '1.2.3.4']".to_owned(),
            "`in` compares strings, but the list holds CIDR ranges ('10.0.0.0/8')".to_owned()
        )]
    );
    assert_eq!(
        help_of(src, Phase::HttpRequest).as_deref(),
        Some("to match addresses in the ranges use `inCidrRanges(conn.client_ip, ['10.0.0.0/8'])`")
    );
}

#[test]
fn header_keys_are_lower_case() {
    let src = "req.headers['User-Agent'][0] == 'x'";
    assert_eq!(
        req(src),
        vec![(
            codes::HEADER_KEY_CASE,
            "'User-Agent'".to_owned(),
            "`req.headers` keys are lower-case, so `User-Agent` never matches".to_owned()
        )]
    );
    assert_eq!(
        help_of(src, Phase::HttpRequest).as_deref(),
        Some("use `'user-agent'`")
    );
    assert_eq!(
        codes_of("'X-Foo' in res.headers", Phase::HttpResponse),
        vec![codes::HEADER_KEY_CASE]
    );
}

#[test]
fn header_functions_expect_canonical_names() {
    let src = "hasReqHeader('user-agent')";
    assert_eq!(
        req(src),
        vec![(
            codes::HEADER_NAME_NOT_CANONICAL,
            "'user-agent'".to_owned(),
            "`hasReqHeader` expects the canonical header name, not `user-agent`".to_owned()
        )]
    );
    assert_eq!(
        help_of(src, Phase::HttpRequest).as_deref(),
        Some("use `'User-Agent'`")
    );
    assert_eq!(req("getReqHeader('X-Api-Key').size() > 0"), vec![]);
}

#[test]
fn vars_and_action_results_are_tracked() {
    let mut ctx = CheckContext::new(Phase::HttpRequest);
    ctx.vars = Some(BTreeMap::from([("tier".to_owned(), Type::String)]));
    ctx.actions_run = Some(BTreeSet::new());
    let got = check_source(
        "vars.tier == 'gold' && vars.teir == 'x'",
        &ctx,
        Expected::Bool,
    )
    .issues;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].code, codes::VAR_NOT_SET);
    assert_eq!(
        got[0].message,
        "`vars.teir` is not set by an earlier `set-vars` in `on_http_request`"
    );
    assert_eq!(got[0].help.as_deref(), Some("did you mean `vars.tier`?"));
    // `vars.tier` is known to be a string.
    assert_eq!(
        check_source("vars.tier > 1", &ctx, Expected::Bool).issues[0].code,
        codes::NO_MATCHING_OVERLOAD
    );

    let src = "actions.ngrok.basic_auth.credentials.authorized";
    let got = check_source(src, &ctx, Expected::Bool).issues;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].code, codes::ACTION_RESULT_BEFORE_ACTION);
    assert_eq!(
        got[0].message,
        "`actions.ngrok.basic_auth.credentials.authorized` is read before any `basic-auth` action ran in `on_http_request`"
    );
    ctx.actions_run = Some(BTreeSet::from(["basic_auth".to_owned()]));
    assert_eq!(check_source(src, &ctx, Expected::Bool).issues, vec![]);
    // `terminate-tls` ran in `on_tcp_connect`; its results are read later.
    let tls = "actions.ngrok.terminate_tls.client.subject != ''";
    assert_eq!(check_source(tls, &ctx, Expected::Bool).issues, vec![]);
    ctx.phase = Phase::TcpConnect;
    assert_eq!(
        check_source(tls, &ctx, Expected::Bool).issues[0].code,
        codes::ACTION_RESULT_BEFORE_ACTION
    );
}

#[test]
fn undocumented_names_warn() {
    assert_eq!(
        req("req.url.includes('/one')"),
        vec![(
            codes::UNDOCUMENTED_FUNCTION,
            "includes".to_owned(),
            "`includes` is not a documented function".to_owned()
        )]
    );
    assert_eq!(
        req("request.headers['x'][0] == 'y'"),
        vec![(
            codes::UNDOCUMENTED_VARIABLE,
            "request.headers".to_owned(),
            "`request.headers` is not a documented variable".to_owned()
        )]
    );
}

#[test]
fn retry_condition_variables() {
    let mut ctx = CheckContext::new(Phase::HttpRequest);
    assert_eq!(
        check_source("attempts < 3", &ctx, Expected::Bool).issues[0].code,
        codes::UNKNOWN_VARIABLE
    );
    ctx.extra_variables = crate::env::RETRY_CONDITION_VARIABLES;
    assert_eq!(
        check_source(
            "attempts < 3 && last_attempt.res.statusCode >= 500",
            &ctx,
            Expected::Bool
        )
        .issues,
        vec![]
    );
}

#[test]
fn message_construction_is_unsupported() {
    assert_eq!(
        req("google.protobuf.Int64Value{value: 1} == 1")[0].0,
        codes::UNSUPPORTED_SYNTAX
    );
}

#[test]
fn templates() {
    let ctx = CheckContext::new(Phase::HttpRequest);
    assert_eq!(
        check_template("client ${conn.client_ip} at ${timestamp(time.now)}", &ctx),
        vec![]
    );
    let got = check_template("x ${res.status_code} y", &ctx);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].code, codes::VARIABLE_NOT_IN_PHASE);
    assert_eq!(got[0].span, Span::new(4, 19));
    assert_eq!(got[0].ngrok_code, Some(2224));
    let got = check_template("x ${req.method", &ctx);
    assert_eq!(got[0].code, codes::PARSE_ERROR);
    assert_eq!(got[0].ngrok_code, Some(2224));
}

#[test]
fn types_are_reported() {
    let ctx = CheckContext::new(Phase::HttpRequest);
    let t = |s: &str| check_source(s, &ctx, Expected::Any).ty.to_string();
    assert_eq!(t("req.headers"), "map(string, list(string))");
    assert_eq!(t("req.cookies['a'][0]"), "cookie");
    assert_eq!(t("req.headers.filter(k, k != '')"), "list(string)");
    assert_eq!(t("[1, 2].map(x, string(x))"), "list(string)");
    assert_eq!(t("{'a': 1}"), "map(string, int)");
    assert_eq!(t("[1, 'a']"), "list(dyn)");
    assert_eq!(t("true ? 'a' : null"), "string");
    assert_eq!(t("timestamp(time.now) - conn.ts.start"), "duration");
}

#[test]
fn negation_binds_tighter_than_in() {
    let src = "!conn.client_ip in ['1.2.3.4']";
    assert_eq!(
        req(src),
        vec![(
            codes::NOT_BOOL,
            "conn.client_ip".to_owned(),
            "the operand of `!` must be a `bool`, but this is `string`".to_owned()
        )]
    );
    assert_eq!(
        help_of(src, Phase::HttpRequest).as_deref(),
        Some("`!` binds tighter than `in`: write `!(… in …)` to negate the whole comparison")
    );
}

#[test]
fn sort_with_a_comparator_is_undocumented() {
    assert_eq!(
        req("[3, 1].sort(x, y, x < y).size() == 2"),
        vec![(
            codes::UNDOCUMENTED_FUNCTION,
            "sort".to_owned(),
            "`sort` with a comparator is not documented".to_owned()
        )]
    );
    assert_eq!(
        codes_of("[3, 1].sort(x, y, x + y).size() == 2", Phase::HttpRequest),
        vec![codes::UNDOCUMENTED_FUNCTION, codes::NOT_BOOL]
    );
}

#[test]
fn terminate_tls_results_are_connection_level() {
    assert_eq!(
        req("actions.ngrok.terminate_tls.client.subject != ''"),
        vec![]
    );
}

#[test]
fn contradictory_and_tautological_ranges() {
    let res = |s: &str| codes_of(s, Phase::HttpResponse);
    let none: Vec<&str> = Vec::new();
    assert_eq!(
        res("res.status_code < 200 && res.status_code >= 300"),
        vec![codes::ALWAYS_FALSE]
    );
    assert_eq!(
        res("res.status_code == 200 && res.status_code == 404"),
        vec![codes::ALWAYS_FALSE]
    );
    assert_eq!(
        res("req.method == 'GET' && req.method != 'GET'"),
        vec![codes::ALWAYS_FALSE]
    );
    assert_eq!(
        res("res.status_code == 200 && 500 <= res.status_code"),
        vec![codes::ALWAYS_FALSE]
    );
    assert_eq!(
        res("res.status_code < 500 || res.status_code >= 500"),
        vec![codes::ALWAYS_TRUE]
    );
    assert_eq!(
        res("req.method != 'GET' || req.method != 'POST'"),
        vec![codes::ALWAYS_TRUE]
    );
    // Satisfiable ones stay quiet.
    assert_eq!(res("res.status_code >= 200 && res.status_code < 300"), none);
    assert_eq!(
        res("res.status_code <= 200 && res.status_code >= 200"),
        none
    );
    assert_eq!(
        res("res.status_code == 200 || res.status_code == 204"),
        none
    );
    assert_eq!(res("req.method != 'GET' && req.method != 'POST'"), none);
}

#[test]
fn literal_arguments_are_validated() {
    assert_eq!(
        req("timestamp(time.now) - conn.ts.start > duration('5x')"),
        vec![(
            codes::INVALID_LITERAL_ARGUMENT,
            "'5x'".to_owned(),
            "`5x` is not a duration such as `1h30m`, `1.5s` or `250ms`".to_owned()
        )]
    );
    assert_eq!(
        codes_of(
            "timestamp(time.now) > timestamp('2025-01-01')",
            Phase::HttpRequest
        ),
        vec![codes::INVALID_LITERAL_ARGUMENT]
    );
    assert_eq!(
        req("timestamp(time.now) > timestamp('2025-01-01T00:00:00Z')"),
        vec![]
    );
    assert_eq!(
        req("timestamp(time.now).getHours('Europe/Pariss') > 8"),
        vec![(
            codes::INVALID_LITERAL_ARGUMENT,
            "'Europe/Pariss'".to_owned(),
            "`Europe/Pariss` is not an IANA time zone such as `America/Los_Angeles` or a UTC offset such as `-08:00`".to_owned()
        )]
    );
    assert_eq!(
        req("timestamp(time.now).getHours('Europe/Paris') > 8"),
        vec![]
    );
    assert_eq!(
        req("inCidrRange(conn.client_ip, '10.0.0.0/33')"),
        vec![(
            codes::INVALID_CIDR,
            "'10.0.0.0/33'".to_owned(),
            "`10.0.0.0/33` is not a valid CIDR range, so this test is always false".to_owned()
        )]
    );
    assert_eq!(
        codes_of(
            "inCidrRanges(conn.client_ip, ['10.0.0.0/8', 'nope'])",
            Phase::HttpRequest
        ),
        vec![codes::INVALID_CIDR]
    );
}

#[test]
fn template_values_keep_the_type_of_a_single_interpolation() {
    let ctx = CheckContext::new(Phase::HttpRequest);
    assert_eq!(
        check_template_value("${req.headers}", &ctx).ty.to_string(),
        "map(string, list(string))"
    );
    assert_eq!(
        check_template_value("a ${req.headers}", &ctx).ty,
        Type::String
    );
    assert_eq!(check_template_value("plain", &ctx).ty, Type::String);
}

#[test]
fn has_on_an_index_explains_the_in_operator() {
    let got = run("has(req.headers['x'])", Phase::HttpRequest);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].code, codes::PARSE_ERROR);
    assert!(
        got[0]
            .help
            .as_deref()
            .is_some_and(|h| h.contains("'key' in map")),
        "{got:?}"
    );
}

#[test]
fn deep_expressions_do_not_overflow_the_stack() {
    // As deep as the parser allows, in the 2 MiB stack of a test thread.
    for depth in [100usize, 240, 250, 260, 1000] {
        let sum = format!("{}1{}", "(1 + ".repeat(depth), ")".repeat(depth));
        let lists = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        let nots = format!("{}true", "!".repeat(depth));
        let chain = format!("req{}", ".a".repeat(depth));
        let ands = vec!["req.method == 'GET'"; depth].join(" && ");
        for src in [sum, lists, nots, chain, ands] {
            let checked = check_source(&src, &CheckContext::new(Phase::HttpRequest), Expected::Any);
            assert!(checked.issues.len() <= depth + 1);
        }
    }
}

#[test]
fn names_and_overloads_are_resolved() {
    let src = "req.url.path.startsWith('/a') && conn.client_ip.geo.location.city == x.y";
    let checked = check_source(src, &CheckContext::new(Phase::HttpRequest), Expected::Bool);
    let shown: Vec<(String, String)> = checked
        .resolutions
        .iter()
        .map(|r| {
            let what = match &r.target {
                Resolved::Variable { name, id } => {
                    assert_eq!(id.map(|id| crate::env::Env::var(id).name), Some(*name));
                    (*name).to_owned()
                }
                Resolved::Overloads(ids) => ids
                    .iter()
                    .map(|id| crate::env::Env::function(*id).signature())
                    .collect::<Vec<_>>()
                    .join(" | "),
            };
            (src[r.span.range()].to_owned(), what)
        })
        .collect();
    assert_eq!(
        shown,
        vec![
            ("req.url.path".to_owned(), "req.url.path".to_owned()),
            (
                "req.url.path.startsWith('/a')".to_owned(),
                "string.startsWith(string) -> bool".to_owned()
            ),
            (src.to_owned(), "_&&_(bool, bool) -> bool".to_owned()),
            (
                "conn.client_ip.geo.location.city".to_owned(),
                "conn.client_ip.geo.location.city".to_owned()
            ),
            (
                "conn.client_ip.geo.location.city == x.y".to_owned(),
                "_==_(A, A) -> bool".to_owned()
            ),
        ]
    );
}

#[test]
fn unguarded_lookups() {
    let src = "req.headers['x-id'][0] == 'a'";
    assert_eq!(
        req(src),
        vec![(
            codes::UNGUARDED_LOOKUP,
            "req.headers['x-id']".to_owned(),
            "this lookup fails when the key is absent, and a failed expression ends the request or connection with an error".to_owned()
        )]
    );
    assert_eq!(
        help_of(src, Phase::HttpRequest).as_deref(),
        Some("guard it: `'x-id' in req.headers && …`")
    );
    assert_eq!(
        help_of("getReqHeader('X-Id')[0] == 'a'", Phase::HttpRequest).as_deref(),
        Some("guard it: `hasReqHeader('X-Id') && …`")
    );
    assert_eq!(
        codes_of("req.headers.foo[0] == 'a'", Phase::HttpRequest),
        vec![codes::UNGUARDED_LOOKUP]
    );
    assert_eq!(
        codes_of("getReqCookie('s').value == 'a'", Phase::HttpRequest),
        vec![codes::UNGUARDED_LOOKUP]
    );
    // Guards on either side of `&&`, negated guards in `||`, ternaries, `has`, docs idioms.
    for guarded in [
        "'x-id' in req.headers && req.headers['x-id'][0] == 'a'",
        "req.headers['x-id'][0] == 'a' && 'x-id' in req.headers",
        "!('x-id' in req.headers) || req.headers['x-id'][0] == 'a'",
        "has(req.headers.foo) && req.headers.foo[0] == 'a'",
        "hasReqHeader('X-Id') ? getReqHeader('X-Id')[0] == 'a' : false",
        "hasReqCookie('s') && getReqCookie('s').value == 'a'",
        "req.headers.exists_one(x, x == 'x-id') && req.headers['x-id'].join(',') == 'a'",
        "req.headers[?'x-id'].orValue([]).size() == 0",
        "req.headers.exists(k, req.headers[k].size() > 1)",
    ] {
        assert_eq!(req(guarded), vec![], "{guarded}");
    }
    // A guard in another condition of the same rule.
    let mut ctx = CheckContext::new(Phase::HttpRequest);
    let sibling = wicket_grammar::parse("'x-id' in req.headers").map(|e| presence_facts(&e));
    ctx.present_keys = sibling.unwrap_or_default();
    assert_eq!(check_source(src, &ctx, Expected::Bool).issues, vec![]);
}
