//! `circuit-breaker` through whole policies: admissions leave tokens in the scratch, the
//! runtime's reports (`Program::report`) trip the breaker, an open breaker answers 503
//! `ERR_NGROK_3202` with `retry-after`, and a half-open breaker lets one probe through. Time is
//! a hand-moved clock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wicket_engine::actions::breaker::{Clock, MemoryCircuitBreakers};
use wicket_engine::compile::ir::PolicyIr;
use wicket_engine::compile::{Options, compile_with};
use wicket_engine::program::{BreakerToken, Decision, OwnedRequest, Program, Scratch, Upstream};
use wicket_policy::Phase;

#[derive(Debug, Clone)]
struct ManualClock(Arc<Mutex<Instant>>);

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.0.lock().expect("clock")
    }
}

impl ManualClock {
    fn advance(&self, d: Duration) {
        *self.0.lock().expect("clock") += d;
    }
}

fn program(json: serde_json::Value) -> (Program, ManualClock) {
    let clock = ManualClock(Arc::new(Mutex::new(Instant::now())));
    let store = MemoryCircuitBreakers::with_clock(100, Box::new(clock.clone()));
    let options = Options {
        circuit_breakers: Some(Arc::new(store)),
        ..Options::default()
    };
    let p = compile_with(&PolicyIr::from_json(&json).expect("policy shape"), options)
        .expect("policy compiles");
    (p, clock)
}

fn get(path: &str) -> OwnedRequest {
    OwnedRequest::parse(&format!("GET https://a.test{path}")).expect("request line")
}

/// Evaluates the request phase; returns the decision and the admissions.
fn eval(p: &Program, s: &mut Scratch, path: &str) -> (Decision, Vec<BreakerToken>) {
    let d = p.eval(Phase::HttpRequest, &get(path), s).decision;
    (d, s.breaker_tokens().to_vec())
}

fn breaker_policy() -> serde_json::Value {
    serde_json::json!({"on_http_request": [
        {"expressions": ["req.url.path.startsWith('/api/')"], "actions": [{"type": "circuit-breaker", "config": {
            "error_threshold": 0.5, "volume_threshold": 4, "window_duration": "10s", "tripped_duration": "5s"
        }}]},
        {"expressions": ["req.url.path == '/api/local'"], "actions": [{"type": "custom-response", "config": {"body": "local"}}]}
    ]})
}

#[test]
fn upstream_failures_trip_the_breaker_and_it_answers_503() {
    let (p, _clock) = program(breaker_policy());
    let mut s = Scratch::new();
    for _ in 0..4 {
        let (d, tokens) = eval(&p, &mut s, "/api/x");
        assert_eq!(d, Decision::Continue);
        assert_eq!(tokens.len(), 1);
        p.report_response(tokens[0], 500);
    }
    let (d, tokens) = eval(&p, &mut s, "/api/x");
    let Decision::Reject {
        status,
        headers,
        code,
    } = d
    else {
        panic!("expected a rejection, got {d:?}");
    };
    assert_eq!((status, code), (503, Some("ERR_NGROK_3202")));
    assert_eq!(&*headers[0].0, "retry-after");
    assert_eq!(&*headers[0].1, "5");
    assert!(tokens.is_empty(), "a refused request has nothing to report");
    // Requests the rule does not cover are not affected.
    let (d, tokens) = eval(&p, &mut s, "/other");
    assert_eq!(d, Decision::Continue);
    assert!(tokens.is_empty());
}

#[test]
fn successes_and_unsent_requests_keep_it_closed() {
    let (p, _clock) = program(breaker_policy());
    let mut s = Scratch::new();
    for i in 0..20 {
        let (d, tokens) = eval(&p, &mut s, "/api/x");
        assert_eq!(d, Decision::Continue);
        p.report_response(tokens[0], if i % 4 == 1 { 502 } else { 200 });
    }
    // Answered locally by a later rule: the runtime reports it as not sent.
    for _ in 0..10 {
        let (d, tokens) = eval(&p, &mut s, "/api/local");
        assert!(matches!(d, Decision::Respond { .. }), "{d:?}");
        p.report(tokens[0], Upstream::NotSent);
    }
    assert_eq!(eval(&p, &mut s, "/api/x").0, Decision::Continue);
}

