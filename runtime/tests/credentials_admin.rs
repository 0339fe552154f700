//! The admin API over a real socket on 127.0.0.1:0: create → list → update → rotate → revoke →
//! sessions → audit, the error envelope, and the documented route table.

#![allow(
    clippy::unwrap_used,
    reason = "test support code outside #[test] functions"
)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use wicket_runtime::admin::{
    self, AdminClient, AdminKey, AdminState, ClientError, ErrorBody, ROUTES,
};
use wicket_runtime::credentials::{
    Acl, CredentialService, CredentialUpdate, EndpointUrl, KillReason, NewCredential, SqliteStore,
};

const KEY: &str = "test-admin-key-0123456789";

struct Harness {
    url: String,
    service: CredentialService,
    client: AdminClient,
    _shutdown: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let service = CredentialService::new(Arc::new(store));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    let state = AdminState::new(service.clone(), AdminKey::new(KEY).unwrap());
    tokio::spawn(admin::serve(listener, state, async move {
        let _ = rx.await;
    }));
    let client = AdminClient::new(&url, AdminKey::new(KEY).unwrap()).unwrap();
    Harness {
        url,
        service,
        client,
        _shutdown: tx,
        _dir: dir,
    }
}

/// Sends a raw request and returns the status and the body bytes.
async fn raw(
    url: &str,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (StatusCode, Bytes) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = Request::builder()
        .method(method)
        .uri(format!("{url}{path}"));
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .unwrap()
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, bytes)
}

fn error_code(body: &Bytes) -> String {
    serde_json::from_slice::<ErrorBody>(body)
        .unwrap_or_else(|e| {
            panic!(
                "not an error envelope ({e}): {}",
                String::from_utf8_lossy(body)
            )
        })
        .error
        .code
}

fn agent() -> SocketAddr {
    "127.0.0.1:50000".parse().unwrap()
}

#[tokio::test]
async fn admin_api_credential_lifecycle() {
    let h = start().await;
    let created = h
        .client
        .create(&NewCredential {
            description: "cam-42".into(),
            acl: Acl::parse(&["bind:cam-42.fleet.example.test"]).unwrap(),
            ..NewCredential::default()
        })
        .await
        .unwrap();
    let id = created.credential.id.clone();
    let token = created.token.expose().to_owned();
    assert!(token.starts_with("wkt_"));

    let listed = h.client.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    assert!(!serde_json::to_string(&listed).unwrap().contains(&token));

    let updated = h
        .client
        .update(
            id.as_str(),
            &CredentialUpdate {
                description: Some("cam-42 (north)".into()),
                max_sessions: Some(Some(2)),
                ..CredentialUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.description, "cam-42 (north)");
    assert_eq!(h.client.get(id.as_str()).await.unwrap(), updated);

    // An agent connects with the token; its bind is checked against the ACL.
    let (auth, mut session) = h.service.connect(&token, agent()).await.unwrap();
    let allowed = EndpointUrl::parse("https://cam-42.fleet.example.test").unwrap();
    auth.check_bind(&allowed).unwrap();
    session.add_endpoint(allowed.to_string());
    assert!(
        auth.check_bind(&EndpointUrl::parse("https://cam-43.fleet.example.test").unwrap())
            .is_err()
    );
    let sessions = h.client.sessions().await.unwrap().sessions;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].credential_id, id);
    assert_eq!(sessions[0].endpoints, ["https://cam-42.fleet.example.test"]);

    // Rotate with a grace period: both tokens work.
    let rotation = h.client.rotate(id.as_str(), Some("1h")).await.unwrap();
    let new_id = rotation.new.credential.id.clone();
    let new_token = rotation.new.token.expose().to_owned();
    assert_eq!(rotation.new.credential.acl, created.credential.acl);
    assert_eq!(rotation.old.rotated_to.as_ref(), Some(&new_id));
    assert!(rotation.old.expires_at.is_some());
    h.service.authenticate(&token, agent()).await.unwrap();
    h.service.authenticate(&new_token, agent()).await.unwrap();
    assert_eq!(session.kill_reason(), None);

    // Revoke the old credential: its session is signalled before the response arrives.
    let revoked = h.client.revoke(id.as_str()).await.unwrap();
    assert!(revoked.credential.revoked_at.is_some());
    assert_eq!(revoked.sessions_closed, [session.id().clone()]);
    assert_eq!(session.kill_reason(), Some(KillReason::CredentialRevoked));
    assert_eq!(session.killed().await, KillReason::CredentialRevoked);
    drop(session);
    assert!(h.service.authenticate(&token, agent()).await.is_err());
    h.service.authenticate(&new_token, agent()).await.unwrap();

    // Revoking again conflicts; rotating a revoked credential conflicts.
    let err = h.client.revoke(id.as_str()).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Api {
                status: StatusCode::CONFLICT,
                ..
            }
        ),
        "{err}"
    );

    // Kill a session of the new credential through the API.
    let (_, mut new_session) = h.service.connect(&new_token, agent()).await.unwrap();
    let killed = h
        .client
        .kill_session(new_session.id().as_str())
        .await
        .unwrap();
    assert_eq!(killed.session.closing, Some(KillReason::Disconnected));
    assert_eq!(new_session.killed().await, KillReason::Disconnected);
    drop(new_session);

    // The audit log has every action, none of which mentions a token.
    let records = poll_audit(&h.client, |actions| {
        actions.contains(&"session.end".to_owned())
            && actions.iter().filter(|a| *a == "session.end").count() >= 2
    })
    .await;
    let actions: Vec<&str> = records.iter().map(|r| r.action.as_str()).collect();
    for expected in [
        "credential.create",
        "credential.update",
        "credential.rotate",
        "credential.revoke",
        "session.start",
        "session.end",
        "session.refuse",
        "session.kill",
    ] {
        assert!(
            actions.contains(&expected),
            "missing {expected} in {actions:?}"
        );
    }
    let revoke_records: Vec<_> = records
        .iter()
        .filter(|r| r.action == "credential.revoke")
        .map(|r| (r.result.as_str(), r.actor.as_str()))
        .collect();
    assert_eq!(
        revoke_records,
        [("ok", "admin-api"), ("conflict", "admin-api")]
    );
    assert!(records.iter().all(|r| {
        r.action.starts_with("session.")
            || r.source
                .as_deref()
                .is_some_and(|s| s.starts_with("127.0.0.1:"))
    }));
    let dump = serde_json::to_string(&records).unwrap();
    assert!(!dump.contains(&token) && !dump.contains(&new_token));

    // `since` in the future returns nothing.
    let later = h
        .client
        .audit(Some("2999-01-01T00:00:00Z"), None)
        .await
        .unwrap();
    assert!(later.records.is_empty());
}

