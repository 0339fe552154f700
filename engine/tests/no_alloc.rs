//! Evaluating rules over built-in fields and operators allocates nothing once the scratch
//! space is warm: a counting global allocator proves it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use wicket_engine::compile::compile;
use wicket_engine::compile::ir::PolicyIr;
use wicket_engine::program::{Decision, OwnedRequest, Scratch};
use wicket_policy::Phase;

struct Counting;

/// Tests run in parallel threads; the counter is global, so they take turns.
static SERIAL: Mutex<()> = Mutex::new(());
thread_local! {
    /// Counting is on for this thread (the test harness allocates on its own threads).
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn counting() -> bool {
    COUNTING.try_with(Cell::get).unwrap_or(false)
}
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

#[expect(
    unsafe_code,
    reason = "a global allocator must implement the unsafe GlobalAlloc trait"
)]
// SAFETY: every call is forwarded unchanged to the system allocator; the counter has no effect
// on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn program(json: &str) -> wicket_engine::Program {
    let doc: serde_json::Value = serde_json::from_str(json).expect("the test policy is JSON");
    let ir = PolicyIr::from_json(&doc).expect("the test policy has the policy shape");
    compile(&ir).expect("the test policy compiles")
}

/// Allocations made by `runs` evaluations after a warm-up.
fn count(p: &wicket_engine::Program, req: &OwnedRequest, runs: usize) -> (usize, Decision) {
    let mut scratch = Scratch::new();
    // Warm up: the scratch buffers grow to their working size and the regex engines fill
    // their lazily built caches.
    for _ in 0..3 {
        p.eval(Phase::HttpRequest, req, &mut scratch);
    }
    let warm = p.eval(Phase::HttpRequest, req, &mut scratch).decision;
    ALLOCATIONS.store(0, Ordering::SeqCst);
    COUNTING.with(|c| c.set(true));
    let mut last = Decision::Continue;
    for _ in 0..runs {
        let out = p.eval(Phase::HttpRequest, req, &mut scratch);
        // Keep the decision without cloning inside the counted region when it is `Continue`.
        if out.decision != warm {
            last = out.decision;
        }
    }
    COUNTING.with(|c| c.set(false));
    let n = ALLOCATIONS.load(Ordering::SeqCst);
    (
        n,
        if last == Decision::Continue {
            warm
        } else {
            last
        },
    )
}

const TYPICAL: &str = r#"{"on_http_request": [
  {"expressions": ["req.method == 'OPTIONS'"], "actions": [{"type": "custom-response", "config": {"status_code": 204, "headers": {"access-control-allow-origin": "*"}}}]},
  {"expressions": ["inCidrRanges(conn.client_ip, ['10.0.0.0/8', '192.168.0.0/16', '2001:db8::/32'])"], "actions": [{"type": "deny"}]},
  {"expressions": ["req.url.host in ['blocked.test', 'old.test']"], "actions": [{"type": "deny", "config": {"status_code": 410}}]},
  {"expressions": ["req.url.path.startsWith('/admin') && !hasReqHeader('authorization')"], "actions": [{"type": "deny", "config": {"status_code": 401}}]},
  {"expressions": ["req.url.path.matches('^/v[0-9]+/internal/')"], "actions": [{"type": "deny"}]},
  {"expressions": ["req.url.port == 8080 || req.url.scheme != 'https'"], "actions": [{"type": "deny", "config": {"status_code": 426}}]},
  {"expressions": ["req.url.path.endsWith('.php')", "req.method in ['GET', 'POST']"], "actions": [{"type": "deny", "config": {"status_code": 404}}]},
  {"expressions": ["req.url.path.contains('..')"], "actions": [{"type": "deny", "config": {"status_code": 400}}]},
  {"expressions": ["req.url == 'https://api.example.test/health'"], "actions": [{"type": "custom-response", "config": {"body": "ok"}}]},
  {"expressions": ["req.method == 'DELETE'", "req.url.path.startsWith('/api/')"], "actions": [{"type": "deny", "config": {"status_code": 405}}]}
]}"#;

#[test]
fn built_in_rules_allocate_nothing() {
    let _turn = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let p = program(TYPICAL);
    let ok = OwnedRequest::parse("GET https://api.example.test/v1/users?page=2")
        .unwrap()
        .with_header("user-agent", "curl/8")
        .with_client_ip("203.0.113.7".parse().unwrap());
    let (n, decision) = count(&p, &ok, 1000);
    assert_eq!(decision, Decision::Continue);
    assert_eq!(n, 0, "allocations while evaluating 10 rules 1000 times");

    let denied = OwnedRequest::parse("DELETE https://api.example.test/api/x")
        .unwrap()
        .with_client_ip("203.0.113.7".parse().unwrap());
    let (n, decision) = count(&p, &denied, 1000);
    assert_eq!(decision, Decision::Deny { status: 405 });
    assert_eq!(n, 0, "allocations while denying");

    let health = OwnedRequest::parse("GET https://api.example.test/health")
        .unwrap()
        .with_client_ip("203.0.113.7".parse().unwrap());
    let (n, decision) = count(&p, &health, 1000);
    assert!(
        matches!(decision, Decision::Respond { status: 200, .. }),
        "{decision:?}"
    );
    assert_eq!(
        n, 0,
        "allocations while answering a constant custom-response"
    );
}

