//! Action semantics through whole policies: terminating and pass-through actions, result
//! variables visible to later rules, interpolation, and fail-closed errors.

use base64::Engine as _;
use ring::hmac;
use wicket_engine::Value;
use wicket_engine::compile::compile;
use wicket_engine::compile::ir::PolicyIr;
use wicket_engine::program::{Decision, Effect, OwnedRequest, Program, Scratch};
use wicket_engine::value::Key;
use wicket_policy::Phase;

fn program(json: serde_json::Value) -> Program {
    compile(&PolicyIr::from_json(&json).expect("policy shape")).expect("policy compiles")
}

fn get(line: &str) -> OwnedRequest {
    OwnedRequest::parse(line)
        .expect("request line")
        .with_client_ip("203.0.113.7".parse().expect("ip"))
}

fn var(s: &Scratch, name: &str) -> Option<Value> {
    s.vars().get_key(&Key::String(name.into())).cloned()
}

#[test]
fn set_vars_keeps_types_and_later_rules_see_them() {
    let p = program(serde_json::json!({"on_http_request": [
        {"actions": [{"type": "set-vars", "config": {"vars": [
            {"n": "${size(req.url.path)}"},
            {"list": "${['a', 'b']}"},
            {"text": "path=${req.url.path}"},
            {"twice": "${vars.n * 2}"}
        ]}}]},
        {"expressions": ["vars.twice == 12", "vars.list[1] == 'b'"], "actions": [{"type": "deny", "config": {"status_code": 418}}]}
    ]}));
    let mut s = Scratch::new();
    let out = p.eval(Phase::HttpRequest, &get("GET https://a.test/abcde"), &mut s);
    assert_eq!(out.decision, Decision::Deny { status: 418 });
    assert!(matches!(var(&s, "n"), Some(Value::Int(6))));
    assert!(matches!(var(&s, "text"), Some(Value::String(t)) if &*t == "path=/abcde"));
}

#[test]
fn url_rewrite_changes_what_later_rules_read() {
    let p = program(serde_json::json!({"on_http_request": [
        {"actions": [{"type": "url-rewrite", "config": {"from": "/old/([a-z]+)", "to": "/new/$1"}}]},
        {"expressions": ["req.url.path == '/new/page'", "actions.ngrok.url_rewrite.matches[1] == 'page'"],
         "actions": [{"type": "custom-response", "config": {"status_code": 200, "body": "at ${req.url.path}"}}]}
    ]}));
    let mut s = Scratch::new();
    let out = p.eval(
        Phase::HttpRequest,
        &get("GET https://a.test/old/page?x=1"),
        &mut s,
    );
    assert!(
        matches!(&out.decision, Decision::Respond { body, .. } if &**body == "at /new/page"),
        "{out:?}"
    );
    assert!(
        matches!(&out.effects[0], Effect::RewriteUrl { url } if &**url == "https://a.test/new/page?x=1")
    );
}

#[test]
fn redirect_terminates_only_when_it_redirects() {
    let p = program(serde_json::json!({"on_http_request": [
        {"actions": [{"type": "redirect", "config": {"from": "^http://(.*)$", "to": "https://$1", "status_code": 301}}]},
        {"actions": [{"type": "redirect", "config": {"from": "/city/(.*)$", "to": "/town/${req.method} City"}}]}
    ]}));
    let mut s = Scratch::new();
    let out = p.eval(Phase::HttpRequest, &get("GET http://a.test/x"), &mut s);
    assert_eq!(
        out.decision,
        Decision::Redirect {
            status: 301,
            location: "https://a.test/x".into(),
            headers: std::sync::Arc::from(Vec::new())
        }
    );
    let out = p.eval(
        Phase::HttpRequest,
        &get("GET https://a.test/city/paris"),
        &mut s,
    );
    assert!(
        matches!(&out.decision, Decision::Redirect { status: 302, location, .. } if &**location == "https://a.test/town/GET%20City"),
        "{out:?}"
    );
    let out = p.eval(Phase::HttpRequest, &get("GET https://a.test/other"), &mut s);
    assert_eq!(out.decision, Decision::Continue);
}