async fn poll_audit(
    client: &AdminClient,
    done: impl Fn(&[String]) -> bool,
) -> Vec<wicket_runtime::credentials::AuditRecord> {
    // Session start/end records are written off the session's task; wait for them (bounded).
    for _ in 0..200 {
        let records = client.audit(None, None).await.unwrap().records;
        let actions: Vec<String> = records.iter().map(|r| r.action.clone()).collect();
        if done(&actions) {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("audit records did not appear");
}

/// `(method, path, admin key, body, expected status, expected code)`.
type ErrorCase = (
    Method,
    &'static str,
    Option<&'static str>,
    &'static str,
    StatusCode,
    &'static str,
);

#[tokio::test]
async fn admin_api_errors_are_json_with_codes() {
    let h = start().await;
    let cases: &[ErrorCase] = &[
        (
            Method::GET,
            "/v1/credentials",
            None,
            "",
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            Method::GET,
            "/v1/credentials",
            Some("wrong-key-wrong-key"),
            "",
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            Method::GET,
            "/v1/nothing",
            Some(KEY),
            "",
            StatusCode::NOT_FOUND,
            "route_not_found",
        ),
        (
            Method::PUT,
            "/v1/credentials",
            Some(KEY),
            "",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::GET,
            "/v1/credentials/cr_aaaaaaaaaaaaaaaaaaaaaaaaaa",
            Some(KEY),
            "",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::GET,
            "/v1/credentials/garbage",
            Some(KEY),
            "",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::POST,
            "/v1/credentials",
            Some(KEY),
            "{not json",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/credentials",
            Some(KEY),
            r#"{"acl":["cam-42"]}"#,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/credentials",
            Some(KEY),
            r#"{"token":"x"}"#,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/credentials",
            Some(KEY),
            r#"{"allowed_cidrs":["10.0.0.0/33"]}"#,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/credentials",
            Some(KEY),
            r#"{"max_sessions":0}"#,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Method::DELETE,
            "/v1/sessions/ss_aaaaaaaaaaaaaaaaaaaaaaaaaa",
            Some(KEY),
            "",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::GET,
            "/v1/audit?since=someday",
            Some(KEY),
            "",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (method, path, key, body, status, code) in cases {
        let (got_status, got_body) = raw(&h.url, method.clone(), path, *key, body).await;
        assert_eq!(
            (got_status, error_code(&got_body)),
            (*status, code.to_string()),
            "{method} {path} {body}"
        );
    }
    // Oversized bodies are refused.
    let big = format!(r#"{{"description":"{}"}}"#, "x".repeat(70 * 1024));
    let (status, body) = raw(&h.url, Method::POST, "/v1/credentials", Some(KEY), &big).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    // A bad grace is rejected, and the rejection is audited.
    let created = h.client.create(&NewCredential::default()).await.unwrap();
    let path = format!("/v1/credentials/{}/rotate", created.credential.id);
    let (status, body) = raw(
        &h.url,
        Method::POST,
        &path,
        Some(KEY),
        r#"{"grace":"soon"}"#,
    )
    .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let records = h.client.audit(None, None).await.unwrap().records;
    assert!(
        records
            .iter()
            .any(|r| r.action == "credential.rotate" && r.result == "invalid_request")
    );
    assert!(
        records
            .iter()
            .any(|r| r.action == "credential.create" && r.result == "invalid_request")
    );
    // Rotation without a body means zero grace.
    let path = format!("/v1/credentials/{}/rotate", created.credential.id);
    let (status, _) = raw(&h.url, Method::POST, &path, Some(KEY), "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        h.client
            .get(created.credential.id.as_str())
            .await
            .unwrap()
            .revoked_at
            .is_some()
    );
}

/// The `| `METHOD` | `/path` | … |` rows of the route table in `docs/admin-api.md`.
fn documented_routes() -> BTreeSet<(String, String)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/admin-api.md"))
        .unwrap();
    let section = doc
        .split("## Routes")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap();
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let method = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let path = cells.get(2)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((method.to_owned(), path.to_owned()))
        })
        .collect()
}

#[tokio::test]
async fn admin_routes_match_the_documentation() {
    let documented = documented_routes();
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(documented.len(), 9);
    assert_eq!(
        documented, served,
        "docs/admin-api.md and admin::ROUTES differ"
    );

    // Every documented route is really dispatched (never `route_not_found` or 405).
    let h = start().await;
    for (method, path) in &documented {
        let path = path.replace("{id}", "cr_aaaaaaaaaaaaaaaaaaaaaaaaaa");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let (status, body) = raw(&h.url, method.clone(), &path, Some(KEY), "{}").await;
        if !status.is_success() {
            let code = error_code(&body);
            assert!(
                code != "route_not_found" && code != "method_not_allowed",
                "{method} {path} is documented but not served ({code})"
            );
        }
    }
}

/// Revocation latency through the admin API, from the moment the revoke request is sent to the
/// moment the session's task observes its kill signal, over 100 trials. The figures are
/// printed (run with `--nocapture`); the test asserts that every session was signalled and
/// that the signal was observable by the time the revoke response arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_revoke_signals_sessions_before_responding() {
    let h = start().await;
    let mut latencies = Vec::with_capacity(100);
    for _ in 0..100 {
        let issued = h.client.create(&NewCredential::default()).await.unwrap();
        let (_, mut session) = h
            .service
            .connect(issued.token.expose(), agent())
            .await
            .unwrap();
        let signal = session.kill_signal();
        let watcher = tokio::spawn(async move {
            let reason = session.killed().await;
            (reason, std::time::Instant::now())
        });
        let sent = std::time::Instant::now();
        let response = h
            .client
            .revoke(issued.credential.id.as_str())
            .await
            .unwrap();
        assert_eq!(response.sessions_closed.len(), 1);
        assert_eq!(*signal.borrow(), Some(KillReason::CredentialRevoked));
        let (reason, observed) = tokio::time::timeout(Duration::from_secs(10), watcher)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reason, KillReason::CredentialRevoked);
        latencies.push(observed - sent);
    }
    let mut observed = latencies;
    observed.sort();
    let pick = |q: f64| observed[((observed.len() as f64 - 1.0) * q).round() as usize];
    eprintln!(
        "revoke -> session signalled over {} trials: p50 {:?}, p99 {:?}, max {:?}",
        observed.len(),
        pick(0.5),
        pick(0.99),
        observed[observed.len() - 1]
    );
}