#[test]
fn indexed_rules_allocate_nothing() {
    let _turn = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut rules = Vec::new();
    for i in 0..2000 {
        rules.push(format!(
            r#"{{"expressions": ["req.url.host == 'h{i}.test'", "req.url.path.startsWith('/p{}')"], "actions": [{{"type": "deny", "config": {{"status_code": 403}}}}]}}"#,
            i % 7
        ));
    }
    let p = program(&format!(r#"{{"on_http_request": [{}]}}"#, rules.join(",")));
    let hit = OwnedRequest::parse("GET https://h1234.test/p2/x").unwrap();
    let (n, decision) = count(&p, &hit, 1000);
    assert_eq!(decision, Decision::Deny { status: 403 });
    assert_eq!(n, 0);
    let miss = OwnedRequest::parse("GET https://h1234.test/q").unwrap();
    let (n, decision) = count(&p, &miss, 1000);
    assert_eq!(decision, Decision::Continue);
    assert_eq!(n, 0);
}

#[test]
fn restrict_ips_allocates_nothing() {
    let _turn = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut deny: Vec<String> = (0..1000)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
        .collect();
    deny.push("2001:db8::/32".into());
    let p = program(&format!(
        r#"{{"on_http_request": [{{"actions": [{{"type": "restrict-ips", "config": {{"allow": ["0.0.0.0/0", "::/0"], "deny": {}}}}}]}}]}}"#,
        serde_json::to_string(&deny).unwrap()
    ));
    for allowed in ["203.0.113.7", "2001:db9::1"] {
        let req = OwnedRequest::parse("GET https://api.example.test/")
            .unwrap()
            .with_client_ip(allowed.parse().unwrap());
        let (n, decision) = count(&p, &req, 1000);
        assert_eq!(decision, Decision::Continue, "{allowed}");
        assert_eq!(n, 0, "allocations for allowed {allowed}");
    }
    for denied in ["10.3.231.9", "2001:db8::1"] {
        let req = OwnedRequest::parse("GET https://api.example.test/")
            .unwrap()
            .with_client_ip(denied.parse().unwrap());
        let (n, decision) = count(&p, &req, 1000);
        assert!(
            matches!(decision, Decision::Reject { status: 403, .. }),
            "{denied}: {decision:?}"
        );
        assert_eq!(n, 0, "allocations for denied {denied}");
    }
}

#[test]
fn client_ip_indexed_rules_allocate_nothing() {
    let _turn = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut rules = Vec::new();
    for i in 0..500 {
        rules.push(format!(
            r#"{{"expressions": ["inCidrRanges(conn.client_ip, ['10.{}.{}.0/24', '2001:db8:{i:x}::/48'])"], "actions": [{{"type": "deny", "config": {{"status_code": 403}}}}]}}"#,
            i / 256,
            i % 256
        ));
        rules.push(format!(
            r#"{{"expressions": ["conn.client_ip == '192.0.2.{}'"], "actions": [{{"type": "deny", "config": {{"status_code": 401}}}}]}}"#,
            i % 256
        ));
    }
    let p = program(&format!(r#"{{"on_http_request": [{}]}}"#, rules.join(",")));
    for (ip, want) in [
        ("10.1.7.9", Decision::Deny { status: 403 }),
        ("2001:db8:1f3::1", Decision::Deny { status: 403 }),
        ("192.0.2.9", Decision::Deny { status: 401 }),
        ("198.51.100.1", Decision::Continue),
    ] {
        let req = OwnedRequest::parse("GET https://api.example.test/")
            .unwrap()
            .with_client_ip(ip.parse().unwrap());
        let (n, decision) = count(&p, &req, 1000);
        assert_eq!(decision, want, "{ip}");
        assert_eq!(n, 0, "allocations for {ip}");
    }
}

#[test]
fn a_closed_circuit_breaker_allocates_nothing() {
    let _turn = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let p = program(
        r#"{"on_http_request": [
          {"expressions": ["req.url.path.startsWith('/api/')"], "actions": [{"type": "circuit-breaker", "config": {"volume_threshold": 5}}]}
        ]}"#,
    );
    let req = OwnedRequest::parse("GET https://api.example.test/api/x").unwrap();
    // Admissions are recorded in the scratch (reused) and the breaker's state (held): nothing
    // per request.
    let (n, decision) = count(&p, &req, 1000);
    assert_eq!(decision, Decision::Continue);
    assert_eq!(n, 0, "allocations per admitted request");
}