#[test]
fn after_the_tripped_duration_one_probe_decides() {
    let (p, clock) = program(breaker_policy());
    let mut s = Scratch::new();
    for _ in 0..4 {
        let (_, tokens) = eval(&p, &mut s, "/api/x");
        p.report(tokens[0], Upstream::Failed);
    }
    clock.advance(Duration::from_secs(5));
    let (d, probe) = eval(&p, &mut s, "/api/x");
    assert_eq!(d, Decision::Continue);
    // Others wait for the probe.
    assert!(matches!(
        eval(&p, &mut s, "/api/x").0,
        Decision::Reject { status: 503, .. }
    ));
    // A failed probe opens it again for the full duration.
    p.report_response(probe[0], 503);
    clock.advance(Duration::from_secs(4));
    assert!(matches!(
        eval(&p, &mut s, "/api/x").0,
        Decision::Reject { status: 503, .. }
    ));
    clock.advance(Duration::from_secs(1));
    let (_, probe) = eval(&p, &mut s, "/api/x");
    p.report_response(probe[0], 200);
    // Closed again.
    for _ in 0..3 {
        let (d, tokens) = eval(&p, &mut s, "/api/x");
        assert_eq!(d, Decision::Continue);
        p.report_response(tokens[0], 200);
    }
}

#[test]
fn enforce_false_never_trips_and_breakers_are_per_action() {
    let (p, _clock) = program(serde_json::json!({"on_http_request": [
        {"expressions": ["req.url.path == '/a'"], "actions": [{"type": "circuit-breaker", "config": {"volume_threshold": 1}}]},
        {"expressions": ["req.url.path == '/b'"], "actions": [{"type": "circuit-breaker", "config": {"volume_threshold": 1}}]},
        {"expressions": ["req.url.path == '/c'"], "actions": [{"type": "circuit-breaker", "config": {"volume_threshold": 1, "enforce": false}}]}
    ]}));
    let mut s = Scratch::new();
    let (_, tokens) = eval(&p, &mut s, "/a");
    p.report_response(tokens[0], 500);
    assert!(eval(&p, &mut s, "/a").0.terminates());
    assert_eq!(eval(&p, &mut s, "/b").0, Decision::Continue);
    for _ in 0..3 {
        let (d, tokens) = eval(&p, &mut s, "/c");
        assert_eq!(d, Decision::Continue);
        assert!(tokens.is_empty());
    }
}

#[test]
fn invalid_configs_do_not_compile() {
    for (config, message) in [
        (
            serde_json::json!({"error_threshold": 1.5}),
            "error_threshold",
        ),
        (
            serde_json::json!({"volume_threshold": 0}),
            "volume_threshold",
        ),
        (
            serde_json::json!({"window_duration": "5m"}),
            "window_duration",
        ),
        (
            serde_json::json!({"tripped_duration": "soon"}),
            "tripped_duration",
        ),
        (serde_json::json!({"num_buckets": 0}), "num_buckets"),
    ] {
        let doc = serde_json::json!({"on_http_request": [
            {"actions": [{"type": "circuit-breaker", "config": config}]}
        ]});
        let err = wicket_engine::compile(&PolicyIr::from_json(&doc).unwrap()).unwrap_err();
        assert!(err.to_string().contains(message), "{err}");
    }
}

#[test]
fn legacy_field_names_are_honoured() {
    // `error_threshold_percentage: 100` and `rolling_window`: only an all-failed window trips.
    let (p, _clock) = program(serde_json::json!({"on_http_request": [
        {"actions": [{"type": "circuit-breaker", "config": {
            "error_threshold_percentage": 100, "volume_threshold": 2, "rolling_window": "30s"
        }}]}
    ]}));
    let mut s = Scratch::new();
    for status in [500, 200, 500] {
        let (_, tokens) = eval(&p, &mut s, "/");
        p.report_response(tokens[0], status);
    }
    assert_eq!(
        eval(&p, &mut s, "/").0,
        Decision::Continue,
        "2 of 3 failed < 100%"
    );
    let err = wicket_engine::compile(
        &PolicyIr::from_json(&serde_json::json!({"on_http_request": [
            {"actions": [{"type": "circuit-breaker", "config": {"error_threshold_percentage": 150}}]}
        ]}))
        .expect("policy shape"),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("error_threshold_percentage"),
        "{err}"
    );
}