#[test]
fn headers_and_log_are_effects() {
    let p = program(serde_json::json!({"on_http_request": [
        {"actions": [
            {"type": "add-headers", "config": {"headers": {"X-Client": "${conn.client_ip}"}}},
            {"type": "remove-headers", "config": {"headers": ["X-Secret"]}},
            {"type": "log", "config": {"metadata": {"path": "${req.url.path}"}}}
        ]},
        {"expressions": ["actions.ngrok.add_headers.headers_added['x-client'] == '203.0.113.7'"], "actions": [{"type": "deny"}]}
    ]}));
    let mut s = Scratch::new();
    let out = p.eval(Phase::HttpRequest, &get("GET https://a.test/p"), &mut s);
    assert_eq!(out.decision, Decision::Deny { status: 403 });
    assert!(
        matches!(&out.effects[0], Effect::AddHeader { name, value } if &**name == "x-client" && &**value == "203.0.113.7")
    );
    assert!(matches!(&out.effects[1], Effect::RemoveHeader { name } if &**name == "x-secret"));
    assert!(matches!(&out.effects[2], Effect::Log { .. }));
    let bad = serde_json::json!({"on_http_request": [{"actions": [{"type": "add-headers", "config": {"headers": {"User-Agent": "x"}}}]}]});
    assert!(compile(&PolicyIr::from_json(&bad).unwrap()).is_err());
}

#[test]
fn restrict_ips_deny_wins_and_enforce_false_records() {
    let p = program(serde_json::json!({"on_http_request": [
        {"actions": [{"type": "restrict-ips", "config": {"allow": ["203.0.113.0/24"], "deny": ["203.0.113.7/32"]}}]}
    ]}));
    let mut s = Scratch::new();
    let out = p.eval(Phase::HttpRequest, &get("GET https://a.test/"), &mut s);
    assert!(matches!(
        out.decision,
        Decision::Reject {
            status: 403,
            code: Some("ERR_NGROK_3203"),
            ..
        }
    ));
    let other = get("GET https://a.test/").with_client_ip("203.0.113.8".parse().unwrap());
    assert_eq!(
        p.eval(Phase::HttpRequest, &other, &mut s).decision,
        Decision::Continue
    );
    let outside = get("GET https://a.test/").with_client_ip("198.51.100.1".parse().unwrap());
    assert!(
        p.eval(Phase::HttpRequest, &outside, &mut s)
            .decision
            .terminates()
    );

    let p = program(serde_json::json!({"on_tcp_connect": [
        {"actions": [{"type": "restrict-ips", "config": {"enforce": false, "allow": ["10.0.0.0/8"]}}]},
        {"expressions": ["actions.ngrok.restrict_ips.action == 'deny'"], "actions": [{"type": "deny"}]}
    ]}));
    assert_eq!(
        p.eval(Phase::TcpConnect, &get("GET https://a.test/"), &mut s)
            .decision,
        Decision::CloseConnection
    );
}

#[test]
fn basic_auth_challenges_and_authorizes() {
    let p = program(serde_json::json!({"on_http_request": [
        {"actions": [{"type": "basic-auth", "config": {"credentials": ["alice:correct-horse"], "realm": "staff"}}]},
        {"expressions": ["actions.ngrok.basic_auth.credentials.username == 'alice'"], "actions": [{"type": "custom-response", "config": {"body": "hi"}}]}
    ]}));
    let mut s = Scratch::new();
    let out = p.eval(Phase::HttpRequest, &get("GET https://a.test/"), &mut s);
    assert!(
        matches!(&out.decision, Decision::Reject { status: 401, headers, .. } if &*headers[0].1 == "Basic realm=\"staff\"")
    );
    let good = base64::engine::general_purpose::STANDARD.encode("alice:correct-horse");
    let req = get("GET https://a.test/").with_header("authorization", &format!("Basic {good}"));
    assert!(matches!(
        p.eval(Phase::HttpRequest, &req, &mut s).decision,
        Decision::Respond { .. }
    ));
    let bad = base64::engine::general_purpose::STANDARD.encode("alice:wrong");
    let req = get("GET https://a.test/").with_header("authorization", &format!("Basic {bad}"));
    assert!(matches!(
        p.eval(Phase::HttpRequest, &req, &mut s).decision,
        Decision::Reject { status: 401, .. }
    ));
}

#[test]
fn rate_limit_answers_429_with_retry_after() {
    let p = program(serde_json::json!({"on_http_request": [
        {"actions": [{"type": "rate-limit", "config": {"name": "per-ip", "algorithm": "sliding_window", "capacity": 2, "rate": "60s", "bucket_key": ["conn.client_ip"]}}]}
    ]}));
    let mut s = Scratch::new();
    let req = get("GET https://a.test/");
    assert_eq!(
        p.eval(Phase::HttpRequest, &req, &mut s).decision,
        Decision::Continue
    );
    assert_eq!(
        p.eval(Phase::HttpRequest, &req, &mut s).decision,
        Decision::Continue
    );
    let out = p.eval(Phase::HttpRequest, &req, &mut s);
    assert!(
        matches!(&out.decision, Decision::Reject { status: 429, headers, .. } if &*headers[0].0 == "retry-after"),
        "{out:?}"
    );
    let other = get("GET https://a.test/").with_client_ip("198.51.100.1".parse().unwrap());
    assert_eq!(
        p.eval(Phase::HttpRequest, &other, &mut s).decision,
        Decision::Continue
    );
}

#[test]
fn jwt_validation_with_a_static_secret() {
    let secret = "0123456789abcdef0123456789abcdef";
    let p = program(serde_json::json!({"on_http_request": [
        {"actions": [{"type": "jwt-validation", "config": {
            "issuer": {"allow_list": [{"value": "https://issuer.test"}]},
            "http": {"tokens": [{"type": "jwt", "method": "header", "name": "Authorization", "prefix": "Bearer "}]},
            "jws": {"allowed_algorithms": ["HS256"], "keys": {"sources": {"static": [{"secret": secret}]}}}
        }}]},
        {"expressions": ["actions.ngrok.jwt_validation.tokens[0].payload.sub == 'admin'"], "actions": [{"type": "deny", "config": {"status_code": 451}}]}
    ]}));
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let signing = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256"}"#),
        b64(br#"{"iss":"https://issuer.test","sub":"admin"}"#)
    );
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
        signing.as_bytes(),
    );
    let token = format!("{signing}.{}", b64(tag.as_ref()));
    let mut s = Scratch::new();
    let out = p.eval(Phase::HttpRequest, &get("GET https://a.test/"), &mut s);
    assert!(
        matches!(
            out.decision,
            Decision::Reject {
                status: 401,
                code: Some("ERR_NGROK_3406"),
                ..
            }
        ),
        "{out:?}"
    );
    let req = get("GET https://a.test/").with_header("authorization", &format!("Bearer {token}"));
    assert_eq!(
        p.eval(Phase::HttpRequest, &req, &mut s).decision,
        Decision::Deny { status: 451 }
    );
    let req = get("GET https://a.test/").with_header("authorization", &format!("Bearer {token}x"));
    assert!(matches!(
        p.eval(Phase::HttpRequest, &req, &mut s).decision,
        Decision::Reject { status: 401, .. }
    ));
}

#[test]
fn io_actions_suspend_and_resume() {
    let p = program(serde_json::json!({"on_http_request": [
        {"actions": [
            {"type": "set-vars", "config": {"vars": [{"before": "yes"}]}},
            {"type": "oauth", "config": {"provider": "github"}},
            {"type": "add-headers", "config": {"headers": {"x-user": "${actions.ngrok.oauth.identity.email}"}}}
        ]}
    ]}));
    let mut s = Scratch::new();
    let req = get("GET https://a.test/");
    let out = p.eval(Phase::HttpRequest, &req, &mut s);
    let Decision::External { kind, resume, .. } = out.decision else {
        panic!("expected an external action")
    };
    assert_eq!(&*kind, "oauth");
    let mut identity = wicket_engine::value::MapValue::new();
    identity.upsert(Key::String("email".into()), Value::string("a@b.test"));
    let mut result = wicket_engine::value::MapValue::new();
    result.upsert(Key::String("identity".into()), Value::map(identity));
    s.set_action_result("oauth", Value::map(result));
    let out = p.resume(resume, &req, &mut s);
    assert_eq!(out.decision, Decision::Continue);
    assert!(matches!(&out.effects[0], Effect::AddHeader { value, .. } if &**value == "a@b.test"));
    assert!(var(&s, "before").is_some());
}

#[test]
fn a_jwt_validation_with_a_body_token_is_left_to_the_runtime() {
    // Static keys alone would be checked here, but the engine never sees bodies: the runtime
    // reads the body and validates (runtime/src/actions/jwks.rs).
    let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA";
    let jwt = |method: &str| {
        serde_json::json!({"on_http_request": [{"actions": [{"type": "jwt-validation", "config": {
            "issuer": {"allow_list": [{"value": "https://issuer.test"}]},
            "http": {"tokens": [{"type": "jwt", "method": method, "name": "id_token"}]},
            "jws": {"allowed_algorithms": ["HS256"], "keys": {"sources": {"jwks":
                format!(r#"{{"keys":[{{"kty":"oct","k":"{secret}"}}]}}"#)}}},
        }}]}]})
    };
    let mut s = Scratch::new();
    let req = get("POST https://a.test/login");
    let out = program(jwt("body")).eval(Phase::HttpRequest, &req, &mut s);
    assert!(
        matches!(&out.decision, Decision::External { kind, .. } if &**kind == "jwt-validation"),
        "{:?}",
        out.decision
    );
    // The same validation reading a header stays in the engine (and the header is missing).
    let out = program(jwt("header")).eval(Phase::HttpRequest, &req, &mut s);
    assert!(
        matches!(out.decision, Decision::Reject { status: 401, .. }),
        "{:?}",
        out.decision
    );
}

#[test]
fn unsupported_actions_do_not_compile() {
    let doc = serde_json::json!({"on_http_request": [{"actions": [{"type": "owasp-crs-request", "config": {}}]}]});
    let err = compile(&PolicyIr::from_json(&doc).unwrap()).unwrap_err();
    assert!(err.to_string().contains("not supported"), "{err}");
}

#[test]
fn interpolation_errors_fail_closed() {
    let p = program(serde_json::json!({"on_http_request": [
        {"name": "greets", "actions": [{"type": "custom-response", "config": {"body": "${req.headers['missing'][0]}"}}]}
    ]}));
    let mut s = Scratch::new();
    let out = p.eval(Phase::HttpRequest, &get("GET https://a.test/"), &mut s);
    assert!(
        matches!(&out.decision, Decision::Error { rule, .. } if &**rule == "greets"),
        "{out:?}"
    );
}

#[test]
fn a_failing_condition_ends_closed_naming_its_error_and_false_wins_over_errors() {
    // The hot path evaluates a condition without its error value and asks again only when it
    // failed: the error must still be the one the condition evaluates to.
    let p = program(serde_json::json!({"on_http_request": [
        {"name": "false wins", "expressions": ["req.method == 'POST'", "req.headers['x-missing'][0] == 'a'"],
         "actions": [{"type": "deny", "config": {"status_code": 401}}]},
        {"name": "fails", "expressions": ["req.url.path.startsWith('/x')", "req.headers['x-missing'][0] == 'a'"],
         "actions": [{"type": "deny", "config": {"status_code": 402}}]}
    ]}));
    let mut s = Scratch::new();
    let out = p.eval(Phase::HttpRequest, &get("GET https://a.test/y"), &mut s);
    assert_eq!(out.decision, Decision::Continue);
    let out = p.eval(Phase::HttpRequest, &get("GET https://a.test/x"), &mut s);
    match &out.decision {
        Decision::Error { rule, message } => {
            assert_eq!(&**rule, "fails");
            assert!(message.contains("x-missing"), "{message}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

/// The actions the policy crate lints as unsupported by the edge (`EDGE_UNSUPPORTED`, W0011)
/// are exactly those, besides the legacy and preview ones, that the engine refuses as not
/// supported: the warning and the bind refusal cannot drift apart.
#[test]
fn the_lint_list_of_unsupported_actions_matches_the_engine() {
    use wicket_policy::model::schema::{ACTIONS, ActionStatus, EDGE_UNSUPPORTED};
    for spec in ACTIONS {
        let phase = spec.phases[0];
        let doc = serde_json::json!({ phase.as_str(): [{"actions": [{"type": spec.name, "config": {}}]}] });
        let refused = match PolicyIr::from_json(&doc).map(|ir| compile(&ir)) {
            Ok(Err(e)) => e.to_string().contains("is not supported"),
            _ => false,
        };
        let listed = EDGE_UNSUPPORTED.contains(&spec.name) || spec.status != ActionStatus::Ga;
        assert_eq!(
            refused, listed,
            "`{}`: engine refuses it: {refused}, lint warns: {listed}",
            spec.name
        );
    }
}
